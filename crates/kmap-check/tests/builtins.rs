//! Every built-in scenario gives its expected verdict; a printed schedule replays the same run;
//! shards add up to the whole search.

use kmap_check::explore::{explore, replay, Search, Shard, Strategy};
use kmap_check::{builtin, resolve, ReplayId};
use kmap_sim::{Protocol, Verdict};

#[test]
fn every_builtin_gives_its_expected_verdict() {
    for (name, _) in builtin::BUILTINS {
        let scenario = resolve(name).unwrap();
        let found = explore(&scenario.config, Search::default(), |_| {});
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
    let found = explore(&scenario.config, Search::default(), |_| {});
    let ce = found.counterexample.unwrap();
    assert_eq!(ce.events(), 1, "one interrupt is enough: {}", ce.schedule);
    let id = ReplayId {
        scenario: "restore-race".into(),
        overrides: Default::default(),
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
    scenario.config.machine.protocol = Protocol::Split;
    let found = explore(&scenario.config, Search::default(), |_| {});
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
        let whole = explore(&config, Search::default(), |_| {});
        for count in [2, 3] {
            let parts: u64 = (0..count)
                .map(|index| {
                    let search = Search {
                        shard: Shard { index, count },
                        ..Search::default()
                    };
                    explore(&config, search, |_| {}).executions
                })
                .sum();
            assert_eq!(parts, whole.executions, "{name} in {count} shards");
        }
    }
}

#[test]
fn random_and_pct_find_the_race_too() {
    let config = resolve("restore-race").unwrap().config;
    for strategy in [
        Strategy::Random {
            seed: 1,
            executions: 2000,
        },
        Strategy::Pct {
            seed: 1,
            executions: 200,
            depth: 2,
        },
    ] {
        let found = explore(
            &config,
            Search {
                strategy,
                ..Search::default()
            },
            |_| {},
        );
        assert_eq!(found.verdict, Verdict::Violation, "{strategy:?}");
    }
}

#[test]
fn a_platform_that_drops_invalidations_is_caught_on_a_passing_scenario() {
    let mut config = resolve("three-tasks").unwrap().config;
    config.machine.mutation = Some(kmap_sim::Mutation::DropInvalidations);
    let found = explore(&config, Search::default(), |_| {});
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
