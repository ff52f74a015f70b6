//! The partitioned search is the one-process search, spread: on every figure, the verdict, the
//! counterexample and the hazards, with one to four ranks (threads of this process, through the
//! same exchanges MPI's ranks use), and each rank owns its share of the states.

use kmap_check::scope::Scope;
use kmap_check::search::{Bfs, Exploration, Partitioned, ThreadRanks};
use kmap_check::{Options, builtin, explore, resolve};
use kmap_sim::{Config, Protocol, Release, Verdict};

/// `config` searched by `bfs` partitioned over `ranks` threads: every rank's exploration.
fn partitioned(config: &Config, bfs: Bfs, options: Options, ranks: usize) -> Vec<Exploration> {
    let job = ThreadRanks::job(ranks);
    std::thread::scope(|scope| {
        let workers: Vec<_> = job
            .iter()
            .map(|ranks| {
                scope.spawn(move || {
                    let mut strategy = Partitioned { bfs, ranks };
                    explore(config, &mut strategy, options, |_| {})
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// What must be equal: everything but the statistics of what the runs did, which count the
/// handler runs probed (each rank has a probe memo of its own, and even one process's threads
/// fill theirs in an order that depends on timing).
fn figures(e: &Exploration) -> impl PartialEq + std::fmt::Debug {
    let s = e.states.clone().unwrap_or_default();
    (
        (e.verdict, e.complete, e.executions),
        (s.states, s.matched, s.depth),
        e.counterexample.as_ref().map(|c| c.schedule.clone()),
        e.hazards.clone(),
        e.final_states.clone(),
    )
}

/// `config` explored by one process and partitioned over each of `ranks`: the same figures on
/// every rank, and no rank owning more than 1/N + 10% of the states (where there are enough
/// states for a share to mean something).
fn same_search(name: &str, config: &Config, bfs: Bfs, options: Options, ranks: &[usize]) {
    let one = explore(
        config,
        &mut Bfs {
            threads: Some(1),
            ..bfs
        },
        options,
        |_| {},
    );
    for &n in ranks {
        for (rank, many) in partitioned(config, bfs, options, n).iter().enumerate() {
            assert_eq!(figures(many), figures(&one), "{name}, rank {rank} of {n}");
            let states = many.states.as_ref().unwrap();
            assert_eq!(states.ranks.len(), n, "{name}");
            assert_eq!(states.ranks.iter().sum::<u64>(), states.states, "{name}");
            if states.states >= 1000 {
                let most = *states.ranks.iter().max().unwrap();
                assert!(
                    most as f64 <= 1.1 * states.states as f64 / n as f64,
                    "{name}: {:?} of {}",
                    states.ranks,
                    states.states
                );
            }
        }
    }
}

fn scope(cpus: usize, tasks: usize, depth: usize, protocol: Protocol) -> Config {
    let mut config = Scope::new(cpus, tasks, depth).config();
    config.machine.switch = protocol;
    config
}

#[test]
fn proofs_partitioned_over_ranks_are_the_one_process_proof() {
    let mut any = scope(2, 2, 2, Protocol::Split);
    any.machine.release = Release::Any;
    let mut leak = Scope {
        irq: false,
        nmi: false,
        ..Scope::new(1, 1, 1)
    }
    .config();
    leak.machine.mutation = Some(kmap_sim::Mutation::DropInvalidations);
    for (name, config) in [
        ("1/3/2", scope(1, 3, 2, Protocol::Split)),
        ("2/2/2 --release any", any),
        ("2/3/1 rfc-v1", scope(2, 3, 1, Protocol::RfcV1)),
        (
            "1/2/2 swap-after-current",
            scope(1, 2, 2, Protocol::SwapAfterCurrent),
        ),
        ("1/1/1 dropping invalidations", leak),
    ] {
        same_search(
            name,
            &config,
            Bfs::default(),
            Options::default(),
            &[1, 2, 3, 4],
        );
    }
}

/// Every built-in under every protocol, with the stateful engine's bounds, every execution
/// counted past violations (so every hazard, refusal and final state is compared), over two
/// and three ranks.
#[test]
fn every_builtin_partitioned_is_the_one_process_search() {
    let options = Options {
        stop_at_violation: false,
        fingerprints: true,
        ..Options::default()
    };
    let bounded = Bfs {
        bounded: true,
        ..Bfs::default()
    };
    let mut hazards = 0;
    for (name, _) in builtin::BUILTINS {
        for protocol in [Protocol::Split, Protocol::RfcV1, Protocol::SwapAfterCurrent] {
            let mut config = resolve(name).unwrap().config;
            config.machine.switch = protocol;
            same_search(
                &format!("{name} {protocol}"),
                &config,
                bounded,
                options,
                &[3],
            );
            let stopping = Options::default();
            same_search(
                &format!("{name} {protocol}"),
                &config,
                bounded,
                stopping,
                &[2],
            );
            hazards += explore(&config, &mut bounded.clone(), options, |_| {})
                .hazards
                .len();
        }
    }
    // The comparison of hazards compared some.
    assert!(hazards > 0);
    // And of verdicts, each kind.
    let verdicts: Vec<Verdict> = builtin::BUILTINS
        .iter()
        .map(|(name, _)| {
            let config = resolve(name).unwrap().config;
            explore(&config, &mut bounded.clone(), options, |_| {}).verdict
        })
        .collect();
    for verdict in [Verdict::Pass, Verdict::Refused, Verdict::Violation] {
        assert!(verdicts.contains(&verdict), "no built-in gives {verdict:?}");
    }
}
