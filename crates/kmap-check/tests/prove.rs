//! `kmap prove`: small scopes proved or refuted, and the stateful search checked against the
//! stateless one and against itself without the reduction.

use kmap_check::scope::Scope;
use kmap_check::search::{Bfs, Dfs, Exploration, prove, replay};
use kmap_check::{Options, explore, resolve};
use kmap_sim::settings::ValueEnum;
use kmap_sim::{Config, Protocol, Verdict};

/// A scope's configuration under `protocol`.
fn scope(cpus: usize, tasks: usize, depth: usize, protocol: Protocol) -> Config {
    under(Scope::new(cpus, tasks, depth), protocol)
}

/// `scope`'s configuration under `protocol`.
fn under(scope: Scope, protocol: Protocol) -> Config {
    let mut config = scope.config();
    config.machine.switch = protocol;
    config
}

/// `proof` of `config` is a violation whose counterexample replays to the same violations.
fn refuted_and_replayed(config: &Config, proof: Exploration, name: &str) {
    assert_eq!(proof.verdict, Verdict::Violation, "{name}");
    let ce = proof.counterexample.expect("a counterexample");
    let again = replay(config, &ce.schedule);
    assert_eq!(again.violations, ce.outcome.violations, "{name} replays");
}

/// The states of a proof.
fn states(proof: &Exploration) -> u64 {
    proof.states.as_ref().map_or(0, |s| s.states)
}

#[test]
fn small_scopes_are_proved_under_split_and_refuted_under_the_rfc_designs() {
    for (cpus, tasks, depth) in [(1, 2, 1), (1, 2, 2), (2, 2, 1)] {
        for &protocol in Protocol::value_variants() {
            if cpus > 1 && protocol != Protocol::Split {
                continue;
            }
            let config = scope(cpus, tasks, depth, protocol);
            let proof = prove(&config);
            let name = format!("{cpus}/{tasks}/{depth} {protocol}");
            if protocol == Protocol::Split {
                assert_eq!(proof.verdict, Verdict::Pass, "{name}");
                assert!(
                    proof.complete && states(&proof) > 50,
                    "{name}: {}",
                    states(&proof)
                );
            } else {
                refuted_and_replayed(&config, proof, &name);
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
        let lifo = scope(cpus, tasks, depth, Protocol::Split);
        let mut any = lifo.clone();
        any.machine.release = kmap_sim::Release::Any;
        let name = format!("{cpus}/{tasks}/{depth} --release any");
        let proof = prove(&any);
        assert_eq!(proof.verdict, Verdict::Pass, "{name}");
        assert!(proof.complete, "{name}");
        let lifo_proof = prove(&lifo);
        assert!(
            states(&proof) > states(&lifo_proof),
            "{name}: {} states, LIFO {}",
            states(&proof),
            states(&lifo_proof)
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
        let options = Options {
            stop_at_violation: false,
            fingerprints: true,
            ..Options::default()
        };
        let stateless = explore(&config, &mut Dfs::default(), options, |_| {});
        let proof = explore(&config, &mut Bfs::default(), options, |_| {});
        assert!(stateless.complete && proof.complete, "{name}");
        assert_eq!(proof.verdict, stateless.verdict, "{name}");
        assert_eq!(
            proof.final_states, stateless.final_states,
            "{name}: final states differ"
        );
    }
}

/// The reduction across CPUs loses nothing: the same verdict, the same final states of a
/// scenario that ends, and every quiescent state (every CPU between program steps).
#[test]
fn the_reduction_across_cpus_keeps_verdicts_and_states() {
    let run = |config: &Config, reduce| {
        let mut bfs = Bfs {
            reduce,
            collect_quiescent: true,
            ..Bfs::default()
        };
        let options = Options {
            stop_at_violation: false,
            fingerprints: true,
            ..Options::default()
        };
        explore(config, &mut bfs, options, |_| {})
    };
    let quiescent = |proof: &Exploration| proof.states.clone().unwrap_or_default().quiescent;
    let config = resolve("migrate-on-preempt").unwrap().config;
    let (reduced, whole) = (run(&config, true), run(&config, false));
    assert_eq!(reduced.verdict, whole.verdict);
    assert_eq!(reduced.final_states, whole.final_states);
    assert_eq!(quiescent(&reduced), quiescent(&whole));
    assert!(!quiescent(&reduced).is_empty());
    assert!(
        states(&reduced) * 5 < states(&whole),
        "{} vs {}",
        states(&reduced),
        states(&whole)
    );

    let config = Scope {
        irq: false,
        nmi: false,
        ..Scope::new(2, 2, 1)
    }
    .config();
    let (reduced, whole) = (run(&config, true), run(&config, false));
    assert_eq!(reduced.verdict, Verdict::Pass);
    assert_eq!(whole.verdict, Verdict::Pass);
    assert!(reduced.complete && whole.complete);
    assert!(quiescent(&reduced).len() > 10);
    assert_eq!(
        quiescent(&reduced).len(),
        quiescent(&whole).len(),
        "quiescent states"
    );
    assert_eq!(quiescent(&reduced), quiescent(&whole));
}

/// A proof looks for leaks at every quiescent state where every stack is empty: its runs of
/// endless programs are all stopped at a state seen before, so the end-of-run check never runs
/// in them. One task mapping one frame, no handler, and a platform that drops every TLB
/// invalidation: the stale entry translates the slot to the very frame mapped again next, so
/// nothing reads a wrong word, and only the entry left behind shows the fault.
#[test]
fn a_proof_finds_a_leak_at_a_quiescent_state() {
    let mut config = Scope {
        irq: false,
        nmi: false,
        ..Scope::new(1, 1, 1)
    }
    .config();
    let clean = prove(&config);
    assert_eq!(clean.verdict, Verdict::Pass);
    assert!(clean.complete);
    config.machine.mutation = Some(kmap_sim::Mutation::DropInvalidations);
    let proof = prove(&config);
    assert_eq!(proof.verdict, Verdict::Violation);
    let ce = proof.counterexample.expect("a counterexample");
    let violation = &ce.outcome.violations[0];
    assert_eq!(
        violation.kind,
        kmap_sim::ViolationKind::Leak,
        "{violation:?}"
    );
    assert!(
        violation.message.contains("every stack empty"),
        "{}",
        violation.message
    );
}

/// Guard cells with release in any order: every mapping takes an odd cell (the scope's stacks
/// grow to fit, `Scope::cells`), holes fall between guard cells, and the switch hooks skip
/// both. The proof passes with exactly the states of the same scope without guard cells: the
/// guards change where a mapping lives, not what can happen.
#[test]
fn guard_cells_with_release_in_any_order_change_no_state() {
    let scope = Scope::new(1, 2, 2);
    let mut plain = scope.config();
    plain.machine.release = kmap_sim::Release::Any;
    let mut guarded = plain.clone();
    guarded.machine.guard_cells = true;
    guarded.machine.cells = scope.cells(true);
    let (plain, guarded) = (prove(&plain), prove(&guarded));
    assert_eq!(guarded.verdict, Verdict::Pass);
    assert!(guarded.complete);
    assert_eq!(states(&guarded), states(&plain));
}

/// Task and CPU symmetry lose nothing: with and without them, 1/2/1, 1/2/2, 2/2/1 and 1/3/1
/// under every switch, 2/3/1 under split, 1/2/2 and 2/2/2 with release in any order (and 1/2/2 in
/// the scope API), 1/2/1,
/// 2/2/1 and 1/3/1 with every addition to the alphabet but lowmem, and 2/2/1 with a lowmem page
/// (tasks interchangeable with none: the CPUs' symmetry alone) get the same verdict, and the
/// states the symmetric search remembers are exactly the classes of the states the whole
/// search reaches (their canonical keys are the same set), one state per class; the scopes of
/// three tasks keep under a quarter of the states, and the lowmem one, by the CPUs alone, under
/// two thirds.
#[test]
fn symmetry_keeps_verdicts_and_every_state_up_to_relabelling() {
    let run = |config: &Config, symmetry| {
        let mut bfs = Bfs {
            symmetry,
            collect_orbits: true,
            ..Bfs::default()
        };
        let options = Options {
            stop_at_violation: false,
            ..Options::default()
        };
        explore(config, &mut bfs, options, |_| {})
    };
    let orbits = |proof: &Exploration| proof.states.clone().unwrap_or_default().orbits;
    let mut scopes = Vec::new();
    for (cpus, tasks, depth) in [(1, 2, 1), (1, 2, 2), (2, 2, 1), (1, 3, 1), (2, 3, 1)] {
        for &protocol in Protocol::value_variants() {
            if cpus == 1 || tasks == 2 || protocol == Protocol::Split {
                scopes.push((
                    format!("{cpus}/{tasks}/{depth} {protocol}"),
                    scope(cpus, tasks, depth, protocol),
                ));
            }
        }
    }
    for (cpus, tasks, depth) in [(1, 2, 2), (2, 2, 2)] {
        let mut any = scope(cpus, tasks, depth, Protocol::Split);
        any.machine.release = kmap_sim::Release::Any;
        scopes.push((format!("{cpus}/{tasks}/{depth} --release any"), any));
    }
    let mut scoped = under(
        Scope {
            api: kmap_sim::Api::Scope,
            ..Scope::new(1, 2, 2)
        },
        Protocol::Split,
    );
    scoped.machine.release = kmap_sim::Release::Any;
    scopes.push(("1/2/2:scope --release any".into(), scoped));
    for (cpus, tasks, depth) in [(1, 2, 1), (2, 2, 1), (1, 3, 1)] {
        // Every addition but the lowmem page, which makes a task interchangeable with none.
        let wide = Scope {
            alphabet: kmap_sim::Alphabet {
                lowmem: false,
                ..kmap_sim::Alphabet::ALL
            },
            ..Scope::new(cpus, tasks, depth)
        };
        scopes.push((wide.to_string(), under(wide, Protocol::Split)));
    }
    let lowmem = Scope {
        alphabet: kmap_sim::Alphabet {
            lowmem: true,
            ..kmap_sim::Alphabet::default()
        },
        ..Scope::new(2, 2, 1)
    };
    scopes.push((lowmem.to_string(), under(lowmem, Protocol::Split)));
    for (name, config) in &scopes {
        let (whole, symmetric) = (run(config, false), run(config, true));
        assert!(whole.complete && symmetric.complete, "{name}");
        assert_eq!(symmetric.verdict, whole.verdict, "{name}");
        assert_eq!(
            orbits(&symmetric),
            orbits(&whole),
            "{name}: the classes of states"
        );
        assert_eq!(
            orbits(&symmetric).len() as u64,
            states(&symmetric),
            "{name}"
        );
        if config.program.tasks.len() == 3 && config.machine.switch == Protocol::Split {
            assert!(
                states(&symmetric) * 4 < states(&whole),
                "{name}: {} states with symmetry, {} without",
                states(&symmetric),
                states(&whole)
            );
        }
        if name.ends_with(":lowmem") {
            assert!(
                states(&symmetric) * 3 < states(&whole) * 2,
                "{name}: {} states with symmetry, {} without",
                states(&symmetric),
                states(&whole)
            );
        }
    }
}

/// CPU symmetry: a fixed scenario and its mirror (every task started on the other CPU) reach
/// the same classes of states, which the symmetric search counts once (the two tasks run
/// different programs, so the CPUs' symmetry alone merges states). The same scenario with a
/// program that names a CPU (`migrate 1`) gets no rotation: with and without symmetry, the same
/// states.
#[test]
fn cpu_symmetry_merges_a_scenario_with_its_mirror_and_only_where_it_holds() {
    let run = |config: &Config, symmetry| {
        let mut bfs = Bfs {
            symmetry,
            collect_orbits: true,
            ..Bfs::default()
        };
        explore(config, &mut bfs, Options::default(), |_| {})
    };
    let base = resolve("migrate-on-preempt").unwrap().config;
    assert!(base.program.tasks.iter().all(|t| t.cpu.0 == 0 && !t.pinned));
    let mut mirror = base.clone();
    for task in &mut mirror.program.tasks {
        task.cpu = kmap::CpuId(1);
    }
    let (here, there) = (run(&base, true), run(&mirror, true));
    assert_eq!(here.verdict, Verdict::Pass);
    assert_eq!(there.verdict, Verdict::Pass);
    let orbits = |proof: &Exploration| proof.states.clone().unwrap_or_default().orbits;
    assert_eq!(orbits(&here), orbits(&there));
    let whole = run(&base, false);
    assert!(
        states(&here) * 3 < states(&whole) * 2,
        "{} states with symmetry, {} without",
        states(&here),
        states(&whole)
    );
    // The same scenario, its second task asking at its end to move to CPU 1: the CPUs are
    // told apart now, and the rotation that merged states above is not tried.
    let mut named = base.clone();
    named.program.tasks[1]
        .ops
        .push(kmap_sim::Op::Migrate(kmap::CpuId(1)));
    assert_eq!(states(&run(&named, true)), states(&run(&named, false)));
}

/// The threads of a proof change nothing it reports: with one, two or three threads, every
/// figure (states, transitions, states seen again, depth), the verdict, the hazards and the
/// counterexample are the same, on scopes that pass and scopes refuted.
#[test]
fn threads_change_no_figure_and_no_counterexample() {
    let run = |config: &Config, threads| {
        let mut bfs = Bfs {
            threads: Some(threads),
            ..Bfs::default()
        };
        explore(config, &mut bfs, Options::default(), |_| {})
    };
    let mut any = scope(2, 2, 2, Protocol::Split);
    any.machine.release = kmap_sim::Release::Any;
    for (name, config) in [
        ("1/3/2", scope(1, 3, 2, Protocol::Split)),
        ("2/2/2 --release any", any),
        ("2/3/1 rfc-v1", scope(2, 3, 1, Protocol::RfcV1)),
    ] {
        let one = run(&config, 1);
        for threads in [2, 3] {
            let many = run(&config, threads);
            let figures = |e: &Exploration| {
                let s = e.states.clone().unwrap_or_default();
                (e.verdict, e.executions, s.states, s.matched, s.depth)
            };
            assert_eq!(many.hazards, one.hazards, "{name}, {threads} threads");
            assert_eq!(figures(&many), figures(&one), "{name}, {threads} threads");
            assert_eq!(
                many.counterexample.map(|c| c.schedule),
                one.counterexample.clone().map(|c| c.schedule),
                "{name}, {threads} threads"
            );
        }
    }
}

/// Two CPUs whose tasks are pinned (no migration, no write): CPU 0 runs until it has nothing
/// left before CPU 1 runs, and that loses no violation (here only CPU 1 can meet one: CPU 0
/// has one task, which never switches) and, where every run passes, no final state. Checked
/// against the search with no reduction at all.
#[test]
fn isolated_cpus_keep_verdicts_and_final_states() {
    let text = |b_ops: &str| {
        format!(
            r#"
            [machine]
            cpus = 2
            [[task]]
            name = "A"
            cpu = 0
            pinned = true
            ops = ["map 20", "check", "unmap"]
            [[task]]
            name = "B"
            cpu = 1
            pinned = true
            ops = [{b_ops}]
            [[task]]
            name = "C"
            cpu = 1
            pinned = true
            ops = ["map 30", "yield", "unmap"]
            [irq]
            ops = ["map 50", "check", "unmap"]
            "#
        )
    };
    let run = |config: &Config, reduce| {
        let mut bfs = Bfs {
            reduce,
            ..Bfs::default()
        };
        let options = Options {
            stop_at_violation: false,
            fingerprints: true,
            ..Options::default()
        };
        explore(config, &mut bfs, options, |_| {})
    };
    for b_ops in [
        r#""map 24", "yield", "check", "unmap""#,
        r#""yield", "map 24", "sleep", "unmap""#,
    ] {
        for protocol in [Protocol::Split, Protocol::RfcV1, Protocol::SwapAfterCurrent] {
            let mut config = kmap_check::scenario::parse("test", "isolated", &text(b_ops))
                .unwrap()
                .config;
            config.machine.switch = protocol;
            let (isolated, whole) = (run(&config, true), run(&config, false));
            assert!(isolated.complete && whole.complete, "{protocol}");
            assert_eq!(isolated.verdict, whole.verdict, "{protocol} {b_ops}");
            let expected = if protocol == Protocol::Split {
                Verdict::Pass
            } else {
                Verdict::Violation
            };
            assert_eq!(isolated.verdict, expected, "{protocol} {b_ops}");
            // A violation ends its run wherever the other CPU is, so only runs that pass
            // have the same ends in both.
            if expected == Verdict::Pass {
                assert_eq!(isolated.final_states, whole.final_states, "{b_ops}");
            }
            assert!(
                states(&isolated) * 3 < states(&whole),
                "{protocol}: {} states isolated, {} without the reduction",
                states(&isolated),
                states(&whole)
            );
        }
    }
}

/// A pinned task is never moved: pinning both tasks of `migrate-on-preempt` (whose preemption
/// may move a task to the other CPU) leaves only the runs in which nothing migrates, a strict
/// part of the final states.
#[test]
fn a_pinned_task_is_never_moved_by_load_balancing() {
    let options = Options {
        stop_at_violation: false,
        fingerprints: true,
        ..Options::default()
    };
    let free = resolve("migrate-on-preempt").unwrap().config;
    let mut pinned = free.clone();
    for task in &mut pinned.program.tasks {
        task.pinned = true;
    }
    let free = explore(&free, &mut Dfs::default(), options, |_| {});
    let pinned = explore(&pinned, &mut Dfs::default(), options, |_| {});
    assert_eq!(
        (free.verdict, pinned.verdict),
        (Verdict::Pass, Verdict::Pass)
    );
    assert!(
        pinned.final_states.is_subset(&free.final_states)
            && pinned.final_states.len() < free.final_states.len(),
        "{} pinned, {} free",
        pinned.final_states.len(),
        free.final_states.len()
    );
}

/// Handlers that map two pages, nested (`--handler-pages 2`, `scope:…:nested`): the split
/// design is proved on small scopes with exactly the states of one-page handlers (a clean
/// handler adds no state, however many pages it maps), and both RFC designs are refuted with a
/// counterexample that replays.
#[test]
fn handlers_mapping_two_pages_nested_are_proved_and_refute_the_rfc() {
    for (cpus, tasks, depth) in [(1, 2, 1), (1, 2, 2), (2, 2, 1)] {
        for &protocol in Protocol::value_variants() {
            let one = scope(cpus, tasks, depth, protocol);
            let nested = Scope {
                handler_pages: 2,
                ..Scope::new(cpus, tasks, depth)
            };
            let nested = under(nested, protocol);
            assert_eq!(nested.program.irq.len(), 5);
            let name = format!("{cpus}/{tasks}/{depth} {protocol}");
            let proof = prove(&nested);
            if protocol == Protocol::Split {
                assert_eq!(proof.verdict, Verdict::Pass, "{name}");
                assert!(proof.complete, "{name}");
                assert_eq!(states(&proof), states(&prove(&one)), "{name}");
            } else {
                refuted_and_replayed(&nested, proof, &name);
            }
        }
    }
}

/// Each addition to the tasks' alphabet (`--alphabet`, `scope:…:atomic`, `:write`, `:irq-off`,
/// `:sleep`): small scopes are proved with more transitions than without (the new steps are
/// taken, and no yield or sleep is refused, or the verdict would be `refused`; a write may reach
/// no new state, since a page its owner wrote is as intact as before), and both RFC designs are
/// refuted with a counterexample that replays.
#[test]
fn each_addition_to_the_alphabet_is_proved_and_refutes_the_rfc() {
    let additions = ["atomic", "write", "irq-off", "sleep", "lowmem"];
    for (cpus, tasks, depth) in [(1, 2, 1), (1, 2, 2), (2, 2, 1)] {
        for addition in additions {
            for &protocol in Protocol::value_variants() {
                let scope = |added: bool| {
                    let mut scope = Scope::new(cpus, tasks, depth);
                    if added {
                        assert!(scope.alphabet.add(addition));
                    }
                    under(scope, protocol)
                };
                let name = format!("{cpus}/{tasks}/{depth}:{addition} {protocol}");
                let added = scope(true);
                let proof = prove(&added);
                if protocol == Protocol::Split {
                    assert_eq!(proof.verdict, Verdict::Pass, "{name}");
                    assert!(proof.complete, "{name}");
                    let transitions =
                        |p: &Exploration| p.states.as_ref().map_or(0, |s| s.states + s.matched);
                    let base = transitions(&prove(&scope(false)));
                    assert!(
                        transitions(&proof) > base,
                        "{name}: {} vs {base}",
                        transitions(&proof)
                    );
                } else {
                    refuted_and_replayed(&added, proof, &name);
                }
            }
        }
    }
}

/// The safe API (`--api guard`, `scope:…:guard`): a proof whose tasks and handlers map
/// through `kmap::Local` and `kmap::Mapping` reaches as many states as through `kmap::raw` (the
/// same machine states, the guards' depths besides), passes under split, and refutes both RFC
/// designs with a counterexample that replays.
#[test]
fn the_guard_api_is_proved_as_the_raw_one_is() {
    for (cpus, tasks, depth) in [(1, 2, 1), (1, 2, 2), (2, 2, 1)] {
        for &protocol in Protocol::value_variants() {
            let scope = |api| {
                let scope = Scope {
                    api,
                    alphabet: kmap_sim::Alphabet {
                        atomic: true,
                        ..kmap_sim::Alphabet::default()
                    },
                    ..Scope::new(cpus, tasks, depth)
                };
                under(scope, protocol)
            };
            let name = format!("{cpus}/{tasks}/{depth}:atomic:guard {protocol}");
            let guarded = scope(kmap_sim::Api::Guard);
            let proof = prove(&guarded);
            if protocol == Protocol::Split {
                assert_eq!(proof.verdict, Verdict::Pass, "{name}");
                assert!(proof.complete, "{name}");
                assert_eq!(
                    states(&proof),
                    states(&prove(&scope(kmap_sim::Api::Raw))),
                    "{name}"
                );
            } else {
                refuted_and_replayed(&guarded, proof, &name);
            }
        }
    }
}

/// The scope API (`--api scope`, `scope:…:scope`, release in any order): a proof whose endless
/// tasks map through `kmap::Scope` (each map a `ScopedMapping` in a frame of its own, released
/// most recent first or in any order) and whose handlers do too passes under split with exactly
/// the quiescent states of the raw API (every task between steps, each holding the same
/// mappings at the same addresses), and refutes both RFC designs with a counterexample that
/// replays.
#[test]
fn the_scope_api_is_proved_as_the_raw_one_is() {
    let run = |config: &Config| {
        let mut bfs = Bfs {
            collect_quiescent: true,
            ..Bfs::default()
        };
        explore(config, &mut bfs, Options::default(), |_| {})
    };
    let quiescent = |proof: &Exploration| proof.states.clone().unwrap_or_default().quiescent;
    for (cpus, tasks, depth) in [(1, 2, 2), (2, 2, 2), (1, 3, 2)] {
        for &protocol in Protocol::value_variants() {
            let scope = |api| {
                let mut config = under(
                    Scope {
                        api,
                        ..Scope::new(cpus, tasks, depth)
                    },
                    protocol,
                );
                config.machine.release = kmap_sim::Release::Any;
                config
            };
            let name = format!("{cpus}/{tasks}/{depth}:scope --release any {protocol}");
            let scoped = scope(kmap_sim::Api::Scope);
            let proof = run(&scoped);
            if protocol == Protocol::Split {
                assert_eq!(proof.verdict, Verdict::Pass, "{name}");
                assert!(proof.complete, "{name}");
                let raw = run(&scope(kmap_sim::Api::Raw));
                assert!(!quiescent(&proof).is_empty(), "{name}");
                assert_eq!(quiescent(&proof), quiescent(&raw), "{name}");
            } else {
                refuted_and_replayed(&scoped, proof, &name);
            }
        }
    }
}

/// `api = "scope"` on the endless tasks of a scenario file: proved through the scope API, with
/// as many states as the same tasks through `kmap::raw` (a scoped mapping's frame holds nothing
/// the raw API's record does not).
#[test]
fn a_scenario_s_endless_tasks_in_the_scope_api_are_proved() {
    let task = |name: &str| {
        format!("[[task]]\nname = \"{name}\"\nany = true\ndepth = 2\napi = \"scope\"\n")
    };
    let text = format!(
        "[machine]\nrelease = \"any\"\n{}{}[irq]\nops = [\"map 2\", \"check\", \"unmap\"]\n",
        task("A"),
        task("B")
    );
    let scenario = kmap_check::scenario::parse("scoped.toml", "scoped", &text).unwrap();
    assert!(
        scenario
            .config
            .program
            .tasks
            .iter()
            .all(|t| t.api == kmap_sim::Api::Scope && t.is_any())
    );
    let proof = prove(&scenario.config);
    assert_eq!(proof.verdict, Verdict::Pass);
    assert!(proof.complete);
    let mut raw = scenario.config.clone();
    for task in &mut raw.program.tasks {
        task.api = kmap_sim::Api::Raw;
    }
    assert_eq!(states(&proof), states(&prove(&raw)));
}
