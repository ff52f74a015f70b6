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
use kmap::CpuId;

use super::{Machine, RunOptions, TaskYielder, Yield};
use crate::choice::{Chooser, TaskId};
use crate::config::{Config, ConfigError};
use crate::outcome::Outcome;

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
                Some(other) => machine.active.set(other),
                None => return,
            }
            continue;
        };
        if tasks.len() <= current.0 {
            tasks.resize_with(current.0 + 1, || None);
        }
        let coroutine = tasks[current.0].get_or_insert_with(|| {
            let m = machine.clone();
            Coroutine::with_stack(take_stack(), move |yielder, ()| {
                m.set_yielder(current, yielder);
                m.task_main(current);
            })
        });
        machine.driver.borrow_mut().executing = Some(current);
        let result = coroutine.resume(());
        machine.driver.borrow_mut().executing = None;
        match result {
            CoroutineResult::Yield(Yield::Step(to)) => machine.active.set(to),
            CoroutineResult::Yield(Yield::Switched) => {}
            CoroutineResult::Yield(Yield::Abort) => return,
            CoroutineResult::Return(()) => {
                if let Some(done) = tasks[current.0].take() {
                    give_back(done);
                }
            }
        }
    }
}

impl Machine {
    fn set_yielder(&self, task: TaskId, yielder: &TaskYielder) {
        self.driver.borrow_mut().yielders[task.0] = yielder;
    }

    /// The first CPU after `from` that has something to execute.
    fn cpu_with_work(&self, from: CpuId) -> Option<CpuId> {
        let n = self.config.machine.cpus as u32;
        (1..=n)
            .map(|i| CpuId((from.0 + i) % n))
            .find(|&c| self.has_work(c))
    }
}
