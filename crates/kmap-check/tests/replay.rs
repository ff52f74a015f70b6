//! Every counterexample replays: for every built-in scenario, under every protocol and every
//! machine mutation, and for every strategy, the string a search prints reproduces the same
//! violation (kind, point, context, CPU), probe-found ones included.

use kmap_check::explore::{Search, Strategy, explore, replay};
use kmap_check::{Overrides, ReplayId, builtin, resolve};
use kmap_sim::{Mutation, Protocol, Verdict};

fn variants() -> Vec<Overrides> {
    let mut all = Vec::new();
    for protocol in Protocol::ALL {
        for mutation in [None].into_iter().chain(Mutation::ALL.map(Some)) {
            all.push(Overrides {
                switch: Some(protocol),
                mutation,
                ..Overrides::default()
            });
        }
    }
    all
}

#[test]
fn every_counterexample_replays_to_the_same_violation() {
    let strategies = [
        Strategy::Exhaustive,
        Strategy::Random {
            seed: 3,
            executions: 40,
        },
        Strategy::Pct {
            seed: 3,
            executions: 40,
            depth: 2,
        },
    ];
    let mut replayed = 0;
    for (name, _) in builtin::BUILTINS {
        for overrides in variants() {
            let mut scenario = resolve(name).unwrap();
            overrides.apply(&mut scenario.config);
            for strategy in strategies {
                let search = Search {
                    strategy,
                    ..Search::default()
                };
                let found = explore(&scenario.config, search, |_| {});
                let Some(ce) = found.counterexample else {
                    continue;
                };
                if found.verdict != Verdict::Violation {
                    continue;
                }
                let id = ReplayId {
                    scenario: name.to_string(),
                    overrides: overrides.clone(),
                    schedule: ce.schedule.clone(),
                };
                let parsed: ReplayId = id.to_string().parse().unwrap();
                let mut again_scenario = resolve(&parsed.scenario).unwrap();
                parsed.overrides.apply(&mut again_scenario.config);
                let again = replay(&again_scenario.config, &parsed.schedule);
                let (want, got) = (&ce.outcome.violations[0], again.violations.first());
                let got = got.unwrap_or_else(|| panic!("{id} ({strategy:?}) replays clean"));
                assert_eq!(
                    (want.kind, &want.label, &want.context, want.cpu),
                    (got.kind, &got.label, &got.context, got.cpu),
                    "{id} ({strategy:?})"
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
    for strategy in [
        Strategy::Exhaustive,
        Strategy::Random {
            seed: 1,
            executions: 1000,
        },
    ] {
        let search = Search {
            strategy,
            ..Search::default()
        };
        let found = explore(&scenario.config, search, |_| {});
        assert_eq!(found.verdict, Verdict::Violation, "{strategy:?}");
        let ce = found.counterexample.unwrap();
        assert!(!ce.schedule.0.is_empty(), "the handler is in the schedule");
        assert_eq!(ce.outcome.violations[0].kind, kmap_sim::ViolationKind::Leak);
        let again = replay(&scenario.config, &ce.schedule);
        assert_eq!(again.violations, ce.outcome.violations, "{strategy:?}");
    }
}

/// Under strict checking, a handler that leaves a trace is itself the violation; it is found by a
/// probe, and the replay (which has no probes) must find it too: the check that a handler leaves
/// its CPU as it found it runs for every handler, probed or not.
#[test]
fn a_strict_hazard_found_by_a_probe_replays() {
    let mut config = resolve("drop-invalidations").unwrap().config;
    config.strict = true;
    let found = explore(&config, Search::default(), |_| {});
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
