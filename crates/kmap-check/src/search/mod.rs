//! The search: which executions of a scenario to run, and what they found.
//!
//! Every strategy is a module of its own behind one trait, [`Strategy`], which owns the loop:
//! it decides which executions to run, runs them through [`Search::run`], and adds each to the
//! one [`Tally`] of results. [`explore`] runs a strategy and turns the tally into an
//! [`Exploration`], with its counterexample replayed and shortened.
//!
//! - [`dfs`]: every execution within the bounds, stateless (as in loom), deepening by the
//!   number of injected events (CHESS-style), so that the first violation is a shortest one;
//! - [`bfs`]: every state, with no bound on preemption, made finite by remembering the states
//!   already seen (`kmap prove`);
//! - [`random`]: executions with decisions drawn from a seed;
//! - [`pct`]: probabilistic concurrency testing;
//! - [`mod@replay`]: one execution, from its schedule.
//!
//! Interrupts and NMIs are not decisions: the machine *probes* them at every arrival point
//! where one can arrive (see [`kmap_sim::RunOptions::probe`]), because a handler that runs clean
//! provably leaves its CPU as it found it. A handler that leaves a trace is undone and becomes
//! a decision there: a *lasting* handler, run as a real event whose effects persist.

pub mod bfs;
pub mod dfs;
pub mod pct;
pub mod random;
pub mod replay;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmap_sim::{Chooser, Config, Hazard, Outcome, ProbeMemo, RunOptions, Schedule, Stats, Verdict};
use rustc_hash::FxHashSet;

pub use self::bfs::{Bfs, Partitioned, Ranks, ThreadRanks};
pub use self::dfs::Dfs;
pub use self::pct::Pct;
pub use self::random::Random;
pub use self::replay::{counterexample, replay, shortest};

/// One part of a search split across machines: part `index` of `count` (from 0). Each
/// strategy that can be split says what falls to a part: its [`owns`](Self::owns) of a key.
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

    /// Whether what has this key belongs to this part.
    pub fn owns(self, key: u128) -> bool {
        (key % self.count as u128) as u32 == self.index
    }
}

/// Why text is not a shard.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `I/N` with two numbers.
    #[error("`{text}` is not I/N (part I, from 0, of N)")]
    Syntax {
        /// The text.
        text: String,
    },
    /// The part is not below the count.
    #[error("shard {index}/{count}: I must be below N")]
    Range {
        /// The part.
        index: u32,
        /// The count.
        count: u32,
    },
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    /// `I/N`: part I (from 0) of N.
    fn from_str(text: &str) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax { text: text.into() };
        let (index, count) = text.split_once('/').ok_or_else(syntax)?;
        let index: u32 = index.parse().map_err(|_| syntax())?;
        let count: u32 = count.parse().map_err(|_| syntax())?;
        if count == 0 || index >= count {
            return Err(ShardError::Range { index, count });
        }
        Ok(Shard { index, count })
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
        self.schedule.events()
    }
}

/// How many distinct hazards a search keeps.
pub const HAZARDS_KEPT: usize = 64;

/// The results of a search's executions, added up as they come.
#[derive(Debug)]
pub struct Tally {
    /// Executions counted.
    pub executions: u64,
    /// Everything they did.
    pub stats: Stats,
    /// The worst verdict so far.
    pub verdict: Verdict,
    /// The first execution with that verdict.
    pub found: Option<Outcome>,
    /// The hazards met (each rule, point and context once; at most [`HAZARDS_KEPT`]).
    pub hazards: Vec<Hazard>,
    /// The fingerprints of the final states of the executions that ended, when collected.
    pub final_states: Option<BTreeSet<u64>>,
    /// Whether the search ends at the first violation.
    pub stop_at_violation: bool,
}

impl Tally {
    /// Nothing counted yet.
    pub fn new(options: &Options) -> Tally {
        Tally {
            executions: 0,
            stats: Stats::default(),
            verdict: Verdict::Pass,
            found: None,
            hazards: Vec::new(),
            final_states: options.fingerprints.then(BTreeSet::new),
            stop_at_violation: options.stop_at_violation,
        }
    }

    /// Count an execution (its statistics, final state, hazards and verdict).
    pub fn add(&mut self, outcome: Outcome) {
        self.executions += 1;
        self.stats.add(&outcome.stats);
        if let Some(set) = &mut self.final_states
            && !outcome.stopped
        {
            set.insert(outcome.final_state);
        }
        for hazard in &outcome.hazards {
            let known = self.hazards.iter().any(|h| h.same_place(hazard));
            if !known && self.hazards.len() < HAZARDS_KEPT {
                self.hazards.push(hazard.clone());
            }
        }
        let verdict = outcome.verdict();
        let worse = matches!(
            (self.verdict, verdict),
            (Verdict::Pass, Verdict::Refused | Verdict::Violation)
                | (Verdict::Refused, Verdict::Violation)
        );
        if worse {
            self.verdict = verdict;
            self.found = Some(outcome);
        }
    }

    /// Whether the search should end now (a violation, and it stops at the first).
    pub fn done(&self) -> bool {
        self.stop_at_violation && self.verdict == Verdict::Violation
    }
}

/// What a stateful search counted besides executions.
#[derive(Clone, Debug, Default)]
pub struct States {
    /// Distinct states remembered.
    pub states: u64,
    /// Transitions that led to a state seen before.
    pub matched: u64,
    /// The most choice points from the start to a state.
    pub depth: usize,
    /// The quiescent states, when collected ([`Bfs::collect_quiescent`]).
    pub quiescent: FxHashSet<u128>,
    /// The canonical keys of the states remembered, when collected ([`Bfs::collect_orbits`]).
    pub orbits: FxHashSet<u128>,
    /// States were remembered by their canonical form under task and CPU symmetry
    /// ([`Bfs::symmetry`]).
    pub symmetric: bool,
    /// The states each rank owned, by rank, in a partitioned search ([`Partitioned`]); empty
    /// otherwise.
    pub ranks: Vec<u64>,
}

impl States {
    /// How the states were remembered, in words.
    pub fn hash_scheme(&self) -> &'static str {
        if self.symmetric {
            bfs::Bfs::SYMMETRIC_HASH_SCHEME
        } else {
            bfs::Bfs::HASH_SCHEME
        }
    }
}

/// What a search found.
#[derive(Clone, Debug)]
pub struct Exploration {
    /// The verdict over every execution run.
    pub verdict: Verdict,
    /// Executions run (for a shard: the executions it owns; for a stateful search: one per
    /// transition).
    pub executions: u64,
    /// Everything the executions did, added up.
    pub stats: Stats,
    /// How long it took.
    pub elapsed: Duration,
    /// The first violation found, else the first refusal, replayed with a trace.
    pub counterexample: Option<Counterexample>,
    /// Whether the search covered every execution within the bounds (or every state).
    pub complete: bool,
    /// Why it stopped before the end, if it stopped for a limit.
    pub stopped: Option<String>,
    /// The hazards the executions survived or that led to the violation (each rule, point and
    /// context once; at most [`HAZARDS_KEPT`]).
    pub hazards: Vec<Hazard>,
    /// The fingerprints of the final states of the executions that ended, when asked for
    /// ([`Options::fingerprints`]).
    pub final_states: BTreeSet<u64>,
    /// What a stateful search counted.
    pub states: Option<States>,
}

/// What a strategy returns: how much it covered.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// It ran every execution within the bounds (or explored every state).
    pub complete: bool,
    /// Why it stopped early, if for a limit.
    pub stopped: Option<String>,
    /// What a stateful search counted.
    pub states: Option<States>,
}

/// Options every strategy honours.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Stop at the first violation (the counterexample is then a shortest one).
    pub stop_at_violation: bool,
    /// Offer no event at arrival points provably equivalent to the one before them (see
    /// [`kmap_sim::RunOptions::prune`]).
    pub prune: bool,
    /// Collect the fingerprint of every final state ([`Exploration::final_states`]).
    pub fingerprints: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stop_at_violation: true,
            prune: true,
            fingerprints: false,
        }
    }
}

/// How far a search has come, for a progress line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Executions run.
    pub executions: u64,
    /// States remembered (a stateful search).
    pub states: u64,
    /// The deepest state (a stateful search).
    pub depth: usize,
}

/// A search in progress: what the strategy explores, the tally, and the progress line.
pub struct Search<'a> {
    /// The scenario.
    pub config: &'a Config,
    /// The options.
    pub options: Options,
    /// The results so far.
    pub tally: Tally,
    progress: &'a mut dyn FnMut(Progress),
}

impl Search<'_> {
    /// Run one execution (not counted: the strategy adds it to the tally if it is its own).
    pub fn run(&self, chooser: impl Chooser + 'static, options: RunOptions) -> Outcome {
        self.run_shared(Rc::new(RefCell::new(chooser)), options)
    }

    /// [`run`](Self::run), with a chooser the strategy keeps to read afterwards.
    pub fn run_shared(&self, chooser: Rc<RefCell<dyn Chooser>>, options: RunOptions) -> Outcome {
        kmap_sim::run(self.config, chooser, options).expect("scenarios are validated when loaded")
    }

    /// Count an execution, tell the progress line, and say whether the search is done.
    pub fn count(&mut self, outcome: Outcome) -> bool {
        self.tally.add(outcome);
        self.progress(Progress {
            executions: self.tally.executions,
            ..Progress::default()
        });
        self.tally.done()
    }

    /// Tell the progress line.
    pub fn progress(&mut self, progress: Progress) {
        (self.progress)(progress);
    }

    /// Run options that probe handlers as deep as `depth`, sharing `memo`.
    pub fn probing(&self, memo: &Arc<ProbeMemo>, depth: u32) -> RunOptions {
        RunOptions {
            record_choices: true,
            prune: self.options.prune,
            probe: Some(memo.clone()),
            probe_depth: depth,
            ..RunOptions::default()
        }
    }
}

/// A way to choose the executions of a search.
pub trait Strategy {
    /// Run the executions this strategy chooses, adding each to `search.tally`, until it has
    /// run them all or the tally is [`done`](Tally::done).
    fn explore(&mut self, search: &mut Search<'_>) -> Coverage;
}

/// Explore `config` with `strategy`; `progress` is told after every execution.
pub fn explore(
    config: &Config,
    strategy: &mut dyn Strategy,
    options: Options,
    mut progress: impl FnMut(Progress),
) -> Exploration {
    let start = Instant::now();
    let mut search = Search {
        config,
        options,
        tally: Tally::new(&options),
        progress: &mut progress,
    };
    let coverage = strategy.explore(&mut search);
    let tally = search.tally;
    let counterexample = tally
        .found
        .map(|outcome| shortest(config, outcome.schedule));
    Exploration {
        verdict: tally.verdict,
        executions: tally.executions,
        stats: tally.stats,
        elapsed: start.elapsed(),
        counterexample,
        complete: coverage.complete
            && !(options.stop_at_violation && tally.verdict == Verdict::Violation),
        stopped: coverage.stopped,
        hazards: tally.hazards,
        final_states: tally.final_states.unwrap_or_default(),
        states: coverage.states,
    }
}

/// Every execution of `config` within its bounds, fewest injected events first ([`Dfs`]), to
/// the first violation.
pub fn check(config: &Config) -> Exploration {
    explore(config, &mut Dfs::default(), Options::default(), |_| {})
}

/// Every state of `config` ([`Bfs`]), to the first violation.
pub fn prove(config: &Config) -> Exploration {
    explore(config, &mut Bfs::default(), Options::default(), |_| {})
}

/// The deepest nesting of handlers the bounds allow (nothing nests in a handler of its own
/// kind, so an NMI inside an interrupt at most).
pub fn handler_depth(config: &Config) -> u32 {
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
