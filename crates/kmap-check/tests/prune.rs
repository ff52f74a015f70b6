//! Pruning is a reduction, not a loss: for every built-in scenario under every protocol, the
//! search with pruning and the search without reach the same verdict and the same set of final
//! states.

use kmap_check::search::Dfs;
use kmap_check::{Exploration, Options, builtin, explore, resolve};
use kmap_sim::settings::ValueEnum;
use kmap_sim::{Config, Protocol};

/// Every execution within the bounds, with or without pruning, final states collected.
fn whole_search(config: &Config, prune: bool) -> Exploration {
    let options = Options {
        stop_at_violation: false,
        prune,
        fingerprints: true,
    };
    explore(config, &mut Dfs::default(), options, |_| {})
}

#[test]
fn pruning_keeps_every_verdict_and_every_final_state() {
    for (name, _) in builtin::BUILTINS {
        for &protocol in Protocol::value_variants() {
            let mut config = resolve(name).unwrap().config;
            config.machine.switch = protocol;
            let pruned = whole_search(&config, true);
            let whole = whole_search(&config, false);
            assert_eq!(pruned.verdict, whole.verdict, "{name} under {protocol}");
            assert_eq!(
                pruned.final_states, whole.final_states,
                "{name} under {protocol}: final states differ"
            );
            assert!(pruned.executions <= whole.executions, "{name}");
        }
    }
}

/// Observation 3: task A exits right after its last unmap and B's first point follows with no
/// arrival point of A's in between. The old rule compared only labels, so B's first point got no
/// preemption; now it does, and pruning loses nothing there.
#[test]
fn a_point_after_another_task_exits_is_not_pruned() {
    let config = resolve("exit-then-preempt").unwrap().config;
    let pruned = whole_search(&config, true);
    let whole = whole_search(&config, false);
    assert_eq!(pruned.final_states, whole.final_states);
    assert!(pruned.stats.pruned > 0, "the rule still prunes something");
}
