//! The interpreter of task, interrupt and NMI programs: every operation is preceded by an
//! arrival point, and calls the crate's real code through the adapter.

use std::rc::Rc;

use kmap::{Checkpoint, MapError};

use super::{Counter, Held, Label, Machine, Place, Reason, TaskState};
use crate::adapter::WINDOW;
use crate::chooser::{Choice, ChoicePoint, STOP};
use crate::config::{AnyOp, Op, Release};
use crate::outcome::{ChoiceRecord, Rule, ViolationKind};
use crate::trace::What;

impl Machine {
    /// A task's life: finish the switch that brought it in, run its program, exit.
    pub(crate) fn task_main(&self, task: usize) {
        self.finish_switch();
        let (ops, any) = {
            let st = self.st.borrow();
            (st.tasks[task].ops.clone(), st.tasks[task].any.clone())
        };
        if any.is_empty() {
            self.run_ops(&ops, Some(task));
            self.exit(task);
        } else {
            self.run_any(task, &any);
        }
    }

    /// An endless nondeterministic program over `pages` (the SPIN model's task): before every
    /// step an arrival point, then the chooser picks the step among those possible.
    fn run_any(&self, task: usize, pages: &[u64]) {
        let any_order = self.config.machine.release == Release::Any;
        loop {
            let held: Vec<u64> = self.st.borrow().tasks[task]
                .mappings
                .iter()
                .map(|h| h.frame)
                .collect();
            self.arrive(Label::BeforeStep);
            let mut steps = Vec::new();
            // A task's budget is one cell per page of its list: a hole uses a cell until the
            // mapping above it is released, so with holes the task maps fewer pages (the stack
            // stays bounded, and the cells above the budget stay free for handlers).
            let step = if self.config.machine.guard_cells {
                2
            } else {
                1
            };
            let room = self.stack(task).depth() + step <= pages.len() * step;
            let unheld = pages.iter().copied().find(|page| !held.contains(page));
            if unheld.is_some() && room {
                steps.push(Choice::Do(AnyOp::Map));
            }
            if !held.is_empty() {
                steps.extend([Choice::Do(AnyOp::Check), Choice::Do(AnyOp::Unmap)]);
            }
            if any_order {
                // Any live mapping, the top too (through `unmap_any_order`, which `Unmap` does
                // not take).
                steps.extend((0..held.len()).map(|at| Choice::Do(AnyOp::Release(at))));
            }
            steps.push(Choice::Do(AnyOp::Yield));
            let step = self.decide(&steps);
            if self.aborted() {
                self.suspend(super::Yield::Abort);
                return;
            }
            let op = match step {
                Choice::Do(AnyOp::Map) => Op::Map(unheld.expect("offered only then")),
                Choice::Do(AnyOp::Check) => Op::Check,
                Choice::Do(AnyOp::Unmap) => Op::Unmap,
                Choice::Do(AnyOp::Release(at)) => Op::UnmapFrame(held[at]),
                _ => Op::Yield,
            };
            self.run_one(op, Some(task));
        }
    }

    /// A program's own decision among `options`, asked of the chooser like an arrival point's
    /// (and recorded in the schedule, so that a replay takes it again).
    fn decide(&self, options: &[Choice]) -> Choice {
        if options.len() == 1 {
            return options[0];
        }
        let (index, arrival, cpu, label) = {
            let mut st = self.st.borrow_mut();
            st.choice_index += 1;
            st.outcome.stats.choice_points += 1;
            let label = st.last_label.unwrap_or(Label::BeforeStep);
            (st.choice_index - 1, st.arrivals - 1, st.active, label)
        };
        let state = self
            .options
            .stateful
            .then(|| self.state_key(Label::BeforeStep, true));
        let pick = self.chooser.borrow_mut().choose(&ChoicePoint {
            index,
            arrival,
            cpu,
            label,
            options,
            state,
        });
        if pick == STOP {
            self.stop();
            return options[0];
        }
        let pick = pick.min(options.len() - 1);
        let mut st = self.st.borrow_mut();
        if self.options.record_choices {
            st.outcome.choices.push(ChoiceRecord {
                arrival,
                options: options.to_vec(),
                chosen: pick,
            });
        }
        st.outcome.schedule.0.push((arrival, options[pick]));
        options[pick]
    }

    fn exit(&self, task: usize) {
        let name = self.st.borrow().tasks[task].name.clone();
        if let Err(held) = self.ops.assert_no_mappings(self, Checkpoint::TaskExit) {
            self.refuse(format!("task {name} ended holding {} cell(s)", held.held));
        } else if self.st.borrow().tasks[task].migrate != 0 {
            self.violate(
                ViolationKind::Leak,
                format!("task {name} ended with migration still disabled"),
            );
        }
        let (preempt, pagefault, irqs_off) = {
            let st = self.st.borrow();
            let c = &st.cpus[st.active];
            (c.preempt, c.pagefault, c.irqs_off)
        };
        if preempt != 0 || pagefault != 0 || irqs_off {
            self.refuse(format!(
                "task {name} ended with preemption or page faults disabled, or interrupts off"
            ));
            let mut st = self.st.borrow_mut();
            let cpu = st.active;
            let c = &mut st.cpus[cpu];
            (c.preempt, c.pagefault, c.irqs_off) = (0, 0, false);
        }
        self.schedule(Reason::Exit);
    }

    /// Run `ops` in the current context: the task `task`, or (with `None`) the innermost
    /// interrupt or NMI handler of the executing CPU.
    pub(crate) fn run_ops(&self, ops: &[Op], task: Option<usize>) {
        for &op in ops {
            self.arrive(Label::BeforeOp(op));
            self.run_one(op, task);
            if let Some(task) = task {
                self.st.borrow_mut().tasks[task].pc += 1;
            }
        }
    }

    /// Run one operation in the current context (see [`run_ops`](Self::run_ops)).
    fn run_one(&self, op: Op, task: Option<usize>) {
        {
            let mut st = self.st.borrow_mut();
            st.outcome.stats.ops += 1;
            if let Some(task) = task {
                st.tasks[task].place = Place {
                    op: Some(op),
                    ..Place::default()
                };
            }
        }
        self.trace(What::Op(op));
        self.run_op(op, task);
        if let Some(task) = task {
            self.st.borrow_mut().tasks[task].place = Place::default();
            self.migrate_if_pending(task);
        }
    }

    fn held(&self, task: Option<usize>) -> Vec<Held> {
        let st = self.st.borrow();
        match task {
            Some(task) => st.tasks[task].mappings.clone(),
            None => st.cpus[st.active]
                .nested
                .last()
                .expect("in a handler")
                .mappings
                .clone(),
        }
    }

    /// This context's most recent mapping of `frame`; `op` is refused if there is none.
    fn held_frame(&self, op: Op, task: Option<usize>, frame: u64) -> Option<Held> {
        let held = self
            .held(task)
            .iter()
            .rev()
            .find(|h| h.frame == frame)
            .copied();
        if held.is_none() {
            self.refuse(format!(
                "`{op}`: frame {frame} is not mapped in this context"
            ));
        }
        held
    }

    fn with_held<R>(&self, task: Option<usize>, f: impl FnOnce(&mut Vec<Held>) -> R) -> R {
        let mut st = self.st.borrow_mut();
        let cpu = st.active;
        match task {
            Some(task) => f(&mut st.tasks[task].mappings),
            None => f(&mut st.cpus[cpu]
                .nested
                .last_mut()
                .expect("in a handler")
                .mappings),
        }
    }

    fn run_op(&self, op: Op, task: Option<usize>) {
        match op {
            Op::Map(frame) => self.map(task, frame, false, false),
            Op::MapAtomic(frame) => self.map(task, frame, true, false),
            Op::MapPfn(frame) => self.map(task, frame, false, true),
            Op::Unmap => match self.held(task).last().copied() {
                None => self.refuse("`unmap` with nothing mapped in this context".into()),
                Some(held) => self.unmap(task, held, false),
            },
            Op::UnmapFrame(frame) => {
                if let Some(held) = self.held_frame(op, task, frame) {
                    let any_order = self.config.machine.release == Release::Any && !held.atomic;
                    self.unmap(task, held, any_order)
                }
            }
            Op::Check => {
                for held in self.held(task) {
                    self.access(held, false);
                }
            }
            Op::Write(frame) => {
                if let Some(held) = self.held_frame(op, task, frame) {
                    self.access(held, true)
                }
            }
            Op::Yield | Op::Sleep => {
                if self.atomic_context() {
                    self.refuse(format!(
                        "`{op}` while atomic (preemption disabled or interrupts off)"
                    ));
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
                self.st.borrow_mut().tasks[task].pending_migration = Some(cpu);
            }
            Op::Fork => self.fork(task.expect("validated: task only")),
            Op::IrqOff | Op::IrqOn => {
                let mut st = self.st.borrow_mut();
                let cpu = st.active;
                st.cpus[cpu].irqs_off = op == Op::IrqOff;
            }
            Op::PreemptOff => self.count(Counter::Preempt, 1),
            Op::PreemptOn => {
                if self.st.borrow().cpus[self.cpu()].preempt == 0 {
                    self.refuse("`preempt_on` without `preempt_off`".into());
                } else {
                    self.count(Counter::Preempt, -1);
                }
            }
        }
    }

    fn atomic_context(&self) -> bool {
        let st = self.st.borrow();
        let c = &st.cpus[st.active];
        c.preempt != 0 || c.irqs_off
    }

    fn map(&self, task: Option<usize>, frame: u64, atomic: bool, pfn: bool) {
        self.st.borrow_mut().outcome.stats.kmap_ops += 1;
        match self.ops.map(self, frame, atomic, pfn) {
            Ok(addr) => self.with_held(task, |held| {
                held.push(Held {
                    frame,
                    addr,
                    atomic,
                })
            }),
            // A task's own overflow is its program's misuse, refused before any state changes.
            // A handler's is a crash: it cannot do its work without the mapping, and could not
            // have known (Linux: BUG_ON(idx >= KM_MAX_IDX)).
            Err(refused @ MapError::Overflow { .. }) if task.is_some() => {
                self.refuse(format!("map {frame}: {refused}"))
            }
            Err(overflow @ MapError::Overflow { .. }) => self.violate(
                ViolationKind::Crash,
                format!("map {frame} in a handler: {overflow} (Linux: BUG_ON(idx >= KM_MAX_IDX))"),
            ),
            Err(broken @ MapError::SlotNotEmpty { .. }) => self.violate(
                ViolationKind::Crash,
                format!("map {frame}: {broken} (Linux: BUG_ON(!pte_none))"),
            ),
        }
    }

    /// Release `held` through `raw::unmap` (or `unmap_atomic`), or with `any_order` through
    /// `raw::unmap_any_order`.
    fn unmap(&self, task: Option<usize>, held: Held, any_order: bool) {
        self.st.borrow_mut().outcome.stats.kmap_ops += 1;
        // Any address inside the page will do (rule U-1.1): use one that is not the start.
        let addr = if held.addr >= WINDOW {
            held.addr + 0x123
        } else {
            held.addr
        };
        let released = if any_order {
            self.ops.unmap_any_order(self, addr)
        } else {
            self.ops.unmap(self, addr, held.atomic)
        };
        match released {
            Ok(()) => self.with_held(task, |list| {
                let at = list
                    .iter()
                    .rposition(|h| h.addr == held.addr && h.frame == held.frame);
                list.remove(at.expect("held"));
            }),
            Err(refused) => self.refuse(format!("unmap of frame {}: {refused}", held.frame)),
        }
    }

    fn fork(&self, parent: usize) {
        let child = {
            let st = self.st.borrow();
            st.tasks.len()
        };
        let stack = self.ops.fork(self);
        let inherited =
            stack.depth() != 0 || (0..stack.cells()).any(|c| !stack.saved(c).is_empty());
        if inherited {
            self.hazard(
                Rule::Fork,
                "the forked child's kmap stack is not empty".into(),
            );
        }
        let _ = self.stacks[child].set(stack);
        let mut st = self.st.borrow_mut();
        let cpu = st.active;
        let name = format!("{}.child{}", st.tasks[parent].name, child);
        st.tasks.push(TaskState::new(
            name,
            cpu,
            Rc::from(vec![Op::Check]),
            Rc::from(Vec::new()),
            false,
        ));
        st.cpus[cpu].runqueue.push_back(child);
    }

    /// A requested migration happens once the task may migrate (Linux: at `migrate_enable`).
    fn migrate_if_pending(&self, task: usize) {
        let to = {
            let st = self.st.borrow();
            let t = &st.tasks[task];
            match t.pending_migration {
                Some(to) if t.migrate == 0 && !self.atomic_context_in(&st) => Some(to),
                _ => None,
            }
        };
        if let Some(to) = to {
            self.st.borrow_mut().tasks[task].pending_migration = None;
            if to != self.cpu() {
                self.schedule(Reason::Migrate(to));
            }
        }
    }

    fn atomic_context_in(&self, st: &crate::machine::State) -> bool {
        let c = &st.cpus[st.active];
        c.preempt != 0 || c.irqs_off
    }
}
