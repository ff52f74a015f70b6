//! Every decision the machine takes comes from a [`Chooser`]: whether an interrupt, an NMI or a
//! preemption arrives at an arrival point, and which CPU executes next. The same choices always
//! give the same run, so a run is named by its choices ([`Schedule`]) and can be replayed.

use std::fmt;
use std::str::FromStr;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::AnyOp;
use crate::trace::Label;

/// What may happen at an arrival point.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Choice {
    /// Nothing: the running code takes its next step.
    Continue,
    /// An interrupt arrives and its handler runs to completion, nested here.
    Irq,
    /// An NMI arrives and its handler runs to completion, nested here.
    Nmi,
    /// The running task is preempted: the scheduler switches to the next task of the run queue.
    Preempt,
    /// The running task is preempted, and the scheduler switches to this task of the run queue
    /// (a stateful search offers every runnable task, as a scheduler may pick any).
    PreemptTo(usize),
    /// The running task is preempted and moved to this CPU's run queue (load balancing); only
    /// while it may migrate.
    Migrate(usize),
    /// Another CPU executes from where it is.
    Cpu(usize),
    /// A task with a nondeterministic program takes this step (not an injected event: the
    /// program's own choice, asked after the events of its arrival point).
    Do(AnyOp),
}

impl Choice {
    /// Whether this is an injected event (an interrupt, an NMI, a preemption, a migration or a
    /// switch of the executing CPU), as opposed to continuing or a program's own step.
    pub fn is_event(self) -> bool {
        !matches!(self, Choice::Continue | Choice::Do(_))
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Continue => f.write_str("continue"),
            Choice::Irq => f.write_str("irq"),
            Choice::Nmi => f.write_str("nmi"),
            Choice::Preempt => f.write_str("preempt"),
            Choice::PreemptTo(task) => write!(f, "preempt-to{task}"),
            Choice::Migrate(cpu) => write!(f, "migrate{cpu}"),
            Choice::Cpu(cpu) => write!(f, "cpu{cpu}"),
            Choice::Do(op) => write!(f, "{op}"),
        }
    }
}

impl FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "continue" => Ok(Choice::Continue),
            "irq" => Ok(Choice::Irq),
            "nmi" => Ok(Choice::Nmi),
            "preempt" => Ok(Choice::Preempt),
            _ if AnyOp::ALL.iter().any(|op| op.to_string() == s) => Ok(Choice::Do(
                *AnyOp::ALL
                    .iter()
                    .find(|op| op.to_string() == s)
                    .expect("found"),
            )),
            _ => {
                let numbered = |prefix: &str| s.strip_prefix(prefix).and_then(|n| n.parse().ok());
                numbered("cpu")
                    .map(Choice::Cpu)
                    .or_else(|| numbered("migrate").map(Choice::Migrate))
                    .or_else(|| numbered("preempt-to").map(Choice::PreemptTo))
                    .or_else(|| numbered("release").map(|at| Choice::Do(AnyOp::Release(at))))
                    .ok_or_else(|| {
                        format!(
                            "`{s}` is not a choice (continue, irq, nmi, preempt, migrateN, cpuN, \
                             map, check, unmap, releaseN, yield)"
                        )
                    })
            }
        }
    }
}

/// A decision to take. At an arrival point `options[0]` is always [`Choice::Continue`]; when a
/// task with a nondeterministic program picks its next step, the options are the steps it may
/// take ([`Choice::Do`]). A point where only one thing is possible is not a choice point at all
/// (the machine goes on without asking).
#[derive(Debug)]
pub struct ChoicePoint<'a> {
    /// How many choice points came before this one in the run.
    pub index: u64,
    /// How many arrival points came before this one. After an injected event the machine asks
    /// again at the same arrival point (another event may follow at once), with the same
    /// `arrival` and a new `index`.
    pub arrival: u64,
    /// The executing CPU.
    pub cpu: usize,
    /// Where it is.
    pub label: Label,
    /// What may happen.
    pub options: &'a [Choice],
    /// The state of the whole system here, for a stateful search (see
    /// [`RunOptions::stateful`](crate::RunOptions::stateful)).
    pub state: Option<StateKey>,
}

/// The state of the whole system at a choice point, hashed (see [`ChoicePoint::state`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StateKey {
    /// The state, hashed to 128 bits.
    pub key: u128,
    /// Every CPU is between steps of its programs: no operation half done, no switch or
    /// handler in progress anywhere. A reduction that orders the CPUs' steps must reach every
    /// such state that the full interleaving reaches.
    pub quiescent: bool,
}

/// What [`Chooser::choose`] returns to end the execution right here (not a violation): a
/// stateful search stops each execution at the first new choice point.
pub const STOP: usize = usize::MAX;

/// Takes the machine's decisions.
pub trait Chooser {
    /// The position in `point.options` of the choice to take, or [`STOP`].
    fn choose(&mut self, point: &ChoicePoint<'_>) -> usize;
}

/// Always continues: the run without any injected event.
pub struct NoInjection;

impl Chooser for NoInjection {
    fn choose(&mut self, _: &ChoicePoint<'_>) -> usize {
        0
    }
}

/// How often a [`RandomChooser`] injects each event, as a probability per choice point.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// An interrupt.
    pub irq: f64,
    /// An NMI.
    pub nmi: f64,
    /// A preemption.
    pub preempt: f64,
    /// Another CPU runs.
    pub cpu: f64,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            irq: 0.04,
            nmi: 0.01,
            preempt: 0.05,
            cpu: 0.2,
        }
    }
}

/// Random choices from a seed.
pub struct RandomChooser {
    rng: SmallRng,
    rates: Rates,
}

impl RandomChooser {
    /// A chooser whose choices follow from `seed`.
    pub fn new(seed: u64, rates: Rates) -> Self {
        RandomChooser {
            rng: SmallRng::seed_from_u64(seed),
            rates,
        }
    }
}

impl Chooser for RandomChooser {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> usize {
        if point.options[0] != Choice::Continue {
            return self.rng.random_range(0..point.options.len());
        }
        let mut roll: f64 = self.rng.random();
        for (i, option) in point.options.iter().enumerate().skip(1) {
            let rate = match option {
                Choice::Continue | Choice::Do(_) => 0.0,
                Choice::Irq => self.rates.irq,
                Choice::Nmi => self.rates.nmi,
                Choice::Preempt | Choice::PreemptTo(_) | Choice::Migrate(_) => self.rates.preempt,
                Choice::Cpu(_) => self.rates.cpu / (point.options.len() as f64),
            };
            if roll < rate {
                return i;
            }
            roll -= rate;
        }
        0
    }
}

/// The non-trivial choices of a run: at arrival point number `arrival`, `choice` was taken (an
/// arrival may take several, one after another; every other point continued). It replays the
/// run exactly, whatever bounds or pruning the run that printed it used.
#[derive(Clone, PartialEq, Eq, Debug, Default, Hash)]
pub struct Schedule(pub Vec<(u64, Choice)>);

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, (index, choice)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{index}:{choice}")?;
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "-" || s.is_empty() {
            return Ok(Schedule::default());
        }
        let mut entries = Vec::new();
        for part in s.split(',') {
            let (index, choice) = part
                .split_once(':')
                .ok_or_else(|| format!("`{part}` is not ARRIVAL:CHOICE"))?;
            let index: u64 = index
                .parse()
                .map_err(|_| format!("`{index}` is not an arrival point number"))?;
            entries.push((index, choice.parse()?));
        }
        Ok(Schedule(entries))
    }
}

/// Replays a [`Schedule`]: takes its choice at each point it names, continues elsewhere, and
/// ends the execution at an endless program's first step past the schedule.
pub struct Replay {
    schedule: Schedule,
    next: usize,
    /// Choices of the schedule that were not possible where it named them.
    pub mismatches: Vec<(u64, Choice)>,
}

impl Replay {
    /// A chooser that replays `schedule`.
    pub fn new(schedule: Schedule) -> Self {
        Replay {
            schedule,
            next: 0,
            mismatches: Vec::new(),
        }
    }
}

impl Chooser for Replay {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> usize {
        let Some(&(index, choice)) = self.schedule.0.get(self.next) else {
            // Past the schedule, an endless program's next step ends the replay.
            return if point.options[0] == Choice::Continue {
                0
            } else {
                STOP
            };
        };
        // A program's own step and an injected event can share an arrival number: each is
        // taken only at a question of its kind.
        let step_question = point.options[0] != Choice::Continue;
        if index != point.arrival || step_question == choice.is_event() {
            return 0;
        }
        self.next += 1;
        match point.options.iter().position(|&c| c == choice) {
            Some(position) => position,
            None => {
                self.mismatches.push((index, choice));
                0
            }
        }
    }
}
