//! `kmap prove`: small scopes proved or refuted, and the stateful search checked against the
//! stateless one and against itself without the reduction.

use kmap_check::explore::{Search, explore};
use kmap_check::prove::{ProveOptions, Scope, prove};
use kmap_check::resolve;
use kmap_sim::{Config, Protocol, Verdict};

fn scope(cpus: usize, tasks: usize, depth: usize, protocol: Protocol) -> Scope {
    Scope {
        cpus,
        tasks,
        depth,
        irq: true,
        nmi: true,
        protocol,
    }
}

#[test]
fn small_scopes_are_proved_under_split_and_refuted_under_the_rfc_designs() {
    for (cpus, tasks, depth) in [(1, 2, 1), (1, 2, 2), (2, 2, 1)] {
        for protocol in Protocol::ALL {
            if cpus > 1 && protocol != Protocol::Split {
                continue;
            }
            let config = scope(cpus, tasks, depth, protocol).config();
            let proof = prove(&config, ProveOptions::default(), |_, _, _| {});
            let name = format!("{cpus}/{tasks}/{depth} {protocol}");
            if protocol == Protocol::Split {
                assert_eq!(proof.verdict, Verdict::Pass, "{name}");
                assert!(
                    proof.complete && proof.states > 100,
                    "{name}: {}",
                    proof.states
                );
            } else {
                assert_eq!(proof.verdict, Verdict::Violation, "{name}");
                let ce = proof.counterexample.expect("a counterexample");
                let again = kmap_check::explore::replay(&config, &ce.schedule);
                assert_eq!(again.violations, ce.outcome.violations, "{name} replays");
            }
        }
    }
}

/// Release in any order: the tasks may also release any mapping below the top. Small scopes
/// are proved complete and clean, with more states than under LIFO release (the releases below
/// the top are explored). The mutants of this path are `cargo xtask mutants`'s, and `cargo
/// xtask test` runs the explorer on them.
#[test]
fn small_scopes_are_proved_with_release_in_any_order() {
    for (cpus, tasks, depth) in [(1, 2, 2), (2, 2, 2)] {
        let lifo = scope(cpus, tasks, depth, Protocol::Split).config();
        let mut any = lifo.clone();
        any.machine.release = kmap_sim::Release::Any;
        let name = format!("{cpus}/{tasks}/{depth} --release any");
        let proof = prove(&any, ProveOptions::default(), |_, _, _| {});
        assert_eq!(proof.verdict, Verdict::Pass, "{name}");
        assert!(proof.complete, "{name}");
        let lifo_proof = prove(&lifo, ProveOptions::default(), |_, _, _| {});
        assert!(
            proof.states > lifo_proof.states,
            "{name}: {} states, LIFO {}",
            proof.states,
            lifo_proof.states
        );
    }
}

/// Scenarios with fixed programs end, so the stateful search (no bound on preemption) and the
/// stateless one (with a bound high enough) can be compared by the final states they reach.
#[test]
fn the_stateful_search_reaches_the_final_states_of_the_stateless_one() {
    for name in [
        "restore-race-split",
        "clear-race-split",
        "preempt-in-windows",
        "atomic-inside-local",
        "irq-on-nmi",
        "guard-cells",
    ] {
        let mut config: Config = resolve(name).unwrap().config;
        config.bounds.preemptions = Some(6);
        config.bounds.lasting_handlers = Some(0);
        let stateless = explore(
            &config,
            Search {
                stop_at_violation: false,
                fingerprints: true,
                ..Search::default()
            },
            |_| {},
        );
        let proof = prove(
            &config,
            ProveOptions {
                stop_at_violation: false,
                ..ProveOptions::default()
            },
            |_, _, _| {},
        );
        assert!(stateless.complete && proof.complete, "{name}");
        assert_eq!(proof.verdict, stateless.verdict, "{name}");
        let stateful: std::collections::BTreeSet<u64> =
            proof.final_states.iter().copied().collect();
        assert_eq!(
            stateful, stateless.final_states,
            "{name}: final states differ"
        );
    }
}

/// The reduction across CPUs loses nothing: the same verdict, the same final states of a
/// scenario that ends, and every quiescent state (every CPU between program steps).
#[test]
fn the_reduction_across_cpus_keeps_verdicts_and_states() {
    let run = |config: &Config, reduce| {
        prove(
            config,
            ProveOptions {
                reduce,
                stop_at_violation: false,
                collect_quiescent: true,
                ..ProveOptions::default()
            },
            |_, _, _| {},
        )
    };
    let config = resolve("migrate-on-preempt").unwrap().config;
    let (reduced, whole) = (run(&config, true), run(&config, false));
    assert_eq!(reduced.verdict, whole.verdict);
    assert_eq!(reduced.final_states, whole.final_states);
    assert_eq!(reduced.quiescent_states, whole.quiescent_states);
    assert!(!reduced.quiescent_states.is_empty());
    assert!(
        reduced.states * 5 < whole.states,
        "{} vs {}",
        reduced.states,
        whole.states
    );

    let config = Scope {
        irq: false,
        nmi: false,
        ..scope(2, 2, 1, Protocol::Split)
    }
    .config();
    let (reduced, whole) = (run(&config, true), run(&config, false));
    assert_eq!(reduced.verdict, Verdict::Pass);
    assert_eq!(whole.verdict, Verdict::Pass);
    assert!(reduced.complete && whole.complete);
    assert!(reduced.quiescent_states.len() > 10);
    assert_eq!(
        reduced.quiescent_states.len(),
        whole.quiescent_states.len(),
        "quiescent states"
    );
    assert_eq!(reduced.quiescent_states, whole.quiescent_states);
}
