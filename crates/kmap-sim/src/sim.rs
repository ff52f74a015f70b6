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
    // Dropping a coroutine that is still suspended unwinds its stack; nothing on it calls back
    // into the machine while unwinding.
    drop(tasks);
    machine.check_end();
    Ok(machine.take_outcome())
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
            let stack = DefaultStack::new(TASK_STACK).expect("a task stack");
            Coroutine::with_stack(stack, move |yielder, ()| {
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
            CoroutineResult::Return(()) => tasks[current] = None,
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

    /// At the end of a clean run nothing may be left mapped.
    pub(crate) fn check_end(&self) {
        if self.aborted() || !self.st.borrow().outcome.refusals.is_empty() {
            return;
        }
        let left = self.st.borrow().pt.iter().position(|pte| !pte.is_empty());
        if let Some(index) = left {
            let cells = self.config.machine.cells;
            self.violate(
                ViolationKind::Counter,
                format!(
                    "slot {}.{} is still mapped after every task ended",
                    index / cells,
                    index % cells
                ),
            );
        }
    }
}
