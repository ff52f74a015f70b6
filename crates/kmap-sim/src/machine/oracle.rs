//! The oracle: what the machine watches and records. Consequences (crash, fault, corruption,
//! leak) are violations; rules broken with no consequence yet are hazards; the crate's reports
//! and refusals are kept; and, when asked, every step goes into the trace.

use kmap::Report;

use super::{Machine, Nested, NestedKind};
use crate::adapter::pte_frame;
use crate::outcome::{Hazard, Refusal, Rule, Violation, ViolationKind};
use crate::trace::{Context, Event, Label, What};

impl Machine {
    pub(crate) fn report(&self, report: Report) {
        self.st.borrow_mut().outcome.reports.push(report);
        self.trace(What::Report(report));
        match report {
            Report::Migrated { from, to } => self.hazard(
                Rule::Inv4,
                format!(
                    "a task holding mappings made on CPU {} was switched in on CPU {}",
                    from.0, to.0
                ),
            ),
            Report::GuardCellNotEmpty { cell } => self.hazard(
                Rule::Inv2,
                format!("guard cell {} holds a saved PTE", cell.0),
            ),
            Report::SavedValueEmpty { cell } => self.hazard(
                Rule::Inv5,
                format!(
                    "cell {} is below idx but has no saved PTE at a context switch",
                    cell.0
                ),
            ),
            _ => {}
        }
    }

    pub(crate) fn refuse(&self, message: String) {
        let (cpu, context) = self.where_now();
        self.st.borrow_mut().outcome.refusals.push(Refusal {
            cpu,
            context,
            message: message.clone(),
        });
        self.trace(What::Refused(message));
    }

    /// Record a consequence (or, under strict checking, a hazard); the execution stops at the
    /// next arrival point.
    pub(crate) fn violate(&self, kind: ViolationKind, message: String) {
        let (cpu, context) = self.where_now();
        {
            let mut st = self.st.borrow_mut();
            let label = st
                .last_label
                .map(|l| l.to_string())
                .unwrap_or_else(|| "start".into());
            st.outcome.violations.push(Violation {
                kind,
                cpu,
                context,
                label,
                message: message.clone(),
            });
            st.aborted = true;
        }
        self.trace(What::Violation(format!("{kind}: {message}")));
    }

    /// Record a rule broken with no consequence yet (once per rule, point and context in an
    /// execution); under strict checking it is a violation.
    pub(crate) fn hazard(&self, rule: Rule, message: String) {
        if self.config.strict {
            self.violate(ViolationKind::Hazard(rule), message);
            return;
        }
        let (cpu, context) = self.where_now();
        let hazard = {
            let st = self.st.borrow();
            Hazard {
                rule,
                cpu,
                context,
                label: st
                    .last_label
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "start".into()),
                message: message.clone(),
                probed: st.probing > 0,
            }
        };
        let seen = self
            .st
            .borrow()
            .outcome
            .hazards
            .iter()
            .any(|h| h.same_place(&hazard));
        if !seen {
            self.st.borrow_mut().outcome.hazards.push(hazard);
        }
        self.trace(What::Hazard(format!("{rule}: {message}")));
    }

    /// The crate called a platform method (traced, to check that calls are separated by
    /// arrival points).
    pub(crate) fn call(&self, name: &'static str) {
        if self.options.trace {
            self.trace(What::Call(name));
        }
    }

    /// The executing CPU, read by the crate. Like Linux's `CONFIG_DEBUG_PREEMPT`
    /// (`smp_processor_id()` in preemptible code), a read from a task that could still be
    /// preempted and migrated is a hazard: the task might run on another CPU by the time it
    /// uses the answer.
    pub(crate) fn read_cpu(&self) -> usize {
        let migratable = {
            let st = self.st.borrow();
            let c = &st.cpus[st.active];
            c.nested.is_empty()
                && !c.in_scheduler
                && c.preempt == 0
                && !c.irqs_off
                && st.tasks[c.current].migrate == 0
        };
        let cpu = self.cpu();
        if migratable {
            self.hazard(
                Rule::DebugPreempt,
                "the crate read the current CPU while the task could still be preempted and \
                 migrated"
                    .into(),
            );
            // Nothing keeps the task here until the crate uses the answer: a preemption (and a
            // migration) may come right after the read.
            self.arrive(Label::MigratableCpuRead);
        }
        cpu
    }

    pub(crate) fn aborted(&self) -> bool {
        self.st.borrow().aborted
    }

    /// The executing CPU and who runs there.
    pub(crate) fn where_now(&self) -> (usize, Context) {
        let st = self.st.borrow();
        let cpu = &st.cpus[st.active];
        let context = match cpu.nested.last() {
            Some(Nested {
                kind: NestedKind::Nmi,
                ..
            }) => Context::Nmi,
            Some(Nested {
                kind: NestedKind::Irq,
                ..
            }) => Context::Irq(
                cpu.nested
                    .iter()
                    .filter(|n| n.kind == NestedKind::Irq)
                    .count(),
            ),
            None if cpu.in_scheduler => Context::Scheduler,
            None if st.tasks[cpu.current].idle => Context::Idle,
            None => Context::Task(st.tasks[cpu.current].name.clone()),
        };
        (st.active, context)
    }

    pub(crate) fn trace(&self, what: What) {
        if !self.options.trace {
            return;
        }
        let (cpu, context) = self.where_now();
        self.st
            .borrow_mut()
            .outcome
            .trace
            .push(Event { cpu, context, what });
    }

    /// Emit `idx` changes of every task since the last look (trace only).
    pub(super) fn trace_depths(&self) {
        for task in 0..self.stacks.len() {
            let Some(stack) = self.stacks[task].get() else {
                continue;
            };
            let depth = stack.depth();
            let last = std::mem::replace(&mut self.st.borrow_mut().last_depth[task], depth);
            if depth != last {
                let name = self.st.borrow().tasks[task].name.clone();
                self.trace(What::Idx {
                    task: name,
                    from: last,
                    to: depth,
                });
            }
        }
    }

    /// A stack no correct crate leaves at an arrival point, with the violation it is:
    /// - `idx` past the stack (an unmap that underflows it): the crate's next access would be
    ///   out of bounds (Linux: a write through `pteval[idx]` outside the array), so nothing
    ///   that reads the stack may run from here;
    /// - with release in any order, a hole at the top (INV-H): a cell no mapping holds stays in
    ///   use, and the stack cannot return to 0.
    pub(crate) fn broken_stack(&self) -> Option<(ViolationKind, String)> {
        let name = |task: usize| self.st.borrow().tasks[task].name.clone();
        let stacks =
            || (0..self.stacks.len()).filter_map(|t| self.stacks[t].get().map(|stack| (t, stack)));
        let past_end = stacks().find_map(|(task, stack)| {
            let (depth, cells) = (stack.depth(), stack.cells());
            (depth > cells).then(|| {
                format!(
                    "task {}'s idx is {depth}, outside its stack of {cells} cells: the next map \
                     or unmap writes outside the array (Linux: pteval[idx] out of bounds)",
                    name(task)
                )
            })
        });
        if let Some(message) = past_end {
            return Some((ViolationKind::Crash, message));
        }
        if self.config.machine.release != crate::config::Release::Any {
            return None;
        }
        stacks().find_map(|(task, stack)| {
            let depth = stack.depth();
            (depth > 0 && stack.saved(depth - 1) == kmap::Pte::HOLE).then(|| {
                let message = format!(
                    "task {}'s top cell ({}) is a hole (INV-H): a cell no mapping holds stays in \
                     use, and the stack cannot return to idx 0",
                    name(task),
                    depth - 1
                );
                (ViolationKind::Leak, message)
            })
        })
    }

    /// INV-1: on the executing CPU, every slot at or above `task`'s depth is empty.
    pub(crate) fn check_above_idx(&self, task: usize, depth: usize, when: &str) {
        let cpu = self.cpu();
        let occupied: Vec<(usize, u64)> = (depth..self.cells())
            .filter_map(|cell| {
                let pte = self.read_pte(cpu, cell);
                (!pte.is_empty()).then(|| (cell, pte_frame(pte)))
            })
            .collect();
        if let Some(&(cell, frame)) = occupied.first() {
            let name = self.st.borrow().tasks[task].name.clone();
            self.hazard(
                Rule::Inv1,
                format!(
                    "{when}, slot {cpu}.{cell} maps frame {frame} but current ({name}) has idx {depth}: \
                     a mapping made now would land on a live slot"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::super::{Counter, RunOptions};
    use super::*;
    use crate::chooser::NoInjection;
    use crate::config::{Config, Op};

    /// Like Linux's `CONFIG_DEBUG_PREEMPT`: reading the CPU while the task can still be
    /// preempted and migrated is a hazard; once migration (or preemption) is disabled it is not.
    /// The crate reads it only after `migrate_disable`; a crate that read it before would be
    /// reported here.
    #[test]
    fn reading_the_cpu_while_migratable_is_a_hazard() {
        let config = Config {
            program: crate::Program {
                tasks: vec![crate::Task {
                    name: "A".into(),
                    cpu: 0,
                    ops: vec![Op::Check],
                    ..crate::Task::default()
                }],
                ..crate::Program::default()
            },
            ..Config::default()
        };
        let machine = Machine::new(
            &config,
            Rc::new(RefCell::new(NoInjection)),
            RunOptions::default(),
        );
        machine.count(Counter::Migrate, 1);
        assert_eq!(machine.read_cpu(), 0);
        assert!(machine.st.borrow().outcome.hazards.is_empty());
        machine.count(Counter::Migrate, -1);
        machine.read_cpu();
        let hazards = &machine.st.borrow().outcome.hazards;
        assert_eq!(hazards.len(), 1);
        assert_eq!(hazards[0].rule, Rule::DebugPreempt);
    }
}
