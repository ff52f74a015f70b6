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

use super::{Label, Machine, Place, Status, SwitchSnapshot, Yield};
use crate::adapter::pte_frame;
use crate::config::Mutation;
use crate::outcome::Rule;
use crate::trace::What;

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
    Migrate(usize),
    /// Involuntary, and the scheduler picks this task next (it is in the CPU's run queue).
    PreemptTo(usize),
}

impl Machine {
    /// The running task gives up the CPU (rules I-1, S-1: the hooks run where Linux runs them).
    pub(crate) fn schedule(&self, reason: Reason) {
        let (cpu, prev, idle) = {
            let st = self.st.borrow();
            (st.active, st.cpus[st.active].current, st.active)
        };
        let next = {
            let mut st = self.st.borrow_mut();
            let sleepers: Vec<usize> = (0..st.tasks.len())
                .filter(|&t| {
                    t != prev && st.tasks[t].status == Status::Sleeping && st.tasks[t].cpu == cpu
                })
                .collect();
            for task in sleepers {
                st.tasks[task].status = Status::Runnable;
                st.cpus[cpu].runqueue.push_back(task);
            }
            match reason {
                Reason::Preempt | Reason::Yield | Reason::PreemptTo(_) => {
                    if st.cpus[cpu].runqueue.is_empty() {
                        return;
                    }
                    st.tasks[prev].status = Status::Runnable;
                    if let Reason::PreemptTo(task) = reason {
                        let queue = &mut st.cpus[cpu].runqueue;
                        let at = queue.iter().position(|&t| t == task).expect("queued");
                        queue.remove(at);
                        queue.push_front(task);
                    }
                    st.cpus[cpu].runqueue.push_back(prev);
                    if reason != Reason::Yield {
                        st.outcome.stats.preemptions += 1;
                    }
                }
                Reason::Sleep => st.tasks[prev].status = Status::Sleeping,
                Reason::Exit => st.tasks[prev].status = Status::Exited,
                Reason::Migrate(to) => {
                    st.tasks[prev].cpu = to;
                    st.tasks[prev].status = Status::Runnable;
                    st.cpus[to].runqueue.push_back(prev);
                }
            }
            st.cpus[cpu].runqueue.pop_front().unwrap_or(idle)
        };
        self.switch(prev, next);
        if next == idle {
            self.finish_switch();
            match reason {
                Reason::Sleep => {
                    // Nothing else to run: the CPU idles (interrupts may arrive), then the
                    // sleeper is woken and switched back in. The idle moment runs on the
                    // sleeper's coroutine, which the driver must resume for this CPU.
                    self.st.borrow_mut().cpus[cpu].idle_host = Some(prev);
                    self.arrive(Label::Idle);
                    self.st.borrow_mut().cpus[cpu].idle_host = None;
                    self.st.borrow_mut().tasks[prev].status = Status::Running;
                    self.switch(idle, prev);
                    self.finish_switch();
                    return;
                }
                Reason::Exit => return,
                _ => {}
            }
        } else if reason == Reason::Exit {
            return;
        }
        self.suspend(Yield::Switched);
        // Switched back in (perhaps on another CPU): finish the switch on our own stack.
        self.finish_switch();
    }

    /// The driver switches an idle CPU to a runnable task (on the driver's own stack, where no
    /// event is injected).
    pub(crate) fn switch_from_idle(&self, cpu: usize) -> bool {
        let next = {
            let mut st = self.st.borrow_mut();
            st.active = cpu;
            st.cpus[cpu].runqueue.pop_front()
        };
        match next {
            Some(next) => {
                self.switch(cpu, next);
                true
            }
            None => false,
        }
    }

    /// Prepare-switch up to the stack switch: `current` = prev, then `current` = next.
    pub(crate) fn switch(&self, prev: usize, next: usize) {
        let cpu = self.cpu();
        {
            let snapshot = SwitchSnapshot {
                prev,
                prev_runs: self.st.borrow().tasks[prev].runs,
                prev_stack: self.snapshot(prev),
                next,
                next_stack: self.snapshot(next),
            };
            let mut st = self.st.borrow_mut();
            let c = &mut st.cpus[cpu];
            c.preempt += 1;
            c.irqs_off = true;
            c.in_scheduler = true;
            c.sched_place = Place::default();
            c.switch_snapshot = Some(snapshot);
        }
        self.check_saved_matches_slots(prev);
        match self.protocol() {
            crate::Protocol::Split
                if self.config.machine.mutation == Some(Mutation::NoSchedOut) => {}
            crate::Protocol::Split => self.ops.sched_out(self),
            crate::Protocol::RfcV1 => {
                self.st.borrow_mut().cpus[cpu].irqs_off = false;
                self.swap(prev, next);
                self.st.borrow_mut().cpus[cpu].irqs_off = true;
            }
            crate::Protocol::SwapAfterCurrent => {}
        }
        let (from, to) = {
            let mut st = self.st.borrow_mut();
            st.cpus[cpu].current = next;
            st.cpus[cpu].epoch += 1;
            st.cpus[cpu].last_prev = Some(prev);
            st.tasks[next].status = Status::Running;
            st.tasks[next].runs += 1;
            st.outcome.stats.switches += 1;
            (st.tasks[prev].name.clone(), st.tasks[next].name.clone())
        };
        self.trace(What::Switch { from, to });
    }

    /// Finish-switch on the incoming task's stack: interrupts on, then the protocol's second half.
    pub(crate) fn finish_switch(&self) {
        let cpu = self.cpu();
        let next = {
            let mut st = self.st.borrow_mut();
            st.cpus[cpu].irqs_off = false;
            st.cpus[cpu].current
        };
        // Interrupts are on again: one may arrive before the protocol's second half (under
        // `swap-after-current`, all of prev's slots are still live here, with `current` = next).
        // When next is the idle task, the coroutine executing this (a task that went to sleep
        // or exited) hosts the CPU's idle moment, so that the driver resumes it for this CPU.
        // A task migrating away cannot host it (it is in another CPU's run queue), and needs
        // no point here: it migrates only holding no mapping, so it leaves no slot behind.
        let (next_is_idle, host) = {
            let st = self.st.borrow();
            let host = st
                .executing
                .filter(|&t| matches!(st.tasks[t].status, Status::Sleeping | Status::Exited));
            (st.tasks[next].idle, host)
        };
        if !next_is_idle || host.is_some() {
            self.st.borrow_mut().cpus[cpu].idle_host = host.filter(|_| next_is_idle);
            self.arrive(Label::FinishSwitch);
            self.st.borrow_mut().cpus[cpu].idle_host = None;
        }
        // Read after the arrival point, so that nothing of the switch is kept in a local while
        // this context may be suspended there (see `machine::state`).
        let prev = self.st.borrow_mut().cpus[cpu].last_prev.take();
        match self.protocol() {
            crate::Protocol::Split => self.ops.sched_in(self),
            crate::Protocol::RfcV1 => {}
            crate::Protocol::SwapAfterCurrent => {
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
                format!("a task holding CPU {slot_cpu}'s slots was switched in on CPU {cpu}"),
            );
        }
        self.check_switch_left_stacks_alone();
        let mut st = self.st.borrow_mut();
        let c = &mut st.cpus[cpu];
        c.preempt -= 1;
        c.in_scheduler = false;
        c.sched_place = Place::default();
    }

    /// The single-step swap of the 2020 RFC: clear prev's slots, then install next's, with
    /// whatever `current` is at the time.
    fn swap(&self, prev: usize, next: usize) {
        let cpu = self.cpu();
        let guard = self.config.machine.guard_cells;
        // A hole (release in any order) has an empty slot and nothing to restore.
        let live = |cell: usize| !(guard && cell.is_multiple_of(2));
        let hole = |pte: kmap::Pte| pte == kmap::Pte::HOLE;
        let mut cell = 0;
        while cell < self.stack(prev).depth() {
            let pte = self.stack(prev).saved(cell);
            if live(cell) && !pte.is_empty() && !hole(pte) {
                self.clear_pte(cpu, cell);
                self.arrive(Label::SwapCleared(cell));
                self.invalidate_local(self.slot_address(cpu, cell));
                self.arrive(Label::SwapInvalidated(cell));
            }
            cell += 1;
        }
        let mut cell = 0;
        while cell < self.stack(next).depth() {
            let pte = self.stack(next).saved(cell);
            if live(cell) && !pte.is_empty() && !hole(pte) {
                self.install_pte(cpu, cell, pte);
                self.arrive(Label::SwapInstalled(cell));
            }
            cell += 1;
        }
    }

    fn snapshot(&self, task: usize) -> (usize, Vec<kmap::Pte>) {
        let stack = self.stack(task);
        (
            stack.depth(),
            (0..stack.cells()).map(|c| stack.saved(c)).collect(),
        )
    }

    /// INV-5: when a task is switched out, every cell below its `idx` has the PTE its slot holds
    /// (a hole: an empty slot).
    fn check_saved_matches_slots(&self, prev: usize) {
        let cpu = self.cpu();
        let guard = self.config.machine.guard_cells;
        let stack = self.stack(prev);
        for cell in (0..stack.depth()).filter(|c| !(guard && c.is_multiple_of(2))) {
            let (mut saved, slot) = (stack.saved(cell), self.read_pte(cpu, cell));
            if saved == kmap::Pte::HOLE {
                saved = kmap::Pte::EMPTY;
            }
            if saved != slot {
                self.hazard(
                    Rule::Inv5,
                    format!(
                        "switching out with cell {cell} saved as frame {} but slot {cpu}.{cell} holding frame {}",
                        pte_frame(saved),
                        pte_frame(slot)
                    ),
                );
                return;
            }
        }
    }

    /// INV-2: the switch left prev's and next's stacks as it found them.
    fn check_switch_left_stacks_alone(&self) {
        let cpu = self.cpu();
        let Some(snapshot) = self.st.borrow_mut().cpus[cpu].switch_snapshot.take() else {
            return;
        };
        let prev_ran = self.st.borrow().tasks[snapshot.prev].runs != snapshot.prev_runs;
        if !prev_ran && self.snapshot(snapshot.prev) != snapshot.prev_stack {
            self.hazard(Rule::Inv2, "the switch changed prev's kmap stack".into());
        } else if self.snapshot(snapshot.next) != snapshot.next_stack {
            self.hazard(Rule::Inv2, "the switch changed next's kmap stack".into());
        }
    }
}
