//! The search: which executions of a scenario to run, and what they found.
//!
//! An execution is a scenario plus a decision at every choice point. Exploration is stateless
//! (as in loom): the explorer replays a prefix of decisions and lets the execution run on,
//! recording the choice points it meets, then backtracks to the deepest decision with an
//! alternative left.
//!
//! Interrupts and NMIs are not decisions: the machine *probes* them at every arrival point
//! where one can arrive (see [`kmap_sim::RunOptions::probe`]), because a handler that runs clean
//! provably leaves its CPU as it found it. A handler that leaves a trace is undone and becomes
//! a decision there: a *lasting* handler, run as a real event whose effects persist. So the
//! search branches on preemptions, switches of the executing CPU and lasting handlers, within
//! the scenario's bounds; the bounds on interrupts and NMIs are nesting depths of probes.
//!
//! The depth-first search deepens by the number of injected events (0, 1, 2, … up to the
//! bounds), so the first violation found has as few injected events as any. `--shard I/N`
//! partitions the executions by their first branching decision.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

use kmap_sim::{
    Choice, ChoicePoint, Chooser, Config, Hazard, Outcome, ProbeMemo, RunOptions, Schedule, Stats,
    Verdict,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// How to choose the executions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Every execution within the bounds, fewest injected events first.
    Exhaustive,
    /// `executions` executions with decisions drawn from `seed` (interrupts included).
    Random {
        /// The seed.
        seed: u64,
        /// How many.
        executions: u64,
    },
    /// Probabilistic concurrency testing: each execution takes `depth` branching events at
    /// random choice points (drawn from `seed`), interrupts probed everywhere.
    Pct {
        /// The seed.
        seed: u64,
        /// How many executions.
        executions: u64,
        /// Events per execution.
        depth: u32,
    },
}

/// One part of a search split across machines: this is part `index` of `count` (from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This part.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

impl Shard {
    /// The whole search.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether the executions whose first branching decision is `(arrival, choice)` belong here.
    fn owns(self, arrival: u64, choice: Choice) -> bool {
        let mut hasher = DefaultHasher::new();
        (arrival, choice).hash(&mut hasher);
        hasher.finish() % self.count as u64 == self.index as u64
    }
}

/// A violation (or refusal) with what replays it.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// The decisions that replay it.
    pub schedule: Schedule,
    /// The replayed execution, with its trace.
    pub outcome: Outcome,
}

impl Counterexample {
    /// Injected events (interrupts, NMIs, preemptions, CPU switches).
    pub fn events(&self) -> usize {
        self.schedule.0.iter().filter(|(_, c)| c.is_event()).count()
    }
}

/// What a search found.
#[derive(Clone, Debug)]
pub struct Exploration {
    /// The verdict over every execution run.
    pub verdict: Verdict,
    /// Executions run (for a shard: the executions it owns).
    pub executions: u64,
    /// Branches not explored because they were provably equivalent to explored ones.
    pub pruned: u64,
    /// Everything the executions did, added up.
    pub stats: Stats,
    /// How long it took.
    pub elapsed: Duration,
    /// The first violation found, else the first refusal, replayed with a trace.
    pub counterexample: Option<Counterexample>,
    /// Whether the search covered every execution within the bounds (exhaustive, not stopped).
    pub complete: bool,
    /// The hazards the executions survived or that led to the violation (each rule, point and
    /// context once; at most [`HAZARDS_KEPT`]).
    pub hazards: Vec<Hazard>,
    /// The fingerprints of the final states of the executions counted, when asked for
    /// ([`Search::fingerprints`]).
    pub final_states: BTreeSet<u64>,
}

/// How many distinct hazards an exploration keeps.
pub const HAZARDS_KEPT: usize = 64;

/// Options for a search.
#[derive(Clone, Copy, Debug)]
pub struct Search {
    /// How to choose executions.
    pub strategy: Strategy,
    /// Which part of the search this is.
    pub shard: Shard,
    /// Stop at the first violation (the counterexample is then a shortest one).
    pub stop_at_violation: bool,
    /// Offer no event at arrival points provably equivalent to the one before them (see
    /// [`kmap_sim::RunOptions::prune`]).
    pub prune: bool,
    /// Collect the fingerprint of every final state ([`Exploration::final_states`]).
    pub fingerprints: bool,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            strategy: Strategy::Exhaustive,
            shard: Shard::WHOLE,
            stop_at_violation: true,
            prune: true,
            fingerprints: false,
        }
    }
}

/// Replays `prefix` decision by decision, then continues.
struct Prefix {
    prefix: Vec<Choice>,
    next: usize,
}

impl Chooser for Prefix {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> usize {
        let Some(&choice) = self.prefix.get(self.next) else {
            return 0;
        };
        self.next += 1;
        point
            .options
            .iter()
            .position(|&c| c == choice)
            .expect("a deterministic replay meets the same options")
    }
}

/// One choice point on the current path of the depth-first search.
struct Node {
    arrival: u64,
    options: Vec<Choice>,
    chosen: usize,
}

struct Tally {
    executions: u64,
    stats: Stats,
    verdict: Verdict,
    found: Option<Outcome>,
    hazards: Vec<Hazard>,
    fingerprints: Option<BTreeSet<u64>>,
}

impl Tally {
    fn new(search: &Search) -> Tally {
        Tally {
            executions: 0,
            stats: Stats::default(),
            verdict: Verdict::Pass,
            found: None,
            hazards: Vec::new(),
            fingerprints: search.fingerprints.then(BTreeSet::new),
        }
    }

    fn add(&mut self, outcome: Outcome, counted: bool) {
        if counted {
            self.executions += 1;
            self.stats.add(&outcome.stats);
            if let Some(set) = &mut self.fingerprints {
                set.insert(outcome.final_state);
            }
            for hazard in &outcome.hazards {
                let known = self.hazards.iter().any(|h| h.same_place(hazard));
                if !known && self.hazards.len() < HAZARDS_KEPT {
                    self.hazards.push(hazard.clone());
                }
            }
        }
        let verdict = outcome.verdict();
        let worse = matches!(
            (self.verdict, verdict),
            (Verdict::Pass, Verdict::Refused | Verdict::Violation)
                | (Verdict::Refused, Verdict::Violation)
        );
        if worse && counted {
            self.verdict = verdict;
            self.found = Some(outcome);
        }
    }
}

/// Explore `config` as `search` says; `progress` is called after every execution with the
/// number run so far.
pub fn explore(config: &Config, search: Search, mut progress: impl FnMut(u64)) -> Exploration {
    let start = Instant::now();
    let mut tally = Tally::new(&search);
    let complete = match search.strategy {
        Strategy::Exhaustive => exhaustive(config, search, &mut tally, &mut progress),
        Strategy::Random { seed, executions } => {
            for n in 0..executions {
                let chooser = kmap_sim::RandomChooser::new(
                    seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    kmap_sim::Rates::default(),
                );
                tally.add(run(config, chooser, RunOptions::default()), true);
                progress(tally.executions);
                if search.stop_at_violation && tally.verdict == Verdict::Violation {
                    break;
                }
            }
            false
        }
        Strategy::Pct {
            seed,
            executions,
            depth,
        } => {
            let memo = Rc::new(RefCell::new(ProbeMemo::default()));
            let nesting = handler_depth(config);
            let base = run(
                config,
                kmap_sim::NoInjection,
                probing(&memo, nesting, search.prune),
            );
            let points = base.stats.choice_points.max(1);
            tally.add(base, true);
            for n in 0..executions {
                let mut rng = SmallRng::seed_from_u64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let change_points = (0..depth).map(|_| rng.random_range(0..points)).collect();
                let chooser = Pct { change_points, rng };
                tally.add(
                    run(config, chooser, probing(&memo, nesting, search.prune)),
                    true,
                );
                progress(tally.executions);
                if search.stop_at_violation && tally.verdict == Verdict::Violation {
                    break;
                }
            }
            false
        }
    };
    let counterexample = tally
        .found
        .take()
        .map(|outcome| shortest(config, outcome.schedule));
    Exploration {
        verdict: tally.verdict,
        executions: tally.executions,
        pruned: tally.stats.pruned,
        stats: tally.stats,
        elapsed: start.elapsed(),
        counterexample,
        complete: complete && !(search.stop_at_violation && tally.verdict == Verdict::Violation),
        hazards: tally.hazards,
        final_states: tally.fingerprints.unwrap_or_default(),
    }
}

/// Replay `schedule` on `config` with a trace.
pub fn counterexample(config: &Config, schedule: Schedule) -> Counterexample {
    let outcome = replay(config, &schedule);
    Counterexample { schedule, outcome }
}

/// The counterexample for `schedule`, with trailing events dropped as long as the verdict and
/// the kind of violation stay the same (dropping the last event never renumbers the others). A
/// probe can find a violation inside a nested probe, for example an NMI inside an interrupt,
/// when the interrupt alone already leads to it.
pub fn shortest(config: &Config, schedule: Schedule) -> Counterexample {
    let kind = |ce: &Counterexample| ce.outcome.violations.first().map(|v| v.kind);
    let mut best = counterexample(config, schedule);
    while let Some((_, rest)) = best.schedule.0.split_last() {
        let shorter = counterexample(config, Schedule(rest.to_vec()));
        if shorter.outcome.verdict() != best.outcome.verdict() || kind(&shorter) != kind(&best) {
            break;
        }
        best = shorter;
    }
    best
}

/// Run `schedule` on `config` exactly, with a trace. Bounds do not apply to a replay: the
/// schedule says what happens.
pub fn replay(config: &Config, schedule: &Schedule) -> Outcome {
    let mut unbounded = config.clone();
    unbounded.bounds = kmap_sim::Bounds::default();
    run(
        &unbounded,
        kmap_sim::Replay::new(schedule.clone()),
        RunOptions {
            trace: true,
            pick_any_next: schedule
                .0
                .iter()
                .any(|(_, c)| matches!(c, Choice::PreemptTo(_))),
            ..RunOptions::default()
        },
    )
}

fn run(config: &Config, chooser: impl Chooser + 'static, options: RunOptions) -> Outcome {
    kmap_sim::run_with(config, chooser, options).expect("scenarios are validated when loaded")
}

fn probing(memo: &Rc<RefCell<ProbeMemo>>, depth: u32, prune: bool) -> RunOptions {
    RunOptions {
        trace: false,
        record_choices: true,
        prune,
        probe: Some(memo.clone()),
        probe_depth: depth,
        ..RunOptions::default()
    }
}

/// The deepest nesting of handlers the bounds allow (nothing nests in a handler of its own
/// kind, so an NMI inside an interrupt at most).
fn handler_depth(config: &Config) -> u32 {
    let b = &config.bounds;
    let irqs = if config.program.irq.is_empty() {
        0
    } else {
        b.irq_depth.unwrap_or(1).min(1)
    };
    let nmis = if config.program.nmi.is_empty() {
        0
    } else {
        b.nmi_depth.unwrap_or(1).min(1)
    };
    irqs + nmis
}

/// The depth-first search, deepening by the number of branching events (preemptions, CPU
/// switches, lasting handlers), with probes as deep as the bounds allow. Returns whether it
/// covered every execution within the bounds.
///
/// Level `b` runs the executions with exactly `b` branching events. A violation that a
/// shallower probe finds, a full-depth probe finds too (the same handler runs the same way; the
/// handlers nested in it are extra and clean ones change nothing), so when level `b` is the first
/// with a violation, no counterexample has fewer branching events. Counting probe nesting as
/// events too, a shorter one may still have shallower probes at `b` or more branching events
/// with shallower probes: those levels are searched next ([`shorten`]), so the first
/// counterexample reported has as few injected events as any. The search ends at the first level
/// where no execution could take one more event.
fn exhaustive(
    config: &Config,
    search: Search,
    tally: &mut Tally,
    progress: &mut impl FnMut(u64),
) -> bool {
    let memo = Rc::new(RefCell::new(ProbeMemo::default()));
    let b = &config.bounds;
    let most_branches = [
        b.preemptions,
        b.cpu_switches.filter(|_| config.machine.cpus > 1),
        b.lasting_handlers.filter(|_| handler_depth(config) > 0),
    ]
    .iter()
    .map(|bound| bound.unwrap_or(0))
    .sum::<u32>();
    let most_depth = handler_depth(config);
    for budget in 0..=most_branches {
        let level = search_level(
            config, search, budget, most_depth, true, &memo, tally, progress,
        );
        if level.stopped {
            shorten(
                config,
                search,
                budget,
                most_branches,
                most_depth,
                &memo,
                tally,
            );
            return false;
        }
        if !level.more_possible {
            break;
        }
    }
    true
}

/// After a violation at `budget` branching events and full probe depth: look for one with
/// fewer injected events in all (branching events plus probe nesting), with shallower probes.
fn shorten(
    config: &Config,
    search: Search,
    budget: u32,
    most_branches: u32,
    most_depth: u32,
    memo: &Rc<RefCell<ProbeMemo>>,
    tally: &mut Tally,
) {
    let events = |tally: &Tally| {
        tally.found.as_ref().map_or(0, |o| {
            o.schedule.0.iter().filter(|(_, c)| c.is_event()).count() as u32
        })
    };
    let best = events(tally);
    for total in budget..best {
        for depth in 0..most_depth.min(total - budget + 1) {
            let branches = total - depth;
            if branches > most_branches {
                continue;
            }
            let mut scratch = Tally::new(&search);
            search_level(
                config,
                search,
                branches,
                depth,
                false,
                memo,
                &mut scratch,
                &mut |_| {},
            );
            if scratch.found.is_some() && events(&scratch) < best {
                tally.found = scratch.found;
                return;
            }
        }
    }
}

/// What one level of the search found.
struct Level {
    /// It stopped at a violation.
    stopped: bool,
    /// Some execution could have taken one more event than the level allows.
    more_possible: bool,
}

/// Every execution with exactly `budget` branching events (and probes `depth` deep).
#[allow(clippy::too_many_arguments)]
fn search_level(
    config: &Config,
    search: Search,
    budget: u32,
    depth: u32,
    full: bool,
    memo: &Rc<RefCell<ProbeMemo>>,
    tally: &mut Tally,
    progress: &mut impl FnMut(u64),
) -> Level {
    let mut path: Vec<Node> = Vec::new();
    let mut more_possible = false;
    loop {
        let prefix: Vec<Choice> = path.iter().map(|n| n.options[n.chosen]).collect();
        let events_in_prefix = prefix.iter().filter(|c| c.is_event()).count() as u32;
        let outcome = run(
            config,
            Prefix { prefix, next: 0 },
            probing(memo, depth, search.prune),
        );
        let new_points: Vec<_> = outcome.choices[path.len()..].to_vec();
        // An execution with fewer events than the level belongs to a lower level; one belongs
        // to the shard of its first decision (with none, to shard 0).
        let owned = match owner(&path) {
            Some((arrival, choice)) => search.shard.owns(arrival, choice),
            None => search.shard.index == 0,
        };
        let mine = owned && events_in_prefix == budget;
        tally.add(outcome, mine && full);
        progress(tally.executions);
        if search.stop_at_violation && tally.verdict == Verdict::Violation {
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
            path.push(Node {
                arrival: record.arrival,
                options,
                chosen: 0,
            });
        }
        if !backtrack(&mut path, search.shard) {
            return Level {
                stopped: false,
                more_possible,
            };
        }
    }
}

/// The first branching decision of a path: it decides which shard owns the executions below.
fn owner(path: &[Node]) -> Option<(u64, Choice)> {
    path.iter()
        .find(|n| n.chosen != 0)
        .map(|n| (n.arrival, n.options[n.chosen]))
}

/// Move to the next path in depth-first order; `false` when there is none. Paths whose first
/// decision belongs to another shard are skipped whole.
fn backtrack(path: &mut Vec<Node>, shard: Shard) -> bool {
    while let Some(last) = path.last_mut() {
        if last.chosen + 1 < last.options.len() {
            last.chosen += 1;
            let first_decision = path[..path.len() - 1].iter().all(|n| n.chosen == 0);
            let node = path.last().expect("non-empty");
            if first_decision && !shard.owns(node.arrival, node.options[node.chosen]) {
                continue;
            }
            return true;
        }
        path.pop();
    }
    false
}

/// PCT's chooser: a random branching event at each of its change points.
struct Pct {
    change_points: Vec<u64>,
    rng: SmallRng,
}

impl Chooser for Pct {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> usize {
        if point.options.len() > 1 && self.change_points.contains(&point.index) {
            self.rng.random_range(1..point.options.len())
        } else {
            0
        }
    }
}
