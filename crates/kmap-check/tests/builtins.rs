//! Every built-in scenario gives its expected verdict; a printed schedule replays the same run;
//! shards add up to the whole search.

use kmap_check::search::{Dfs, Pct, Random, Strategy, check, replay};
use kmap_check::{Options, ReplayId, Shard, builtin, explore, resolve};
use kmap_sim::{Protocol, Verdict};

#[test]
fn every_builtin_gives_its_expected_verdict() {
    for (name, _) in builtin::BUILTINS {
        let scenario = resolve(name).unwrap();
        let found = check(&scenario.config);
        assert_eq!(
            found.verdict,
            scenario.expect,
            "{name}: {:?}",
            found.counterexample.map(|c| c.outcome.violations)
        );
        if scenario.expect == Verdict::Pass {
            assert!(found.complete, "{name}: the search must cover the bounds");
        }
    }
}

#[test]
fn the_restore_race_is_shortest_and_replays_to_the_same_trace() {
    let scenario = resolve("restore-race").unwrap();
    let found = check(&scenario.config);
    let ce = found.counterexample.unwrap();
    assert_eq!(ce.events(), 1, "one interrupt is enough: {}", ce.schedule);
    let id = ReplayId {
        scenario: "restore-race".into(),
        changes: Default::default(),
        schedule: ce.schedule.clone(),
    };
    let parsed: ReplayId = id.to_string().parse().unwrap();
    assert_eq!(parsed, id);
    let again = replay(&resolve(&parsed.scenario).unwrap().config, &parsed.schedule);
    assert_eq!(again.trace, ce.outcome.trace);
    assert_eq!(again.violations, ce.outcome.violations);
}

#[test]
fn the_split_design_passes_where_the_rfc_fails() {
    let mut scenario = resolve("restore-race").unwrap();
    scenario.config.machine.switch = Protocol::Split;
    let found = check(&scenario.config);
    assert_eq!(found.verdict, Verdict::Pass);
    assert!(
        found.complete && found.executions > 10,
        "{} executions",
        found.executions
    );
}

#[test]
fn shards_add_up_to_the_unsharded_search() {
    for name in ["guard-cells", "migrate-while-holding"] {
        let config = resolve(name).unwrap().config;
        let whole = check(&config);
        for count in [2, 3] {
            let parts: u64 = (0..count)
                .map(|index| {
                    let mut part = Dfs {
                        shard: Shard { index, count },
                    };
                    explore(&config, &mut part, Options::default(), |_| {}).executions
                })
                .sum();
            assert_eq!(parts, whole.executions, "{name} in {count} shards");
        }
    }
}

#[test]
fn random_and_pct_find_the_race_too() {
    let config = resolve("restore-race").unwrap().config;
    let strategies: [(&str, Box<dyn Strategy>); 2] = [
        (
            "random",
            Box::new(Random {
                seed: 1,
                executions: 2000,
            }),
        ),
        (
            "pct",
            Box::new(Pct {
                seed: 1,
                executions: 200,
                depth: 2,
            }),
        ),
    ];
    for (name, mut strategy) in strategies {
        let found = explore(&config, &mut *strategy, Options::default(), |_| {});
        assert_eq!(found.verdict, Verdict::Violation, "{name}");
    }
}

#[test]
fn a_platform_that_drops_invalidations_is_caught_on_a_passing_scenario() {
    let mut config = resolve("three-tasks").unwrap().config;
    config.machine.mutation = Some(kmap_sim::Mutation::DropInvalidations);
    let found = check(&config);
    let ce = found.counterexample.expect("a violation");
    let kind = ce.outcome.violations[0].kind;
    assert!(
        matches!(
            kind,
            kmap_sim::ViolationKind::Corruption | kmap_sim::ViolationKind::Leak
        ),
        "{}",
        ce.outcome.violations[0]
    );
}

/// The shortest counterexample of a built-in scenario, as `kmap check` finds it.
fn counterexample_of(name: &str) -> kmap_check::search::Counterexample {
    let found = check(&resolve(name).unwrap().config);
    found
        .counterexample
        .unwrap_or_else(|| panic!("{name}: no counterexample"))
}

/// The race as it would happen: the shortest counterexample ends in the interrupt's map hitting
/// the slot just restored for N (a crash, Linux's BUG_ON), with the hazard that led there; on a
/// kernel without the BUG_ON it ends in N's access faulting.
#[test]
fn the_restore_race_ends_in_its_consequence_with_and_without_bug_on() {
    use kmap_sim::{Context, Rule, ViolationKind};
    let ce = counterexample_of("restore-race");
    let v = &ce.outcome.violations[0];
    assert_eq!(
        (v.kind, &v.context),
        (ViolationKind::Crash, &Context::Irq(1))
    );
    assert!(ce.outcome.hazards.iter().any(|h| h.rule == Rule::Inv1));
    let rows = kmap_check::timeline::Timeline::of(&ce.outcome).rows;
    assert_eq!(
        rows.iter()
            .rev()
            .find(|r| r.kind != kmap_check::timeline::RowKind::Step)
            .map(|r| r.kind),
        Some(kmap_check::timeline::RowKind::Violation),
        "the consequence is the timeline's last row"
    );

    let ce = counterexample_of("restore-race-silent");
    let v = &ce.outcome.violations[0];
    assert_eq!(
        (v.kind, &v.context),
        (ViolationKind::Fault, &Context::Task("N".into())),
        "{v}"
    );
    assert_eq!(ce.events(), 1, "one lasting interrupt: {}", ce.schedule);
}

/// Observation 1: a handler that never takes a slot cannot suffer from the window; the broken
/// invariant is a hazard, listed, and a violation only under strict checking.
#[test]
fn a_hazard_without_consequence_passes_unless_strict() {
    let mut config = resolve("lowmem-irq-rfc").unwrap().config;
    let found = check(&config);
    assert_eq!(found.verdict, Verdict::Pass);
    assert!(found.hazards.iter().any(|h| h.rule == kmap_sim::Rule::Inv1));
    config.machine.strict = true;
    let found = check(&config);
    assert_eq!(found.verdict, Verdict::Violation);
    assert_eq!(
        found.counterexample.unwrap().outcome.violations[0].kind,
        kmap_sim::ViolationKind::Hazard(kmap_sim::Rule::Inv1)
    );
}

/// Each machine mutation's built-in scenario ends in the consequence it is there to show.
#[test]
fn every_mutation_leads_to_its_consequence() {
    use kmap_sim::ViolationKind::*;
    for (name, kind) in [
        ("restore-race-silent", Fault),
        ("drop-invalidations", Leak),
        ("no-sched-out", Crash),
    ] {
        let ce = counterexample_of(name);
        assert_eq!(ce.outcome.violations[0].kind, kind, "{name}");
    }
}

/// The old names of the nesting bounds still work, with a note.
#[test]
fn the_old_bound_names_are_read_as_nesting_depths() {
    let text = "[bounds]\nirqs = 2\nnmis = 1\n[[task]]\nname = \"A\"\nops = [\"check\"]\n";
    let scenario = kmap_check::scenario::parse("old.toml", "old", text).unwrap();
    assert_eq!(scenario.config.bounds.irq_depth, Some(1));
    assert_eq!(scenario.config.bounds.nmi_depth, Some(1));
    assert!(
        scenario.notes[0].contains("irq_depth"),
        "{:?}",
        scenario.notes
    );
    let text = "[bounds]\nirq_depth = 2\n[[task]]\nname = \"A\"\nops = [\"check\"]\n";
    let error = kmap_check::scenario::parse("new.toml", "new", text).unwrap_err();
    assert_eq!(error.line, Some(2));
    assert!(error.to_string().contains("0 or 1"), "{error}");
    assert_eq!(error.field.as_deref(), Some("bounds.irq_depth"));
}

/// `kmap check`'s stateful engine (every state within the bounds, breadth first, with the
/// reduction across CPUs) gives the stateless engine's verdict on every built-in scenario under
/// every switch protocol, and reaches every final state the stateless one reaches (more, where
/// a preemption may pick any queued task, not only the next one). Without symmetry: a symmetric
/// search reaches one final state of each class (a scenario whose tasks may migrate has its CPUs
/// rotated).
#[test]
fn the_stateful_engine_agrees_with_the_stateless_one_on_every_builtin() {
    for (name, _) in builtin::BUILTINS {
        for protocol in [Protocol::Split, Protocol::RfcV1, Protocol::SwapAfterCurrent] {
            let mut config = resolve(name).unwrap().config;
            config.machine.switch = protocol;
            let options = Options {
                stop_at_violation: false,
                fingerprints: true,
                ..Options::default()
            };
            let stateless = explore(&config, &mut Dfs::default(), options, |_| {});
            let mut bfs = kmap_check::search::Bfs {
                bounded: true,
                symmetry: false,
                ..Default::default()
            };
            let stateful = explore(&config, &mut bfs, options, |_| {});
            assert!(stateless.complete && stateful.complete, "{name} {protocol}");
            assert_eq!(stateful.verdict, stateless.verdict, "{name} {protocol}");
            assert!(
                stateless.final_states.is_subset(&stateful.final_states),
                "{name} {protocol}: {} final states missing",
                stateless
                    .final_states
                    .difference(&stateful.final_states)
                    .count()
            );
        }
    }
}

/// A task's own overflow is refused and the run survives it: the checks after it still run.
/// `atomic-overflow` refuses its third map and then unmaps the other two; on a platform that
/// drops every invalidation the end-of-run check finds the TLB entries left behind (before,
/// any refusal turned the end-of-run check off, and the run passed as `refused`).
#[test]
fn the_checks_after_a_survived_refusal_still_run() {
    let scenario = resolve("atomic-overflow").unwrap();
    let found = check(&scenario.config);
    assert_eq!(found.verdict, Verdict::Refused);
    assert!(found.complete);
    let mut config = scenario.config;
    config.machine.mutation = Some(kmap_sim::Mutation::DropInvalidations);
    let found = check(&config);
    assert_eq!(found.verdict, Verdict::Violation);
    let outcome = found.counterexample.unwrap().outcome;
    assert!(
        !outcome.refusals.is_empty() && outcome.refusals.iter().all(|r| r.survived),
        "{:?}",
        outcome.refusals
    );
    let leak = &outcome.violations[0];
    assert_eq!(leak.kind, kmap_sim::ViolationKind::Leak, "{leak}");
    assert!(leak.message.contains("after every task ended"), "{leak}");
}
