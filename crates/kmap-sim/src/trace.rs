//! What happened in a run, step by step, for people and for the explorer's timeline.

use std::fmt;

use kmap::{Cell, CpuId, Frame, Point, Report, Slot};

use crate::program::Op;

/// Where an arrival point is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Label {
    /// A step of the crate's own code.
    Crate(Point),
    /// Before a memory access, or a call of its shim, of foreign code (Linux's).
    Foreign(crate::implementation::ForeignPoint),
    /// A task or handler is about to run an operation of its program.
    BeforeOp(Op),
    /// A task with a nondeterministic program is about to choose its next step.
    BeforeStep,
    /// The single-step swap of `rfc-v1` / `swap-after-current` cleared one of prev's slots.
    SwapCleared(Cell),
    /// ... and invalidated its TLB entry.
    SwapInvalidated(Cell),
    /// ... or installed one of next's saved PTEs.
    SwapInstalled(Cell),
    /// Finish-switch on the incoming task's stack: `current` is next, interrupts are on again,
    /// and the protocol's second half (if any) has not begun.
    FinishSwitch,
    /// A CPU is idle (nothing runnable) for a moment.
    Idle,
    /// The crate read the current CPU while the task could still migrate (a hazard): the task
    /// may be preempted and moved before it uses the answer.
    MigratableCpuRead,
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Crate(point) => f.write_str(point.label()),
            Label::Foreign(point) => write!(f, "{point}"),
            Label::BeforeOp(op) => write!(f, "before `{op}`"),
            Label::BeforeStep => f.write_str("before the next step"),
            Label::SwapCleared(cell) => write!(f, "swap: cleared prev's cell {}", cell.0),
            Label::SwapInvalidated(cell) => write!(f, "swap: invalidated cell {}", cell.0),
            Label::SwapInstalled(cell) => write!(f, "swap: installed next's cell {}", cell.0),
            Label::FinishSwitch => f.write_str("finish-switch: interrupts on"),
            Label::Idle => f.write_str("idle"),
            Label::MigratableCpuRead => f.write_str("after a CPU read while migratable"),
        }
    }
}

/// Who is running on a CPU at a step.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub enum Context {
    /// A task, by name.
    Task(String),
    /// The scheduler's switch path (on the outgoing or incoming task's stack).
    Scheduler,
    /// The idle loop.
    Idle,
    /// An interrupt handler (nesting depth from 1).
    Irq(usize),
    /// An NMI handler.
    Nmi,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Context::Task(name) => write!(f, "task {name}"),
            Context::Scheduler => f.write_str("scheduler"),
            Context::Idle => f.write_str("idle"),
            Context::Irq(1) => f.write_str("IRQ"),
            Context::Irq(depth) => write!(f, "IRQ#{depth}"),
            Context::Nmi => f.write_str("NMI"),
        }
    }
}

/// One thing that happened.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub enum What {
    /// An arrival point passed.
    Point(Label),
    /// An operation began.
    Op(Op),
    /// A PTE was written into a slot, mapping `frame`.
    Install {
        /// The slot.
        slot: Slot,
        /// The frame.
        frame: Frame,
    },
    /// A slot's PTE was cleared.
    Clear {
        /// The slot.
        slot: Slot,
    },
    /// This CPU's TLB entry for one of its slots was invalidated.
    Invalidate {
        /// The slot's cell.
        cell: Cell,
    },
    /// A task's `idx` changed.
    Idx {
        /// The task.
        task: String,
        /// Before.
        from: usize,
        /// After.
        to: usize,
    },
    /// An interrupt or NMI handler started.
    Enter(Context),
    /// It returned.
    Exit(Context),
    /// `current` changed on this CPU.
    Switch {
        /// The outgoing task.
        from: String,
        /// The incoming task.
        to: String,
    },
    /// The executing CPU changed.
    Step {
        /// The CPU that runs next.
        to: CpuId,
    },
    /// A read or write through a mapping.
    Access {
        /// The frame the context expected.
        expected: Frame,
        /// The frame the MMU reached (`None`: a fault).
        reached: Option<Frame>,
        /// Whether a TLB entry served it.
        tlb_hit: bool,
    },
    /// The crate reported something.
    Report(Report),
    /// The crate, or the machine, refused a misuse.
    Refused(String),
    /// The crate called this method of its platform (pure methods are not traced).
    Call(&'static str),
    /// A rule broken with no consequence yet.
    Hazard(String),
    /// The consequence: what the kernel suffers.
    Violation(String),
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            What::Point(label) => write!(f, "{label}"),
            What::Op(op) => write!(f, "`{op}`"),
            What::Install { slot, frame } => {
                write!(f, "slot {} := frame {}", SlotName(*slot), frame.pfn())
            }
            What::Clear { slot } => write!(f, "slot {} := empty", SlotName(*slot)),
            What::Invalidate { cell } => write!(f, "invlpg cell {}", cell.0),
            What::Idx { task, from, to } => write!(f, "{task}.idx {from} -> {to}"),
            What::Enter(context) => write!(f, "{context} enters"),
            What::Exit(context) => write!(f, "{context} returns"),
            What::Switch { from, to } => write!(f, "current: {from} -> {to}"),
            What::Step { to } => write!(f, "CPU {} runs", to.0),
            What::Access {
                expected,
                reached: Some(frame),
                tlb_hit,
            } => {
                let via = if *tlb_hit { " (TLB)" } else { "" };
                let (frame, expected) = (frame.pfn(), expected.pfn());
                if frame == expected {
                    write!(f, "access frame {frame}{via}")
                } else {
                    write!(f, "access reached frame {frame}{via}, expected {expected}")
                }
            }
            What::Access {
                expected,
                reached: None,
                ..
            } => write!(f, "access to frame {} FAULTS", expected.pfn()),
            What::Report(report) => write!(f, "report: {report:?}"),
            What::Refused(why) => write!(f, "refused: {why}"),
            What::Call(name) => write!(f, "{name}()"),
            What::Hazard(why) => write!(f, "hazard: {why}"),
            What::Violation(why) => write!(f, "VIOLATION: {why}"),
        }
    }
}

/// A slot as traces and messages write it: `CPU.CELL`, as in `slot 0.1`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SlotName(pub Slot);

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0.cpu.0, self.0.cell.0)
    }
}

/// One step of a trace.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Event {
    /// The CPU it happened on.
    pub cpu: CpuId,
    /// Who was running there.
    pub context: Context,
    /// What happened.
    pub what: What,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu{} {:<12} {}",
            self.cpu.0,
            self.context.to_string(),
            self.what
        )
    }
}
