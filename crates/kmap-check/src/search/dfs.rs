//! The stateless depth-first search (`kmap check`'s default): every execution within the
//! bounds, fewest injected events first.
//!
//! An execution is a scenario plus a decision at every choice point. As in loom, the search
//! replays a prefix of decisions (`Path`) and lets the execution run on, recording the choice
//! points it meets, then backtracks to the deepest decision with an alternative left. It
//! branches on preemptions, switches of the executing CPU and lasting handlers, within the
//! scenario's bounds; the bounds on interrupts and NMIs are nesting depths of probes.
//!
//! The search deepens by the number of injected events (0, 1, 2, … up to the bounds), so the
//! first violation found has as few injected events as any. A [`Shard`] owns the executions
//! whose first branching decision hashes to it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use kmap_sim::{Choice, ChoicePoint, Chooser, Config, Decision, ProbeMemo};

use super::{Coverage, Progress, Search, Shard, Strategy, Tally, handler_depth};

/// Every execution within the bounds, fewest injected events first.
#[derive(Clone, Copy, Debug)]
pub struct Dfs {
    /// Which part of the search this is.
    pub shard: Shard,
}

impl Default for Dfs {
    fn default() -> Self {
        Dfs {
            shard: Shard::WHOLE,
        }
    }
}

/// One choice point on the current path: what was possible there and which option the path
/// takes.
struct Branch {
    arrival: u64,
    options: Vec<Choice>,
    chosen: usize,
}

/// The decisions of the current execution, from the start.
type Path = Vec<Branch>;

/// Replays a path's decisions one by one, then continues.
struct Prefix {
    prefix: Vec<Choice>,
    next: usize,
}

impl Chooser for Prefix {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision {
        let Some(&choice) = self.prefix.get(self.next) else {
            return Decision::Take(0);
        };
        self.next += 1;
        Decision::Take(
            point
                .options
                .iter()
                .position(|&c| c == choice)
                .expect("a deterministic replay meets the same options"),
        )
    }
}

/// What one level of the search found.
struct Level {
    /// It stopped at a violation.
    stopped: bool,
    /// Some execution could have taken one more event than the level allows.
    more_possible: bool,
}

impl Strategy for Dfs {
    /// The depth-first search, deepening by the number of branching events (preemptions, CPU
    /// switches, lasting handlers), with probes as deep as the bounds allow.
    ///
    /// Level `b` runs the executions with exactly `b` branching events. A violation that a
    /// shallower probe finds, a full-depth probe finds too (the same handler runs the same way;
    /// the handlers nested in it are extra and clean ones change nothing), so when level `b` is
    /// the first with a violation, no counterexample has fewer branching events. Counting probe
    /// nesting as events too, a shorter one may still have shallower probes at `b` or more
    /// branching events with shallower probes: those levels are searched next
    /// (`Dfs::shorten`), so the first counterexample reported has as few injected
    /// events as any. The search ends at the first level where no execution could take one
    /// more event.
    fn explore(&mut self, search: &mut Search<'_>) -> Coverage {
        let config = search.config;
        let memo = Arc::new(ProbeMemo::default());
        let most_branches = most_branches(config);
        let most_depth = handler_depth(config);
        for budget in 0..=most_branches {
            let mut tally = std::mem::replace(&mut search.tally, Tally::new(&search.options));
            let level = self.level(search, &mut tally, budget, most_depth, true, &memo);
            search.tally = tally;
            if level.stopped {
                self.shorten(search, budget, most_branches, most_depth, &memo);
                return Coverage::default();
            }
            if !level.more_possible {
                break;
            }
        }
        Coverage {
            complete: true,
            ..Coverage::default()
        }
    }
}

/// The most branching events an execution may take.
fn most_branches(config: &Config) -> u32 {
    let b = &config.bounds;
    [
        b.preemptions,
        b.cpu_switches.filter(|_| config.machine.cpus > 1),
        b.lasting_handlers.filter(|_| handler_depth(config) > 0),
    ]
    .iter()
    .map(|bound| bound.unwrap_or(0))
    .sum()
}

impl Dfs {
    /// After a violation at `budget` branching events and full probe depth: look for one with
    /// fewer injected events in all (branching events plus probe nesting), with shallower probes.
    fn shorten(
        &self,
        search: &mut Search<'_>,
        budget: u32,
        most_branches: u32,
        most_depth: u32,
        memo: &Arc<ProbeMemo>,
    ) {
        let events = |tally: &Tally| {
            tally
                .found
                .as_ref()
                .map_or(0, |o| o.schedule.events() as u32)
        };
        let best = events(&search.tally);
        for total in budget..best {
            for depth in 0..most_depth.min(total - budget + 1) {
                let branches = total - depth;
                if branches > most_branches {
                    continue;
                }
                let mut scratch = Tally::new(&search.options);
                self.level(search, &mut scratch, branches, depth, false, memo);
                if scratch.found.is_some() && events(&scratch) < best {
                    search.tally.found = scratch.found;
                    return;
                }
            }
        }
    }

    /// Every execution with exactly `budget` branching events (and probes `depth` deep), added
    /// to `tally`; with `full` (not a shortening pass), reported as progress.
    fn level(
        &self,
        search: &mut Search<'_>,
        tally: &mut Tally,
        budget: u32,
        depth: u32,
        full: bool,
        memo: &Arc<ProbeMemo>,
    ) -> Level {
        let mut path: Path = Vec::new();
        let mut more_possible = false;
        loop {
            let prefix: Vec<Choice> = path.iter().map(|b| b.options[b.chosen]).collect();
            let events_in_prefix = prefix.iter().filter(|c| c.is_event()).count() as u32;
            let outcome = search.run(Prefix { prefix, next: 0 }, search.probing(memo, depth));
            let new_points: Vec<_> = outcome.choices[path.len()..].to_vec();
            // An execution with fewer events than the level belongs to a lower level; one belongs
            // to the shard of its first decision (with none, to shard 0).
            let owned = match owner(&path) {
                Some(key) => self.shard.owns(key),
                None => self.shard.index == 0,
            };
            if owned && events_in_prefix == budget {
                tally.add(outcome);
            }
            if full {
                search.progress(Progress {
                    executions: tally.executions,
                    ..Progress::default()
                });
            }
            if tally.done() {
                return Level {
                    stopped: true,
                    more_possible,
                };
            }
            let allow = events_in_prefix < budget;
            for record in new_points {
                let options = if allow {
                    record.options
                } else {
                    more_possible |= record.options.len() > 1;
                    vec![Choice::Continue]
                };
                path.push(Branch {
                    arrival: record.arrival,
                    options,
                    chosen: 0,
                });
            }
            if !self.backtrack(&mut path) {
                return Level {
                    stopped: false,
                    more_possible,
                };
            }
        }
    }

    /// Move to the next path in depth-first order; `false` when there is none. Paths whose
    /// first decision belongs to another shard are skipped whole.
    fn backtrack(&self, path: &mut Path) -> bool {
        while let Some(last) = path.last_mut() {
            if last.chosen + 1 < last.options.len() {
                last.chosen += 1;
                let first_decision = path[..path.len() - 1].iter().all(|b| b.chosen == 0);
                if first_decision && !self.shard.owns(key(path.last().expect("non-empty"))) {
                    continue;
                }
                return true;
            }
            path.pop();
        }
        false
    }
}

/// The key of the first branching decision of a path, which decides which shard owns the
/// executions below it.
fn owner(path: &Path) -> Option<u128> {
    path.iter().find(|b| b.chosen != 0).map(key)
}

/// A branch's shard key: a hash of its arrival point and the choice taken there.
fn key(branch: &Branch) -> u128 {
    let mut hasher = DefaultHasher::new();
    (branch.arrival, branch.options[branch.chosen]).hash(&mut hasher);
    hasher.finish() as u128
}
