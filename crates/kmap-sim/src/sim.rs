//! The driver: one stackful coroutine per task, resumed on the host thread one at a time.
//!
//! A task's code (its program, and the crate's code it calls) runs on the task's own stack, so
//! a preemption delivered at an arrival point deep inside `map` really leaves that call half
//! done while other tasks run, exactly as in a kernel. Interrupts and NMIs need no stack of
//! their own: they run nested on the stack of whatever task they interrupt. Everything runs on
//! one host thread, so a run depends only on the chooser's answers.

use std::cell::RefCell;
use std::rc::Rc;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult};

use crate::chooser::Chooser;
use crate::config::{Config, ConfigError};
use crate::machine::{Machine, RunOptions, Yield};
use crate::outcome::{Outcome, ViolationKind};

/// Each task's stack. Deep enough for a program plus nested handlers in a debug build.
const TASK_STACK: usize = 256 * 1024;

type TaskCoroutine = Coroutine<(), Yield, (), DefaultStack>;

thread_local! {
    /// Stacks of finished coroutines, reused by the next ones: an explorer runs hundreds of
    /// thousands of executions, and mapping and unmapping a stack for each task of each would
    /// cost more system time than the executions themselves.
    static STACKS: RefCell<Vec<DefaultStack>> = const { RefCell::new(Vec::new()) };
}

/// A task stack, reused if one is free.
fn take_stack() -> DefaultStack {
    STACKS
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_else(|| DefaultStack::new(TASK_STACK).expect("a task stack"))
}

/// End `coroutine` (unwinding it if it is suspended) and keep its stack for reuse.
fn give_back(mut coroutine: TaskCoroutine) {
    // Unwinding a suspended task runs no code that calls back into the machine (only drops).
    coroutine.force_unwind();
    let stack = coroutine.into_stack();
    STACKS.with(|pool| pool.borrow_mut().push(stack));
}

/// Run `config` to the end (or to its first violation), taking every decision from `chooser`.
pub fn run(
    config: &Config,
    chooser: Rc<RefCell<dyn Chooser>>,
    options: RunOptions,
) -> Result<Outcome, ConfigError> {
    config.validate()?;
    let machine = Rc::new(Machine::new(config, chooser, options));
    let mut tasks: Vec<Option<TaskCoroutine>> = Vec::new();
    drive(&machine, &mut tasks);
    tasks.into_iter().flatten().for_each(give_back);
    machine.check_end();
    let final_state = machine.final_state();
    let mut outcome = machine.take_outcome();
    outcome.final_state = final_state;
    Ok(outcome)
}

/// [`run`] with a chooser the caller does not need back.
pub fn run_with(
    config: &Config,
    chooser: impl Chooser + 'static,
    options: RunOptions,
) -> Result<Outcome, ConfigError> {
    run(config, Rc::new(RefCell::new(chooser)), options)
}

fn drive(machine: &Rc<Machine>, tasks: &mut Vec<Option<TaskCoroutine>>) {
    loop {
        if machine.aborted() {
            return;
        }
        let cpu = machine.cpu();
        let Some(current) = machine.runner(cpu) else {
            if machine.switch_from_idle(cpu) {
                continue;
            }
            match machine.cpu_with_work(cpu) {
                Some(other) => machine.set_active(other),
                None => return,
            }
            continue;
        };
        if tasks.len() <= current {
            tasks.resize_with(current + 1, || None);
        }
        let coroutine = tasks[current].get_or_insert_with(|| {
            let m = machine.clone();
            Coroutine::with_stack(take_stack(), move |yielder, ()| {
                m.set_yielder(current, yielder);
                m.task_main(current);
            })
        });
        machine.set_executing(Some(current));
        let result = coroutine.resume(());
        machine.set_executing(None);
        match result {
            CoroutineResult::Yield(Yield::Step(to)) => machine.set_active(to),
            CoroutineResult::Yield(Yield::Switched) => {}
            CoroutineResult::Yield(Yield::Abort) => return,
            CoroutineResult::Return(()) => {
                if let Some(done) = tasks[current].take() {
                    give_back(done);
                }
            }
        }
    }
}

impl Machine {
    pub(crate) fn set_yielder(&self, task: usize, yielder: &crate::machine::TaskYielder) {
        self.st.borrow_mut().yielders[task] = yielder;
    }

    pub(crate) fn set_executing(&self, task: Option<usize>) {
        self.st.borrow_mut().executing = task;
    }

    pub(crate) fn set_active(&self, cpu: usize) {
        self.st.borrow_mut().active = cpu;
    }

    /// The task whose coroutine executes CPU `cpu`'s code, if any.
    pub(crate) fn runner(&self, cpu: usize) -> Option<usize> {
        self.st.borrow().runner(cpu)
    }

    /// The first CPU after `from` that has something to execute.
    pub(crate) fn cpu_with_work(&self, from: usize) -> Option<usize> {
        let st = self.st.borrow();
        let n = st.cpus.len();
        (1..=n).map(|i| (from + i) % n).find(|&c| st.has_work(c))
    }

    /// At the end of a run with no refusal nothing may be left behind: no slot mapped, no TLB
    /// entry for a slot, no slot cleared without its invalidation (a leak).
    pub(crate) fn check_end(&self) {
        if self.aborted() || !self.st.borrow().outcome.refusals.is_empty() {
            return;
        }
        let cells = self.config.machine.cells;
        let left = {
            let st = self.st.borrow();
            let slot = |index: usize| format!("slot {}.{}", index / cells, index % cells);
            let mut unflushed: Vec<usize> = st.unflushed.iter().copied().collect();
            unflushed.sort_unstable();
            let mut tlb: Vec<(usize, usize, u64)> = st
                .tlb
                .iter()
                .enumerate()
                .flat_map(|(cpu, entries)| {
                    entries
                        .iter()
                        .filter(|&(&page, _)| page >= crate::adapter::WINDOW)
                        .map(move |(&page, &frame)| (cpu, page, frame))
                })
                .collect();
            tlb.sort_unstable();
            if let Some(index) = st.pt.iter().position(|pte| !pte.is_empty()) {
                Some(format!(
                    "{} still maps frame {} after every task ended",
                    slot(index),
                    crate::adapter::pte_frame(st.pt[index])
                ))
            } else if let Some(&(cpu, page, frame)) = tlb.first() {
                let index = (page - crate::adapter::WINDOW) / crate::adapter::PAGE_SIZE;
                Some(format!(
                    "CPU {cpu}'s TLB still translates {} to frame {frame} after every task ended",
                    slot(index)
                ))
            } else {
                unflushed.first().map(|&index| {
                    format!(
                        "{} was cleared but its TLB entry never invalidated",
                        slot(index)
                    )
                })
            }
        };
        if let Some(message) = left {
            self.violate(ViolationKind::Leak, message);
        }
    }

    /// A fingerprint of the final state: memory, page table, TLBs, unflushed slots, every
    /// stack, every task's status and CPU, and what went wrong.
    pub(crate) fn final_state(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let st = self.st.borrow();
        (&st.tags, &st.expected).hash(&mut hasher);
        st.pt
            .iter()
            .map(|pte| pte.raw())
            .for_each(|raw| raw.hash(&mut hasher));
        for tlb in &st.tlb {
            let mut entries: Vec<_> = tlb.iter().collect();
            entries.sort_unstable();
            entries.hash(&mut hasher);
        }
        let mut unflushed: Vec<_> = st.unflushed.iter().collect();
        unflushed.sort_unstable();
        unflushed.hash(&mut hasher);
        for (task, state) in st.tasks.iter().enumerate() {
            (state.cpu, state.status as u8, state.migrate).hash(&mut hasher);
            if let Some(stack) = self.stacks[task].get() {
                stack.depth().hash(&mut hasher);
                (0..stack.cells()).for_each(|c| stack.saved(c).raw().hash(&mut hasher));
            }
        }
        for v in &st.outcome.violations {
            (v.kind, &v.label, &v.context, &v.message).hash(&mut hasher);
        }
        for r in &st.outcome.refusals {
            r.hash(&mut hasher);
        }
        hasher.finish()
    }
}
