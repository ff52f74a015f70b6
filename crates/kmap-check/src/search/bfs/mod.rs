//! The stateful breadth-first search (`kmap prove`, and `kmap check`'s stateful engine): every
//! state of a scenario, with no bound on preemption (or within the scenario's bounds, with
//! [`Bfs::bounded`]), made finite by remembering the states already seen.
//!
//! The search is over the states at choice points (see `kmap_sim`'s `machine/state.rs` for
//! what a state holds and why that is enough). A state is reached by re-running the real code
//! from the start along the choices that lead to it, up to its first choice point with a new
//! state: no coroutine is ever copied, and the soundness of the search rests only on the state
//! key. Along the path, the run retraces what the run that found it did (the code is
//! deterministic): it probes no handler and checks no arrival point again, and takes each
//! choice by value where it was taken; past the end of the path, everything is probed and
//! checked. Interrupts and NMIs are probed at every arrival point, as in `kmap check`; a handler
//! that leaves a trace is a choice there (a lasting handler). Every preemption and migration
//! the kernel allows is a choice, with no bound. With more than one CPU the executing CPU
//! changes only before a program's next step (the reduction, see [`Bfs::reduce`]).
//!
//! Breadth-first, the first violation found is at the fewest choice points from the start; its
//! schedule replays it like any other (`kmap replay`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kmap_sim::{
    Bounds, Choice, ChoicePoint, Chooser, Config, Decision, Outcome, ProbeMemo, RunOptions,
    StateKey,
};
use rustc_hash::FxHashSet;

use super::{Coverage, Progress, Search, States, Strategy, handler_depth};

mod partition;

pub use self::partition::{Partitioned, Ranks, ThreadRanks};

/// Every state, breadth-first.
#[derive(Clone, Copy, Debug)]
pub struct Bfs {
    /// Partial-order reduction across CPUs: the executing CPU changes only before a program's
    /// next step. Each operation is atomic with respect to the other CPUs, and each CPU's
    /// local history is reproducible, so every interleaving is equivalent to one whose CPU
    /// switches come before program steps (the argument is written where the machine offers
    /// CPU switches, in `kmap_sim`'s `machine/arrival.rs`).
    pub reduce: bool,
    /// Keep the configuration's bounds on preemptions, CPU switches and lasting handlers
    /// (`kmap check`'s stateful engine; what is left of them is then part of the state).
    /// Without, every bound but the nesting depths is lifted (a proof).
    pub bounded: bool,
    /// Stop when this many states are remembered (the search is then incomplete).
    pub max_states: Option<u64>,
    /// Stop when the process's resident memory passes this many bytes (the search is then
    /// incomplete): never an out-of-memory kill.
    pub max_memory: Option<u64>,
    /// Task and CPU symmetry: a state is remembered by its canonical form under the
    /// relabelling of interchangeable tasks and their pages (tasks that run the same
    /// nondeterministic program over pages of their own, wherever they start) and the
    /// rotations of the CPUs (where no program names a CPU), so that of states that differ only
    /// in which of those tasks or CPUs is which, one is explored. The argument is in
    /// `kmap_sim`'s `machine/symmetry.rs`.
    pub symmetry: bool,
    /// Keep the canonical key of every state remembered ([`States::orbits`]), with or without
    /// `symmetry`.
    pub collect_orbits: bool,
    /// Keep the quiescent states ([`States::quiescent`]).
    pub collect_quiescent: bool,
    /// How many threads run executions (`None`: one per core). The results are taken in the
    /// order one thread would take them, so the states, transitions, depth, verdict and
    /// counterexample are the same for any number; the statistics of what the runs did are not
    /// (they count probed handlers, the probe memo is shared, and which thread fills it first
    /// depends on timing).
    pub threads: Option<usize>,
}

impl Default for Bfs {
    fn default() -> Self {
        Bfs {
            reduce: true,
            bounded: false,
            max_states: None,
            max_memory: None,
            symmetry: true,
            collect_orbits: false,
            collect_quiescent: false,
            threads: None,
        }
    }
}

impl Bfs {
    /// The hash scheme of remembered states, in words.
    pub const HASH_SCHEME: &'static str = "XXH3-128 of the whole state";

    /// The hash scheme with task and CPU symmetry, in words.
    pub const SYMMETRIC_HASH_SCHEME: &'static str =
        "XXH3-128 of the whole state in canonical form (task and CPU symmetry)";
}

/// An upper bound on the probability that two of `states` remembered states were taken for one
/// (`n² / 2^129`).
pub fn collision_bound(states: u64) -> f64 {
    (states as f64).powi(2) / 2f64.powi(129)
}

/// One choice taken, by value: where (the arrival point's number, and whether it is a
/// program's choice of its next step) and what.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Step {
    arrival: u64,
    step: bool,
    choice: Choice,
}

impl Step {
    /// The choice `point` offers as `options[at]`.
    fn at(point: &ChoicePoint<'_>, at: usize) -> Step {
        Step {
            arrival: point.arrival,
            step: point.is_step(),
            choice: point.options[at],
        }
    }
}

/// One node of the search tree: the choice that leads to it from its parent.
struct Node {
    parent: u32,
    step: Step,
    depth: u32,
}

/// Follows a path of choices, then stops at the next choice point and reports it.
///
/// Along the path it retraces (see `Chooser::retraces`): the run that found the node the path
/// leads to, or an ancestor's, went there, probed and checked every arrival point of it. The path's choices are taken by value at the arrival point they were taken at; at
/// a choice point off the path (one that only the handlers offered unprobed make a choice
/// point), nothing happens, as in the run that first went there.
struct Expand {
    path: Vec<Step>,
    next: usize,
    reached: Option<(StateKey, Vec<Step>)>,
}

impl Chooser for Expand {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision {
        if let Some(&taken) = self.path.get(self.next) {
            if (taken.arrival, taken.step) != (point.arrival, point.is_step()) {
                assert!(
                    !point.is_step(),
                    "a program's step at arrival point {} is off the path",
                    point.arrival
                );
                return Decision::Take(0);
            }
            self.next += 1;
            let at = point
                .options
                .iter()
                .position(|&choice| choice == taken.choice)
                .unwrap_or_else(|| {
                    panic!(
                        "{:?} at arrival point {} is not offered again",
                        taken.choice, point.arrival
                    )
                });
            return Decision::Take(at);
        }
        let state = point.state.expect("a stateful run gives every state");
        let steps = (0..point.options.len())
            .map(|at| Step::at(point, at))
            .collect();
        self.reached = Some((state, steps));
        Decision::Stop
    }

    /// Only the state at the end of the path: the states along it were met before.
    fn wants_state(&self) -> bool {
        self.next >= self.path.len()
    }

    /// Up to the end of the path, which the run that found its node took.
    fn retraces(&self) -> bool {
        self.next < self.path.len()
    }

    fn next_choice_at(&self) -> Option<u64> {
        self.path.get(self.next).map(|step| step.arrival)
    }
}

/// What one execution of the search found: its outcome, and the state it stopped at with
/// the choices there.
type Ran = (Outcome, Option<(StateKey, Vec<Step>)>);

/// How many nodes are run at once, in parallel, before their results are taken in order.
const CHUNK: usize = 1024;

/// Run the executions that reach `ids` on `threads` threads, and give their results in the
/// order of `ids`.
fn run_chunk(
    config: &Config,
    nodes: &[Node],
    ids: &[u32],
    threads: usize,
    options: &RunOptions,
) -> Vec<Ran> {
    run_paths(
        config,
        ids.len(),
        |at| path_to(nodes, ids[at]),
        threads,
        options,
    )
}

/// Run the `count` executions that follow `path(0)`, `path(1)`, … on `threads` threads, and
/// give their results in that order.
fn run_paths(
    config: &Config,
    count: usize,
    path: impl Fn(usize) -> Vec<Step> + Sync,
    threads: usize,
    options: &RunOptions,
) -> Vec<Ran> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut ran = Vec::new();
        loop {
            let at = next.fetch_add(1, Ordering::Relaxed);
            if at >= count {
                break;
            }
            let chooser = Rc::new(RefCell::new(Expand {
                path: path(at),
                next: 0,
                reached: None,
            }));
            let outcome = kmap_sim::run(config, chooser.clone(), options.clone())
                .expect("a validated configuration");
            let reached = chooser.borrow_mut().reached.take();
            ran.push((at, (outcome, reached)));
        }
        ran
    };
    let mut all: Vec<(usize, Ran)> = if threads <= 1 || count == 1 {
        work()
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            workers
                .into_iter()
                .flat_map(|worker| {
                    worker
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    };
    all.sort_unstable_by_key(|(at, _)| *at);
    all.into_iter().map(|(_, ran)| ran).collect()
}

impl Bfs {
    /// The options of the search's runs.
    fn run_options(&self, config: &Config) -> RunOptions {
        RunOptions {
            record_choices: false,
            prune: false,
            probe: Some(Arc::new(ProbeMemo::default())),
            probe_depth: handler_depth(config),
            stateful: true,
            reduce: self.reduce,
            symmetry: self.symmetry,
            orbits: self.collect_orbits,
            ..RunOptions::default()
        }
    }

    /// The configuration searched: `config` with its bounds lifted but the nesting depths,
    /// unless [`Bfs::bounded`].
    fn searched(&self, config: &Config) -> Config {
        let mut searched = config.clone();
        if !self.bounded {
            searched.bounds = Bounds {
                irq_depth: config.bounds.irq_depth,
                nmi_depth: config.bounds.nmi_depth,
                ..Bounds::UNLIMITED
            };
        }
        searched
    }

    /// The threads that run executions.
    fn thread_count(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        })
    }
}

impl Strategy for Bfs {
    fn explore(&mut self, search: &mut Search<'_>) -> Coverage {
        let run_options = self.run_options(search.config);
        let threads = self.thread_count();
        let unbounded = self.searched(search.config);
        let mut nodes = vec![Node {
            parent: u32::MAX,
            step: Step {
                arrival: 0,
                step: false,
                choice: Choice::Continue,
            },
            depth: 0,
        }];
        let mut queue: VecDeque<u32> = VecDeque::from([0]);
        let mut seen: FxHashSet<u128> = FxHashSet::default();
        let mut states = States {
            symmetric: self.symmetry,
            ..States::default()
        };
        let mut stopped = None;
        // The nodes are taken from the front of the queue a chunk at a time and run in
        // parallel; their results are then taken one by one in queue order, exactly as one
        // thread would take them (a run does not depend on what the others found), so every
        // figure, the verdict and the counterexample are those of one thread.
        //
        // Why the visited set is a plain set behind this ordered merge, not a concurrent one
        // the workers insert into as they go (the probe memo, which only caches and never
        // decides what is explored, is one: `ProbeMemo`). First, with a concurrent set the
        // thread that got to a state first would own it, so which node expands a state, the
        // depth it is counted at, the queue order behind it and the counterexample found first
        // would depend on timing; the merge makes them independent of the number of threads
        // (`tests/prove.rs` checks 1, 2 and 3). Second, it costs little: an execution replays
        // the real code from the start (tens to hundreds of microseconds), and taking its
        // result is one 128-bit insert and a few pushes. Measured with two threads on a
        // 2-core machine, the merge took 0.022 s of 0.99 s on 1/3/3 and 0.30 s of 9.3 s on
        // 1/3/3 with release in any order (first 200,000 states): 2 to 3% of the time. A
        // concurrent set would save that, and the wait of the workers at the end of each chunk
        // for the slowest of its executions (not measured here), at the price of its own cost
        // on every insert and of the determinism above.
        'search: while !queue.is_empty() {
            let ids: Vec<u32> = queue.drain(..queue.len().min(CHUNK)).collect();
            let results = run_chunk(&unbounded, &nodes, &ids, threads, &run_options);
            for (at, (&id, (outcome, reached))) in ids.iter().zip(results).enumerate() {
                if self.max_states.is_some_and(|m| states.states >= m) {
                    stopped = Some(format!(
                        "{} states remembered (--max-states)",
                        states.states
                    ));
                    requeue(&mut queue, &ids[at..]);
                    break 'search;
                }
                if search.tally.executions.is_multiple_of(1024)
                    && let Some(limit) = self.max_memory
                {
                    let resident = resident_bytes();
                    if resident > limit {
                        stopped = Some(format!(
                            "{} MiB resident, over the limit of {} MiB (--max-memory)",
                            resident >> 20,
                            limit >> 20
                        ));
                        requeue(&mut queue, &ids[at..]);
                        break 'search;
                    }
                }
                // A run that was refused something goes on as the program does (see
                // `Refusal::survived`); only a violation ends what follows it.
                let violated = !outcome.violations.is_empty();
                search.tally.add(outcome);
                search.progress(Progress {
                    executions: search.tally.executions,
                    states: states.states,
                    depth: states.depth,
                });
                if search.tally.done() {
                    return Coverage {
                        complete: false,
                        stopped,
                        states: Some(states),
                    };
                }
                if violated {
                    continue;
                }
                let Some((state, steps)) = reached else {
                    continue;
                };
                if !seen.insert(state.key) {
                    states.matched += 1;
                    continue;
                }
                let depth = nodes[id as usize].depth + 1;
                if let Some(orbit) = state.orbit {
                    states.orbits.insert(orbit);
                }
                if state.quiescent && self.collect_quiescent {
                    states.quiescent.insert(state.key);
                }
                states.states += 1;
                states.depth = states.depth.max(depth as usize);
                for step in steps {
                    queue.push_back(nodes.len() as u32);
                    nodes.push(Node {
                        parent: id,
                        step,
                        depth,
                    });
                }
            }
        }
        Coverage {
            complete: stopped.is_none() && queue.is_empty(),
            stopped,
            states: Some(states),
        }
    }
}

/// Put `ids` back at the front of the queue, in order (their runs' results are not taken).
fn requeue(queue: &mut VecDeque<u32>, ids: &[u32]) {
    for &id in ids.iter().rev() {
        queue.push_front(id);
    }
}

/// A lower bound on the states of `config`'s search: every combination of the stack depths of its
/// nondeterministic tasks is reachable (each maps, unmaps and yields on its own), and the key of
/// a state holds every stack, so each combination is a state of its own.
pub fn states_lower_bound(config: &Config) -> f64 {
    config
        .program
        .tasks
        .iter()
        .filter(|t| t.is_any())
        .map(|t| (t.any.len() + 1) as f64)
        .product()
}

/// A lower bound on the memory a search of `config` needs, in bytes: 16 bytes for the key of each
/// of [`states_lower_bound`] states, on top of what this process holds already. A scope over a
/// `--max-memory` by this bound cannot fit, whatever the search does.
pub fn memory_lower_bound(config: &Config) -> f64 {
    resident_bytes() as f64 + 16.0 * states_lower_bound(config)
}

/// The resident memory of this process, in bytes (0 where unknown).
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The choices from the start to node `id`.
fn path_to(nodes: &[Node], mut id: u32) -> Vec<Step> {
    let mut path = Vec::new();
    while id != 0 {
        let node = &nodes[id as usize];
        path.push(node.step);
        id = node.parent;
    }
    path.reverse();
    path
}
