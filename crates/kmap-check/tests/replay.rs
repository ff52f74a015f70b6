//! Every counterexample replays: for every built-in scenario, under every protocol and every
//! machine mutation, and for every strategy, the string a search prints reproduces the same
//! violation (kind, point, context, CPU), probe-found ones included.

use kmap_check::search::{Dfs, Pct, Random, Strategy, check, replay};
use kmap_check::{Options, ReplayId, builtin, explore, resolve};
use kmap_sim::settings::{ValueEnum, name};
use kmap_sim::{Changes, Mutation, Protocol, Settings, Verdict};

fn variants() -> Vec<Changes<Settings>> {
    let mut all = Vec::new();
    for protocol in Protocol::value_variants() {
        let mutations = std::iter::once(None).chain(Mutation::value_variants().iter().map(Some));
        for mutation in mutations {
            let mut changes = Changes::default();
            changes.set("switch", &name(protocol)).unwrap();
            if let Some(mutation) = mutation {
                changes.set("mutation", &name(mutation)).unwrap();
            }
            all.push(changes);
        }
    }
    all
}

/// The strategies of `kmap check`, by name.
fn strategies(seed: u64, executions: u64) -> [(&'static str, Box<dyn Strategy>); 3] {
    [
        ("exhaustive", Box::new(Dfs::default())),
        ("random", Box::new(Random { seed, executions })),
        (
            "pct",
            Box::new(Pct {
                seed,
                executions,
                depth: 2,
            }),
        ),
    ]
}

#[test]
fn every_counterexample_replays_to_the_same_violation() {
    let mut replayed = 0;
    for (name, _) in builtin::BUILTINS {
        for changes in variants() {
            let mut scenario = resolve(name).unwrap();
            changes.apply(&mut scenario.config.machine);
            for (strategy, mut search) in strategies(3, 40) {
                let found = explore(&scenario.config, &mut *search, Options::default(), |_| {});
                let Some(ce) = found.counterexample else {
                    continue;
                };
                if found.verdict != Verdict::Violation {
                    continue;
                }
                let id = ReplayId {
                    scenario: name.to_string(),
                    changes: changes.clone(),
                    schedule: ce.schedule.clone(),
                };
                let parsed: ReplayId = id.to_string().parse().unwrap();
                let mut again_scenario = resolve(&parsed.scenario).unwrap();
                parsed.changes.apply(&mut again_scenario.config.machine);
                let again = replay(&again_scenario.config, &parsed.schedule);
                let (want, got) = (&ce.outcome.violations[0], again.violations.first());
                let got = got.unwrap_or_else(|| panic!("{id} ({strategy}) replays clean"));
                assert_eq!(
                    (want.kind, &want.label, &want.context, want.cpu),
                    (got.kind, &got.label, &got.context, got.cpu),
                    "{id} ({strategy})"
                );
                replayed += 1;
            }
        }
    }
    assert!(replayed > 100, "only {replayed} counterexamples replayed");
}

/// Observation 2 of the issue that introduced consequences: a violation that only a probe finds
/// (a handler leaves a stale TLB entry behind, the task uses lowmem only) used to be reported
/// with no violation record and an empty schedule, and to replay clean.
#[test]
fn a_handler_that_leaves_a_stale_translation_is_found_by_every_strategy_and_replays() {
    let scenario = resolve("drop-invalidations").unwrap();
    for (strategy, mut search) in strategies(1, 1000).into_iter().take(2) {
        let found = explore(&scenario.config, &mut *search, Options::default(), |_| {});
        assert_eq!(found.verdict, Verdict::Violation, "{strategy}");
        let ce = found.counterexample.unwrap();
        assert!(!ce.schedule.0.is_empty(), "the handler is in the schedule");
        assert_eq!(ce.outcome.violations[0].kind, kmap_sim::ViolationKind::Leak);
        let again = replay(&scenario.config, &ce.schedule);
        assert_eq!(again.violations, ce.outcome.violations, "{strategy}");
    }
}

/// Under strict checking, a handler that leaves a trace is itself the violation; it is found by a
/// probe, and the replay (which has no probes) must find it too: the check that a handler leaves
/// its CPU as it found it runs for every handler, probed or not.
#[test]
fn a_strict_hazard_found_by_a_probe_replays() {
    let mut config = resolve("drop-invalidations").unwrap().config;
    config.machine.strict = true;
    let found = check(&config);
    let ce = found.counterexample.expect("a violation");
    assert_eq!(
        ce.outcome.violations[0].kind,
        kmap_sim::ViolationKind::Hazard(kmap_sim::Rule::Inv3),
        "{}",
        ce.outcome.violations[0]
    );
    let again = replay(&config, &ce.schedule);
    assert_eq!(again.violations, ce.outcome.violations);
}
