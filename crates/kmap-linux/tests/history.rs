//! Linux's history on Linux's own code: each scripted edit of the extracted mm/highmem.c (and
//! the 2020 RFC's `kmap_switch_temporary`) is caught by `kmap check` and by `kmap prove`, with
//! its consequence at Linux's own check where Linux has one; the unedited code passes the same
//! runs.

use kmap_check::resolve;
use kmap_check::scope::Scope;
use kmap_check::search::{check, prove, replay};
use kmap_sim::{Changes, Config, Settings, Verdict};

fn linux() {
    if let Some(why) = kmap_linux::unavailable() {
        panic!("this build has no Linux code: {why}");
    }
    kmap_linux::register();
}

/// Linux's code with `settings` (`key=value,…`).
fn changes(settings: &str) -> Changes<Settings> {
    Changes::parse(&format!("impl=linux,{settings}")).unwrap()
}

/// A built-in scenario with `settings`.
fn scenario(name: &str, settings: &str) -> Config {
    let mut scenario = resolve(name).unwrap();
    changes(settings).apply(&mut scenario.config.machine);
    scenario.config
}

/// The scope 1/2/2 with `settings`, with the extra cell of Linux's push-then-check.
fn scope(settings: &str) -> Config {
    let scope = Scope::new(1, 2, 2);
    let mut config = scope.config();
    changes(settings).apply(&mut config.machine);
    config.machine.cells = scope.cells_on(&config.machine);
    config
}

/// `kmap check` of `config` finds a violation whose first consequence contains `expected`, and
/// which replays; `kmap prove` of `proved` is refuted with a first consequence that contains
/// `proved_expected`.
fn caught(name: &str, config: &Config, expected: &str, proved: &Config, proved_expected: &str) {
    let found = check(config);
    assert_eq!(found.verdict, Verdict::Violation, "{name}");
    let ce = found.counterexample.expect("a counterexample");
    let first = ce.outcome.violations[0].to_string();
    assert!(first.contains(expected), "{name}: {first}");
    let again = replay(config, &ce.schedule);
    assert_eq!(again.violations, ce.outcome.violations, "{name} replays");
    let proof = prove(proved);
    assert_eq!(proof.verdict, Verdict::Violation, "{name}: prove 1/2/2");
    let first = proof.counterexample.unwrap().outcome.violations[0].to_string();
    assert!(
        first.contains(proved_expected),
        "{name}: prove 1/2/2: {first}"
    );
}

/// Linux's `BUG_ON(!pte_none(ptep_get(kmap_pte)))` in `__kmap_local_pfn_prot`.
const SLOT_IN_USE: &str = "BUG_ON(!pte_none(ptep_get(kmap_pte))) at mm/highmem.c:";

#[test]
fn the_unedited_code_passes_what_each_edit_fails() {
    linux();
    for (name, settings) in [
        ("restore-race-split", "switch=split"),
        ("restore-race", "switch=split"),
    ] {
        let found = check(&scenario(name, settings));
        assert_eq!(found.verdict, Verdict::Pass, "{name}");
        assert!(found.complete, "{name}");
    }
    assert_eq!(prove(&scope("switch=split")).verdict, Verdict::Pass);
}

#[test]
fn the_2020_rfc_s_switch_in_c_is_caught_at_linux_s_bug_on() {
    linux();
    let config = scenario("restore-race", "switch=rfc-v1");
    caught(
        "rfc",
        &config,
        SLOT_IN_USE,
        &scope("switch=rfc-v1"),
        SLOT_IN_USE,
    );
    // The switch that ran is the C one: its accesses are in the timeline.
    let ce = check(&config).counterexample.unwrap();
    assert!(
        ce.outcome
            .trace
            .iter()
            .any(|e| e.to_string().contains("c/switch_temporary.c:")),
        "the RFC's switch is kmap_switch_temporary"
    );
}

/// Each edit of history, on restore-race-split (which the unedited code passes), with the
/// consequence it must end in.
const EDITS: &[(&str, &str)] = &[
    // 2010: an interrupt between the pop and the clear reuses a slot still mapped.
    ("edit=pop-before-clear", SLOT_IN_USE),
    // An interrupt between the install and the push maps the same slot.
    ("edit=push-after-install", SLOT_IN_USE),
    // prev's translations outlive its PTEs: a handler of next reads prev's page.
    ("edit=sched-out-without-flush", "through a stale TLB entry"),
];

#[test]
fn each_edit_of_history_is_caught_with_its_consequence() {
    linux();
    for (edit, expected) in EDITS {
        caught(
            edit,
            &scenario("restore-race-split", edit),
            expected,
            &scope(edit),
            expected,
        );
    }
}

#[test]
fn the_2023_any_order_proposal_lets_an_interrupt_pop_a_cell_not_yet_recorded() {
    linux();
    let edit = "edit=any-order,release=any";
    // An interrupt that unmaps pops lazily over a cell the interrupted map has pushed but not
    // yet recorded: in hole-across-switch B's second cell, which stays mapped above B's idx
    // until A's is installed over it; in the proof an NMI over an interrupt, which then
    // records its PTE at pteval[-1], over its task's idx.
    caught(
        edit,
        &scenario("hole-across-switch", edit),
        "while it still maps",
        &scope(edit),
        "outside its stack",
    );
    let proof = prove(&scope(edit)).counterexample.unwrap();
    let trace: Vec<String> = proof.outcome.trace.iter().map(|e| e.to_string()).collect();
    for entered in ["IRQ enters", "NMI enters"] {
        assert!(trace.iter().any(|t| t.contains(entered)), "{trace:#?}");
    }
    assert!(
        proof
            .outcome
            .hazards
            .iter()
            .any(|h| h.rule == kmap_sim::Rule::Inv3),
        "the NMI leaves the interrupt's idx changed: {:?}",
        proof.outcome.hazards
    );
    // The store of the PTE's record (`pteval[kmap_local_idx()] = pteval`) lands on `idx`.
    let highmem = std::fs::read_to_string(
        std::path::Path::new(kmap_linux::tree().unwrap()).join("mm/highmem.c"),
    )
    .unwrap();
    let record_on_idx = proof.outcome.trace.iter().any(|e| {
        let what = e.what.to_string();
        let Some(rest) = what.strip_prefix("mm/highmem.c:") else {
            return false;
        };
        let line: usize = rest.split(' ').next().unwrap_or("").parse().unwrap_or(0);
        what.ends_with("write current->kmap_ctrl.idx")
            && highmem
                .lines()
                .nth(line.saturating_sub(1))
                .is_some_and(|l| l.contains("pteval[kmap_local_idx()] = pteval"))
    });
    assert!(record_on_idx, "{trace:#?}");
    // Without the edit, release in any order is refused: Linux has no counterpart.
    let refused = scenario("hole-across-switch", "release=any");
    assert!(refused.validate().is_err());
}

#[test]
fn an_edit_is_refused_without_linux_s_code_and_by_an_unknown_name() {
    linux();
    let mut config = scenario("restore-race-split", "edit=no-such-edit");
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("no edit no-such-edit") && error.contains("pop-before-clear"),
        "{error}"
    );
    config.machine.implementation = kmap_sim::Implementation::Crate;
    config.machine.edit = Some("pop-before-clear".into());
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("needs impl = \"linux\""), "{error}");
}

/// What the text of Linux's line must show for an access labelled `access` (the label after
/// the function: `read current->kmap_ctrl.idx`, `ptep_get(PTE of slot 0.1)`, …): the field or
/// the call, or the macro of Linux's that stands for the call on that line.
fn shows(access: &str) -> &'static [&'static str] {
    let call = access.split('(').next().unwrap_or("");
    if access.contains("kmap_ctrl.idx") {
        &["kmap_ctrl.idx", "kmap_local_idx"]
    } else if access.contains("kmap_ctrl.pteval") {
        &["pteval"]
    } else if access.contains("__kmap_pte") {
        &["__kmap_pte"]
    } else {
        match call {
            "current" => &["current", "tsk"],
            "set_pte_at" => &["set_pte"],
            "flush_tlb_one_kernel" => &["post_unmap", "flush_tlb"],
            "ptep_get" => &["ptep_get", "*kmap_pte"],
            "in_hardirq" | "irqs_disabled" => &["in_hardirq() && !irqs_disabled()"],
            "preempt_disable" => &["preempt_disable"],
            "preempt_enable" => &["preempt_enable"],
            "migrate_disable" => &["migrate_disable"],
            "migrate_enable" => &["migrate_enable"],
            "pagefault_disable" => &["pagefault_disable"],
            "pagefault_enable" => &["pagefault_enable"],
            "smp_processor_id" => &["smp_processor_id"],
            "pte_clear" => &["pte_clear"],
            "PageHighMem" => &["PageHighMem"],
            "page_address" => &["page_address"],
            "memset" => &["memset"],
            "WARN_ON_ONCE" => &["WARN_ON_ONCE"],
            "BUG_ON" => &["BUG_ON"],
            _ => &[],
        }
    }
}

#[test]
fn every_point_of_the_edited_code_names_linux_s_own_line() {
    linux();
    let tree = std::path::Path::new(kmap_linux::tree().unwrap());
    let ours = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Each run, and the lines its edit rewrites (whose text is then not Linux's: an edited
    // statement, or the line an inserted statement is labelled with).
    let runs: [(&str, &str, &[&str]); 8] = [
        ("restore-race-split", "switch=split", &[]),
        ("restore-race-split", "edit=pop-before-clear", &[]),
        (
            "restore-race-split",
            "edit=push-after-install",
            &["arch_kmap_local_set_pte(&init_mm, vaddr, kmap_pte, pteval);"],
        ),
        ("restore-race-split", "edit=sched-out-without-flush", &[]),
        (
            "hole-across-switch",
            "edit=any-order,release=any",
            &[
                "idx = arch_kmap_local_unmap_idx(kmap_local_idx(), addr);",
                "current->kmap_ctrl.pteval[kmap_local_idx()] = __pte(0);",
                "kmap_local_idx_pop();",
            ],
        ),
        ("restore-race", "switch=rfc-v1", &[]),
        ("fork", "switch=split", &[]),
        ("atomic-inside-local", "switch=split", &[]),
    ];
    let mut checked = 0;
    for (name, settings, rewritten) in runs {
        let config = scenario(name, settings);
        // The first execution's trace (the counterexample's when there is one).
        let trace = match check(&config).counterexample {
            Some(ce) => ce.outcome.trace,
            None => replay(&config, &Default::default()).trace,
        };
        for event in trace.iter().map(|e| e.what.to_string()) {
            // `file:line function: access`, the label of a point of Linux's code.
            let Some((place, access)) = event.split_once(": ") else {
                continue;
            };
            let Some((file_line, _function)) = place.rsplit_once(' ') else {
                continue;
            };
            let Some((file, line)) = file_line.rsplit_once(':') else {
                continue;
            };
            let Ok(line) = line.parse::<usize>() else {
                continue;
            };
            let path = if file.starts_with("c/") {
                ours.join(file)
            } else {
                tree.join(file)
            };
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let source_line = text.lines().nth(line - 1).unwrap_or("");
            let want = shows(access);
            assert!(
                !want.is_empty(),
                "{name} {settings}: an access not known here: {event}"
            );
            assert!(
                want.iter().any(|w| source_line.contains(w))
                    || rewritten.contains(&source_line.trim()),
                "{name} {settings}: `{event}` but {file}:{line} is `{source_line}`"
            );
            checked += 1;
        }
    }
    assert!(checked > 500, "only {checked} points checked");
}
