//! The scheduler: run queues, and a context switch shaped like Linux's, with the switch
//! protocol as a parameter.
//!
//! A switch happens on the outgoing task's stack up to the stack switch (prepare-switch, with
//! `current` = prev and interrupts off), and on the incoming task's stack after it
//! (finish-switch, with `current` = next and interrupts on again). Where the kmap slots move is
//! the protocol:
//!
//! | protocol | prepare-switch (`current` = prev) | finish-switch (`current` = next) |
//! |---|---|---|
//! | `split` | `kmap::sched_out` | `kmap::sched_in` |
//! | `rfc-v1` | clear prev's slots, install next's (interrupts on) | — |
//! | `swap-after-current` | — | clear prev's slots, install next's |
//!
//! The single-step swap of the last two is the simulator's own code: the crate deliberately has
//! no function that handles two tasks at once.

use kmap::{Cell, CpuId, Pte, Slot};

use super::cpu::SwitchSnapshot;
use super::task::{Status, image};
use super::{Label, Machine, Yield};
use crate::choice::TaskId;
use crate::outcome::Rule;
use crate::platform::pte_frame;
use crate::settings::{Mutation, Protocol};
use crate::trace::{SlotName, What};

/// Why the running task calls the scheduler.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Reason {
    /// Involuntary: an arrival point where preemption is allowed.
    Preempt,
    /// `yield`.
    Yield,
    /// `sleep`: blocked until the scheduler wakes it.
    Sleep,
    /// The task's program ended.
    Exit,
    /// `migrate` to this CPU, now that migration is enabled.
    Migrate(CpuId),
    /// Involuntary, and the scheduler picks this task next (it is in the CPU's run queue).
    PreemptTo(TaskId),
}

impl Machine {
    /// The running task gives up the CPU (rules I-1, S-1: the hooks run where Linux runs them).
    pub(crate) fn schedule(&self, reason: Reason) {
        let cpu = self.cpu();
        let prev = self.current_task();
        let idle = TaskId(cpu.0 as usize);
        let next = {
            let mut cpus = self.cpus.borrow_mut();
            let mut tasks = self.tasks.borrow_mut();
            let this = &mut cpus[cpu.0 as usize];
            for (t, task) in tasks.iter_mut().enumerate() {
                if TaskId(t) != prev && task.status == Status::Sleeping && task.cpu == cpu {
                    task.status = Status::Runnable;
                    this.enqueue(TaskId(t));
                }
            }
            match reason {
                Reason::Preempt | Reason::Yield | Reason::PreemptTo(_) => {
                    if this.queue().is_empty() {
                        return;
                    }
                    tasks[prev.0].status = Status::Runnable;
                    if let Reason::PreemptTo(task) = reason {
                        this.move_to_front(task);
                    }
                    this.enqueue(prev);
                    if reason != Reason::Yield {
                        self.outcome.borrow_mut().stats.preemptions += 1;
                    }
                }
                Reason::Sleep => tasks[prev.0].status = Status::Sleeping,
                Reason::Exit => tasks[prev.0].status = Status::Exited,
                // Enqueued on its new CPU once this CPU's switch is done (below).
                Reason::Migrate(to) => {
                    tasks[prev.0].cpu = to;
                    tasks[prev.0].status = Status::Runnable;
                }
            }
            cpus[cpu.0 as usize].dequeue().unwrap_or(idle)
        };
        self.switch(prev, next);
        // A migrating task joins its new CPU's run queue only once this CPU's switch is done:
        // suspended at one of its points while in that queue, it would be resumed there in the
        // middle of this CPU's switch. Into the idle task, it runs the switch's second half
        // for this CPU, hosting it (see `finish_switch`).
        let migrate = |to: CpuId| self.cpus.borrow_mut()[to.0 as usize].enqueue(prev);
        if next == idle {
            self.finish_switch();
            if let Reason::Migrate(to) = reason {
                migrate(to);
            }
            match reason {
                Reason::Sleep => {
                    // Nothing else to run: the CPU idles (interrupts may arrive), then the
                    // sleeper is woken and switched back in. The idle moment runs on the
                    // sleeper's coroutine, which the driver must resume for this CPU.
                    // It hosts the CPU until the switch back has made it current again: the
                    // switch has arrival points of its own while `current` is still idle.
                    self.this_cpu().set_idle_host(Some(prev));
                    self.arrive(Label::Idle);
                    self.task(prev).status = Status::Running;
                    self.switch(idle, prev);
                    self.this_cpu().set_idle_host(None);
                    self.finish_switch();
                    return;
                }
                Reason::Exit => return,
                _ => {}
            }
        } else if reason == Reason::Exit {
            return;
        } else if let Reason::Migrate(to) = reason {
            migrate(to);
        }
        self.suspend(Yield::Switched);
        // Switched back in (perhaps on another CPU): finish the switch on our own stack.
        self.finish_switch();
    }

    /// The driver switches an idle CPU to a runnable task (on the driver's own stack, where no
    /// event is injected).
    pub(crate) fn switch_from_idle(&self, cpu: CpuId) -> bool {
        self.active.set(cpu);
        let next = self.this_cpu().dequeue();
        match next {
            Some(next) => {
                self.switch(TaskId(cpu.0 as usize), next);
                true
            }
            None => false,
        }
    }

    /// Prepare-switch up to the stack switch: `current` = prev, then `current` = next.
    pub(crate) fn switch(&self, prev: TaskId, next: TaskId) {
        let snapshot = SwitchSnapshot {
            prev,
            prev_runs: self.tasks.borrow()[prev.0].runs,
            prev_stack: image(self.stack(prev)),
            next,
            next_stack: image(self.stack(next)),
        };
        self.this_cpu().begin_switch(snapshot);
        self.check_saved_matches_slots(prev);
        match self.config.machine.switch {
            Protocol::Split if self.config.machine.mutation == Some(Mutation::NoSchedOut) => {}
            Protocol::Split => self.kmap.sched_out(self),
            Protocol::RfcV1 => {
                self.this_cpu().set_irqs_off(false);
                if !self
                    .kmap
                    .switch_temporary(self, self.stack(prev), self.stack(next))
                {
                    self.swap(prev, next);
                }
                self.this_cpu().set_irqs_off(true);
            }
            Protocol::SwapAfterCurrent => {}
        }
        {
            let mut cpu = self.this_cpu();
            cpu.set_current(next);
            cpu.switched_from(prev);
            let mut tasks = self.tasks.borrow_mut();
            tasks[next.0].status = Status::Running;
            tasks[next.0].runs += 1;
        }
        self.outcome.borrow_mut().stats.switches += 1;
        self.trace(What::Switch {
            from: self.name(prev),
            to: self.name(next),
        });
    }

    /// Finish-switch on the incoming task's stack: interrupts on, then the protocol's second half.
    pub(crate) fn finish_switch(&self) {
        let cpu = self.cpu();
        let next = {
            let mut this = self.this_cpu();
            this.set_irqs_off(false);
            this.current()
        };
        // Interrupts are on again: one may arrive before the protocol's second half (under
        // `swap-after-current`, all of prev's slots are still live here, with `current` = next).
        // When next is the idle task, the coroutine executing this (a task that went to sleep
        // or exited, or one migrating away, which joins its new CPU's run queue only once this
        // is done) hosts the CPU's idle moment, so that the driver resumes it for this CPU.
        // (A migrating task needs no point of its own here, before the second half: it holds
        // no mapping, and an interrupt arriving on the idle CPU meets what it meets at the
        // CPU's idle moment that follows; the second half's own points, Linux's, are kept.)
        let (next_is_idle, host, migrating) = {
            let tasks = self.tasks.borrow();
            let executing = self.driver.borrow().executing;
            // Migrating: runnable, and already another CPU's.
            let migrating = executing
                .is_some_and(|t| tasks[t.0].status == Status::Runnable && tasks[t.0].cpu != cpu);
            let host = executing.filter(|&t| {
                matches!(tasks[t.0].status, Status::Sleeping | Status::Exited) || migrating
            });
            (tasks[next.0].idle, host, migrating)
        };
        // The host stays set to the end of this function: the protocol's second half below has
        // arrival points too, and the driver must find this CPU's work there.
        let hosted = host.filter(|_| next_is_idle);
        if !next_is_idle || host.is_some() {
            self.this_cpu().set_idle_host(hosted);
        }
        if !next_is_idle || (host.is_some() && !migrating) {
            self.arrive(Label::FinishSwitch);
        }
        // Read after the arrival point, so that nothing of the switch is kept in a local while
        // this context may be suspended there (see `machine::state`).
        let prev = self.this_cpu().take_prev();
        match self.config.machine.switch {
            Protocol::Split => self.kmap.sched_in(self),
            Protocol::RfcV1 => {}
            Protocol::SwapAfterCurrent => {
                if let Some(prev) = prev {
                    self.swap(prev, next);
                }
            }
        }
        // INV-4, from the stack's record of the CPU its cells were mapped on (the crate reports
        // it too under `split`).
        if let Some(slot_cpu) = self.stack(next).home()
            && slot_cpu != cpu
            && !self.aborted()
        {
            self.hazard(
                Rule::Inv4,
                format!(
                    "a task holding CPU {}'s slots was switched in on CPU {}",
                    slot_cpu.0, cpu.0
                ),
            );
        }
        self.check_switch_left_stacks_alone();
        self.this_cpu().end_switch();
        if hosted.is_some() {
            self.this_cpu().set_idle_host(None);
        }
    }

    /// Whether cell `cell` is one the crate maps (not a guard cell).
    fn live_cell(&self, cell: usize) -> bool {
        !(self.config.machine.guard_cells && cell.is_multiple_of(2))
    }

    /// The single-step swap of the 2020 RFC: clear prev's slots, then install next's, with
    /// whatever `current` is at the time.
    fn swap(&self, prev: TaskId, next: TaskId) {
        let cpu = self.cpu();
        let slot = |cell: usize| Slot {
            cpu,
            cell: Cell(cell),
        };
        // A hole (release in any order) has an empty slot and nothing to restore.
        let restorable = |pte: Pte| !pte.is_empty() && pte != Pte::HOLE;
        let mut cell = 0;
        while cell < self.stack(prev).depth() {
            let pte = self.stack(prev).saved(Cell(cell));
            if self.live_cell(cell) && restorable(pte) {
                self.clear_pte(slot(cell));
                self.arrive(Label::SwapCleared(Cell(cell)));
                let address = self.mmu.borrow().layout().slot_address(slot(cell));
                self.invalidate_local(address);
                self.arrive(Label::SwapInvalidated(Cell(cell)));
            }
            cell += 1;
        }
        let mut cell = 0;
        while cell < self.stack(next).depth() {
            let pte = self.stack(next).saved(Cell(cell));
            if self.live_cell(cell) && restorable(pte) {
                self.install_pte(slot(cell), pte);
                self.arrive(Label::SwapInstalled(Cell(cell)));
            }
            cell += 1;
        }
    }

    /// INV-5: when a task is switched out, every cell below its `idx` has the PTE its slot holds
    /// (a hole: an empty slot).
    fn check_saved_matches_slots(&self, prev: TaskId) {
        let cpu = self.cpu();
        let stack = self.stack(prev);
        for cell in (0..stack.depth()).filter(|&c| self.live_cell(c)) {
            let slot = Slot {
                cpu,
                cell: Cell(cell),
            };
            let (mut saved, live) = (stack.saved(Cell(cell)), self.mmu.borrow().pte(slot));
            if saved == Pte::HOLE {
                saved = Pte::EMPTY;
            }
            if saved != live {
                self.hazard(
                    Rule::Inv5,
                    format!(
                        "switching out with cell {cell} saved as frame {} but slot {} holding frame {}",
                        pte_frame(saved).pfn(),
                        SlotName(slot),
                        pte_frame(live).pfn()
                    ),
                );
                return;
            }
        }
    }

    /// INV-2: the switch left prev's and next's stacks as it found them.
    fn check_switch_left_stacks_alone(&self) {
        let Some(snapshot) = self.this_cpu().take_snapshot() else {
            return;
        };
        let prev_ran = self.tasks.borrow()[snapshot.prev.0].runs != snapshot.prev_runs;
        if !prev_ran && image(self.stack(snapshot.prev)) != snapshot.prev_stack {
            self.hazard(Rule::Inv2, "the switch changed prev's kmap stack".into());
        } else if image(self.stack(snapshot.next)) != snapshot.next_stack {
            self.hazard(Rule::Inv2, "the switch changed next's kmap stack".into());
        }
    }
}
