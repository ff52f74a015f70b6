//! The machine: memory with a tag in every frame, the kernel page table's kmap slots, a TLB per
//! CPU, CPUs with their counters and nested interrupt contexts, tasks, and the oracle that
//! watches all of it.
//!
//! The machine is driven by the real crate code through [`SimPlatform`](crate::adapter) and by
//! its own scheduler and program interpreter. At every arrival point it asks the
//! [`Chooser`](crate::Chooser) what happens next; an interrupt or NMI runs right there, nested on
//! the current stack; a preemption switches tasks right there, on the task's own stack.

use std::cell::{OnceCell, RefCell};
use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet, FxHashSet};
use std::rc::Rc;

use corosensei::Yielder;
use kmap::{Pte, Report};

pub use crate::trace::Label;

use crate::adapter::{pte_frame, DynStack, KmapOps, DIRECT_MAP, PAGE_SIZE, WINDOW};
use crate::chooser::{Choice, ChoicePoint, Chooser};
use crate::config::{Config, Mutation, Op, Protocol};
use crate::outcome::{ChoiceRecord, Hazard, Outcome, Refusal, Rule, Violation, ViolationKind};
use crate::trace::{Context, Event, What};

/// What a task's coroutine tells the driver when it gives up the host thread.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Yield {
    /// Let CPU `n` execute.
    Step(usize),
    /// `current` of the executing CPU changed: run it.
    Switched,
    /// The execution is over (a violation was found).
    Abort,
}

pub(crate) type TaskYielder = Yielder<(), Yield>;

/// A mapping a context holds, as the program sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    pub(crate) frame: u64,
    pub(crate) addr: usize,
    pub(crate) atomic: bool,
}

/// A counter the platform keeps for the crate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Counter {
    Preempt,
    Migrate,
    Pagefault,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum NestedKind {
    Irq,
    Nmi,
}

pub(crate) struct Nested {
    pub(crate) kind: NestedKind,
    pub(crate) mappings: Vec<Held>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Status {
    Runnable,
    Running,
    Sleeping,
    Exited,
}

pub(crate) struct TaskState {
    pub(crate) name: String,
    pub(crate) cpu: usize,
    pub(crate) status: Status,
    pub(crate) idle: bool,
    pub(crate) ops: Rc<[Op]>,
    pub(crate) mappings: Vec<Held>,
    pub(crate) migrate: i32,
    pub(crate) pending_migration: Option<usize>,
    /// How many times it became current (to tell whether it ran since a snapshot).
    pub(crate) runs: u64,
}

pub(crate) struct Cpu {
    pub(crate) current: usize,
    pub(crate) runqueue: VecDeque<usize>,
    pub(crate) preempt: i32,
    pub(crate) pagefault: i32,
    pub(crate) irqs_off: bool,
    pub(crate) nested: Vec<Nested>,
    pub(crate) in_scheduler: bool,
    pub(crate) last_prev: Option<usize>,
    /// While a sleeping task's coroutine runs this CPU's idle moment, that task.
    pub(crate) idle_host: Option<usize>,
    /// The last arrival point on this CPU.
    pub(crate) last_arrival: Option<Arrival>,
    /// Moves on whenever the context executing on this CPU changes without an arrival point
    /// of its own in between: `current` changes, a handler enters or returns.
    pub(crate) epoch: u64,
    /// Stacks of prev and next when the switch began (INV-2), with prev's run count.
    pub(crate) switch_snapshot: Option<SwitchSnapshot>,
}

pub(crate) struct SwitchSnapshot {
    pub(crate) prev: usize,
    pub(crate) prev_runs: u64,
    pub(crate) prev_stack: (usize, Vec<Pte>),
    pub(crate) next: usize,
    pub(crate) next_stack: (usize, Vec<Pte>),
}

/// An arrival point as the pruning rule sees it: its label, the handler nesting depth there, and
/// the CPU's context epoch (see `Cpu::epoch`).
pub(crate) type Arrival = (Label, usize, u64);

/// What a handler on the executing CPU may touch and must leave as it found it (INV-3).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct CpuView {
    /// The CPU's slots.
    slots: Vec<Pte>,
    /// Its TLB's entries, sorted.
    tlb: Vec<(usize, u64)>,
    /// Its slots cleared and not yet invalidated, by cell.
    unflushed: Vec<usize>,
    /// The current task's `idx` and saved PTEs.
    depth: usize,
    saved: Vec<Pte>,
    /// Preemption, page-fault and migration counts, and whether interrupts are off.
    counters: [i32; 4],
}

/// Everything a handler on the executing CPU can change, as a probed handler found it (see
/// `Machine::save_cpu`).
pub(crate) struct SavedCpu {
    pt: Vec<Pte>,
    tlb: HashMap<usize, u64>,
    unflushed: HashSet<usize>,
    preempt: i32,
    pagefault: i32,
    irqs_off: bool,
    /// The current task's migration-disable count.
    migrate: i32,
    /// The current task's kmap stack ([`DynStack::save`]).
    stack: Box<dyn std::any::Any>,
    tags: Vec<u64>,
    expected: Vec<u64>,
    next_tag: u64,
    arrivals: u64,
    last_arrival: Option<Arrival>,
    last_label: Option<Label>,
    epoch: u64,
    reports: usize,
}

/// Branching events used so far in an execution, against the bounds.
#[derive(Default)]
pub(crate) struct Used {
    pub(crate) preemptions: u32,
    pub(crate) cpu_switches: u32,
    pub(crate) lasting: u32,
}

/// Handler runs already probed clean, by the state they could observe (see [`RunOptions::probe`]).
#[derive(Default, Debug)]
pub struct ProbeMemo(FxHashSet<Box<[u64]>>);

impl ProbeMemo {
    /// How many distinct handler runs are remembered.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What to record while running, and how to treat interrupts.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Keep a step-by-step trace.
    pub trace: bool,
    /// Keep every choice point's options (for the explorer).
    pub record_choices: bool,
    /// Offer no event at an arrival point that is provably equivalent to the one before it: the
    /// point before a program's next operation, right after the last step of a map or unmap in
    /// the same context (same CPU, nesting depth and context epoch; only that context's own
    /// bookkeeping runs in between, which no event can observe). The proof is at `redundant`.
    pub prune: bool,
    /// Probe interrupts and NMIs instead of offering them as choices: at every arrival point
    /// where one can arrive, its handler runs right there; if it runs clean, the machine checks
    /// that the CPU is exactly as the handler found it (slots, TLB, unflushed slots, the current
    /// stack, counters) and puts back the arrival numbering, so the run goes on as if nothing
    /// had happened, which is what a clean handler amounts to. One run then checks a handler at
    /// every point. A handler that leaves a trace is a hazard: it is undone, and offered there
    /// as a choice (a lasting handler, bounded by `Bounds::lasting_handlers`). A handler run is
    /// skipped when one was already probed clean from the same observable state (the memo,
    /// shared across runs). A probe that finds a violation stays in
    /// the schedule, which replays it as an ordinary injected event.
    pub probe: Option<Rc<RefCell<ProbeMemo>>>,
    /// How deep probes nest: 1 probes handlers on the code of tasks only, 2 also probes an NMI
    /// inside a probed interrupt, and so on (0: none).
    pub probe_depth: u32,
}

/// Whether offering events at arrival point `here` would only repeat what was offered at the
/// point `before` it, both as `(label, handler nesting depth, context epoch)` on the same CPU.
///
/// The rule: `here` is the arrival point before a program's next operation, `before` is the
/// last step of the crate's map or unmap, and both are in the same context: same CPU (the
/// record is per CPU), same nesting depth, and the same epoch, which moves on whenever the
/// context on the CPU changes without an arrival point (a task exits or migrates and another is
/// switched in, a handler enters or returns; a probed handler that is undone puts it back).
///
/// The proof. At an arrival point the machine asks for decisions until one is "continue"
/// (every other decision is followed by another question at the same point), so the state
/// after the last decision at `before` is one from which every event was offered. From there
/// to `here`, with the epoch unchanged, only that context's own code runs: the crate returns
/// and the machine updates the context's own list of mappings and counts, which no interrupt,
/// NMI, preemption or other CPU can observe or change (they read slots, TLBs, stacks and
/// frames, none of which is written in between). So every state reachable by an event at
/// `here` is reachable by the same event at `before` followed by that bookkeeping, which the
/// search explores already. `tests/prune.rs` checks, for every built-in scenario and protocol,
/// that the final states and verdicts with and without pruning are the same.
fn redundant(before: Option<Arrival>, here: Arrival) -> bool {
    use kmap::Point::*;
    matches!(here.0, Label::BeforeOp(_))
        && before.is_some_and(|(label, depth, epoch)| {
            depth == here.1
                && epoch == here.2
                && matches!(
                    label,
                    Label::Crate(
                        MapPreemptionEnabled | UnmapMigrationEnabled | AtomicPreemptionEnabled
                    )
                )
        })
}

pub(crate) struct State {
    pub(crate) tags: Vec<u64>,
    pub(crate) expected: Vec<u64>,
    pub(crate) next_tag: u64,
    pub(crate) pt: Vec<Pte>,
    pub(crate) tlb: Vec<HashMap<usize, u64>>,
    /// Slots cleared and not yet invalidated (INV-6), by slot index.
    pub(crate) unflushed: HashSet<usize>,
    pub(crate) cpus: Vec<Cpu>,
    pub(crate) tasks: Vec<TaskState>,
    pub(crate) active: usize,
    pub(crate) executing: Option<usize>,
    pub(crate) yielders: Vec<*const TaskYielder>,
    pub(crate) used: Used,
    pub(crate) choice_index: u64,
    /// Arrival points passed (numbering for schedules: clean probes give theirs back).
    pub(crate) arrivals: u64,
    /// Handler probes in progress (no choice is taken inside one).
    pub(crate) probing: u32,
    pub(crate) aborted: bool,
    pub(crate) last_label: Option<Label>,
    pub(crate) last_depth: Vec<usize>,
    pub(crate) outcome: Outcome,
}

/// The simulated machine of one run.
pub struct Machine {
    pub(crate) config: Config,
    pub(crate) ops: &'static dyn KmapOps,
    pub(crate) stacks: Box<[OnceCell<Box<dyn DynStack>>]>,
    pub(crate) st: RefCell<State>,
    pub(crate) chooser: Rc<RefCell<dyn Chooser>>,
    pub(crate) options: RunOptions,
    irq_ops: Rc<[Op]>,
    /// Room for building probe keys (see [`probe_key`](Self::probe_key)), reused.
    probe_scratch: RefCell<Vec<u64>>,
    nmi_ops: Rc<[Op]>,
}

impl Machine {
    /// A machine ready to run `config` (already validated).
    pub(crate) fn new(
        config: &Config,
        chooser: Rc<RefCell<dyn Chooser>>,
        options: RunOptions,
    ) -> Machine {
        let m = &config.machine;
        let ops =
            crate::adapter::ops_for(m.cells, m.guard_cells, m.force_map).expect("validated layout");
        let forks: usize = config
            .program
            .tasks
            .iter()
            .map(|t| t.ops.iter().filter(|&&op| op == Op::Fork).count())
            .sum();
        let capacity = m.cpus + config.program.tasks.len() + forks;
        let stacks: Box<[OnceCell<Box<dyn DynStack>>]> =
            (0..capacity).map(|_| OnceCell::new()).collect();
        let mut tasks = Vec::new();
        let mut cpus: Vec<Cpu> = (0..m.cpus)
            .map(|cpu| Cpu {
                current: cpu,
                runqueue: VecDeque::new(),
                preempt: 0,
                pagefault: 0,
                irqs_off: false,
                nested: Vec::new(),
                in_scheduler: false,
                last_prev: None,
                idle_host: None,
                last_arrival: None,
                epoch: 0,
                switch_snapshot: None,
            })
            .collect();
        for cpu in 0..m.cpus {
            let _ = stacks[cpu].set(ops.new_stack());
            tasks.push(TaskState::new(
                format!("idle{cpu}"),
                cpu,
                Rc::from(Vec::new()),
                true,
            ));
        }
        for task in &config.program.tasks {
            let id = tasks.len();
            let _ = stacks[id].set(ops.new_stack());
            tasks.push(TaskState::new(
                task.name.clone(),
                task.cpu,
                Rc::from(task.ops.clone()),
                false,
            ));
            cpus[task.cpu].runqueue.push_back(id);
        }
        let frames = m.frames as usize;
        let tags: Vec<u64> = (0..frames as u64).map(|f| 0x7A6_0000 + f).collect();
        let state = State {
            expected: tags.clone(),
            tags,
            next_tag: 1,
            pt: vec![Pte::EMPTY; m.cpus * m.cells],
            tlb: vec![HashMap::default(); m.cpus],
            unflushed: HashSet::default(),
            cpus,
            last_depth: vec![0; capacity],
            yielders: vec![std::ptr::null(); capacity],
            tasks,
            active: 0,
            executing: None,
            used: Used::default(),
            choice_index: 0,
            arrivals: 0,
            probing: 0,
            aborted: false,
            last_label: None,
            outcome: Outcome::default(),
        };
        Machine {
            config: config.clone(),
            ops,
            stacks,
            st: RefCell::new(state),
            chooser,
            options,
            probe_scratch: RefCell::new(Vec::with_capacity(256)),
            irq_ops: Rc::from(config.program.irq.clone()),
            nmi_ops: Rc::from(config.program.nmi.clone()),
        }
    }

    // ---- facts the platform asks for ------------------------------------------------------

    pub(crate) fn cpus(&self) -> usize {
        self.config.machine.cpus
    }

    pub(crate) fn lowmem(&self) -> u64 {
        self.config.machine.lowmem
    }

    fn cells(&self) -> usize {
        self.config.machine.cells
    }

    /// The executing CPU.
    pub(crate) fn cpu(&self) -> usize {
        self.st.borrow().active
    }

    pub(crate) fn stack(&self, task: usize) -> &dyn DynStack {
        &**self.stacks[task]
            .get()
            .expect("a task's stack exists while it can run")
    }

    pub(crate) fn current_task(&self) -> usize {
        let st = self.st.borrow();
        st.cpus[st.active].current
    }

    pub(crate) fn current_stack(&self) -> &dyn DynStack {
        self.stack(self.current_task())
    }

    pub(crate) fn in_interrupt(&self) -> bool {
        let st = self.st.borrow();
        !st.cpus[st.active].nested.is_empty()
    }

    pub(crate) fn irqs_disabled(&self) -> bool {
        let st = self.st.borrow();
        st.cpus[st.active].irqs_off
    }

    // ---- the page table and the TLB --------------------------------------------------------

    fn slot_index(&self, cpu: usize, cell: usize) -> usize {
        cpu * self.cells() + cell
    }

    pub(crate) fn slot_address(&self, cpu: usize, cell: usize) -> usize {
        WINDOW + self.slot_index(cpu, cell) * PAGE_SIZE
    }

    pub(crate) fn read_pte(&self, cpu: usize, cell: usize) -> Pte {
        self.st.borrow().pt[self.slot_index(cpu, cell)]
    }

    pub(crate) fn install_pte(&self, cpu: usize, cell: usize, pte: Pte) {
        let index = self.slot_index(cpu, cell);
        let (unflushed, live) = {
            let st = self.st.borrow();
            (st.unflushed.contains(&index), st.pt[index])
        };
        if !live.is_empty() {
            let what = format!(
                "slot {cpu}.{cell} is installed with frame {} while it still maps frame {}",
                pte_frame(pte),
                pte_frame(live)
            );
            if self.config.machine.bug_on() {
                self.violate(ViolationKind::Crash, format!("{what} (BUG_ON(!pte_none))"));
                return;
            }
            self.hazard(Rule::Inv1, format!("{what}: overwritten"));
        }
        if unflushed {
            let page = self.slot_address(cpu, cell);
            let stale = self.st.borrow().tlb[cpu].get(&page).copied();
            let consequence = match stale {
                Some(frame) => format!(": CPU {cpu}'s TLB still translates it to frame {frame}"),
                None => String::new(),
            };
            self.hazard(
                Rule::Inv6,
                format!(
                    "slot {cpu}.{cell} is reused before its TLB entry was invalidated{consequence}"
                ),
            );
        }
        self.st.borrow_mut().pt[index] = pte;
        self.trace(What::Install {
            cpu,
            cell,
            frame: pte_frame(pte),
        });
    }

    pub(crate) fn clear_pte(&self, cpu: usize, cell: usize) {
        let index = self.slot_index(cpu, cell);
        {
            let mut st = self.st.borrow_mut();
            st.pt[index] = Pte::EMPTY;
            st.unflushed.insert(index);
        }
        self.trace(What::Clear { cpu, cell });
    }

    pub(crate) fn invalidate_local(&self, addr: usize) {
        if self.config.machine.mutation == Some(Mutation::DropInvalidations) {
            return;
        }
        let page = addr & !(PAGE_SIZE - 1);
        let index = (page - WINDOW) / PAGE_SIZE;
        let cell = index % self.cells();
        {
            let mut st = self.st.borrow_mut();
            let cpu = st.active;
            st.tlb[cpu].remove(&page);
            if index / self.cells() == cpu {
                st.unflushed.remove(&index);
            }
        }
        self.trace(What::Invalidate { cell });
    }

    /// Where `addr` leads on the executing CPU: the frame (and whether the TLB served it), or a
    /// fault.
    pub(crate) fn translate(&self, addr: usize) -> (Option<u64>, bool) {
        let m = &self.config.machine;
        let page = addr & !(PAGE_SIZE - 1);
        if (DIRECT_MAP..DIRECT_MAP + m.lowmem as usize * PAGE_SIZE).contains(&page) {
            return (Some(((page - DIRECT_MAP) / PAGE_SIZE) as u64), false);
        }
        if !(WINDOW..WINDOW + m.cpus * m.cells * PAGE_SIZE).contains(&page) {
            return (None, false);
        }
        let mut st = self.st.borrow_mut();
        let cpu = st.active;
        if m.tlb {
            if let Some(&frame) = st.tlb[cpu].get(&page) {
                return (Some(frame), true);
            }
        }
        let pte = st.pt[(page - WINDOW) / PAGE_SIZE];
        if pte.is_empty() {
            return (None, false);
        }
        let frame = pte_frame(pte);
        if m.tlb {
            st.tlb[cpu].insert(page, frame);
        }
        (Some(frame), false)
    }

    /// Read (or, with `write`, write a fresh tag into) the frame `held` maps, through the MMU,
    /// and check that the access reaches that frame and sees what was last written to it.
    pub(crate) fn access(&self, held: Held, write: bool) {
        let (reached, tlb_hit) = self.translate(held.addr);
        self.trace(What::Access {
            expected: held.frame,
            reached,
            tlb_hit,
        });
        let Some(frame) = reached else {
            self.violate(
                ViolationKind::Fault,
                format!(
                    "{} of frame {} at {:#x} faults: the slot has no translation",
                    if write { "a write" } else { "a read" },
                    held.frame,
                    held.addr
                ),
            );
            return;
        };
        let mut st = self.st.borrow_mut();
        if write {
            let tag = st.next_tag;
            st.next_tag += 1;
            st.tags[frame as usize] = tag;
            if frame == held.frame {
                st.expected[frame as usize] = tag;
                return;
            }
        } else if frame == held.frame {
            let (seen, expected) = (st.tags[frame as usize], st.expected[frame as usize]);
            drop(st);
            if seen != expected {
                self.violate(
                    ViolationKind::Corruption,
                    format!(
                        "frame {frame} holds tag {seen:#x}, but its owner last wrote {expected:#x}: \
                         another context wrote into it"
                    ),
                );
            }
            return;
        }
        drop(st);
        let via = if tlb_hit {
            " through a stale TLB entry"
        } else {
            ""
        };
        let what = format!(
            "{} of frame {} at {:#x} reached frame {frame}{via}",
            if write { "a write" } else { "a read" },
            held.frame,
            held.addr
        );
        // A read of the wrong frame returns wrong data now; a write corrupts the frame's owner
        // now, or, if nobody maps that frame, whoever maps and reads it next.
        if write && !self.frame_is_held(frame) {
            self.hazard(Rule::StrayWrite, format!("{what}, which nobody maps now"));
        } else {
            self.violate(ViolationKind::Corruption, what);
        }
    }

    /// Whether some context (a task, or a handler in progress) holds a mapping of `frame`.
    fn frame_is_held(&self, frame: u64) -> bool {
        let st = self.st.borrow();
        st.tasks
            .iter()
            .flat_map(|t| t.mappings.iter())
            .chain(
                st.cpus
                    .iter()
                    .flat_map(|c| c.nested.iter().flat_map(|n| n.mappings.iter())),
            )
            .any(|h| h.frame == frame)
    }

    // ---- counters ---------------------------------------------------------------------------

    /// Move a counter (per CPU for preemption and page faults, per task for migration).
    pub(crate) fn count(&self, counter: Counter, delta: i32) {
        let value = {
            let mut st = self.st.borrow_mut();
            let cpu = st.active;
            let task = st.cpus[cpu].current;
            let value = match counter {
                Counter::Preempt => &mut st.cpus[cpu].preempt,
                Counter::Pagefault => &mut st.cpus[cpu].pagefault,
                Counter::Migrate => &mut st.tasks[task].migrate,
            };
            *value += delta;
            *value
        };
        if value < 0 {
            self.violate(
                ViolationKind::Crash,
                format!("the {counter:?} count went negative"),
            );
        }
    }

    // ---- reports, refusals, violations, trace ----------------------------------------------

    pub(crate) fn report(&self, report: Report) {
        self.st.borrow_mut().outcome.reports.push(report);
        self.trace(What::Report(report));
        match report {
            Report::Migrated { from, to } => self.hazard(
                Rule::Inv4,
                format!(
                    "a task holding mappings made on CPU {} was switched in on CPU {}",
                    from.0, to.0
                ),
            ),
            Report::GuardCellNotEmpty { cell } => self.hazard(
                Rule::Inv2,
                format!("guard cell {} holds a saved PTE", cell.0),
            ),
            Report::SavedValueEmpty { cell } => self.hazard(
                Rule::Inv5,
                format!(
                    "cell {} is below idx but has no saved PTE at a context switch",
                    cell.0
                ),
            ),
            _ => {}
        }
    }

    pub(crate) fn refuse(&self, message: String) {
        let (cpu, context) = self.where_now();
        self.st.borrow_mut().outcome.refusals.push(Refusal {
            cpu,
            context,
            message: message.clone(),
        });
        self.trace(What::Refused(message));
    }

    /// Record a consequence (or, under strict checking, a hazard); the execution stops at the
    /// next arrival point.
    pub(crate) fn violate(&self, kind: ViolationKind, message: String) {
        let (cpu, context) = self.where_now();
        {
            let mut st = self.st.borrow_mut();
            let label = st
                .last_label
                .map(|l| l.to_string())
                .unwrap_or_else(|| "start".into());
            st.outcome.violations.push(Violation {
                kind,
                cpu,
                context,
                label,
                message: message.clone(),
            });
            st.aborted = true;
        }
        self.trace(What::Violation(format!("{kind}: {message}")));
    }

    /// Record a rule broken with no consequence yet (once per rule, point and context in an
    /// execution); under strict checking it is a violation.
    pub(crate) fn hazard(&self, rule: Rule, message: String) {
        if self.config.strict {
            self.violate(ViolationKind::Hazard(rule), message);
            return;
        }
        let (cpu, context) = self.where_now();
        let hazard = {
            let st = self.st.borrow();
            Hazard {
                rule,
                cpu,
                context,
                label: st
                    .last_label
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "start".into()),
                message: message.clone(),
                probed: st.probing > 0,
            }
        };
        let seen = self
            .st
            .borrow()
            .outcome
            .hazards
            .iter()
            .any(|h| h.same_place(&hazard));
        if !seen {
            self.st.borrow_mut().outcome.hazards.push(hazard);
        }
        self.trace(What::Hazard(format!("{rule}: {message}")));
    }

    /// The crate called a platform method (traced, to check that calls are separated by
    /// arrival points).
    pub(crate) fn call(&self, name: &'static str) {
        if self.options.trace {
            self.trace(What::Call(name));
        }
    }

    /// The executing CPU, read by the crate. Like Linux's `CONFIG_DEBUG_PREEMPT`
    /// (`smp_processor_id()` in preemptible code), a read from a task that could still be
    /// preempted and migrated is a hazard: the task might run on another CPU by the time it
    /// uses the answer.
    pub(crate) fn read_cpu(&self) -> usize {
        let migratable = {
            let st = self.st.borrow();
            let c = &st.cpus[st.active];
            c.nested.is_empty()
                && !c.in_scheduler
                && c.preempt == 0
                && !c.irqs_off
                && st.tasks[c.current].migrate == 0
        };
        let cpu = self.cpu();
        if migratable {
            self.hazard(
                Rule::DebugPreempt,
                "the crate read the current CPU while the task could still be preempted and \
                 migrated"
                    .into(),
            );
            // Nothing keeps the task here until the crate uses the answer: a preemption (and a
            // migration) may come right after the read.
            self.arrive(Label::MigratableCpuRead);
        }
        cpu
    }

    pub(crate) fn aborted(&self) -> bool {
        self.st.borrow().aborted
    }

    /// The executing CPU and who runs there.
    pub(crate) fn where_now(&self) -> (usize, Context) {
        let st = self.st.borrow();
        let cpu = &st.cpus[st.active];
        let context = match cpu.nested.last() {
            Some(Nested {
                kind: NestedKind::Nmi,
                ..
            }) => Context::Nmi,
            Some(Nested {
                kind: NestedKind::Irq,
                ..
            }) => Context::Irq(
                cpu.nested
                    .iter()
                    .filter(|n| n.kind == NestedKind::Irq)
                    .count(),
            ),
            None if cpu.in_scheduler => Context::Scheduler,
            None if st.tasks[cpu.current].idle => Context::Idle,
            None => Context::Task(st.tasks[cpu.current].name.clone()),
        };
        (st.active, context)
    }

    pub(crate) fn trace(&self, what: What) {
        if !self.options.trace {
            return;
        }
        let (cpu, context) = self.where_now();
        self.st
            .borrow_mut()
            .outcome
            .trace
            .push(Event { cpu, context, what });
    }

    /// Emit `idx` changes of every task since the last look (trace only).
    fn trace_depths(&self) {
        for task in 0..self.stacks.len() {
            let Some(stack) = self.stacks[task].get() else {
                continue;
            };
            let depth = stack.depth();
            let last = std::mem::replace(&mut self.st.borrow_mut().last_depth[task], depth);
            if depth != last {
                let name = self.st.borrow().tasks[task].name.clone();
                self.trace(What::Idx {
                    task: name,
                    from: last,
                    to: depth,
                });
            }
        }
    }

    // ---- arrival points and choices --------------------------------------------------------

    /// An arrival point: anything the chooser decides may happen here, before the next step.
    pub(crate) fn arrive(&self, label: Label) {
        let (arrival, redundant) = {
            let mut st = self.st.borrow_mut();
            st.last_label = Some(label);
            st.outcome.stats.points += 1;
            st.arrivals += 1;
            let cpu = st.active;
            let here = (label, st.cpus[cpu].nested.len(), st.cpus[cpu].epoch);
            let before = st.cpus[cpu].last_arrival.replace(here);
            (st.arrivals - 1, redundant(before, here))
        };
        if self.options.trace {
            self.trace_depths();
            self.trace(What::Point(label));
        }
        let lasting = if self.options.probe.is_some() && !(redundant && self.options.prune) {
            self.probe_handlers(arrival)
        } else {
            Vec::new()
        };
        loop {
            if self.aborted() {
                self.suspend(Yield::Abort);
                return;
            }
            let options = self.options(&lasting);
            if options.len() == 1 {
                return;
            }
            if redundant && self.options.prune {
                self.st.borrow_mut().outcome.stats.pruned += options.len() as u64 - 1;
                return;
            }
            let (index, cpu) = {
                let mut st = self.st.borrow_mut();
                st.choice_index += 1;
                st.outcome.stats.choice_points += 1;
                (st.choice_index - 1, st.active)
            };
            let pick = self.chooser.borrow_mut().choose(&ChoicePoint {
                index,
                arrival,
                cpu,
                label,
                options: &options,
            });
            let choice = options[pick.min(options.len() - 1)];
            {
                let mut st = self.st.borrow_mut();
                if self.options.record_choices {
                    st.outcome.choices.push(ChoiceRecord {
                        arrival,
                        options: options.clone(),
                        chosen: pick,
                    });
                }
                if choice != Choice::Continue {
                    st.outcome.schedule.0.push((arrival, choice));
                }
            }
            match choice {
                Choice::Continue => return,
                Choice::Irq | Choice::Nmi => {
                    let kind = if choice == Choice::Irq {
                        NestedKind::Irq
                    } else {
                        NestedKind::Nmi
                    };
                    if self.options.probe.is_some() {
                        self.st.borrow_mut().used.lasting += 1;
                    }
                    self.interrupt(kind);
                }
                Choice::Preempt => {
                    self.st.borrow_mut().used.preemptions += 1;
                    self.schedule(crate::sched::Reason::Preempt);
                }
                Choice::Migrate(to) => {
                    let mut st = self.st.borrow_mut();
                    st.used.preemptions += 1;
                    st.outcome.stats.preemptions += 1;
                    drop(st);
                    self.schedule(crate::sched::Reason::Migrate(to));
                }
                Choice::Cpu(to) => {
                    self.st.borrow_mut().used.cpu_switches += 1;
                    self.trace(What::Step { to });
                    self.suspend(Yield::Step(to));
                }
            }
        }
    }

    /// What may happen at this point.
    fn options(&self, lasting: &[NestedKind]) -> Vec<Choice> {
        let st = self.st.borrow();
        let bounds = &self.config.bounds;
        let within = |limit: Option<u32>, used: u32| limit.is_none_or(|l| used < l);
        let mut options = vec![Choice::Continue];
        if st.executing.is_none() || st.probing > 0 {
            return options;
        }
        let cpu = &st.cpus[st.active];
        for kind in [NestedKind::Irq, NestedKind::Nmi] {
            // Probing, a handler is a choice only where its probe left a trace.
            let offered = match self.options.probe {
                None => true,
                Some(_) => {
                    lasting.contains(&kind) && within(bounds.lasting_handlers, st.used.lasting)
                }
            };
            if offered && self.handler_may_arrive(&st, kind) {
                options.push(if kind == NestedKind::Irq {
                    Choice::Irq
                } else {
                    Choice::Nmi
                });
            }
        }
        let current = &st.tasks[cpu.current];
        let preemptible = cpu.nested.is_empty()
            && !cpu.in_scheduler
            && !current.idle
            && cpu.preempt == 0
            && !cpu.irqs_off
            && within(bounds.preemptions, st.used.preemptions);
        if preemptible
            && (!cpu.runqueue.is_empty()
                || st.tasks.iter().enumerate().any(|(id, t)| {
                    t.status == Status::Sleeping && t.cpu == st.active && id != cpu.current
                }))
        {
            options.push(Choice::Preempt);
        }
        // Load balancing: a preempted task that may migrate can be moved to another CPU.
        if preemptible && current.migrate == 0 {
            options.extend(
                (0..st.cpus.len())
                    .filter(|&c| c != st.active)
                    .map(Choice::Migrate),
            );
        }
        if within(bounds.cpu_switches, st.used.cpu_switches) {
            for other in (0..st.cpus.len()).filter(|&c| c != st.active) {
                if st.has_work(other) {
                    options.push(Choice::Cpu(other));
                }
            }
        }
        options
    }

    /// Give the host thread back to the driver.
    pub(crate) fn suspend(&self, why: Yield) {
        let yielder = {
            let st = self.st.borrow();
            match st.executing {
                Some(task) => st.yielders[task],
                None => return, // on the driver's own stack: the driver checks `aborted`
            }
        };
        // SAFETY: `yielders[task]` was set by the coroutine of `task` when it started, and that
        // coroutine is the one executing now (the driver sets `executing` around every resume),
        // so the Yielder it points to is alive on this very stack.
        unsafe { (*yielder).suspend(why) }
    }

    /// An interrupt or NMI arrives: its handler runs here, nested, to completion (rules N-1 to
    /// N-3).
    ///
    /// Returns whether the handler left a trace (INV-3: it must leave the CPU exactly as it
    /// found it), which is then a hazard.
    pub(crate) fn interrupt(&self, kind: NestedKind) -> bool {
        let task = self.current_task();
        let entry_depth = self.stack(task).depth();
        let before = self.cpu_view();
        {
            let mut st = self.st.borrow_mut();
            let cpu = st.active;
            st.cpus[cpu].epoch += 1;
            match kind {
                NestedKind::Irq => st.outcome.stats.irqs += 1,
                NestedKind::Nmi => st.outcome.stats.nmis += 1,
            }
        }
        let saved_irqs_off = {
            let mut st = self.st.borrow_mut();
            let cpu = st.active;
            st.cpus[cpu].nested.push(Nested {
                kind,
                mappings: Vec::new(),
            });
            let depth = st.cpus[cpu].nested.len();
            st.outcome.stats.max_nesting = st.outcome.stats.max_nesting.max(depth);
            std::mem::replace(&mut st.cpus[cpu].irqs_off, true)
        };
        let (_, context) = self.where_now();
        self.trace(What::Enter(context.clone()));
        self.check_above_idx(task, entry_depth, "when an interrupt arrives");
        let ops = match kind {
            NestedKind::Irq => self.irq_ops.clone(),
            NestedKind::Nmi => self.nmi_ops.clone(),
        };
        self.run_ops(&ops, None);
        let left = {
            let st = self.st.borrow();
            st.cpus[st.active]
                .nested
                .last()
                .map_or(0, |n| n.mappings.len())
        };
        if left > 0 {
            self.refuse(format!("{context} returned holding {left} mapping(s)"));
        }
        self.check_above_idx(task, entry_depth, "when an interrupt returns");
        self.trace(What::Exit(context.clone()));
        {
            let mut st = self.st.borrow_mut();
            let cpu = st.active;
            st.cpus[cpu].nested.pop();
            st.cpus[cpu].irqs_off = saved_irqs_off;
            st.cpus[cpu].epoch += 1;
        }
        if self.aborted() {
            return false;
        }
        let after = self.cpu_view();
        if after == before {
            return false;
        }
        let (_, under) = self.where_now();
        let trace = self.describe_trace(&before, &after);
        self.hazard(
            Rule::Inv3,
            format!("{context} on top of {under} left a trace: {trace}"),
        );
        true
    }

    /// Whether a handler of `kind` may arrive now: interrupts need interrupts on, nothing
    /// arrives inside an NMI, a handler needs a program, and the nesting depth of that kind is
    /// within its bound.
    fn handler_may_arrive(&self, st: &State, kind: NestedKind) -> bool {
        let cpu = &st.cpus[st.active];
        let in_nmi = cpu.nested.iter().any(|n| n.kind == NestedKind::Nmi);
        let (program, bound) = match kind {
            NestedKind::Irq => (&self.irq_ops, self.config.bounds.irq_depth),
            NestedKind::Nmi => (&self.nmi_ops, self.config.bounds.nmi_depth),
        };
        let used = cpu.nested.iter().filter(|n| n.kind == kind).count() as u32;
        !in_nmi
            && !program.is_empty()
            && (kind == NestedKind::Nmi || !cpu.irqs_off)
            && bound.is_none_or(|limit| used < limit)
    }

    /// Everything of the executing CPU that a handler may touch and must leave as it found it.
    fn cpu_view(&self) -> CpuView {
        let st = self.st.borrow();
        let cpu = st.active;
        let c = &st.cpus[cpu];
        let cells = self.cells();
        let mut tlb: Vec<(usize, u64)> = st.tlb[cpu]
            .iter()
            .map(|(&page, &frame)| (page, frame))
            .collect();
        tlb.sort_unstable();
        let stack = self.stack(c.current);
        CpuView {
            slots: st.pt[cpu * cells..(cpu + 1) * cells].to_vec(),
            tlb,
            unflushed: (0..cells)
                .filter(|cell| st.unflushed.contains(&(cpu * cells + cell)))
                .collect(),
            depth: stack.depth(),
            saved: (0..stack.cells()).map(|cell| stack.saved(cell)).collect(),
            counters: [
                c.preempt,
                c.pagefault,
                st.tasks[c.current].migrate,
                c.irqs_off as i32,
            ],
        }
    }

    /// The state a handler of `kind` can observe from here, written into `key`: its CPU (as
    /// [`cpu_view`](Self::cpu_view) sees it), the handlers it is nested in, the frames its
    /// program names, and how deep probes may still nest in it. The key is the state itself, not
    /// a hash of it, so the memo never mistakes one state for another.
    fn probe_key(&self, kind: NestedKind, depth_left: u32, key: &mut Vec<u64>) {
        let st = self.st.borrow();
        let cpu = st.active;
        let c = &st.cpus[cpu];
        let cells = self.cells();
        let stack = self.stack(c.current);
        key.clear();
        key.extend([
            (kind == NestedKind::Irq) as u64,
            cpu as u64,
            depth_left as u64,
            stack.depth() as u64,
        ]);
        key.extend(
            st.pt[cpu * cells..(cpu + 1) * cells]
                .iter()
                .map(|pte| pte.raw()),
        );
        key.extend((0..stack.cells()).map(|cell| stack.saved(cell).raw()));
        // The TLB in the order of its pages (a handful of entries).
        let mut last = None;
        while let Some((&page, &frame)) = st.tlb[cpu]
            .iter()
            .filter(|(&page, _)| last.is_none_or(|l| page > l))
            .min_by_key(|(&page, _)| page)
        {
            key.extend([page as u64, frame]);
            last = Some(page);
        }
        key.push(u64::MAX);
        key.extend(
            (0..cells)
                .filter(|cell| st.unflushed.contains(&(cpu * cells + cell)))
                .map(|cell| cell as u64),
        );
        key.push(u64::MAX);
        key.extend([
            c.preempt as u64,
            c.pagefault as u64,
            st.tasks[c.current].migrate as u64,
            c.irqs_off as u64,
        ]);
        key.extend(c.nested.iter().map(|n| (n.kind == NestedKind::Irq) as u64));
        key.push(u64::MAX);
        for op in self.irq_ops.iter().chain(self.nmi_ops.iter()) {
            if let Some(frame) = op.frame() {
                key.extend([st.tags[frame as usize], st.expected[frame as usize]]);
            }
        }
    }

    /// Run every handler that may arrive here, inline, and check that each leaves no trace.
    /// Returns the kinds whose handler left one: each was undone, and is offered as a lasting
    /// handler (a real event whose effects persist) where the bound allows.
    fn probe_handlers(&self, arrival: u64) -> Vec<NestedKind> {
        let memo = self.options.probe.clone().expect("probing");
        let mut lasting = Vec::new();
        for kind in [NestedKind::Irq, NestedKind::Nmi] {
            let depth = self.st.borrow().probing;
            if self.aborted()
                || depth >= self.options.probe_depth
                || !self.handler_may_arrive(&self.st.borrow(), kind)
            {
                continue;
            }
            let mut key = std::mem::take(&mut *self.probe_scratch.borrow_mut());
            self.probe_key(kind, self.options.probe_depth - depth, &mut key);
            let known = memo.borrow().0.contains(key.as_slice());
            let key_copy: Box<[u64]> = if known {
                Box::default()
            } else {
                key.as_slice().into()
            };
            *self.probe_scratch.borrow_mut() = key;
            if known {
                self.st.borrow_mut().outcome.stats.probes_remembered += 1;
                continue;
            }
            let choice = if kind == NestedKind::Irq {
                Choice::Irq
            } else {
                Choice::Nmi
            };
            self.st
                .borrow_mut()
                .outcome
                .schedule
                .0
                .push((arrival, choice));
            let saved = self.save_cpu();
            let refusals = self.st.borrow().outcome.refusals.len();
            self.st.borrow_mut().probing += 1;
            let left_trace = self.interrupt(kind);
            self.st.borrow_mut().probing -= 1;
            if self.aborted() || self.st.borrow().outcome.refusals.len() != refusals {
                // The schedule keeps this probe: a replay runs it as an ordinary event.
                return lasting;
            }
            self.restore_cpu(saved);
            self.st.borrow_mut().outcome.schedule.0.pop();
            if left_trace {
                self.st.borrow_mut().outcome.stats.probes_with_trace += 1;
                lasting.push(kind);
            } else {
                self.st.borrow_mut().outcome.stats.probes += 1;
                memo.borrow_mut().0.insert(key_copy);
            }
        }
        lasting
    }

    /// Everything a handler on the executing CPU can change, to put back after a probe.
    fn save_cpu(&self) -> SavedCpu {
        let st = self.st.borrow();
        let cpu = st.active;
        let c = &st.cpus[cpu];
        SavedCpu {
            pt: st.pt.clone(),
            tlb: st.tlb[cpu].clone(),
            unflushed: st.unflushed.clone(),
            preempt: c.preempt,
            pagefault: c.pagefault,
            irqs_off: c.irqs_off,
            migrate: st.tasks[c.current].migrate,
            stack: self.stack(c.current).save(),
            tags: st.tags.clone(),
            expected: st.expected.clone(),
            next_tag: st.next_tag,
            arrivals: st.arrivals,
            last_arrival: c.last_arrival,
            last_label: st.last_label,
            epoch: c.epoch,
            reports: st.outcome.reports.len(),
        }
    }

    /// Put back what [`save_cpu`](Self::save_cpu) saved, on the same CPU with the same task
    /// current.
    fn restore_cpu(&self, saved: SavedCpu) {
        let mut st = self.st.borrow_mut();
        let cpu = st.active;
        let current = st.cpus[cpu].current;
        st.pt = saved.pt;
        st.tlb[cpu] = saved.tlb;
        st.unflushed = saved.unflushed;
        let c = &mut st.cpus[cpu];
        c.preempt = saved.preempt;
        c.pagefault = saved.pagefault;
        c.irqs_off = saved.irqs_off;
        c.last_arrival = saved.last_arrival;
        c.epoch = saved.epoch;
        st.tasks[current].migrate = saved.migrate;
        st.tags = saved.tags;
        st.expected = saved.expected;
        st.next_tag = saved.next_tag;
        st.arrivals = saved.arrivals;
        st.last_label = saved.last_label;
        st.outcome.reports.truncate(saved.reports);
        drop(st);
        // SAFETY: the stack state was saved from this task's stack at this arrival point, and
        // every slot, TLB entry and counter of the CPU was put back above; the handler that ran
        // in between has returned, and the task's own code is suspended at the same point.
        unsafe { self.stack(current).restore(&*saved.stack) };
    }

    /// What differs between two views of the executing CPU, in words.
    fn describe_trace(&self, before: &CpuView, after: &CpuView) -> String {
        let cpu = self.cpu();
        let show = |pte: &Pte| {
            if pte.is_empty() {
                "empty".to_string()
            } else {
                format!("frame {}", pte_frame(*pte))
            }
        };
        let mut changes: Vec<String> = (0..before.slots.len())
            .filter(|&cell| before.slots[cell] != after.slots[cell])
            .map(|cell| {
                format!(
                    "slot {cpu}.{cell} was {}, is {}",
                    show(&before.slots[cell]),
                    show(&after.slots[cell])
                )
            })
            .collect();
        changes.extend(
            after
                .tlb
                .iter()
                .filter(|entry| !before.tlb.contains(entry))
                .map(|&(page, frame)| {
                    let cell = (page - WINDOW) / PAGE_SIZE % before.slots.len();
                    format!("CPU {cpu}'s TLB translates cell {cell} to frame {frame}")
                }),
        );
        changes.extend(
            after
                .unflushed
                .iter()
                .filter(|cell| !before.unflushed.contains(cell))
                .map(|cell| format!("slot {cpu}.{cell} is left uninvalidated")),
        );
        if before.depth != after.depth {
            changes.push(format!("idx was {}, is {}", before.depth, after.depth));
        } else if before.saved != after.saved {
            changes.push("a saved PTE differs".into());
        }
        if before.counters != after.counters {
            changes.push("the preemption, page-fault or migration count differs".into());
        }
        changes.join(", ")
    }

    /// INV-1: on the executing CPU, every slot at or above `task`'s depth is empty.
    pub(crate) fn check_above_idx(&self, task: usize, depth: usize, when: &str) {
        let cpu = self.cpu();
        let occupied: Vec<(usize, u64)> = (depth..self.cells())
            .filter_map(|cell| {
                let pte = self.read_pte(cpu, cell);
                (!pte.is_empty()).then(|| (cell, pte_frame(pte)))
            })
            .collect();
        if let Some(&(cell, frame)) = occupied.first() {
            let name = self.st.borrow().tasks[task].name.clone();
            self.hazard(
                Rule::Inv1,
                format!(
                    "{when}, slot {cpu}.{cell} maps frame {frame} but current ({name}) has idx {depth}: \
                     a mapping made now would land on a live slot"
                ),
            );
        }
    }

    /// The outcome so far, leaving an empty one.
    pub(crate) fn take_outcome(&self) -> Outcome {
        let mut st = self.st.borrow_mut();
        std::mem::take(&mut st.outcome)
    }

    /// Whether the protocol is `p`.
    pub(crate) fn protocol(&self) -> Protocol {
        self.config.machine.protocol
    }
}

impl State {
    /// The task whose coroutine executes CPU `cpu`'s code, if any.
    pub(crate) fn runner(&self, cpu: usize) -> Option<usize> {
        let c = &self.cpus[cpu];
        c.idle_host
            .or((!self.tasks[c.current].idle).then_some(c.current))
    }

    /// Whether CPU `cpu` has something to execute.
    pub(crate) fn has_work(&self, cpu: usize) -> bool {
        self.runner(cpu).is_some() || !self.cpus[cpu].runqueue.is_empty()
    }
}

impl TaskState {
    fn new(name: String, cpu: usize, ops: Rc<[Op]>, idle: bool) -> TaskState {
        TaskState {
            name,
            cpu,
            status: if idle {
                Status::Running
            } else {
                Status::Runnable
            },
            idle,
            ops,
            mappings: Vec::new(),
            migrate: 0,
            pending_migration: None,
            runs: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chooser::NoInjection;

    /// Like Linux's `CONFIG_DEBUG_PREEMPT`: reading the CPU while the task can still be
    /// preempted and migrated is a hazard; once migration (or preemption) is disabled it is not.
    /// The crate reads it only after `migrate_disable`; a crate that read it before would be
    /// reported here.
    #[test]
    fn reading_the_cpu_while_migratable_is_a_hazard() {
        let config = Config {
            program: crate::Program {
                tasks: vec![crate::Task {
                    name: "A".into(),
                    cpu: 0,
                    ops: vec![Op::Check],
                }],
                ..crate::Program::default()
            },
            ..Config::default()
        };
        let machine = Machine::new(
            &config,
            Rc::new(RefCell::new(NoInjection)),
            RunOptions::default(),
        );
        machine.count(Counter::Migrate, 1);
        assert_eq!(machine.read_cpu(), 0);
        assert!(machine.st.borrow().outcome.hazards.is_empty());
        machine.count(Counter::Migrate, -1);
        machine.read_cpu();
        let hazards = &machine.st.borrow().outcome.hazards;
        assert_eq!(hazards.len(), 1);
        assert_eq!(hazards[0].rule, Rule::DebugPreempt);
    }
}
