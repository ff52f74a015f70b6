//! The seam between the machine and a search: every decision the machine takes comes from a
//! [`Chooser`]: whether an interrupt, an NMI or a preemption arrives at an arrival point, which
//! CPU executes next, which step an endless program takes. The same decisions always give the
//! same run, so a run is named by its decisions ([`Schedule`]) and can be replayed.
//!
//! The choosers themselves (depth-first, random, PCT, breadth-first, replay) are the explorer's
//! search strategies, one module each in `kmap-check`.

use std::fmt;
use std::str::FromStr;

use kmap::CpuId;

use crate::program::AnyOp;
use crate::trace::Label;

/// A task of a run, by its number: the idle tasks first (one per CPU), then the program's
/// tasks in order, then forked children.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub struct TaskId(pub usize);

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
    PreemptTo(TaskId),
    /// The running task is preempted and moved to this CPU's run queue (load balancing); only
    /// while it may migrate.
    Migrate(CpuId),
    /// Another CPU executes from where it is.
    Cpu(CpuId),
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

/// The choices that take no number, by name.
const NAMED: [(&str, Choice); 14] = [
    ("continue", Choice::Continue),
    ("irq", Choice::Irq),
    ("nmi", Choice::Nmi),
    ("preempt", Choice::Preempt),
    ("map", Choice::Do(AnyOp::Map)),
    ("map-atomic", Choice::Do(AnyOp::MapAtomic)),
    ("map-lowmem", Choice::Do(AnyOp::MapLowmem)),
    ("check", Choice::Do(AnyOp::Check)),
    ("unmap", Choice::Do(AnyOp::Unmap)),
    ("yield", Choice::Do(AnyOp::Yield)),
    ("write", Choice::Do(AnyOp::Write)),
    ("irq-off", Choice::Do(AnyOp::IrqOff)),
    ("irq-on", Choice::Do(AnyOp::IrqOn)),
    ("sleep", Choice::Do(AnyOp::Sleep)),
];

/// A choice that takes a number, from its number.
type Numbered = fn(usize) -> Choice;

/// The choices that take a number, by the name before it.
const NUMBERED: [(&str, Numbered); 4] = [
    ("cpu", |n| Choice::Cpu(CpuId(n as u32))),
    ("migrate", |n| Choice::Migrate(CpuId(n as u32))),
    ("preempt-to", |n| Choice::PreemptTo(TaskId(n))),
    ("release", |n| Choice::Do(AnyOp::Release(n))),
];

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::PreemptTo(task) => write!(f, "preempt-to{}", task.0),
            Choice::Migrate(cpu) => write!(f, "migrate{}", cpu.0),
            Choice::Cpu(cpu) => write!(f, "cpu{}", cpu.0),
            Choice::Do(AnyOp::Release(at)) => write!(f, "release{at}"),
            named => {
                let (name, _) = NAMED
                    .iter()
                    .find(|(_, c)| c == named)
                    .expect("every choice without a number is named");
                f.write_str(name)
            }
        }
    }
}

/// Why text is not a schedule.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A word names no choice.
    #[error("`{word}` is not a choice ({})", choice_names())]
    Choice {
        /// The word.
        word: String,
    },
    /// An entry is not `ARRIVAL:CHOICE`.
    #[error("`{entry}` is not ARRIVAL:CHOICE")]
    Entry {
        /// The entry.
        entry: String,
    },
    /// An arrival point's number is not a number.
    #[error("`{word}` is not an arrival point number")]
    Arrival {
        /// The word.
        word: String,
    },
}

fn choice_names() -> String {
    let named = NAMED.iter().map(|(name, _)| name.to_string());
    let numbered = NUMBERED.iter().map(|(prefix, _)| format!("{prefix}N"));
    named.chain(numbered).collect::<Vec<_>>().join(", ")
}

impl FromStr for Choice {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, ScheduleError> {
        if let Some((_, choice)) = NAMED.iter().find(|(name, _)| *name == s) {
            return Ok(*choice);
        }
        // The longest prefix first: `preempt-to3` is not `preempt` followed by `-to3`.
        let mut numbered = NUMBERED;
        numbered.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        numbered
            .iter()
            .find_map(|(prefix, make)| Some(make(s.strip_prefix(prefix)?.parse().ok()?)))
            .ok_or_else(|| ScheduleError::Choice { word: s.into() })
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
    pub cpu: CpuId,
    /// Where it is.
    pub label: Label,
    /// What may happen.
    pub options: &'a [Choice],
    /// The state of the whole system here, for a stateful search (see
    /// [`RunOptions::stateful`](crate::RunOptions::stateful)) whose chooser
    /// [wants it](Chooser::wants_state).
    pub state: Option<StateKey>,
}

impl ChoicePoint<'_> {
    /// Whether this is an endless program's choice of its next step (not an arrival point's
    /// events).
    pub fn is_step(&self) -> bool {
        self.options[0] != Choice::Continue
    }
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
    /// The key of the state's canonical form under task and CPU symmetry, when
    /// [`RunOptions::orbits`](crate::RunOptions::orbits) asks for it (equal to `key` with
    /// [`RunOptions::symmetry`](crate::RunOptions::symmetry)).
    pub orbit: Option<u128>,
}

/// What a [`Chooser`] decides at a choice point.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision {
    /// Take `options[n]` (`n` must be below the number of options).
    Take(usize),
    /// End the execution right here (not a violation): a stateful search stops each execution
    /// at the first new choice point.
    Stop,
}

/// Takes the machine's decisions.
pub trait Chooser {
    /// What to do at `point`.
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision;

    /// Whether this chooser reads the state of the next choice point
    /// ([`ChoicePoint::state`]): a stateful run computes it only then (hashing the whole
    /// state is most of the cost of a choice point, and a search that replays a prefix needs
    /// only the state at its end).
    fn wants_state(&self) -> bool {
        true
    }

    /// Whether the chooser retraces, from here on, a path that an earlier run of the same
    /// configuration took (taking its choices by value, at the arrival points where they were
    /// taken). The code is deterministic, so the machine does not do again what that run did
    /// at each arrival point of the path: the checks of the stack and the leak check (that
    /// run found the same), and the probes of handlers (a clean probe changes nothing, and
    /// the run is put back as it was after each). While it answers `true`, an arrival point
    /// offers every handler that may arrive there, probed or not, and the chooser must take
    /// only what the earlier run took; what that run found along the path is not found again.
    fn retraces(&self) -> bool {
        false
    }

    /// While it [retraces](Chooser::retraces): the number of the arrival point where it takes
    /// its next choice. At every arrival point before it, it would continue, so the machine
    /// does not ask it there.
    fn next_choice_at(&self) -> Option<u64> {
        None
    }
}

/// Always continues: the run without any injected event (and an endless program ends at its
/// first step).
pub struct NoInjection;

impl Chooser for NoInjection {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision {
        if point.is_step() {
            Decision::Stop
        } else {
            Decision::Take(0)
        }
    }
}

/// A choice taken at an arrival point, as a schedule names it: `ARRIVAL:CHOICE`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Taken {
    /// How many arrival points came before the one it was taken at.
    pub arrival: u64,
    /// What was taken.
    pub choice: Choice,
}

/// The non-trivial choices of a run, in order: every other point continued (an arrival point
/// may take several, one after another). It replays the run exactly, whatever bounds or pruning
/// the run that printed it used.
#[derive(Clone, PartialEq, Eq, Debug, Default, Hash)]
pub struct Schedule(pub Vec<Taken>);

impl Schedule {
    /// The injected events (interrupts, NMIs, preemptions, CPU switches) it takes.
    pub fn events(&self) -> usize {
        self.0.iter().filter(|t| t.choice.is_event()).count()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, taken) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", taken.arrival, taken.choice)?;
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, ScheduleError> {
        if s == "-" || s.is_empty() {
            return Ok(Schedule::default());
        }
        let mut entries = Vec::new();
        for entry in s.split(',') {
            let (index, choice) = entry.split_once(':').ok_or_else(|| ScheduleError::Entry {
                entry: entry.into(),
            })?;
            let arrival: u64 = index
                .parse()
                .map_err(|_| ScheduleError::Arrival { word: index.into() })?;
            entries.push(Taken {
                arrival,
                choice: choice.parse()?,
            });
        }
        Ok(Schedule(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_reads_back_as_it_is_written() {
        let choices = [
            Choice::Continue,
            Choice::Irq,
            Choice::Nmi,
            Choice::Preempt,
            Choice::PreemptTo(TaskId(3)),
            Choice::Migrate(CpuId(1)),
            Choice::Cpu(CpuId(2)),
            Choice::Do(AnyOp::Map),
            Choice::Do(AnyOp::MapAtomic),
            Choice::Do(AnyOp::MapLowmem),
            Choice::Do(AnyOp::Check),
            Choice::Do(AnyOp::Unmap),
            Choice::Do(AnyOp::Release(1)),
            Choice::Do(AnyOp::Yield),
            Choice::Do(AnyOp::Write),
            Choice::Do(AnyOp::IrqOff),
            Choice::Do(AnyOp::IrqOn),
            Choice::Do(AnyOp::Sleep),
        ];
        for choice in choices {
            assert_eq!(choice.to_string().parse::<Choice>(), Ok(choice));
        }
        let schedule: Schedule = "1:map,8:preempt-to2,12:cpu1,13:irq".parse().unwrap();
        assert_eq!(schedule.to_string(), "1:map,8:preempt-to2,12:cpu1,13:irq");
        assert_eq!(schedule.events(), 3);
    }

    #[test]
    fn a_malformed_schedule_says_what_is_wrong() {
        let e = "1:jump".parse::<Schedule>().unwrap_err().to_string();
        assert!(
            e.starts_with("`jump` is not a choice (continue, irq, nmi"),
            "{e}"
        );
        assert!(e.ends_with("preempt-toN, releaseN)"), "{e}");
        assert_eq!(
            "irq".parse::<Schedule>().unwrap_err(),
            ScheduleError::Entry {
                entry: "irq".into()
            }
        );
        assert_eq!(
            "x:irq".parse::<Schedule>().unwrap_err(),
            ScheduleError::Arrival { word: "x".into() }
        );
    }
}
