//! The partitioned search: the states of one proof shared out over the ranks of a job (the
//! processes of `mpirun -np N kmap prove --mpi …`, or threads in one process), as DiVinE and
//! LTSmin share theirs.
//!
//! Each rank owns the states whose key falls to it (`key mod N`): it alone remembers them, and it
//! alone runs the executions that leave them. The search goes level by level (a level is the
//! choice points from the start): every rank runs the executions of its own states of the
//! level, sends each state they reach to its owner, and the owners take in what they received.
//! A state travels as the path of choices that reaches it (a state is reached by re-running the
//! real code from the start along its path, as in [`Bfs`]); nothing else of a run crosses.
//!
//! # The same search as one process's, not only the same states
//!
//! One process takes the nodes of a level in its queue's order, which is the lexicographic
//! order of their paths counted in positions among the options offered (a node's children are
//! queued in the order of its options, behind the children of the nodes before it, level after
//! level). A state reached more than once in a level is remembered from its first finder in that
//! order. Here every state sent carries its finder's position path (its *order*); an owner
//! takes in what it received sorted by order, so it remembers the same finder, the same path,
//! and the same children, in the same order, as the one process does. By induction over the
//! levels, every rank's nodes are those of the one process's level, and in its order.
//!
//! One process stops at the first violation in that order. Here the ranks run their whole
//! level, then agree on the least order of a violating node of the level (`V`); what the one
//! process did before it stopped is exactly what the nodes up to `V` did: their executions are
//! counted, and the states reached by the nodes before `V` are taken in. So the verdict, the
//! states, the transitions, the depth, the executions and the counterexample are those of
//! one process, for any number of ranks (`tests/partition.rs` checks it). The hazards are, too:
//! one process keeps each place's first hazard in its order, up to [`HAZARDS_KEPT`]; the first
//! of a place is the first on the rank that met it, so each rank marks the nodes that brought
//! it a place new to it (at most [`HAZARDS_KEPT`]), and the marked nodes, re-run in order, give
//! the one process's list. The first refusal is found the same way. What differs is the
//! statistics of what the runs did ([`Stats`]): each rank has a probe memo of its own, and a
//! probed handler's operations, interrupts and arrival points are counted in them.
//!
//! Bounds on the states or the memory are checked between levels, so a search stopped by one
//! is not the one process's: its figures overshoot the bound by up to a level.

use std::collections::BTreeSet;

use kmap_sim::{Config, Hazard, Outcome, RunOptions, Stats, Verdict};
use rustc_hash::FxHashSet;

mod ranks;
mod wire;

pub use self::ranks::{Ranks, ThreadRanks};
use self::wire::{Read, Wire};

use super::{Bfs, Step, run_paths};
use crate::search::{Coverage, HAZARDS_KEPT, Progress, Search, States, Strategy};

/// [`Bfs`] with its states partitioned over `ranks`. Every rank gets the same [`Exploration`],
/// that of the whole search, with the states each rank owned in [`States::ranks`].
///
/// [`Exploration`]: crate::search::Exploration
pub struct Partitioned<'a> {
    /// The search (its quiescent and orbit collections are not used).
    pub bfs: Bfs,
    /// The ranks it is spread over.
    pub ranks: &'a dyn Ranks,
}

/// A state this rank owns at the current level: how it was reached, and its choices.
struct Owned {
    /// Its finder's positions among the options offered, from the start.
    order: Vec<u32>,
    /// The choices that reach it.
    path: Vec<Step>,
    /// The choices offered there.
    steps: Vec<Step>,
}

/// A node of the search, marked for its hazards or its verdict: re-run to get its outcome.
#[derive(Clone)]
struct Mark {
    level: u32,
    order: Vec<u32>,
    path: Vec<Step>,
}

/// What this rank counted of the executions it ran.
struct Counted {
    executions: u64,
    stats: Stats,
    places: Vec<Hazard>,
    hazard_marks: Vec<Mark>,
    refused: Option<Mark>,
    violated: Option<Mark>,
    final_states: Option<BTreeSet<u64>>,
}

impl Counted {
    fn add(&mut self, outcome: &Outcome, mark: impl FnOnce() -> Mark) {
        self.executions += 1;
        self.stats.add(&outcome.stats);
        if let Some(set) = &mut self.final_states
            && !outcome.stopped
        {
            set.insert(outcome.final_state);
        }
        let mut new_place = false;
        for hazard in &outcome.hazards {
            let known = self.places.iter().any(|h| h.same_place(hazard));
            if !known && self.places.len() < HAZARDS_KEPT {
                self.places.push(hazard.clone());
                new_place = true;
            }
        }
        let refused = self.refused.is_none() && outcome.verdict() == Verdict::Refused;
        let violated = self.violated.is_none() && outcome.verdict() == Verdict::Violation;
        if new_place || refused || violated {
            let mark = mark();
            if refused {
                self.refused = Some(mark.clone());
            }
            if violated {
                self.violated = Some(mark.clone());
            }
            if new_place {
                self.hazard_marks.push(mark);
            }
        }
    }
}

impl Strategy for Partitioned<'_> {
    fn explore(&mut self, search: &mut Search<'_>) -> Coverage {
        let (rank, size) = (self.ranks.rank(), self.ranks.size());
        let run_options = self.bfs.run_options(search.config);
        let searched = self.bfs.searched(search.config);
        let threads = self.bfs.thread_count();
        let stop_at_violation = search.tally.stop_at_violation;
        let mut counted = Counted {
            executions: 0,
            stats: Stats::default(),
            places: Vec::new(),
            hazard_marks: Vec::new(),
            refused: None,
            violated: None,
            final_states: search.tally.final_states.as_ref().map(|_| BTreeSet::new()),
        };
        let mut seen: FxHashSet<u128> = FxHashSet::default();
        let (mut states, mut matched, mut depth) = (0u64, 0u64, 0usize);
        // The states owned at this level; the root's run is rank 0's, with the empty path.
        let mut owned: Vec<Owned> = Vec::new();
        let mut level = 0u32;
        let mut stopped = None;
        let violated = loop {
            // This rank's nodes of the level, in order: each owned state's options in turn.
            let nodes: Vec<(usize, usize)> = if level == 0 {
                if rank == 0 { vec![(0, 0)] } else { Vec::new() }
            } else {
                owned
                    .iter()
                    .enumerate()
                    .flat_map(|(o, state)| (0..state.steps.len()).map(move |i| (o, i)))
                    .collect()
            };
            let path_of = |at: usize| -> Vec<Step> {
                if level == 0 {
                    return Vec::new();
                }
                let (o, i) = nodes[at];
                let mut path = owned[o].path.clone();
                path.push(owned[o].steps[i]);
                path
            };
            let order_of = |at: usize| -> Vec<u32> {
                if level == 0 {
                    return Vec::new();
                }
                let (o, i) = nodes[at];
                let mut order = owned[o].order.clone();
                order.push(i as u32);
                order
            };
            let results = run_paths(&searched, nodes.len(), path_of, threads, &run_options);

            // The least violating node of the level, over every rank.
            let first = stop_at_violation
                .then(|| results.iter().position(|(o, _)| !o.violations.is_empty()))
                .flatten();
            let mut wire = Wire::default();
            wire.option_order(first.map(order_of).as_deref());
            let least: Option<Vec<u32>> = self
                .ranks
                .all_gather(wire.0)
                .iter()
                .filter_map(|message| Read::new(message).option_order())
                .min();
            // What one process did before it stopped there: the nodes up to it.
            let cut = match &least {
                Some(v) => (0..results.len())
                    .find(|&at| order_of(at) > *v)
                    .unwrap_or(results.len()),
                None => results.len(),
            };
            let mut out = vec![Wire::default(); size];
            for (at, (outcome, reached)) in results.iter().enumerate().take(cut) {
                counted.add(outcome, || Mark {
                    level,
                    order: order_of(at),
                    path: path_of(at),
                });
                if !outcome.violations.is_empty() {
                    continue;
                }
                let Some((state, steps)) = reached else {
                    continue;
                };
                let wire = &mut out[owner(state.key, size)];
                wire.u128(state.key);
                wire.order(&order_of(at));
                wire.steps(&path_of(at));
                wire.steps(steps);
            }
            drop(results);

            // Take in what the level reached, in order.
            let mut received: Vec<(u128, Owned)> = Vec::new();
            for message in self
                .ranks
                .all_to_all(out.into_iter().map(|w| w.0).collect())
            {
                let mut read = Read::new(&message);
                while !read.done() {
                    let key = read.u128();
                    let order = read.order();
                    let path = read.steps();
                    let steps = read.steps();
                    received.push((key, Owned { order, path, steps }));
                }
            }
            received.sort_unstable_by(|a, b| a.1.order.cmp(&b.1.order));
            owned.clear();
            for (key, state) in received {
                if seen.insert(key) {
                    states += 1;
                    depth = depth.max(level as usize + 1);
                    owned.push(state);
                } else {
                    matched += 1;
                }
            }
            search.progress(Progress {
                executions: counted.executions,
                states,
                depth,
            });
            level += 1;
            if least.is_some() {
                break true;
            }

            // Go on while some rank has work, and no rank is over a limit.
            let mut wire = Wire::default();
            wire.u64(owned.iter().map(|s| s.steps.len() as u64).sum());
            wire.u64(states);
            wire.u64(super::resident_bytes());
            let mut work = 0;
            let (mut all_states, mut resident) = (0, 0);
            for message in self.ranks.all_gather(wire.0) {
                let mut read = Read::new(&message);
                work += read.u64();
                all_states += read.u64();
                resident = read.u64().max(resident);
            }
            if work == 0 {
                break false;
            }
            if self.bfs.max_states.is_some_and(|m| all_states >= m) {
                stopped = Some(format!("{all_states} states remembered (--max-states)"));
                break false;
            }
            if let Some(limit) = self.bfs.max_memory
                && resident > limit
            {
                stopped = Some(format!(
                    "{} MiB resident on a rank, over the limit of {} MiB (--max-memory)",
                    resident >> 20,
                    limit >> 20
                ));
                break false;
            }
        };

        // Everything counted, from every rank, to every rank.
        let mut wire = Wire::default();
        wire.u64(states);
        wire.u64(matched);
        wire.u64(depth as u64);
        wire.u64(counted.executions);
        wire.stats(&counted.stats);
        let finals: Vec<u64> = counted.final_states.iter().flatten().copied().collect();
        wire.u64(finals.len() as u64);
        finals.iter().for_each(|&f| wire.u64(f));
        wire.u64(counted.hazard_marks.len() as u64);
        counted.hazard_marks.iter().for_each(|m| wire.mark(m));
        for first in [&counted.refused, &counted.violated] {
            wire.u8(first.is_some().into());
            first.iter().for_each(|m| wire.mark(m));
        }

        let mut all = States {
            symmetric: self.bfs.symmetry,
            ..States::default()
        };
        let mut marks = Vec::new();
        let mut refusals = Vec::new();
        let mut violations = Vec::new();
        let tally = &mut search.tally;
        for message in self.ranks.all_gather(wire.0) {
            let mut read = Read::new(&message);
            let owned_states = read.u64();
            all.ranks.push(owned_states);
            all.states += owned_states;
            all.matched += read.u64();
            all.depth = all.depth.max(read.u64() as usize);
            tally.executions += read.u64();
            tally.stats.add(&read.stats());
            for _ in 0..read.u64() {
                let fingerprint = read.u64();
                if let Some(set) = &mut tally.final_states {
                    set.insert(fingerprint);
                }
            }
            for _ in 0..read.u64() {
                marks.push(read.mark());
            }
            if read.u8() == 1 {
                refusals.push(read.mark());
            }
            if read.u8() == 1 {
                violations.push(read.mark());
            }
        }
        // The hazards, in one process's order.
        marks.sort_by(|a, b| (a.level, &a.order).cmp(&(b.level, &b.order)));
        for mark in &marks {
            for hazard in rerun(&searched, &mark.path, &run_options).hazards {
                let known = tally.hazards.iter().any(|h| h.same_place(&hazard));
                if !known && tally.hazards.len() < HAZARDS_KEPT {
                    tally.hazards.push(hazard);
                }
            }
        }
        // The first execution with the worst verdict, in one process's order.
        let first = |marks: Vec<Mark>| {
            marks
                .into_iter()
                .min_by(|a, b| (a.level, &a.order).cmp(&(b.level, &b.order)))
        };
        if let Some(mark) = first(violations) {
            tally.verdict = Verdict::Violation;
            tally.found = Some(rerun(&searched, &mark.path, &run_options));
        } else if let Some(mark) = first(refusals) {
            tally.verdict = Verdict::Refused;
            tally.found = Some(rerun(&searched, &mark.path, &run_options));
        }
        // The levels end, unless a limit or a violation stops them, when no rank has a state
        // left to expand: then every reachable state was expanded.
        Coverage {
            complete: stopped.is_none() && !violated,
            stopped,
            states: Some(all),
        }
    }
}

/// The rank that owns the state of `key`.
fn owner(key: u128, size: usize) -> usize {
    (key % size as u128) as usize
}

/// The outcome of the execution along `path` (as the search ran it).
fn rerun(config: &Config, path: &[Step], options: &RunOptions) -> Outcome {
    let path = path.to_vec();
    let mut ran = run_paths(config, 1, |_| path.clone(), 1, options);
    ran.pop().expect("one run").0
}
