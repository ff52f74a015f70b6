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
/// which replays from its printed string; `kmap prove` of `proved` is refuted too.
fn caught(name: &str, config: &Config, expected: &str, proved: &Config) {
    let found = check(config);
    assert_eq!(found.verdict, Verdict::Violation, "{name}");
    let ce = found.counterexample.expect("a counterexample");
    let first = ce.outcome.violations[0].to_string();
    assert!(first.contains(expected), "{name}: {first}");
    let again = replay(config, &ce.schedule);
    assert_eq!(again.violations, ce.outcome.violations, "{name} replays");
    let proof = prove(proved);
    assert_eq!(proof.verdict, Verdict::Violation, "{name}: prove 1/2/2");
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
    caught("rfc", &config, SLOT_IN_USE, &scope("switch=rfc-v1"));
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
        );
    }
}

#[test]
fn the_2023_any_order_proposal_lets_an_interrupt_pop_a_cell_not_yet_recorded() {
    linux();
    let edit = "edit=any-order,release=any";
    // The interrupt's lazy pop runs over the task's cell, pushed but not yet recorded, and the
    // task then records its PTE at pteval[-1]: over its own idx.
    caught(
        edit,
        &scenario("hole-then-irq", edit),
        "outside its stack",
        &scope(edit),
    );
    // Without the edit, release in any order is refused: Linux has no counterpart.
    let refused = scenario("hole-then-irq", "release=any");
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
