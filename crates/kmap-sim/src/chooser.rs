//! Every decision the machine takes comes from a [`Chooser`]: whether an interrupt, an NMI or a
//! preemption arrives at an arrival point, and which CPU executes next. The same choices always
//! give the same run, so a run is named by its choices ([`Schedule`]) and can be replayed.

use std::fmt;
use std::str::FromStr;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

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
    /// The running task is preempted: the scheduler switches to another task.
    Preempt,
    /// The running task is preempted and moved to this CPU's run queue (load balancing); only
    /// while it may migrate.
    Migrate(usize),
    /// Another CPU executes from where it is.
    Cpu(usize),
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Continue => f.write_str("continue"),
            Choice::Irq => f.write_str("irq"),
            Choice::Nmi => f.write_str("nmi"),
            Choice::Preempt => f.write_str("preempt"),
            Choice::Migrate(cpu) => write!(f, "migrate{cpu}"),
            Choice::Cpu(cpu) => write!(f, "cpu{cpu}"),
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
            _ => {
                let numbered = |prefix: &str| s.strip_prefix(prefix).and_then(|n| n.parse().ok());
                numbered("cpu")
                    .map(Choice::Cpu)
                    .or_else(|| numbered("migrate").map(Choice::Migrate))
                    .ok_or_else(|| {
                        format!(
                            "`{s}` is not a choice (continue, irq, nmi, preempt, migrateN, cpuN)"
                        )
                    })
            }
        }
    }
}

/// A decision to take. `options[0]` is always [`Choice::Continue`]; a point where nothing else
/// is possible is not a choice point at all (the machine continues without asking).
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
}

/// Takes the machine's decisions.
pub trait Chooser {
    /// The position in `point.options` of the choice to take.
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
        let mut roll: f64 = self.rng.random();
        for (i, option) in point.options.iter().enumerate().skip(1) {
            let rate = match option {
                Choice::Continue => 0.0,
                Choice::Irq => self.rates.irq,
                Choice::Nmi => self.rates.nmi,
                Choice::Preempt | Choice::Migrate(_) => self.rates.preempt,
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
            if entries.last().is_some_and(|&(last, _)| last > index) {
                return Err(format!("arrival point {index} is out of order"));
            }
            entries.push((index, choice.parse()?));
        }
        Ok(Schedule(entries))
    }
}

/// Replays a [`Schedule`]: takes its choice at each point it names, continues elsewhere.
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
            return 0;
        };
        if index != point.arrival {
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
