//! The machine, made of hardware-shaped parts that own their state, and the code that drives
//! them.
//!
//! The parts (each a file, with private fields and its own methods):
//!
//! - [`memory`]: the frames and their tags;
//! - [`mmu`]: the page table's kmap slots, a TLB per CPU, the slots cleared and not yet
//!   invalidated;
//! - [`cpu`]: each CPU's `current`, run queue, counters, nested handlers, switch in progress
//!   and last arrival point;
//! - [`task`]: the tasks and their kmap stacks;
//! - [`arrival`]'s [`Arrivals`](arrival::Arrivals): the numbering of arrival and choice
//!   points, and the events used against the bounds.
//!
//! What happens to them, one concern a file:
//!
//! - [`driver`]: one coroutine per task, resumed one at a time on the host thread;
//! - [`access`]: the crate's writes to the page table, its invalidations, and every access
//!   through a mapping;
//! - [`arrival`]: arrival points, and the choices taken there;
//! - [`interrupts`]: handlers, nested on the current stack; [`probe`]: handlers run and undone
//!   at every arrival point, and the check that they leave no trace;
//! - [`sched`]: the context switch, per protocol;
//! - [`interpreter`]: the programs of tasks, interrupts and NMIs;
//! - [`oracle`]: consequences, hazards, refusals, reports and the trace, read from the parts;
//! - [`state`]: the state of the whole system, for stateful searches.
//!
//! The machine is driven by the real crate code through [`SimPlatform`](crate::platform) and by
//! its own scheduler and program interpreter. At every arrival point it asks the
//! [`Chooser`](crate::Chooser) what happens next; an interrupt or NMI runs right there, nested on
//! the current stack; a preemption switches tasks right there, on the task's own stack.

mod access;
mod arrival;
mod cpu;
mod driver;
mod guarded;
mod interpreter;
mod interrupts;
mod memory;
mod mmu;
mod oracle;
mod probe;
mod sched;
mod state;
mod symmetry;
mod task;

pub use driver::{run, run_with};
pub use probe::ProbeMemo;

use std::cell::{self, RefCell, RefMut};
use std::rc::Rc;
use std::sync::Arc;

use corosensei::Yielder;
use kmap::{CpuId, Point, Pte, Report, Slot, VirtAddr};

use self::arrival::Arrivals;
use self::cpu::Cpu;
use self::memory::Memory;
use self::mmu::Mmu;
use self::symmetry::Symmetry;
use self::task::{Code, FORK_CHILD, Place, Read, Stacks, TaskState};
use crate::choice::{Chooser, TaskId};
use crate::config::Config;
use crate::implementation::ForeignPoint;
use crate::outcome::{Outcome, Rule, ViolationKind};
use crate::platform::{Counter, DynStack, Hardware, KmapOps, Layout};
use crate::program::{Alphabet, Api, Op};
use crate::trace::Label;

/// What a task's coroutine tells the driver when it gives up the host thread.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Yield {
    /// Let this CPU execute.
    Step(CpuId),
    /// `current` of the executing CPU changed: run it.
    Switched,
    /// The execution is over (a violation was found, or the chooser stopped it).
    Abort,
}

pub(crate) type TaskYielder = Yielder<(), Yield>;

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
    pub probe: Option<Arc<ProbeMemo>>,
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
    /// next step, and with isolated CPUs only when it has nothing left to do (see the README's
    /// `kmap prove` section and `arrival::isolated` for why that loses nothing that matters).
    pub reduce: bool,
    /// For a stateful search: the key of a state is its canonical form under the relabelling
    /// of interchangeable tasks and their pages and the rotations of the CPUs where they hold
    /// (see `machine/symmetry.rs`), so the search remembers one state of each class of states
    /// that differ only in which task or CPU is which.
    pub symmetry: bool,
    /// For a stateful search: every state also carries its canonical key
    /// ([`StateKey::orbit`](crate::StateKey::orbit)), with or without `symmetry` (to compare
    /// the two searches).
    pub orbits: bool,
}

/// The coroutine side of the driver: which task's coroutine executes, and each task's yielder.
struct Driver {
    executing: Option<TaskId>,
    yielders: Vec<*const TaskYielder>,
}

/// The simulated machine of one run.
pub struct Machine {
    config: Config,
    options: RunOptions,
    /// The crate's entry points for this run's stack layout.
    kmap: &'static dyn KmapOps,
    chooser: Rc<RefCell<dyn Chooser>>,
    stacks: Stacks,
    memory: RefCell<Memory>,
    mmu: RefCell<Mmu>,
    cpus: RefCell<Vec<Cpu>>,
    /// The CPU executing now.
    active: cell::Cell<CpuId>,
    tasks: RefCell<Vec<TaskState>>,
    arrivals: RefCell<Arrivals>,
    /// What the oracle found.
    outcome: RefCell<Outcome>,
    /// Every task's `idx` as the trace last showed it.
    traced_depths: RefCell<Vec<usize>>,
    driver: RefCell<Driver>,
    /// Room for building probe keys (see `probe::probe_key`), reused.
    probe_scratch: RefCell<Vec<u64>>,
    /// Room for the bytes of a state key (see `Machine::digest`), reused.
    key_scratch: RefCell<Vec<u8>>,
    /// Hazards met so far in this execution, each time, listed or not (a probe that met one
    /// is not remembered as clean: see `Machine::probe_handlers`).
    hazards_met: cell::Cell<u64>,
    /// Every probe in progress, innermost last: what to put back, and its key (see
    /// `Machine::probe_handlers`).
    probes: RefCell<Vec<(probe::SavedCpu, Box<[u64]>)>>,
    /// For every call of the crate's map or unmap in progress, by its caller: what a refusal
    /// must leave as it found (see `Machine::check_refusal_undone`).
    views_before_calls: RefCell<Vec<(interpreter::Caller, probe::CpuView)>>,
    /// A task runs an endless program (see `Machine::check_quiescent`).
    endless: bool,
    /// With the reduction, the CPUs are isolated: one runs until it has nothing left to do
    /// before the next runs (see `arrival::isolated`).
    isolated: bool,
    /// The interchangeable tasks and CPUs (see `symmetry.rs`), for canonical keys.
    symmetry: Symmetry,
}

impl Machine {
    /// A machine ready to run `config` (already validated).
    pub(crate) fn new(
        config: &Config,
        chooser: Rc<RefCell<dyn Chooser>>,
        options: RunOptions,
    ) -> Machine {
        let m = &config.machine;
        let kmap = crate::implementation::ops(m).expect("validated implementation");
        let forks: usize = config
            .program
            .tasks
            .iter()
            .map(|t| t.ops.iter().filter(|&&op| op == Op::Fork).count())
            .sum();
        let capacity = m.cpus + config.program.tasks.len() + forks;
        let stacks = Stacks::new(capacity);
        let mut tasks = Vec::new();
        let mut cpus: Vec<Cpu> = (0..m.cpus).map(|cpu| Cpu::new(TaskId(cpu))).collect();
        for cpu in 0..m.cpus {
            stacks.set(TaskId(cpu), kmap.new_stack());
            tasks.push(TaskState::new(
                format!("idle{cpu}"),
                CpuId(cpu as u32),
                Code::Idle,
            ));
        }
        for (n, task) in config.program.tasks.iter().enumerate() {
            let id = TaskId(tasks.len());
            stacks.set(id, kmap.new_stack());
            let mut state = TaskState::new(task.name.clone(), task.cpu, Code::Config(n));
            state.pinned = task.pinned;
            tasks.push(state);
            cpus[task.cpu.0 as usize].enqueue(id);
        }
        let layout = Layout::of(m);
        // The classes are worked out only for runs whose keys use them: a stateless run (the
        // most executions by far) takes no state key at all.
        let symmetry = if options.symmetry || options.orbits {
            Symmetry::of(config)
        } else {
            Symmetry::none(config)
        };
        let isolated = options.reduce && arrival::isolated(config);
        Machine {
            config: config.clone(),
            options,
            kmap,
            chooser,
            endless: config.program.tasks.iter().any(|t| t.is_any()),
            isolated,
            stacks,
            memory: RefCell::new(Memory::new(m.frames)),
            mmu: RefCell::new(Mmu::new(layout, m.tlb)),
            cpus: RefCell::new(cpus),
            active: cell::Cell::new(CpuId(0)),
            tasks: RefCell::new(tasks),
            arrivals: RefCell::new(Arrivals::default()),
            outcome: RefCell::new(Outcome::default()),
            traced_depths: RefCell::new(vec![0; capacity]),
            driver: RefCell::new(Driver {
                executing: None,
                yielders: vec![std::ptr::null(); capacity],
            }),
            probe_scratch: RefCell::new(Vec::with_capacity(256)),
            key_scratch: RefCell::new(Vec::new()),
            hazards_met: cell::Cell::new(0),
            probes: RefCell::new(Vec::new()),
            views_before_calls: RefCell::new(Vec::new()),
            symmetry,
        }
    }

    // ---- the parts -------------------------------------------------------------------------

    /// The executing CPU.
    pub(crate) fn cpu(&self) -> CpuId {
        self.active.get()
    }

    /// The executing CPU's state.
    fn this_cpu(&self) -> RefMut<'_, Cpu> {
        let at = self.cpu().0 as usize;
        RefMut::map(self.cpus.borrow_mut(), |cpus| &mut cpus[at])
    }

    /// A task's state.
    fn task(&self, task: TaskId) -> RefMut<'_, TaskState> {
        RefMut::map(self.tasks.borrow_mut(), |tasks| &mut tasks[task.0])
    }

    /// A task's program: its operations, or the pages and the alphabet of its endless
    /// nondeterministic program, and the API it maps through.
    /// Borrowed from the configuration, which lives as long as the machine.
    pub(crate) fn program(&self, task: TaskId) -> (&[Op], &[kmap::Frame], Alphabet, Api) {
        let code = self.tasks.borrow()[task.0].code;
        match code {
            Code::Idle => (&[], &[], Alphabet::default(), Api::Raw),
            Code::Config(n) => {
                let task = &self.config.program.tasks[n];
                (&task.ops, &task.any, task.alphabet, task.api)
            }
            Code::ForkChild => (&FORK_CHILD, &[], Alphabet::default(), Api::Raw),
        }
    }

    /// What every handler of `kind` runs, and the API it maps through.
    pub(crate) fn handler_program(&self, kind: crate::config::HandlerKind) -> (&[Op], Api) {
        let program = &self.config.program;
        match kind {
            crate::config::HandlerKind::Irq => (&program.irq, program.irq_api),
            crate::config::HandlerKind::Nmi => (&program.nmi, program.nmi_api),
        }
    }

    /// A task's name.
    fn name(&self, task: TaskId) -> String {
        self.tasks.borrow()[task.0].name.clone()
    }

    pub(crate) fn stack(&self, task: TaskId) -> &dyn DynStack {
        self.stacks.get(task)
    }

    pub(crate) fn current_task(&self) -> TaskId {
        self.this_cpu().current()
    }

    pub(crate) fn current_stack(&self) -> &dyn DynStack {
        self.stack(self.current_task())
    }

    fn cells(&self) -> usize {
        self.config.machine.cells
    }

    /// The task whose own code (not a handler's, not the scheduler's) executes on `cpu`, if any.
    fn own_context(&self, cpu: CpuId) -> Option<TaskId> {
        let cpus = self.cpus.borrow();
        let c = &cpus[cpu.0 as usize];
        let task = c.current();
        (c.nesting() == 0 && !c.in_scheduler() && !self.tasks.borrow()[task.0].idle).then_some(task)
    }

    /// Change where the code executing on the executing CPU is: a task's own, a handler's or
    /// the scheduler's.
    fn with_place(&self, change: impl FnOnce(&mut Place)) {
        let cpu = self.cpu();
        if let Some(task) = self.own_context(cpu) {
            change(&mut self.task(task).place);
            return;
        }
        let mut c = self.this_cpu();
        if let Some(handler) = c.innermost_mut() {
            change(&mut handler.place);
        } else if let Some(place) = c.switch_place() {
            change(place);
        }
    }

    /// Record what the platform answered the crate (see [`Place`]).
    fn record_read(&self, value: Read) {
        self.with_place(|place| place.reads.push(value));
    }

    /// The task whose coroutine executes CPU `cpu`'s code, if any.
    pub(crate) fn runner(&self, cpu: CpuId) -> Option<TaskId> {
        let cpus = self.cpus.borrow();
        let c = &cpus[cpu.0 as usize];
        c.idle_host()
            .or((!self.tasks.borrow()[c.current().0].idle).then_some(c.current()))
    }

    /// Whether CPU `cpu` has something to execute.
    fn has_work(&self, cpu: CpuId) -> bool {
        self.runner(cpu).is_some() || !self.cpus.borrow()[cpu.0 as usize].queue().is_empty()
    }

    // ---- counters --------------------------------------------------------------------------

    /// Move a counter (per CPU for preemption and page faults, per task for migration).
    pub(crate) fn count(&self, counter: Counter, delta: i32) {
        let value = match counter {
            Counter::Migrate => {
                let task = self.current_task();
                let mut t = self.task(task);
                t.migrate += delta;
                t.migrate
            }
            _ => self.this_cpu().count(counter, delta),
        };
        if value < 0 {
            self.violate(
                ViolationKind::Crash,
                format!("the {counter:?} count went negative"),
            );
        }
    }

    /// The outcome so far, leaving an empty one.
    pub(crate) fn take_outcome(&self) -> Outcome {
        std::mem::take(&mut *self.outcome.borrow_mut())
    }
}

impl Hardware for Machine {
    fn call(&self, name: &'static str) {
        Machine::call(self, name)
    }
    fn read_cpu(&self) -> CpuId {
        // Recorded as it is read (see `Machine::read_cpu`).
        Machine::read_cpu(self)
    }
    fn current_stack(&self) -> &dyn DynStack {
        Machine::current_stack(self)
    }
    fn layout(&self) -> Layout {
        self.mmu.borrow().layout()
    }
    fn bug_on(&self) -> bool {
        self.config.machine.bug_on()
    }
    fn read_pte(&self, slot: Slot) -> Pte {
        let pte = self.mmu.borrow().pte(slot);
        self.record_read(Read::Pte(pte));
        pte
    }
    fn install_pte(&self, slot: Slot, pte: Pte) {
        Machine::install_pte(self, slot, pte)
    }
    fn clear_pte(&self, slot: Slot) {
        Machine::clear_pte(self, slot)
    }
    fn invalidate_local(&self, addr: VirtAddr) {
        Machine::invalidate_local(self, addr)
    }
    fn count(&self, counter: Counter, delta: i32) {
        Machine::count(self, counter, delta)
    }
    fn in_interrupt(&self) -> bool {
        let answer = self.this_cpu().nesting() > 0;
        self.record_read(Read::Value(answer as u64));
        answer
    }
    fn irqs_disabled(&self) -> bool {
        let answer = self.this_cpu().irqs_off();
        self.record_read(Read::Value(answer as u64));
        answer
    }
    fn report(&self, report: Report) {
        Machine::report(self, report)
    }
    fn point(&self, point: Point) {
        self.arrive(Label::Crate(point))
    }
    fn foreign_point(&self, point: ForeignPoint) {
        self.arrive(Label::Foreign(point))
    }
    fn warn(&self, message: String) {
        self.hazard(Rule::Warn, message)
    }
    fn bug(&self, message: String) {
        self.violate(ViolationKind::Crash, message);
        self.suspend(Yield::Abort);
    }
}
