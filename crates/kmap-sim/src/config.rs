//! What a run is made of: the machine, the bounds on injected events, and the programs the
//! tasks, interrupts and NMIs execute.

use std::fmt;

/// How the scheduler moves kmap slots at a context switch.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Protocol {
    /// The crate's hooks as a kernel must call them: `sched_out` in prepare-switch with
    /// `current` = prev, `sched_in` in finish-switch with `current` = next.
    Split,
    /// The September 2020 RFC: prev's slots cleared and next's installed in one step while
    /// `current` is still prev, before switching.
    RfcV1,
    /// The same single step, done after `current` has become next.
    SwapAfterCurrent,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 3] = [Protocol::Split, Protocol::RfcV1, Protocol::SwapAfterCurrent];

    /// The name used on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Split => "split",
            Protocol::RfcV1 => "rfc-v1",
            Protocol::SwapAfterCurrent => "swap-after-current",
        }
    }

    /// The protocol called `name`.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which releases the programs may make.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum Release {
    /// Linux's rule: only the top mapping (`unmap F` of another is refused, rule U-3).
    #[default]
    Lifo,
    /// The platform releases in any order (`Platform::RELEASE_ANY_ORDER`): `unmap F` of a live
    /// frame below the top leaves a hole (`raw::unmap_any_order`).
    Any,
}

impl Release {
    /// Every mode.
    pub const ALL: [Release; 2] = [Release::Lifo, Release::Any];

    /// The name used on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Release::Lifo => "lifo",
            Release::Any => "any",
        }
    }

    /// The mode called `name`.
    pub fn from_name(name: &str) -> Option<Release> {
        Release::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A deliberate fault in the machine, for showing that the oracle catches what it claims to,
/// and what a kernel would suffer from it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Mutation {
    /// The platform drops every TLB invalidation the crate asks for.
    DropInvalidations,
    /// The kernel has no `BUG_ON(!pte_none)`: the platform's `read_pte` answers "empty" to the
    /// crate's slot check, and the switch installs over live slots without complaint. The
    /// same as `bug_on = false`.
    NoBugOn,
    /// The scheduler forgets `sched_out` (under `split`): prev's slots stay mapped while next
    /// runs.
    NoSchedOut,
}

impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 3] = [
        Mutation::DropInvalidations,
        Mutation::NoBugOn,
        Mutation::NoSchedOut,
    ];

    /// The name used on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::DropInvalidations => "drop-invalidations",
            Mutation::NoBugOn => "no-bug-on",
            Mutation::NoSchedOut => "no-sched-out",
        }
    }

    /// The mutation called `name`.
    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Limits on what one execution may contain. `None` is unlimited.
///
/// Interrupts and NMIs are bounded by how deep they nest, not by how many arrive: the
/// explorer probes a handler at every arrival point, and a probe that leaves its CPU as it found
/// it amounts to no event at all. A handler that leaves a trace (a stale TLB entry, a slot it
/// overwrote) is a *lasting* handler: it is offered as a real event whose effects persist, and
/// those are bounded by count.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct Bounds {
    /// Preemptions (involuntary context switches) per execution.
    pub preemptions: Option<u32>,
    /// How deep interrupts nest: 0 (none) or 1 (an interrupt cannot nest in an interrupt:
    /// handlers run with interrupts off).
    pub irq_depth: Option<u32>,
    /// How deep NMIs nest: 0 or 1 (an NMI does not nest in an NMI).
    pub nmi_depth: Option<u32>,
    /// Switches of the executing CPU (on machines with more than one) per execution.
    pub cpu_switches: Option<u32>,
    /// Handlers whose effects last (see above) per execution.
    pub lasting_handlers: Option<u32>,
}

/// The machine.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct MachineConfig {
    /// CPUs.
    pub cpus: usize,
    /// Physical frames.
    pub frames: u64,
    /// Frames below this are direct-mapped (lowmem).
    pub lowmem: u64,
    /// Cells of every task's kmap stack (see [`SUPPORTED_CELLS`](crate::SUPPORTED_CELLS)).
    pub cells: usize,
    /// The switch protocol.
    pub protocol: Protocol,
    /// Debug guard cells (odd cells only).
    pub guard_cells: bool,
    /// Lowmem frames are mapped through slots too.
    pub force_map: bool,
    /// Which releases the programs may make.
    pub release: Release,
    /// Model a TLB that keeps stale translations until invalidated.
    pub tlb: bool,
    /// A deliberate fault, if any.
    pub mutation: Option<Mutation>,
}

impl MachineConfig {
    /// Whether the kernel crashes on a map or a switch into an occupied slot (Linux's
    /// `BUG_ON(!pte_none)`), as it does unless [`Mutation::NoBugOn`].
    pub fn bug_on(&self) -> bool {
        self.mutation != Some(Mutation::NoBugOn)
    }
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            cpus: 1,
            frames: 64,
            lowmem: 16,
            cells: 16,
            protocol: Protocol::Split,
            guard_cells: false,
            force_map: false,
            release: Release::Lifo,
            tlb: true,
            mutation: None,
        }
    }
}

/// One operation of a program.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Op {
    /// `kmap_local_page(frame)`.
    Map(u64),
    /// `kmap_atomic(frame)`.
    MapAtomic(u64),
    /// `kmap_local_pfn(frame)`: always a slot.
    MapPfn(u64),
    /// Release this context's most recent mapping.
    Unmap,
    /// Release the mapping of this frame through the raw API (may be refused).
    UnmapFrame(u64),
    /// Read every live mapping of this context through the MMU and compare tags.
    Check,
    /// Write a fresh tag into this frame through this context's mapping of it.
    Write(u64),
    /// Give up the CPU if another task is runnable.
    Yield,
    /// Block until the scheduler wakes the task.
    Sleep,
    /// Ask to run on this CPU (done once migration is enabled).
    Migrate(usize),
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
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Map(frame) => write!(f, "map {frame}"),
            Op::MapAtomic(frame) => write!(f, "map_atomic {frame}"),
            Op::MapPfn(frame) => write!(f, "map_pfn {frame}"),
            Op::Unmap => write!(f, "unmap"),
            Op::UnmapFrame(frame) => write!(f, "unmap {frame}"),
            Op::Check => write!(f, "check"),
            Op::Write(frame) => write!(f, "write {frame}"),
            Op::Yield => write!(f, "yield"),
            Op::Sleep => write!(f, "sleep"),
            Op::Migrate(cpu) => write!(f, "migrate {cpu}"),
            Op::Fork => write!(f, "fork"),
            Op::IrqOff => write!(f, "irq_off"),
            Op::IrqOn => write!(f, "irq_on"),
            Op::PreemptOff => write!(f, "preempt_off"),
            Op::PreemptOn => write!(f, "preempt_on"),
        }
    }
}

impl Op {
    /// The frame this operation names, if any.
    pub fn frame(self) -> Option<u64> {
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

/// A task and its program.
#[derive(Clone, PartialEq, Eq, Debug, Hash, Default)]
pub struct Task {
    /// Its name in traces.
    pub name: String,
    /// The CPU whose run queue it starts on.
    pub cpu: usize,
    /// What it does.
    pub ops: Vec<Op>,
    /// An endless nondeterministic program instead of `ops` (when not empty): at every step the
    /// task maps the first page of this list it does not hold (while its stack, holes included,
    /// is shallower than the list), reads through every mapping it holds, unmaps its top
    /// mapping, releases any mapping it holds through `raw::unmap_any_order` (with
    /// [`Release::Any`]), or yields, as the chooser decides (see [`AnyOp`]).
    pub any: Vec<u64>,
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
    /// Read through every mapping held.
    Check,
    /// Unmap the top mapping.
    Unmap,
    /// Release the mapping held at this position, counted from the oldest (0), through
    /// `raw::unmap_any_order` ([`Release::Any`] only): below the top, a hole; the top, a pop.
    Release(usize),
    /// Give up the CPU if another task is runnable.
    Yield,
}

impl AnyOp {
    /// Every step that takes no number.
    pub const ALL: [AnyOp; 4] = [AnyOp::Map, AnyOp::Check, AnyOp::Unmap, AnyOp::Yield];
}

impl fmt::Display for AnyOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyOp::Map => f.write_str("map"),
            AnyOp::Check => f.write_str("check"),
            AnyOp::Unmap => f.write_str("unmap"),
            AnyOp::Release(at) => write!(f, "release{at}"),
            AnyOp::Yield => f.write_str("yield"),
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
}

/// A complete description of a run: machine, bounds, program.
#[derive(Clone, PartialEq, Eq, Debug, Hash, Default)]
pub struct Config {
    /// The machine.
    pub machine: MachineConfig,
    /// Limits on injected events.
    pub bounds: Bounds,
    /// The programs.
    pub program: Program,
    /// Strict checking: a hazard (a rule broken with no consequence yet) is a violation.
    pub strict: bool,
}

/// Why a configuration cannot run.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Check that the configuration can run, naming the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.machine;
        let fail = |msg: String| Err(ConfigError(msg));
        if !(1..=8).contains(&m.cpus) {
            return fail(format!("cpus must be 1 to 8, not {}", m.cpus));
        }
        if !crate::SUPPORTED_CELLS.contains(&m.cells) {
            return fail(format!(
                "slots must be one of {:?}, not {}",
                crate::SUPPORTED_CELLS,
                m.cells
            ));
        }
        if m.frames == 0 || m.frames > 1 << 20 {
            return fail(format!("frames must be 1 to {}, not {}", 1 << 20, m.frames));
        }
        if m.lowmem > m.frames {
            return fail(format!(
                "lowmem ({}) is more than frames ({})",
                m.lowmem, m.frames
            ));
        }
        if self.program.tasks.is_empty() {
            return fail("at least one task is needed".into());
        }
        let check_ops = |who: &str, ops: &[Op], in_interrupt: bool| -> Result<(), ConfigError> {
            for op in ops {
                if let Some(frame) = op.frame()
                    && frame >= m.frames
                {
                    return Err(ConfigError(format!(
                        "{who}: `{op}` names frame {frame}, but the machine has {} frames",
                        m.frames
                    )));
                }
                if let Op::Migrate(cpu) = op
                    && *cpu >= m.cpus
                {
                    return Err(ConfigError(format!(
                        "{who}: `{op}`, but the machine has {} CPUs",
                        m.cpus
                    )));
                }
                if in_interrupt && op.task_only() {
                    return Err(ConfigError(format!(
                        "{who}: `{op}` cannot run in interrupt context"
                    )));
                }
            }
            Ok(())
        };
        for task in &self.program.tasks {
            if task.cpu >= m.cpus {
                return fail(format!(
                    "task {}: cpu {} but the machine has {} CPUs",
                    task.name, task.cpu, m.cpus
                ));
            }
            check_ops(&format!("task {}", task.name), &task.ops, false)?;
            let any: Vec<Op> = task.any.iter().map(|&page| Op::Map(page)).collect();
            check_ops(&format!("task {}", task.name), &any, false)?;
            if task.is_any() && !task.ops.is_empty() {
                return fail(format!(
                    "task {}: a task runs either ops or an endless program (any), not both",
                    task.name
                ));
            }
        }
        let b = &self.bounds;
        for (name, depth) in [("irq_depth", b.irq_depth), ("nmi_depth", b.nmi_depth)] {
            if depth.is_some_and(|d| d > 1) {
                return fail(format!(
                    "{name} must be 0 or 1, not {}: a handler runs with interrupts off, so \
                     nothing of its kind nests in it",
                    depth.unwrap_or(0)
                ));
            }
        }
        check_ops("irq", &self.program.irq, true)?;
        check_ops("nmi", &self.program.nmi, true)?;
        Ok(())
    }
}
