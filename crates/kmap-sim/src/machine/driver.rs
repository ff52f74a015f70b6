//! The driver: one stackful coroutine per task, resumed on the host thread one at a time.
//!
//! A task's code (its program, and the crate's code it calls) runs on the task's own stack, so
//! a preemption delivered at an arrival point deep inside `map` really leaves that call half
//! done while other tasks run, exactly as in a kernel. Interrupts and NMIs need no stack of
//! their own: they run nested on the stack of whatever task they interrupt. Everything runs on
//! one host thread, so a run depends only on the chooser's answers.
//!
//! An execution ends with most tasks suspended in the middle of their code (a stateful search
//! stops every execution at its first new state). Their coroutines are ended without
//! unwinding their stacks (`force_reset`, a jump back to the start), which is sound only if no
//! frame of them holds a value that must be dropped; unwinding would cost more than the
//! execution itself (a walk of the unwind tables for every frame). So the code that runs on a
//! task's stack keeps the rule: **no value that owns memory, or must otherwise be dropped, is
//! alive in a local across an arrival point** (where code may be suspended for good). What
//! must survive one lives in the machine, which is dropped as usual: a task's program is
//! borrowed from the configuration, a handler's view of the CPU it found is in its record, a
//! probe's saved state in the machine's list of probes in progress, a stack image is inline
//! (at most `MAX_CELLS` cells), lists are read after the arrival point, not before. The
//! machine is reached through a pointer, not a counted reference. `kmap-check`'s
//! `tests/leaks.rs` counts every allocation over the executions of every built-in scenario's
//! search, proofs of small scopes and random runs, each ended where its search ends it: a frame
//! that broke the rule where one of them ended would leak, and fail it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard, PoisonError};

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

/// Stacks of finished coroutines, reused by the next ones (of any thread): an explorer runs
/// hundreds of thousands of executions, and mapping and unmapping a stack for each task of
/// each would cost more system time than the executions themselves.
static STACKS: Mutex<Vec<DefaultStack>> = Mutex::new(Vec::new());

/// The pool of stacks (a thread that panicked while holding it left it as it was).
fn pool() -> MutexGuard<'static, Vec<DefaultStack>> {
    STACKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A task stack, reused if one is free.
fn take_stack() -> DefaultStack {
    let reused = pool().pop();
    reused.unwrap_or_else(|| DefaultStack::new(TASK_STACK).expect("a task stack"))
}

/// End `coroutine` (without unwinding it if it is suspended) and keep its stack for reuse.
fn give_back(mut coroutine: TaskCoroutine) {
    if coroutine.started() && !coroutine.done() {
        // SAFETY: the code on a task's stack keeps no value that must be dropped across an
        // arrival point (the rule in the module doc), and a task's coroutine is suspended only
        // at one; the coroutine's own closure holds a pointer and a number. Nothing points
        // into the stack once the execution is over (the machine's pointers to the yielders
        // are dropped with it, and the stack is reused only by a later execution).
        unsafe { coroutine.force_reset() };
    }
    let stack = coroutine.into_stack();
    pool().push(stack);
}

/// Run `config` to the end (or to its first violation), taking every decision from `chooser`.
pub fn run(
    config: &Config,
    chooser: Rc<RefCell<dyn Chooser>>,
    options: RunOptions,
) -> Result<Outcome, ConfigError> {
    config.validate()?;
    let machine = Machine::new(config, chooser, options);
    let mut tasks: Vec<Option<TaskCoroutine>> = Vec::new();
    drive(&machine, &mut tasks);
    // Every coroutine ends before the machine its code points to.
    tasks.into_iter().flatten().for_each(give_back);
    machine.check_end();
    // A stopped execution has no final state (and a stateful search stops every one).
    let stopped = machine.outcome.borrow().stopped;
    let final_state = if stopped { 0 } else { machine.final_state() };
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

fn drive(machine: &Machine, tasks: &mut Vec<Option<TaskCoroutine>>) {
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
            let m: *const Machine = machine;
            Coroutine::with_stack(take_stack(), move |yielder, ()| {
                // SAFETY: `run` owns the machine and ends every coroutine (`give_back`) before
                // it drops it, and the machine is not moved meanwhile (it is borrowed by
                // `drive`): the pointer is valid whenever this code runs.
                let m = unsafe { &*m };
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
