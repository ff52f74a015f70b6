//! The interpreter of task, interrupt and NMI programs: every operation is preceded by an
//! arrival point, and calls the crate's real code through the platform.

use kmap::{Checkpoint, Frame, MapError, VirtAddr};
use smallvec::SmallVec;

use super::cpu::Counters;
use super::probe::CpuView;
use super::sched::Reason;
use super::task::{Code, Held, Place, TaskState, holds_anything};
use super::{Label, Machine};
use crate::choice::{Choice, TaskId};
use crate::outcome::{Rule, ViolationKind};
use crate::platform::{Counter, MapKind, WINDOW};
use crate::program::{Alphabet, AnyOp, Api, Op};
use crate::trace::What;

/// Who calls the crate: a task, or the handler at a nesting depth of a CPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Caller {
    Task(TaskId),
    Handler(kmap::CpuId, usize),
}

impl Machine {
    /// A task's life: finish the switch that brought it in, run its program, exit.
    pub(crate) fn task_main(&self, task: TaskId) {
        self.finish_switch();
        let (ops, any, alphabet, api) = self.program(task);
        match (any.is_empty(), api) {
            (true, Api::Raw) => {
                self.run_ops(ops, Some(task));
                self.exit(task);
            }
            (true, Api::Guard) => {
                self.run_guarded_program(ops, Some(task));
                self.exit(task);
            }
            (true, Api::Scope) => {
                self.run_scoped_program(ops, Some(task));
                self.exit(task);
            }
            (false, Api::Raw) => self.run_any(task, any, alphabet),
            (false, Api::Guard) => self.run_any_guarded(task, any, alphabet),
            (false, Api::Scope) => self.run_any_scoped(task, any, alphabet),
        }
    }

    /// An endless nondeterministic program over `pages` (the SPIN model's task, with the
    /// additions of `alphabet`): before every step an arrival point, then the chooser picks the
    /// step among those possible.
    fn run_any(&self, task: TaskId, pages: &[Frame], alphabet: Alphabet) {
        loop {
            self.arrive(Label::BeforeStep);
            let Some(op) = self.any_step(task, pages, alphabet, true) else {
                // The execution is over: return (the coroutine ends, and the driver with it).
                return;
            };
            self.run_one(op, Some(task));
        }
    }

    /// The step an endless program takes after its arrival point, as the chooser picks it
    /// (`None`: the execution is over); with `raw`, releases in any order are offered too
    /// (the safe API releases only the innermost guard).
    pub(super) fn any_step(
        &self,
        task: TaskId,
        pages: &[Frame],
        alphabet: Alphabet,
        raw: bool,
    ) -> Option<Op> {
        let any_order = self.config.machine.any_order() && raw;
        {
            // Read after the arrival point, so that no list is alive while the code may be
            // suspended there (see `driver.rs`): what the task holds, only its own code changes.
            // On the stack (a step is taken at every choice point of an endless program).
            let (held, atomic): (SmallVec<[Frame; 8]>, SmallVec<[bool; 8]>) = self
                .task(task)
                .mappings
                .iter()
                .map(|h| (h.frame, h.atomic))
                .unzip();
            let holds_atomic = atomic.contains(&true);
            // Interrupts are off only by this task's own `irq-off` (a handler returns with
            // them as it found them, and a task that sleeps or yields has them on).
            let irqs_off = self.this_cpu().counters().irqs_off;
            let mut steps: SmallVec<[Choice; 16]> = SmallVec::new();
            // A task's budget is one cell per page of its list: a hole uses a cell until the
            // mapping above it is released, so with holes the task maps fewer pages (the stack
            // stays bounded, and the cells above the budget stay free for handlers).
            let step = if self.config.machine.guard_cells {
                2
            } else {
                1
            };
            // A lowmem page (`Alphabet::lowmem`) has a step of its own, and on the fast path
            // takes no cell: it is in the budget only under force-map.
            let m = &self.config.machine;
            let low = |page: &Frame| page.pfn() < m.lowmem;
            let budget = pages.iter().filter(|p| !low(p) || m.force_map).count();
            let room = self.stack(task).depth() + step <= budget * step;
            let unheld = pages
                .iter()
                .copied()
                .find(|page| !held.contains(page) && !low(page));
            let lowmem = pages
                .iter()
                .copied()
                .find(|page| !held.contains(page) && low(page));
            if lowmem.is_some() && (room || !m.force_map) {
                steps.push(Choice::Do(AnyOp::MapLowmem));
            }
            if unheld.is_some() && room {
                steps.push(Choice::Do(AnyOp::Map));
                if alphabet.atomic {
                    steps.push(Choice::Do(AnyOp::MapAtomic));
                }
            }
            if !held.is_empty() {
                steps.extend([Choice::Do(AnyOp::Check), Choice::Do(AnyOp::Unmap)]);
                if alphabet.write {
                    steps.push(Choice::Do(AnyOp::Write));
                }
            }
            if any_order {
                // Any live mapping, the top too (through `unmap_any_order`, which `Unmap` does
                // not take); an atomic one only by `Unmap`, from the top (`kunmap_atomic`).
                steps.extend(
                    (0..held.len())
                        .filter(|&at| !atomic[at])
                        .map(|at| Choice::Do(AnyOp::Release(at))),
                );
            }
            if alphabet.irq_off {
                steps.push(Choice::Do(if irqs_off {
                    AnyOp::IrqOn
                } else {
                    AnyOp::IrqOff
                }));
            }
            // Holding an atomic mapping or with interrupts off, the task may not sleep or
            // yield (rule A-1; a refusal of the machine's otherwise).
            if !holds_atomic && !irqs_off {
                steps.push(Choice::Do(AnyOp::Yield));
                if alphabet.sleep {
                    steps.push(Choice::Do(AnyOp::Sleep));
                }
            }
            let step = self.decide(&steps);
            if self.aborted() {
                return None;
            }
            let op = match step {
                Choice::Do(AnyOp::Map) => Op::Map(unheld.expect("offered only then")),
                Choice::Do(AnyOp::MapAtomic) => Op::MapAtomic(unheld.expect("offered only then")),
                Choice::Do(AnyOp::MapLowmem) => Op::Map(lowmem.expect("offered only then")),
                Choice::Do(AnyOp::Check) => Op::Check,
                Choice::Do(AnyOp::Unmap) => Op::Unmap,
                Choice::Do(AnyOp::Write) => Op::Write(*held.last().expect("offered only then")),
                Choice::Do(AnyOp::Release(at)) => Op::UnmapFrame(held[at]),
                Choice::Do(AnyOp::IrqOff) => Op::IrqOff,
                Choice::Do(AnyOp::IrqOn) => Op::IrqOn,
                Choice::Do(AnyOp::Sleep) => Op::Sleep,
                _ => Op::Yield,
            };
            Some(op)
        }
    }

    fn exit(&self, task: TaskId) {
        {
            let name = self.name(task);
            if let Err(held) = self.kmap.assert_no_mappings(self, Checkpoint::TaskExit) {
                self.refuse(
                    format!("task {name} ended holding {} cell(s)", held.held),
                    false,
                );
            } else if self.task(task).migrate != 0 {
                self.violate(
                    ViolationKind::Leak,
                    format!("task {name} ended with migration still disabled"),
                );
            }
            if self.this_cpu().counters() != Counters::default() {
                self.refuse(
                    format!(
                        "task {name} ended with preemption or page faults disabled, or interrupts off"
                    ),
                    false,
                );
                self.this_cpu().set_counters(Counters::default());
            }
        }
        self.schedule(Reason::Exit);
    }

    /// Run `ops` in the current context: the task `task`, or (with `None`) the innermost
    /// interrupt or NMI handler of the executing CPU.
    pub(crate) fn run_ops(&self, ops: &[Op], task: Option<TaskId>) {
        for &op in ops {
            self.arrive(Label::BeforeOp(op));
            self.run_one(op, task);
            self.next_pc(task);
        }
    }

    /// Run one operation in the current context (see [`run_ops`](Self::run_ops)).
    pub(super) fn run_one(&self, op: Op, task: Option<TaskId>) {
        self.begin_op(op, task);
        self.run_op(op, task);
        self.end_op(task);
    }

    /// The start of an operation: counted, traced, and the context's place.
    pub(super) fn begin_op(&self, op: Op, task: Option<TaskId>) {
        self.outcome.borrow_mut().stats.ops += 1;
        let start = Place {
            op: Some(op),
            ..Place::default()
        };
        self.set_place(task, start);
        self.trace(What::Op(op));
    }

    /// The end of an operation: the context is between operations, and a task migrates if
    /// it asked to and now may.
    pub(super) fn end_op(&self, task: Option<TaskId>) {
        self.set_place(task, Place::default());
        if let Some(task) = task {
            self.migrate_if_pending(task);
        }
    }

    /// The program counter of the context moves to the next operation.
    pub(super) fn next_pc(&self, task: Option<TaskId>) {
        match task {
            Some(task) => self.task(task).pc += 1,
            None => self.with_handler(|handler| handler.pc += 1),
        }
    }

    /// Where the code of the context is: the task `task`, or the innermost handler.
    fn set_place(&self, task: Option<TaskId>, place: Place) {
        match task {
            Some(task) => self.task(task).place = place,
            None => self.with_handler(|handler| handler.place = place),
        }
    }

    /// Change the innermost handler of the executing CPU, if one runs.
    fn with_handler(&self, change: impl FnOnce(&mut super::cpu::Handler)) {
        if let Some(handler) = self.this_cpu().innermost_mut() {
            change(handler);
        }
    }

    /// The mappings of the context: the task `task`, or the innermost handler.
    pub(super) fn with_held<R>(
        &self,
        task: Option<TaskId>,
        f: impl FnOnce(&mut Vec<Held>) -> R,
    ) -> R {
        match task {
            Some(task) => f(&mut self.task(task).mappings),
            None => f(self.this_cpu().innermost_mappings()),
        }
    }

    fn held(&self, task: Option<TaskId>) -> Vec<Held> {
        self.with_held(task, |held| held.clone())
    }

    /// This context's most recent mapping of `frame`; `op` is refused if there is none.
    fn held_frame(&self, op: Op, task: Option<TaskId>, frame: Frame) -> Option<Held> {
        let held = self
            .held(task)
            .iter()
            .rev()
            .find(|h| h.frame == frame)
            .copied();
        if held.is_none() {
            self.refuse(
                format!(
                    "`{op}`: frame {} is not mapped in this context",
                    frame.pfn()
                ),
                true,
            );
        }
        held
    }

    fn run_op(&self, op: Op, task: Option<TaskId>) {
        match op {
            Op::Map(frame) | Op::MapAtomic(frame) | Op::MapPfn(frame) => {
                self.map(task, frame, map_kind(op).expect("a map"))
            }
            Op::Unmap => {
                let top = self.with_held(task, |held| held.last().copied());
                match top {
                    None => self.refuse("`unmap` with nothing mapped in this context".into(), true),
                    Some(held) => self.unmap(task, held, false),
                }
            }
            Op::UnmapFrame(frame) => {
                if let Some(held) = self.held_frame(op, task, frame) {
                    let any_order = self.config.machine.any_order() && !held.atomic;
                    self.unmap(task, held, any_order)
                }
            }
            Op::Check => {
                let mut at = 0;
                while let Some(held) = self.with_held(task, |held| held.get(at).copied()) {
                    self.access(held, false);
                    at += 1;
                }
            }
            Op::Write(frame) => {
                if let Some(held) = self.held_frame(op, task, frame) {
                    self.access(held, true)
                }
            }
            Op::Yield | Op::Sleep => {
                if self.this_cpu().atomic() {
                    self.refuse(
                        format!("`{op}` while atomic (preemption disabled or interrupts off)"),
                        true,
                    );
                } else {
                    self.schedule(if op == Op::Yield {
                        Reason::Yield
                    } else {
                        Reason::Sleep
                    });
                }
            }
            Op::Migrate(cpu) => {
                let task = task.expect("validated: task only");
                self.task(task).pending_migration = Some(cpu);
            }
            Op::Fork => self.fork(task.expect("validated: task only")),
            Op::IrqOff | Op::IrqOn => {
                self.this_cpu().set_irqs_off(op == Op::IrqOff);
            }
            // Only a program in the safe API leaks, and only its innermost guard: reached here,
            // it holds none.
            Op::Leak => self.refuse("`leak` with nothing mapped in this context".into(), true),
            Op::PreemptOff => self.count(Counter::Preempt, 1),
            Op::PreemptOn => {
                if self.this_cpu().preempt_count() == 0 {
                    self.refuse("`preempt_on` without `preempt_off`".into(), true);
                } else {
                    self.count(Counter::Preempt, -1);
                }
            }
        }
    }

    fn map(&self, task: Option<TaskId>, frame: Frame, kind: MapKind) {
        self.outcome.borrow_mut().stats.kmap_ops += 1;
        let caller = self.view_before_call(task);
        let mapped = self.kmap.map(self, frame, kind);
        self.map_answered(task, caller, frame, kind, None, mapped);
    }

    /// What the crate's answer to a map of `frame` (called with `caller`'s view taken before,
    /// see [`view_before_call`](Self::view_before_call)) leaves, in any API: on success the
    /// record of the mapping, returned (see [`hold_new`](Self::hold_new); `base` is a guard's
    /// depth); on a refusal what [`map_refused`](Self::map_refused) does, and `None`. The view
    /// is dropped here either way: it owns memory, and a safe API's map runs the rest of the
    /// program inside the mapping (see `driver.rs`).
    pub(super) fn map_answered(
        &self,
        task: Option<TaskId>,
        caller: Caller,
        frame: Frame,
        kind: MapKind,
        base: Option<usize>,
        answer: Result<VirtAddr, MapError>,
    ) -> Option<Held> {
        let before = self.view_after_call(caller);
        match answer {
            Ok(addr) => {
                drop(before);
                Some(self.hold_new(task, frame, addr, kind, base))
            }
            Err(refused) => {
                self.map_refused(task, frame, refused, before);
                None
            }
        }
    }

    /// What a map of `frame` that the crate made at `addr` leaves: its record in the
    /// context's list (`base`: a guard's depth, `None` for the raw API and a scope), checked
    /// first against rule A-1 if it is atomic. Returns the record.
    pub(super) fn hold_new(
        &self,
        task: Option<TaskId>,
        frame: Frame,
        addr: VirtAddr,
        kind: MapKind,
        base: Option<usize>,
    ) -> Held {
        if kind == MapKind::Atomic {
            self.check_atomic_map(frame);
        }
        let mapping = Held {
            frame,
            addr,
            atomic: kind == MapKind::Atomic,
            base,
        };
        self.with_held(task, |held| held.push(mapping));
        mapping
    }

    /// The crate refused to map `frame` for `task` (or the innermost handler); `before` is
    /// the view of the CPU taken before the call.
    pub(super) fn map_refused(
        &self,
        task: Option<TaskId>,
        frame: Frame,
        refused: MapError,
        before: Option<CpuView>,
    ) {
        let pfn = frame.pfn();
        match refused {
            // A task's own overflow is its program's misuse, refused before any state changes.
            // A handler's is a crash: it cannot do its work without the mapping, and could not
            // have known (Linux: BUG_ON(idx >= KM_MAX_IDX)).
            MapError::Overflow { .. } if task.is_some() => {
                self.refuse(format!("map {pfn}: {refused}"), true);
                self.check_refusal_undone(&format!("map {pfn}"), before);
            }
            MapError::Overflow { .. } => self.violate(
                ViolationKind::Crash,
                format!("map {pfn} in a handler: {refused} (Linux: BUG_ON(idx >= KM_MAX_IDX))"),
            ),
            MapError::SlotNotEmpty { .. } => self.violate(
                ViolationKind::Crash,
                format!("map {pfn}: {refused} (Linux: BUG_ON(!pte_none))"),
            ),
        }
    }

    /// Release `held` through `raw::unmap` (or `unmap_atomic`), or with `any_order` through
    /// `raw::unmap_any_order`.
    fn unmap(&self, task: Option<TaskId>, held: Held, any_order: bool) {
        self.outcome.borrow_mut().stats.kmap_ops += 1;
        // Any address inside the page will do (rule U-1.1): use one that is not the start.
        let addr = if held.addr.as_usize() >= WINDOW {
            VirtAddr::new(held.addr.as_usize() + 0x123)
        } else {
            held.addr
        };
        let caller = self.view_before_call(task);
        // Only an atomic mapping's release is checked against the counts (rules A-2, U-2).
        let counts = held.atomic.then(|| self.atomic_counts());
        let released = if any_order {
            self.kmap.unmap_any_order(self, addr)
        } else {
            self.kmap.unmap(self, addr, held.atomic)
        };
        let before = self.view_after_call(caller);
        match released {
            Ok(()) => {
                if let Some(counts) = counts {
                    self.check_atomic_release(held.frame, counts);
                }
                self.with_held(task, |list| {
                    let at = list
                        .iter()
                        .rposition(|h| h.addr == held.addr && h.frame == held.frame);
                    list.remove(at.expect("held"));
                })
            }
            Err(refused) => {
                let what = format!("unmap of frame {}", held.frame.pfn());
                self.refuse(format!("{what}: {refused}"), true);
                self.check_refusal_undone(&what, before);
            }
        }
    }

    /// Keep what the crate must leave as it found it if it refuses the call `task` (or, with
    /// `None`, the innermost handler of this CPU) is about to make; taken back by
    /// [`view_after_call`](Self::view_after_call). Kept in the machine, not in a local: the
    /// execution may end for good inside the call (see `driver.rs`). Every call takes its
    /// view, even along a path a search retraces: a run may have stopped inside the call
    /// before its end. Calls of different contexts interleave (a preemption inside one, a
    /// switch of the executing CPU), so each view is kept under its caller.
    pub(super) fn view_before_call(&self, task: Option<TaskId>) -> Caller {
        let caller = match task {
            Some(task) => Caller::Task(task),
            None => Caller::Handler(self.cpu(), self.this_cpu().nesting()),
        };
        let view = self.cpu_view();
        self.views_before_calls.borrow_mut().push((caller, view));
        caller
    }

    /// The view [`view_before_call`](Self::view_before_call) kept for `caller`.
    pub(super) fn view_after_call(&self, caller: Caller) -> Option<CpuView> {
        let mut views = self.views_before_calls.borrow_mut();
        let at = views.iter().rposition(|(c, _)| *c == caller)?;
        Some(views.remove(at).1)
    }

    fn fork(&self, parent: TaskId) {
        // The child's id after the fork: Linux's kmap_local_fork has arrival points, where
        // another task may fork first.
        let stack = self.kmap.fork(self);
        let child = TaskId(self.tasks.borrow().len());
        if holds_anything(&*stack) {
            self.hazard(
                Rule::Fork,
                "the forked child's kmap stack is not empty".into(),
            );
        }
        self.stacks.set(child, stack);
        let cpu = self.cpu();
        let name = format!("{}.child{}", self.name(parent), child.0);
        let mut state = TaskState::new(name, cpu, Code::ForkChild);
        state.pinned = self.task(parent).pinned;
        self.tasks.borrow_mut().push(state);
        self.this_cpu().enqueue(child);
    }

    /// A requested migration happens once the task may migrate (Linux: at `migrate_enable`).
    fn migrate_if_pending(&self, task: TaskId) {
        let to = {
            let t = self.task(task);
            match t.pending_migration {
                Some(to) if t.migrate == 0 && !self.this_cpu().atomic() => Some(to),
                _ => None,
            }
        };
        if let Some(to) = to {
            self.task(task).pending_migration = None;
            if to != self.cpu() {
                self.schedule(Reason::Migrate(to));
            }
        }
    }
}

/// The kind of a map operation (`None` for any other operation).
pub(super) fn map_kind(op: Op) -> Option<MapKind> {
    match op {
        Op::Map(_) => Some(MapKind::Page),
        Op::MapAtomic(_) => Some(MapKind::Atomic),
        Op::MapPfn(_) => Some(MapKind::Pfn),
        _ => None,
    }
}
