//! A malformed scenario names the file, the line and the field.

use kmap_check::scenario::parse;

fn error(text: &str) -> String {
    parse("bad.toml", "bad", text).unwrap_err().to_string()
}

#[test]
fn a_missing_field() {
    let e = error("[[task]]\nname = \"A\"\n");
    assert_eq!(e, "bad.toml:1: missing field `ops`");
}

#[test]
fn a_wrong_type() {
    let e = error("[machine]\ncpus = \"two\"\n[[task]]\nname = \"A\"\nops = []\n");
    assert_eq!(
        e,
        "bad.toml:2: field `machine.cpus`: invalid type: string \"two\", expected usize"
    );
}

#[test]
fn an_unknown_operation() {
    let e = error("[[task]]\nname = \"A\"\nops = [\"map 20\",\n  \"mapp 21\"]\n");
    assert!(
        e.starts_with("bad.toml:4: field `task[0].ops[1]`: unknown operation `mapp 21`"),
        "{e}"
    );
}

#[test]
fn a_frame_out_of_range() {
    let e = error("[machine]\nframes = 32\n[[task]]\nname = \"A\"\nops = [\"map 40\"]\n");
    assert_eq!(
        e,
        "bad.toml:5: field `task[0].ops[0]`: frame 40 is out of range: the machine has 32 frames"
    );
}

#[test]
fn an_unknown_field_and_an_unknown_protocol() {
    let e = error("[machine]\nswitches = \"split\"\n[[task]]\nname = \"A\"\nops = []\n");
    assert!(
        e.starts_with(
            "bad.toml:2: field `machine.switches`: unknown field `switches`, expected one of \
             `impl`, `cpus`, `frames`, `lowmem`, `cells`, `switch`"
        ),
        "{e}"
    );
    let e = error("[machine]\nswitch = \"rfc-v2\"\n[[task]]\nname = \"A\"\nops = []\n");
    assert!(
        e.starts_with(
            "bad.toml:2: field `machine.switch`: unknown variant `rfc-v2`, expected one of \
             `split`, `rfc-v1`, `swap-after-current`"
        ),
        "{e}"
    );
}

#[test]
fn an_old_name_is_read_with_a_note_and_its_errors_name_it() {
    let text = "[machine]\nslots = 4\ndebug_guards = true\nbug_on = false\n[[task]]\nname = \"A\"\nops = []\n";
    let scenario = parse("old.toml", "old", text).unwrap();
    let m = &scenario.config.machine;
    assert_eq!((m.cells, m.guard_cells), (4, true));
    assert_eq!(m.mutation, Some(kmap_sim::Mutation::NoBugOn));
    assert_eq!(scenario.notes.len(), 3, "{:?}", scenario.notes);
    assert!(scenario.notes[0].contains("`slots` is the old name of `cells`"));
    let e = error("[machine]\nslots = 9\n[[task]]\nname = \"A\"\nops = []\n");
    assert!(
        e.starts_with("bad.toml:2: field `machine.cells`: cells must be one of"),
        "{e}"
    );
    let e = error("[machine]\nslots = 4\ncells = 4\n[[task]]\nname = \"A\"\nops = []\n");
    assert_eq!(
        e,
        "bad.toml:2: field `machine.slots`: `slots` is the old name of `cells`: give one of them"
    );
}

#[test]
fn a_value_out_of_range() {
    let e = error("[machine]\ncells = 9\n[[task]]\nname = \"A\"\nops = []\n");
    assert!(
        e.starts_with("bad.toml:2: field `machine.cells`: cells must be one of [1, 2,"),
        "{e}"
    );
    assert!(e.ends_with("not 9"), "{e}");
}

#[test]
fn a_pinned_task_that_asks_to_migrate() {
    let e = error(
        "[machine]\ncpus = 2\n[[task]]\nname = \"A\"\npinned = true\nops = [\"map 20\",\n  \"migrate 1\"]\n",
    );
    assert_eq!(
        e,
        "bad.toml:7: field `task[0].ops[1]`: task A: `migrate 1` in a task pinned to its CPU"
    );
    let e = error("[[task]]\nname = \"A\"\npinned = \"yes\"\nops = []\n");
    assert!(
        e.starts_with("bad.toml:3: field `task[0].pinned`: invalid type"),
        "{e}"
    );
}

#[test]
fn an_alphabet_key_on_a_fixed_program() {
    for key in ["atomic", "write", "irq_off", "sleep", "lowmem"] {
        let e = error(&format!(
            "[[task]]\nname = \"A\"\n{key} = true\nops = [\"map 20\"]\n"
        ));
        assert_eq!(
            e,
            format!(
                "bad.toml:3: field `task[0].{key}`: task A: {key} = true is for an endless program (any = true)"
            )
        );
    }
}

#[test]
fn an_operation_outside_the_program_s_api() {
    let e = error("[[task]]\nname = \"A\"\nops = [\"map 20\", \"leak\"]\n");
    assert_eq!(
        e,
        "bad.toml:3: field `task[0].ops[1]`: `leak` is not in the raw API (only a guard of the safe API is leaked: api = \"guard\" or \"scope\")"
    );
    let e = error("[[task]]\nname = \"A\"\napi = \"guard\"\nops = [\"map 20\", \"unmap 20\"]\n");
    assert_eq!(
        e,
        "bad.toml:4: field `task[0].ops[1]`: `unmap 20` is not in the guard API (a guard is released from the inside out: `unmap` drops the innermost)"
    );
    let e = error("[[task]]\nname = \"A\"\nops = []\n[irq]\napi = \"guarded\"\nops = []\n");
    assert!(
        e.starts_with("bad.toml:5: field `irq.api`: unknown variant `guarded`"),
        "{e}"
    );
}

#[test]
fn the_scope_api_where_it_cannot_run() {
    let e = error("[[task]]\nname = \"A\"\napi = \"scope\"\nops = [\"map 20\"]\n");
    assert_eq!(
        e,
        "bad.toml:3: field `task[0].api`: api = \"scope\" needs release = \"any\" (a Scope is for platforms that release in any order)"
    );
    let any = "[machine]\nrelease = \"any\"\n";
    let e = error(&format!(
        "{any}[[task]]\nname = \"A\"\napi = \"scope\"\nany = true\ndepth = 1\natomic = true\n"
    ));
    assert_eq!(
        e,
        "bad.toml:5: field `task[0].api`: api = \"scope\" maps with kmap_local_page only: no `atomic` in an endless program's alphabet"
    );
    let e = error(&format!(
        "{any}[[task]]\nname = \"A\"\napi = \"scope\"\nops = [\"map_atomic 20\"]\n"
    ));
    assert_eq!(
        e,
        "bad.toml:6: field `task[0].ops[0]`: `map_atomic 20` is not in the scope API (a Scope maps with kmap_local_page only)"
    );
}

/// Pages an endless program cannot be given: the error names the kind of frame missing.
#[test]
fn no_frame_left_for_an_endless_program() {
    let e = error(
        "[machine]\nlowmem = 0\n[[task]]\nname = \"A\"\nany = true\ndepth = 1\nlowmem = true\n",
    );
    assert_eq!(
        e,
        "bad.toml: field `task`: no lowmem frame left for the lowmem page of task A: the `any` tasks with `lowmem = true` take the highest frames below `machine.lowmem` (0), which the programs must not name"
    );
    let e = error(
        "[machine]\nframes = 32\nlowmem = 31\n[[task]]\nname = \"A\"\nany = true\ndepth = 2\n",
    );
    assert_eq!(
        e,
        "bad.toml: field `task`: no highmem frame left for the pages of task A: the `any` tasks take the highest frames, which the programs must not name"
    );
}
