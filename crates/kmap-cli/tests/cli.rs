//! The `kmap` command as a user runs it: exit statuses, messages, JSON, pictures, replay.

use std::process::{Command, Output};

fn kmap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmap"))
        .args(args)
        .output()
        .expect("kmap runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kmap-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn check_exits_0_when_the_verdict_is_the_expected_one() {
    let out = kmap(&["check", "restore-race", "restore-race-split"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("replay: kmap replay 'restore-race#"),
        "{stdout}"
    );
    assert!(
        stdout.contains("consequence: crash on CPU 0 in IRQ"),
        "{stdout}"
    );
    assert!(
        stdout.contains("led there: hazard INV-1 (slot ownership)"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).is_empty(),
        "no progress output when not on a terminal"
    );
}

#[test]
fn check_exits_1_when_the_verdict_differs() {
    let out = kmap(&["check", "restore-race", "--switch", "split"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("FAIL restore-race"));
}

#[test]
fn bad_input_exits_2_with_file_line_and_field() {
    let bad = scratch(
        "wrong-type.toml",
        "[machine]\ncpus = \"two\"\n[[task]]\nname = \"A\"\nops = []\n",
    );
    let out = kmap(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("wrong-type.toml:2: field `machine.cpus`: invalid type"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let unknown = scratch(
        "unknown-op.toml",
        "[[task]]\nname = \"A\"\nops = [\"map 20\", \"jump 3\"]\n",
    );
    let out = kmap(&["check", unknown.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("unknown-op.toml:3: field `task[0].ops[1]`: unknown operation `jump 3`")
    );

    for args in [
        &["check", "no-such-scenario"][..],
        &["check", "fork", "--shard", "3/2"],
        &["check", "fork", "--shard", "0/2", "--engine", "stateful"],
        &["replay", "garbage"],
        &["prove", "--shard", "0/2"],
    ] {
        let out = kmap(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// A build without the `mpi` feature (as the tests build it) refuses `--mpi` in one line that
/// says how to build with it.
#[cfg(not(feature = "mpi"))]
#[test]
fn prove_mpi_without_the_feature_says_how_to_build_it() {
    let out = kmap(&["prove", "--mpi"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--features mpi") && stderr.contains("libopenmpi-dev"),
        "{stderr}"
    );
}

#[test]
fn json_has_the_fields_a_machine_reads() {
    let out = kmap(&["check", "restore-race", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(value["verdict"], "violation");
    for key in ["executions", "pruned", "elapsed_ms", "schedule", "trace"] {
        assert!(!value[key].is_null(), "{key} missing: {value}");
    }
    assert!(value["trace"].as_array().unwrap().len() > 10);
}

#[test]
fn the_printed_replay_string_replays_the_violation_and_draws_it() {
    let out = kmap(&["check", "restore-race", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = value["replay"].as_str().unwrap().to_string();
    let svg = std::env::temp_dir().join(format!("kmap-replay-{}.svg", std::process::id()));
    let out = kmap(&["replay", &id, "--svg", svg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a replayed violation exits 1");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("consequence: crash"), "{stdout}");
    assert!(
        stdout.contains("hazard: INV-1 (slot ownership)"),
        "{stdout}"
    );
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.contains("CRASH: map 40"));
    assert!(
        picture.contains("hazard: INV-1"),
        "the hazard is marked in the picture"
    );
}

#[test]
fn the_list_names_every_builtin() {
    let out = kmap(&["check", "--list"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    for name in [
        "restore-race",
        "clear-race",
        "three-tasks",
        "overflow",
        "out-of-order-unmap",
    ] {
        assert!(stdout.contains(name), "{name}");
    }
}

#[test]
fn prove_exits_0_for_a_proved_scope_and_1_with_a_replayable_counterexample() {
    let out = kmap(&[
        "prove", "--cpus", "1", "--tasks", "2", "--depth", "1", "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["verdict"], "pass");
    assert_eq!(value["complete"], true);
    for key in [
        "states",
        "matched",
        "transitions",
        "peak_memory_kib",
        "hash_scheme",
        "collision_probability_bound",
    ] {
        assert!(!value[key].is_null(), "{key} missing: {value}");
    }
    assert!(value["states"].as_u64().unwrap() > 50);
    assert_eq!(value["symmetry"], true);
    // Without task symmetry the two tasks' roles are told apart: more states, the same verdict.
    let out = kmap(&[
        "prove",
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "1",
        "--json",
        "--no-symmetry",
    ]);
    let whole: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&whole["verdict"], &whole["symmetry"]),
        (&value["verdict"], &false.into())
    );
    assert!(
        whole["states"].as_u64() > value["states"].as_u64(),
        "{whole}"
    );

    let out = kmap(&["prove", "--tasks", "2", "--switch", "rfc-v1", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["violation"]["kind"], "crash");
    let id = value["replay"].as_str().unwrap();
    // The default alphabet is in the scope's name, so the replay runs the same programs.
    assert!(
        id.starts_with("scope:1/2/1:write:irq-off:sleep@switch=rfc-v1#"),
        "{id}"
    );
    let out = kmap(&["replay", id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("consequence: crash"));
}

#[test]
fn a_scenario_with_endless_tasks_is_for_prove_not_check() {
    let path = scratch(
        "any.toml",
        "[[task]]\nname = \"A\"\nany = true\ndepth = 2\n[[task]]\nname = \"B\"\nops = [\"map 20\", \"unmap\"]\n",
    );
    let out = kmap(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("use `kmap prove`"));
    let out = kmap(&["prove", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("(complete)"));
    let out = kmap(&["prove", "--cpus", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cpus must be 1 to 8"));
    // The scope API is for release in any order, and has no kmap_atomic: refused, not proved
    // raw; with both right, the scope's endless tasks map through it.
    let out = kmap(&["prove", "--api", "scope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("needs release = \"any\""),
        "{}",
        text(&out.stderr)
    );
    let out = kmap(&[
        "prove",
        "--api",
        "scope",
        "--release",
        "any",
        "--alphabet",
        "atomic",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no `atomic` in the alphabet of --api scope"));
    let out = kmap(&[
        "prove",
        "--api",
        "scope",
        "--release",
        "any",
        "--depth",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(":scope ") && stdout.contains("(complete)"),
        "{stdout}"
    );
}

#[test]
fn a_scope_that_cannot_fit_is_refused_up_front_with_the_estimate() {
    let out = kmap(&[
        "prove",
        "--tasks",
        "12",
        "--depth",
        "8",
        "--max-memory",
        "100M",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot fit in --max-memory 100 MiB"),
        "{stderr}"
    );
    assert!(stderr.contains("2.824e11 states"), "{stderr}");
    // A scope that fits runs.
    let out = kmap(&["prove", "--tasks", "2", "--max-memory", "1G"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn stress_json_gives_the_figures_and_what_replays_a_violation() {
    let out = kmap(&[
        "stress", "--switch", "rfc-v1", "--cpus", "1", "--seed", "3", "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(value["switch"], "rfc-v1");
    assert!(value["kmap_ops"].as_u64().unwrap() > 0);
    let found = &value["found"];
    assert_eq!(found["verdict"], "violation");
    assert_eq!(found["violation"]["kind"], "crash");
    let seed = found["execution_seed"].as_str().unwrap();
    let replayed = kmap(&[
        "stress", "--switch", "rfc-v1", "--cpus", "1", "--replay", seed,
    ]);
    assert_eq!(replayed.status.code(), Some(1));
    assert!(
        text(&replayed.stdout).contains(found["schedule"].as_str().unwrap()),
        "the replay takes the same schedule"
    );

    let clean = kmap(&["stress", "--ops", "2000", "--json"]);
    assert_eq!(clean.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&clean.stdout).expect("JSON");
    assert!(value["found"].is_null());
}

/// One name per setting: the flag (with dashes), the replay string's key and the JSON's key
/// are the scenario file's; old names are still read, with a note.
#[test]
fn a_setting_has_one_name_in_flags_replay_strings_and_json() {
    let out = kmap(&[
        "check",
        "restore-race",
        "--cells",
        "33",
        "--guard-cells",
        "true",
        "--preemptions",
        "3",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["machine"]["cells"], 33);
    assert_eq!(value["machine"]["guard_cells"], true);
    assert_eq!(value["machine"]["switch"], "rfc-v1");
    assert_eq!(value["bounds"]["preemptions"], 3);
    let replay = value["replay"].as_str().unwrap();
    assert!(
        replay.starts_with("restore-race@cells=33,guard_cells=true#"),
        "{replay}"
    );
    // The old names: a flag alias, a replay string, a scenario file.
    let old = kmap(&[
        "check",
        "restore-race",
        "--slots",
        "33",
        "--debug-guards",
        "true",
        "--json",
    ]);
    let old_value: serde_json::Value = serde_json::from_slice(&old.stdout).unwrap();
    assert_eq!(old_value["replay"], value["replay"]);
    let out = kmap(&[
        "replay",
        "restore-race@slots=33,debug_guards=true,bug_on=true#-",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = scratch(
        "old-names.toml",
        "[machine]\nslots = 4\nbug_on = false\n[[task]]\nname = \"A\"\nops = [\"map 20\", \"unmap\"]\n",
    );
    let out = kmap(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("note: ") && stderr.contains("`slots` is the old name of `cells`"),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("machine mutation no-bug-on"));
    // A bad value names the setting and its values, in the one style of errors.
    let out = kmap(&["replay", "restore-race@switch=rfc-v2#-"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: `switch=rfc-v2`: the values are split, rfc-v1, swap-after-current"
    );
}

/// A proof lists the hazards its executions survived, in text and in JSON: `lowmem-irq-rfc`
/// passes under rfc-v1 (its handlers map lowmem only), but interrupts arrive while a slot maps
/// another task's frame above current's `idx`.
#[test]
fn a_proof_reports_the_hazards_it_survived() {
    let out = kmap(&["prove", "lowmem-irq-rfc"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("hazard(s) survived with no consequence:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("       hazard INV-1 (slot ownership) on CPU 0 in IRQ"),
        "{stdout}"
    );
    let out = kmap(&["prove", "lowmem-irq-rfc", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let proof = json.as_array().map_or(&json, |all| &all[0]);
    let hazards = proof["hazards"].as_array().expect("a list of hazards");
    assert!(!hazards.is_empty(), "{proof}");
    assert_eq!(hazards[0]["rule"], "INV-1 (slot ownership)", "{proof}");
}

/// `kmap prove` of 1/2/1 with guard cells, and `more`.
fn prove_with_guard_cells(more: &[&str]) -> Output {
    let scope = [
        "prove",
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "1",
        "--guard-cells",
        "true",
    ];
    kmap(&[&scope[..], more].concat())
}

/// A scope with guard cells sizes its stacks for them (two cells a mapping): without that, the
/// NMI on top of the interrupt overflowed the scope's four cells at once.
#[test]
fn a_scope_with_guard_cells_has_room_for_them() {
    let out = prove_with_guard_cells(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("pass"), "{}", text(&out.stdout));
}

/// The cells a scope is given win over the room it makes for guard cells: four cells with
/// guard cells leave the NMI over the interrupt no room, and the proof says so.
#[test]
fn a_scope_s_cells_given_are_kept_with_guard_cells() {
    let out = prove_with_guard_cells(&["--cells", "4"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("kmap stack overflow: all 4 cells in use"),
        "{stdout}"
    );
}

/// `text` with every line number of mm/highmem.c as `N`: another release of the same kernel
/// may move the lines, not the verdicts or the checks.
fn without_highmem_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("highmem.c:") {
        let (before, after) = rest.split_at(at + "highmem.c:".len());
        out.push_str(before);
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[test]
fn kmap_linux_catches_all_history_and_prints_the_readme_s_tables() {
    let out = kmap(&["linux"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let (begin, end) = ("<!-- kmap linux: begin -->\n", "<!-- kmap linux: end -->");
    let start = readme.find(begin).expect("README.md has the section") + begin.len();
    let section = &readme[start..readme.find(end).expect("the section ends")];
    assert_eq!(
        without_highmem_lines(section),
        without_highmem_lines(&text(&out.stdout)),
        "README.md's tables are not what `kmap linux` prints: paste its output between the markers"
    );
}

#[test]
fn a_kmap_built_from_one_source_refuses_a_kmap_linux_src_naming_another() {
    let out = Command::new(env!("CARGO_BIN_EXE_kmap"))
        .env("KMAP_LINUX_SRC", "/nonexistent/linux")
        .args(["check", "restore-race", "--impl", "linux"])
        .output()
        .expect("kmap runs");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("this kmap was built from") && stderr.contains("build again"),
        "{stderr}"
    );
    // The crate's own code does not care.
    let out = Command::new(env!("CARGO_BIN_EXE_kmap"))
        .env("KMAP_LINUX_SRC", "/nonexistent/linux")
        .args(["check", "restore-race-split"])
        .output()
        .expect("kmap runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
