//! A CPU: the task it runs (`current`) and its run queue, its preemption and page-fault counts
//! and interrupt flag, the interrupt and NMI handlers nested on it, the switch in progress, and
//! the last arrival point it passed.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use kmap::Pte;

use super::probe::CpuView;
use super::symmetry::Relabel;
use super::task::{Held, Place};
use crate::choice::TaskId;
use crate::config::HandlerKind;
use crate::platform::{Counter, MAX_CELLS};
use crate::trace::Label;

/// An arrival point as the pruning rule sees it (see `arrival::redundant`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Arrival {
    /// Where.
    pub(crate) label: Label,
    /// How many handlers are nested on the CPU there.
    pub(crate) depth: usize,
    /// The CPU's context epoch there (see [`Cpu::epoch`]).
    pub(crate) epoch: u64,
}

/// An interrupt or NMI handler in progress on a CPU, and the mappings it holds.
pub(crate) struct Handler {
    pub(crate) kind: HandlerKind,
    pub(crate) mappings: Vec<Held>,
    /// The next operation of its program.
    pub(crate) pc: usize,
    /// Where its code is inside the current operation (a lasting handler may be asked a
    /// question at its own arrival points, so a stateful search keeps it as a task's).
    pub(crate) place: Place,
    /// The CPU as the handler found it, to tell whether it left a trace (kept here, not in a
    /// local of the handler's code, see `driver.rs`).
    found: CpuView,
}

/// A task's kmap stack as it was at a moment: `idx` and every saved PTE.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct StackImage {
    pub(crate) depth: usize,
    /// Inline for every stack size the simulator is built for, so that an image never owns
    /// heap memory (a task's code keeps one in a local across an arrival point, see
    /// `driver.rs`).
    pub(crate) saved: smallvec::SmallVec<[Pte; MAX_CELLS]>,
}

/// A CPU's preemption and page-fault counts and its interrupt flag.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) preempt: i32,
    pub(crate) pagefault: i32,
    pub(crate) irqs_off: bool,
}

/// The stacks of prev and next when a switch began (INV-2), with prev's run count.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct SwitchSnapshot {
    pub(crate) prev: TaskId,
    pub(crate) prev_runs: u64,
    pub(crate) prev_stack: StackImage,
    pub(crate) next: TaskId,
    pub(crate) next_stack: StackImage,
}

/// A context switch in progress on a CPU: from prepare-switch to the end of finish-switch.
struct Switch {
    /// Where the scheduler's code is in it (as [`Place`] for a task).
    place: Place,
    /// The stacks when it began, until finish-switch compares them.
    snapshot: Option<SwitchSnapshot>,
    /// prev, from the stack switch until finish-switch reads it.
    prev: Option<TaskId>,
}

/// Everything of a CPU's arrival bookkeeping that a probed handler moves on, to put back.
#[derive(Clone, Copy)]
pub(crate) struct SavedArrival {
    last: Option<Arrival>,
    epoch: u64,
}

/// One CPU.
pub(crate) struct Cpu {
    current: TaskId,
    runqueue: VecDeque<TaskId>,
    preempt: i32,
    pagefault: i32,
    irqs_off: bool,
    handlers: Vec<Handler>,
    switch: Option<Switch>,
    /// While a sleeping task's coroutine runs this CPU's idle moment, that task.
    idle_host: Option<TaskId>,
    last_arrival: Option<Arrival>,
    epoch: u64,
}

impl Cpu {
    /// A CPU running its idle task.
    pub(crate) fn new(idle: TaskId) -> Cpu {
        Cpu {
            current: idle,
            runqueue: VecDeque::new(),
            preempt: 0,
            pagefault: 0,
            irqs_off: false,
            handlers: Vec::new(),
            switch: None,
            idle_host: None,
            last_arrival: None,
            epoch: 0,
        }
    }

    // ---- current and the run queue ---------------------------------------------------------

    /// The task it runs.
    pub(crate) fn current(&self) -> TaskId {
        self.current
    }

    /// `current` becomes `next`: a new context executes here.
    pub(crate) fn set_current(&mut self, next: TaskId) {
        self.current = next;
        self.epoch += 1;
    }

    /// The tasks waiting for it, in order.
    pub(crate) fn queue(&self) -> &VecDeque<TaskId> {
        &self.runqueue
    }

    /// Queue a task at the end.
    pub(crate) fn enqueue(&mut self, task: TaskId) {
        self.runqueue.push_back(task);
    }

    /// The next task, out of the queue.
    pub(crate) fn dequeue(&mut self) -> Option<TaskId> {
        self.runqueue.pop_front()
    }

    /// Move a queued task to the front (the scheduler picks it next).
    pub(crate) fn move_to_front(&mut self, task: TaskId) {
        let at = self
            .runqueue
            .iter()
            .position(|&t| t == task)
            .expect("only a queued task is picked");
        self.runqueue.remove(at);
        self.runqueue.push_front(task);
    }

    // ---- counters and the interrupt flag ---------------------------------------------------

    /// Move its preemption or page-fault count; the new value.
    pub(crate) fn count(&mut self, counter: Counter, delta: i32) -> i32 {
        let value = match counter {
            Counter::Preempt => &mut self.preempt,
            Counter::Pagefault => &mut self.pagefault,
            Counter::Migrate => unreachable!("the migration count is the task's"),
        };
        *value += delta;
        *value
    }

    /// The preemption count.
    pub(crate) fn preempt_count(&self) -> i32 {
        self.preempt
    }

    /// The preemption and page-fault counts, and the interrupt flag.
    pub(crate) fn counters(&self) -> Counters {
        Counters {
            preempt: self.preempt,
            pagefault: self.pagefault,
            irqs_off: self.irqs_off,
        }
    }

    /// Put back counts and the interrupt flag (a probe's undo, a task's exit).
    pub(crate) fn set_counters(&mut self, counters: Counters) {
        self.preempt = counters.preempt;
        self.pagefault = counters.pagefault;
        self.irqs_off = counters.irqs_off;
    }

    /// Whether interrupts are off.
    pub(crate) fn irqs_off(&self) -> bool {
        self.irqs_off
    }

    /// Turn interrupts off or on; whether they were off.
    pub(crate) fn set_irqs_off(&mut self, off: bool) -> bool {
        std::mem::replace(&mut self.irqs_off, off)
    }

    /// Preemption disabled or interrupts off: the code here may not sleep or be preempted.
    pub(crate) fn atomic(&self) -> bool {
        self.preempt != 0 || self.irqs_off
    }

    // ---- nested handlers -------------------------------------------------------------------

    /// A handler enters: its nesting depth.
    pub(crate) fn enter(&mut self, kind: HandlerKind, found: CpuView) -> usize {
        self.handlers.push(Handler {
            kind,
            mappings: Vec::new(),
            pc: 0,
            place: Place::default(),
            found,
        });
        self.epoch += 1;
        self.handlers.len()
    }

    /// The innermost handler returns: the CPU as it found it.
    pub(crate) fn leave(&mut self) -> CpuView {
        let handler = self.handlers.pop().expect("a handler runs");
        self.epoch += 1;
        handler.found
    }

    /// How many handlers are nested here (0: a task's or the scheduler's code runs).
    pub(crate) fn nesting(&self) -> usize {
        self.handlers.len()
    }

    /// How many of them are of `kind`.
    pub(crate) fn nesting_of(&self, kind: HandlerKind) -> usize {
        self.handlers.iter().filter(|h| h.kind == kind).count()
    }

    /// The innermost handler, if one runs.
    pub(crate) fn innermost(&self) -> Option<&Handler> {
        self.handlers.last()
    }

    /// The innermost handler, to change.
    pub(crate) fn innermost_mut(&mut self) -> Option<&mut Handler> {
        self.handlers.last_mut()
    }

    /// The innermost handler's mappings.
    pub(crate) fn innermost_mappings(&mut self) -> &mut Vec<Held> {
        &mut self.handlers.last_mut().expect("a handler runs").mappings
    }

    /// The handlers, outermost first.
    pub(crate) fn handlers(&self) -> &[Handler] {
        &self.handlers
    }

    // ---- the switch in progress ------------------------------------------------------------

    /// Prepare-switch begins: preemption off, interrupts off.
    pub(crate) fn begin_switch(&mut self, snapshot: SwitchSnapshot) {
        self.preempt += 1;
        self.irqs_off = true;
        self.switch = Some(Switch {
            place: Place::default(),
            snapshot: Some(snapshot),
            prev: None,
        });
    }

    /// The stack switch is done: remember prev for finish-switch.
    pub(crate) fn switched_from(&mut self, prev: TaskId) {
        self.switch.as_mut().expect("in a switch").prev = Some(prev);
    }

    /// prev, once, in finish-switch.
    pub(crate) fn take_prev(&mut self) -> Option<TaskId> {
        self.switch.as_mut().and_then(|s| s.prev.take())
    }

    /// The stacks when the switch began, once, in finish-switch.
    pub(crate) fn take_snapshot(&mut self) -> Option<SwitchSnapshot> {
        self.switch.as_mut().and_then(|s| s.snapshot.take())
    }

    /// Finish-switch ends: preemption on again.
    pub(crate) fn end_switch(&mut self) {
        self.preempt -= 1;
        self.switch = None;
    }

    /// Whether a switch is in progress.
    pub(crate) fn in_scheduler(&self) -> bool {
        self.switch.is_some()
    }

    /// Where the scheduler's code is in the switch in progress.
    pub(crate) fn switch_place(&mut self) -> Option<&mut Place> {
        self.switch.as_mut().map(|s| &mut s.place)
    }

    /// The task whose coroutine hosts this CPU's idle moment, if one does.
    pub(crate) fn idle_host(&self) -> Option<TaskId> {
        self.idle_host
    }

    /// Set or clear it.
    pub(crate) fn set_idle_host(&mut self, host: Option<TaskId>) {
        self.idle_host = host;
    }

    // ---- arrival bookkeeping ---------------------------------------------------------------

    /// An arrival point here: it, and the one before it on this CPU.
    pub(crate) fn arrive(&mut self, label: Label) -> (Arrival, Option<Arrival>) {
        let here = Arrival {
            label,
            depth: self.handlers.len(),
            epoch: self.epoch,
        };
        (here, self.last_arrival.replace(here))
    }

    /// The arrival bookkeeping, to put back after a probe.
    pub(crate) fn save_arrival(&self) -> SavedArrival {
        SavedArrival {
            last: self.last_arrival,
            epoch: self.epoch,
        }
    }

    /// Put it back.
    pub(crate) fn restore_arrival(&mut self, saved: SavedArrival) {
        self.last_arrival = saved.last;
        self.epoch = saved.epoch;
    }

    /// The snapshot of the switch in progress, if any.
    pub(crate) fn snapshot(&self) -> Option<&SwitchSnapshot> {
        self.switch.as_ref().and_then(|s| s.snapshot.as_ref())
    }

    /// Hash everything its future depends on, but the switch snapshot's run count (see
    /// `state.rs`): current, the run queue, the counters, the switch in progress, the idle host
    /// and the handlers with their mappings.
    pub(crate) fn hash_contents(&self, relabel: &Relabel, hasher: &mut impl Hasher) {
        (
            relabel.task(self.current),
            self.runqueue.len(),
            self.preempt,
            self.pagefault,
            self.irqs_off,
            self.idle_host.map(|t| relabel.task(t)),
        )
            .hash(hasher);
        for &task in &self.runqueue {
            relabel.task(task).hash(hasher);
        }
        match &self.switch {
            None => 0u8.hash(hasher),
            Some(switch) => {
                (1u8, switch.prev.map(|t| relabel.task(t))).hash(hasher);
                relabel.hash_place(&switch.place, hasher);
            }
        }
        self.handlers.len().hash(hasher);
        for handler in &self.handlers {
            (handler.kind, handler.pc).hash(hasher);
            relabel.hash_place(&handler.place, hasher);
            handler.mappings.len().hash(hasher);
            for &held in &handler.mappings {
                relabel.held(held).hash(hasher);
            }
        }
    }

    /// Hash where `task` stands on this CPU: whether it is `current`, where in the run queue,
    /// whether it hosts the idle moment or is the prev of a switch in progress (for a task's
    /// signature, see `symmetry.rs`).
    pub(crate) fn hash_standing(&self, task: TaskId, hasher: &mut impl Hasher) {
        (
            self.current == task,
            self.runqueue.iter().position(|&t| t == task),
            self.idle_host == Some(task),
            self.switch.as_ref().map(|s| s.prev == Some(task)),
            self.snapshot().map(|s| (s.prev == task, s.next == task)),
        )
            .hash(hasher);
    }
}
