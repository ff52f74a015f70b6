//! What the tasks, interrupts and NMIs of a run execute: programs of kmap operations, as a
//! scenario file writes them (`map 20`, `unmap`, `migrate 1`, …).

use std::fmt;
use std::str::FromStr;

use clap::ValueEnum;
use kmap::{CpuId, Frame};
use serde::{Deserialize, Serialize};

/// The kinds of operation, by the name a program gives them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum OpName {
    /// `map F`.
    Map,
    /// `map_atomic F`.
    MapAtomic,
    /// `map_pfn F`.
    MapPfn,
    /// `unmap` or `unmap F`.
    Unmap,
    /// `check`.
    Check,
    /// `write F`.
    Write,
    /// `yield`.
    Yield,
    /// `sleep`.
    Sleep,
    /// `migrate C`.
    Migrate,
    /// `fork`.
    Fork,
    /// `irq_off`.
    IrqOff,
    /// `irq_on`.
    IrqOn,
    /// `preempt_off`.
    PreemptOff,
    /// `preempt_on`.
    PreemptOn,
    /// `leak`.
    Leak,
}

impl OpName {
    /// The operation's syntax, for messages: `map F`, `unmap [F]`, `migrate C`, `check`.
    fn syntax(self) -> String {
        let name = crate::settings::name(&self);
        match self {
            OpName::Map | OpName::MapAtomic | OpName::MapPfn | OpName::Write => {
                format!("{name} F")
            }
            OpName::Unmap => format!("{name} [F]"),
            OpName::Migrate => format!("{name} C"),
            _ => name,
        }
    }
}

/// One operation of a program.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Op {
    /// `kmap_local_page(frame)`.
    Map(Frame),
    /// `kmap_atomic(frame)`.
    MapAtomic(Frame),
    /// `kmap_local_pfn(frame)`: always a slot.
    MapPfn(Frame),
    /// Release this context's most recent mapping.
    Unmap,
    /// Release the mapping of this frame through the raw API (may be refused).
    UnmapFrame(Frame),
    /// Read every live mapping of this context through the MMU and compare tags.
    Check,
    /// Write a fresh tag into this frame through this context's mapping of it.
    Write(Frame),
    /// Give up the CPU if another task is runnable.
    Yield,
    /// Block until the scheduler wakes the task.
    Sleep,
    /// Ask to run on this CPU (done once migration is enabled).
    Migrate(CpuId),
    /// Fork a child, which checks it starts with no mappings.
    Fork,
    /// Disable interrupts on this CPU.
    IrqOff,
    /// Enable interrupts on this CPU.
    IrqOn,
    /// Disable preemption.
    PreemptOff,
    /// Enable preemption.
    PreemptOn,
    /// Forget the innermost mapping (`mem::forget` of its guard; [`Api::Guard`] only): its cell
    /// stays until a guard below it, or the context's `Local`, is released.
    Leak,
}

impl Op {
    /// The kind of operation.
    pub fn name(self) -> OpName {
        match self {
            Op::Map(_) => OpName::Map,
            Op::MapAtomic(_) => OpName::MapAtomic,
            Op::MapPfn(_) => OpName::MapPfn,
            Op::Unmap | Op::UnmapFrame(_) => OpName::Unmap,
            Op::Check => OpName::Check,
            Op::Write(_) => OpName::Write,
            Op::Yield => OpName::Yield,
            Op::Sleep => OpName::Sleep,
            Op::Migrate(_) => OpName::Migrate,
            Op::Fork => OpName::Fork,
            Op::IrqOff => OpName::IrqOff,
            Op::IrqOn => OpName::IrqOn,
            Op::PreemptOff => OpName::PreemptOff,
            Op::PreemptOn => OpName::PreemptOn,
            Op::Leak => OpName::Leak,
        }
    }

    /// The frame this operation names, if any.
    pub fn frame(self) -> Option<Frame> {
        match self {
            Op::Map(f) | Op::MapAtomic(f) | Op::MapPfn(f) | Op::UnmapFrame(f) | Op::Write(f) => {
                Some(f)
            }
            _ => None,
        }
    }

    /// Whether only a task (not an interrupt or NMI handler) may run it.
    pub fn task_only(self) -> bool {
        matches!(self, Op::Yield | Op::Sleep | Op::Migrate(_) | Op::Fork)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::settings::name(&self.name()))?;
        if let Some(frame) = self.frame() {
            write!(f, " {}", frame.pfn())?;
        }
        if let Op::Migrate(cpu) = self {
            write!(f, " {}", cpu.0)?;
        }
        Ok(())
    }
}

/// Why a program's text is not an operation.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum OpError {
    /// The first word names no operation.
    #[error("unknown operation `{text}` ({})", OpName::value_variants().iter().map(|n| n.syntax()).collect::<Vec<_>>().join(", "))]
    Unknown {
        /// The text.
        text: String,
    },
    /// The operation takes a number, and was given none or more than one.
    #[error("`{text}`: `{name}` takes one {what} number")]
    Arity {
        /// The text.
        text: String,
        /// The operation.
        name: String,
        /// `frame` or `CPU`.
        what: &'static str,
    },
    /// The operation's number is not a number.
    #[error("`{text}`: `{word}` is not a {what} number")]
    Number {
        /// The text.
        text: String,
        /// The word that is not a number.
        word: String,
        /// `frame` or `CPU`.
        what: &'static str,
    },
    /// The operation takes no argument, and was given one.
    #[error("`{text}`: `{name}` takes no argument")]
    Argument {
        /// The text.
        text: String,
        /// The operation.
        name: String,
    },
}

impl FromStr for Op {
    type Err = OpError;

    /// One operation, as a program writes it.
    fn from_str(text: &str) -> Result<Op, OpError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let unknown = || OpError::Unknown { text: text.into() };
        let name =
            OpName::from_str(words.first().ok_or_else(unknown)?, false).map_err(|_| unknown())?;
        let number = |what: &'static str| -> Result<u64, OpError> {
            match words.as_slice() {
                [_, n] => n.parse().map_err(|_| OpError::Number {
                    text: text.into(),
                    word: n.to_string(),
                    what,
                }),
                _ => Err(OpError::Arity {
                    text: text.into(),
                    name: words[0].into(),
                    what,
                }),
            }
        };
        let frame = || number("frame").map(Frame::new);
        let bare = |op: Op| {
            if words.len() == 1 {
                Ok(op)
            } else {
                Err(OpError::Argument {
                    text: text.into(),
                    name: words[0].into(),
                })
            }
        };
        match name {
            OpName::Map => frame().map(Op::Map),
            OpName::MapAtomic => frame().map(Op::MapAtomic),
            OpName::MapPfn => frame().map(Op::MapPfn),
            OpName::Unmap if words.len() == 1 => Ok(Op::Unmap),
            OpName::Unmap => frame().map(Op::UnmapFrame),
            OpName::Check => bare(Op::Check),
            OpName::Write => frame().map(Op::Write),
            OpName::Yield => bare(Op::Yield),
            OpName::Sleep => bare(Op::Sleep),
            OpName::Migrate => number("CPU").map(|c| Op::Migrate(CpuId(c as u32))),
            OpName::Fork => bare(Op::Fork),
            OpName::IrqOff => bare(Op::IrqOff),
            OpName::IrqOn => bare(Op::IrqOn),
            OpName::PreemptOff => bare(Op::PreemptOff),
            OpName::PreemptOn => bare(Op::PreemptOn),
            OpName::Leak => bare(Op::Leak),
        }
    }
}

impl TryFrom<String> for Op {
    type Error = OpError;
    fn try_from(text: String) -> Result<Op, OpError> {
        text.parse()
    }
}

impl From<Op> for String {
    fn from(op: Op) -> String {
        op.to_string()
    }
}

/// A task and its program.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Task {
    /// Its name in traces.
    pub name: String,
    /// The CPU whose run queue it starts on.
    pub cpu: CpuId,
    /// Bound to that CPU, as a per-CPU kernel thread is (`kthread_bind`): the scheduler never
    /// moves it to another CPU, and it may not `migrate`. A fork's child is bound as its
    /// parent is.
    pub pinned: bool,
    /// What it does.
    pub ops: Vec<Op>,
    /// An endless nondeterministic program instead of `ops` (when not empty): at every step the
    /// task maps the first page of this list it does not hold (while its stack, holes included,
    /// is shallower than the list), reads through every mapping it holds, unmaps its top
    /// mapping, releases any mapping it holds through `raw::unmap_any_order` (with
    /// [`Release::Any`](crate::Release::Any)), or yields, as the chooser decides (see
    /// [`AnyOp`]).
    pub any: Vec<Frame>,
    /// What else the endless program may do.
    pub alphabet: Alphabet,
    /// The crate's API the task maps through.
    pub api: Api,
}

/// Which of the crate's APIs a program maps through.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `kmap::raw`: a map returns an address, an unmap takes one (in any order the machine's
    /// `release` allows).
    #[default]
    Raw,
    /// The safe API: a `Local` for the context, each map a `Mapping` nested in the one before
    /// (`try_map`, `try_map_atomic`, `try_map_slot`), `unmap` drops the innermost and `leak`
    /// forgets it; what is held when the program ends is dropped innermost first, then the
    /// `Local`. No `unmap F`: a guard is released only from the inside out.
    Guard,
    /// The safe API for releasing in any order (`release = "any"` only): a `Local` and its
    /// `Scope`; each `map F` is a `ScopedMapping` held side by side with the others; `unmap`
    /// drops the most recent, `unmap F` (or an endless program's release in any order) that
    /// frame's, `leak` forgets the most recent; what is held at a fixed program's end is
    /// dropped most recent first, then the `Scope` (which releases what was leaked) and the
    /// `Local`. No `map_atomic`, `map_pfn` (nor `atomic` in an endless program's alphabet).
    Scope,
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::settings::name(self))
    }
}

/// The steps an endless nondeterministic program may take besides map, check, unmap, release
/// and yield (each off by default here; `kmap prove` chooses its own defaults).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default, Serialize, Deserialize)]
pub struct Alphabet {
    /// Map the next page through `kmap_atomic` (rule A-1: preemption and page faults stay
    /// disabled until that mapping is unmapped, so while it holds one the task neither yields
    /// nor sleeps, and it releases that mapping only from the top).
    pub atomic: bool,
    /// Write a fresh tag through the most recent mapping (a later read through any mapping of
    /// that page must see it).
    pub write: bool,
    /// Disable interrupts on the CPU (`irq-off`) and enable them again (`irq-on`), around any
    /// steps; while they are off the task neither yields nor sleeps.
    pub irq_off: bool,
    /// Sleep: block until the scheduler wakes the task (at any preemption point of its CPU).
    pub sleep: bool,
    /// The last page of the task's list is a lowmem frame of its own: mapped on the fast path
    /// (its direct-map address, no cell), or in a slot under `force_map`. A task with one is
    /// interchangeable with no other (its page's address is its own).
    pub lowmem: bool,
}

impl Alphabet {
    /// Every addition.
    pub const ALL: Alphabet = Alphabet {
        atomic: true,
        write: true,
        irq_off: true,
        sleep: true,
        lowmem: true,
    };

    /// Whether anything is added.
    pub fn any(self) -> bool {
        self != Alphabet::default()
    }

    /// The additions by name, as scope strings and flags write them (`atomic`, `write`,
    /// `irq-off`, `sleep`, `lowmem`), in that order.
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.atomic, "atomic"),
            (self.write, "write"),
            (self.irq_off, "irq-off"),
            (self.sleep, "sleep"),
            (self.lowmem, "lowmem"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    /// Turn on the addition named `name`; `false` if no addition has that name.
    pub fn add(&mut self, name: &str) -> bool {
        match name {
            "atomic" => self.atomic = true,
            "write" => self.write = true,
            "irq-off" => self.irq_off = true,
            "sleep" => self.sleep = true,
            "lowmem" => self.lowmem = true,
            _ => return false,
        }
        true
    }
}

impl Default for Task {
    /// A task on CPU 0 with no program.
    fn default() -> Self {
        Task {
            name: String::new(),
            cpu: CpuId(0),
            pinned: false,
            ops: Vec::new(),
            any: Vec::new(),
            alphabet: Alphabet::default(),
            api: Api::default(),
        }
    }
}

impl Task {
    /// Whether the task runs an endless nondeterministic program.
    pub fn is_any(&self) -> bool {
        !self.any.is_empty()
    }
}

/// A step of a nondeterministic task program ([`Task::any`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum AnyOp {
    /// Map the next page of the list.
    Map,
    /// Map the next page of the list through `kmap_atomic` ([`Alphabet::atomic`] only).
    MapAtomic,
    /// Map the task's lowmem page ([`Alphabet::lowmem`] only).
    MapLowmem,
    /// Read through every mapping held.
    Check,
    /// Unmap the top mapping.
    Unmap,
    /// Release the mapping held at this position, counted from the oldest (0), through
    /// `raw::unmap_any_order` ([`Release::Any`](crate::Release::Any) only): below the top, a
    /// hole; the top, a pop.
    Release(usize),
    /// Give up the CPU if another task is runnable.
    Yield,
    /// Write a fresh tag through the most recent mapping ([`Alphabet::write`] only).
    Write,
    /// Disable interrupts on the CPU ([`Alphabet::irq_off`] only).
    IrqOff,
    /// Enable interrupts on the CPU again ([`Alphabet::irq_off`] only).
    IrqOn,
    /// Block until the scheduler wakes the task ([`Alphabet::sleep`] only).
    Sleep,
}

impl AnyOp {
    /// Every step that takes no number.
    pub const ALL: [AnyOp; 4] = [AnyOp::Map, AnyOp::Check, AnyOp::Unmap, AnyOp::Yield];
}

impl fmt::Display for AnyOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyOp::Map => f.write_str("map"),
            AnyOp::MapAtomic => f.write_str("map-atomic"),
            AnyOp::MapLowmem => f.write_str("map-lowmem"),
            AnyOp::Check => f.write_str("check"),
            AnyOp::Unmap => f.write_str("unmap"),
            AnyOp::Release(at) => write!(f, "release{at}"),
            AnyOp::Yield => f.write_str("yield"),
            AnyOp::Write => f.write_str("write"),
            AnyOp::IrqOff => f.write_str("irq-off"),
            AnyOp::IrqOn => f.write_str("irq-on"),
            AnyOp::Sleep => f.write_str("sleep"),
        }
    }
}

/// Everything one execution runs.
#[derive(Clone, PartialEq, Eq, Debug, Hash, Default)]
pub struct Program {
    /// The tasks, in the order they are queued (the first task of each CPU runs first).
    pub tasks: Vec<Task>,
    /// What every interrupt handler runs.
    pub irq: Vec<Op>,
    /// What every NMI handler runs.
    pub nmi: Vec<Op>,
    /// The API every interrupt handler maps through.
    pub irq_api: Api,
    /// The API every NMI handler maps through.
    pub nmi_api: Api,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_reads_back_as_it_is_written() {
        for text in [
            "map 20",
            "map_atomic 3",
            "map_pfn 7",
            "unmap",
            "unmap 20",
            "check",
            "write 20",
            "yield",
            "sleep",
            "migrate 1",
            "fork",
            "irq_off",
            "irq_on",
            "preempt_off",
            "preempt_on",
            "leak",
        ] {
            let op: Op = text.parse().unwrap();
            assert_eq!(op.to_string(), text);
        }
    }

    #[test]
    fn a_malformed_operation_says_what_is_wrong() {
        let e = "jump 3".parse::<Op>().unwrap_err().to_string();
        assert!(
            e.starts_with("unknown operation `jump 3` (map F, map_atomic F"),
            "{e}"
        );
        assert!(e.ends_with("preempt_off, preempt_on, leak)"), "{e}");
        assert_eq!(
            "map".parse::<Op>().unwrap_err().to_string(),
            "`map`: `map` takes one frame number"
        );
        assert_eq!(
            "map x".parse::<Op>().unwrap_err().to_string(),
            "`map x`: `x` is not a frame number"
        );
        assert_eq!(
            "check 3".parse::<Op>().unwrap_err().to_string(),
            "`check 3`: `check` takes no argument"
        );
    }
}
