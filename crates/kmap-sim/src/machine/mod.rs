//! The machine: memory with a tag in every frame, the kernel page table's kmap slots, a TLB per
//! CPU, CPUs with their counters and nested interrupt contexts, tasks, and the oracle that
//! watches all of it.
//!
//! The machine is driven by the real crate code through [`SimPlatform`](crate::adapter) and by
//! its own scheduler and program interpreter. At every arrival point it asks the
//! [`Chooser`](crate::Chooser) what happens next; an interrupt or NMI runs right there, nested on
//! the current stack; a preemption switches tasks right there, on the task's own stack.
//!
//! This module holds the state and the facts the crate asks for; each concern has a file:
//!
//! - [`memory`]: the page table, the TLBs, and every access through them;
//! - [`interrupts`]: handlers, nested and probed, and the check that they leave no trace;
//! - [`arrival`]: arrival points and the choices taken there;
//! - [`sched`]: run queues and the context switch, per protocol;
//! - [`program`]: the interpreter of task, interrupt and NMI programs;
//! - [`oracle`]: consequences, hazards, refusals, reports and the trace;
//! - [`state`]: the state of the whole system, for stateful searches.

mod arrival;
mod interrupts;
mod memory;
mod oracle;
mod program;
mod sched;
mod state;

pub use interrupts::ProbeMemo;
pub(crate) use sched::Reason;

use std::cell::{OnceCell, RefCell};
use std::collections::VecDeque;

use std::rc::Rc;

use corosensei::Yielder;
use kmap::{Point, Pte, Report};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

pub use crate::trace::Label;

pub(crate) use crate::adapter::Counter;
use crate::adapter::{DynStack, Hardware, KmapOps};
use crate::chooser::Chooser;
use crate::config::{Config, Op, Protocol};
use crate::outcome::{Outcome, ViolationKind};

/// An arrival point as the pruning rule sees it: its label, the handler nesting depth there, and
/// the CPU's context epoch (see `Cpu::epoch`).
pub(crate) type Arrival = (Label, usize, u64);

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
    /// The pages of an endless nondeterministic program (`Task::any`), if it runs one.
    pub(crate) any: Rc<[u64]>,
    /// The next operation of `ops`.
    pub(crate) pc: usize,
    /// Where its own code is inside the current operation (kept for stateful searches).
    pub(crate) place: Place,
    pub(crate) mappings: Vec<Held>,
    pub(crate) migrate: i32,
    pub(crate) pending_migration: Option<usize>,
    /// How many times it became current (to tell whether it ran since a snapshot).
    pub(crate) runs: u64,
}

/// Where a task's own code is inside an operation, as far as its future depends on it: the
/// operation, how many arrival points of its own (not its handlers', not the scheduler's) it
/// has passed in it and the last of them, and every value the platform answered the crate's
/// reads with in it. The code is deterministic, so these fix every local variable of the
/// suspended call (see `Machine::state_key`).
#[derive(Clone, Default, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Place {
    pub(crate) op: Option<Op>,
    pub(crate) steps: u32,
    pub(crate) label: Option<Label>,
    pub(crate) reads: Vec<u64>,
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
    /// Where the scheduler's code is in the switch in progress (as [`Place`] for a task).
    pub(crate) sched_place: Place,
}

pub(crate) struct SwitchSnapshot {
    pub(crate) prev: usize,
    pub(crate) prev_runs: u64,
    pub(crate) prev_stack: (usize, Vec<Pte>),
    pub(crate) next: usize,
    pub(crate) next_stack: (usize, Vec<Pte>),
}

/// Branching events used so far in an execution, against the bounds.
#[derive(Default)]
pub(crate) struct Used {
    pub(crate) preemptions: u32,
    pub(crate) cpu_switches: u32,
    pub(crate) lasting: u32,
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
    /// For a stateful search: every choice point carries the state's key
    /// ([`ChoicePoint::state`](crate::ChoicePoint::state)), and handlers that run as real
    /// events run to completion without a switch of the executing CPU inside them.
    pub stateful: bool,
    /// A preemption may switch to any task of the run queue (as a stateful search explores, and
    /// its counterexamples replay), not only to the next one.
    pub pick_any_next: bool,
    /// Partial-order reduction across CPUs: the executing CPU changes only before a program's
    /// next step (see the README's `kmap prove` section for why that loses no state that
    /// matters).
    pub reduce: bool,
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
        let ops = crate::adapter::ops_for(
            m.cells,
            m.guard_cells,
            m.force_map,
            m.release == crate::config::Release::Any,
        )
        .expect("validated layout");
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
                sched_place: Place::default(),
            })
            .collect();
        for cpu in 0..m.cpus {
            let _ = stacks[cpu].set(ops.new_stack());
            tasks.push(TaskState::new(
                format!("idle{cpu}"),
                cpu,
                Rc::from(Vec::new()),
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
                Rc::from(task.any.clone()),
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

    // ---- arrival points and choices --------------------------------------------------------

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
    /// The task whose own code (not a handler's, not the scheduler's) executes on `cpu`, if any.
    pub(crate) fn own_context(&self, cpu: usize) -> Option<usize> {
        let c = &self.cpus[cpu];
        (c.nested.is_empty() && !c.in_scheduler && !self.tasks[c.current].idle).then_some(c.current)
    }

    /// Where the code executing on `cpu` is, if it is a task's own or the scheduler's (a
    /// handler's place is not kept: it runs to completion within a step).
    pub(crate) fn place_mut(&mut self, cpu: usize) -> Option<&mut Place> {
        if let Some(task) = self.own_context(cpu) {
            return Some(&mut self.tasks[task].place);
        }
        let c = &mut self.cpus[cpu];
        (c.nested.is_empty() && c.in_scheduler).then_some(&mut c.sched_place)
    }

    /// Record what the platform answered the crate (see [`Place`]).
    pub(crate) fn record_read(&mut self, value: u64) {
        if let Some(place) = self.place_mut(self.active) {
            place.reads.push(value);
        }
    }

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
    pub(crate) fn new(
        name: String,
        cpu: usize,
        ops: Rc<[Op]>,
        any: Rc<[u64]>,
        idle: bool,
    ) -> TaskState {
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
            any,
            pc: 0,
            place: Place::default(),
            mappings: Vec::new(),
            migrate: 0,
            pending_migration: None,
            runs: 0,
        }
    }
}

impl Hardware for Machine {
    fn call(&self, name: &'static str) {
        Machine::call(self, name)
    }
    fn read_cpu(&self) -> usize {
        let cpu = Machine::read_cpu(self);
        self.st.borrow_mut().record_read(cpu as u64);
        cpu
    }
    fn current_stack(&self) -> &dyn DynStack {
        Machine::current_stack(self)
    }
    fn cpus(&self) -> usize {
        self.config.machine.cpus
    }
    fn lowmem(&self) -> u64 {
        self.config.machine.lowmem
    }
    fn bug_on(&self) -> bool {
        self.config.machine.bug_on()
    }
    fn read_pte(&self, cpu: usize, cell: usize) -> Pte {
        let pte = Machine::read_pte(self, cpu, cell);
        self.st.borrow_mut().record_read(pte.raw());
        pte
    }
    fn install_pte(&self, cpu: usize, cell: usize, pte: Pte) {
        Machine::install_pte(self, cpu, cell, pte)
    }
    fn clear_pte(&self, cpu: usize, cell: usize) {
        Machine::clear_pte(self, cpu, cell)
    }
    fn invalidate_local(&self, addr: usize) {
        Machine::invalidate_local(self, addr)
    }
    fn count(&self, counter: Counter, delta: i32) {
        Machine::count(self, counter, delta)
    }
    fn in_interrupt(&self) -> bool {
        let answer = Machine::in_interrupt(self);
        self.st.borrow_mut().record_read(answer as u64);
        answer
    }
    fn irqs_disabled(&self) -> bool {
        let answer = Machine::irqs_disabled(self);
        self.st.borrow_mut().record_read(answer as u64);
        answer
    }
    fn report(&self, report: Report) {
        Machine::report(self, report)
    }
    fn point(&self, point: Point) {
        self.arrive(Label::Crate(point))
    }
}
