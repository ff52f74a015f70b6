//! The oracle: what the machine watches and records, read from its parts. Consequences
//! (crash, fault, corruption, leak) are violations; rules broken with no consequence yet are
//! hazards; the crate's reports and refusals are kept; and, when asked, every step goes into
//! the trace.

use kmap::{Cell, CpuId, Pte, Report, Slot};

use super::Machine;
use super::mmu::Leftover;
use super::probe::CpuView;
use super::task::Read;
use crate::choice::TaskId;
use crate::config::HandlerKind;
use crate::outcome::{Hazard, Refusal, Rule, Violation, ViolationKind};
use crate::platform::pte_frame;
use crate::trace::{Context, Event, Label, SlotName, What};

impl Machine {
    pub(crate) fn report(&self, report: Report) {
        self.outcome.borrow_mut().reports.push(report);
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

    /// Record a misuse refused; `survived` when the refused operation changed nothing (see
    /// [`Refusal::survived`]).
    pub(crate) fn refuse(&self, message: String, survived: bool) {
        let (cpu, context) = self.where_now();
        self.outcome.borrow_mut().refusals.push(Refusal {
            cpu,
            context,
            message: message.clone(),
            survived,
        });
        self.trace(What::Refused(message));
    }

    /// The last arrival point passed, as a violation or hazard names it.
    fn last_label(&self) -> String {
        self.arrivals
            .borrow()
            .last_label()
            .map(|l| l.to_string())
            .unwrap_or_else(|| "start".into())
    }

    /// Record a consequence (or, under strict checking, a hazard); the execution stops at the
    /// next arrival point.
    pub(crate) fn violate(&self, kind: ViolationKind, message: String) {
        let (cpu, context) = self.where_now();
        let label = self.last_label();
        self.outcome.borrow_mut().violations.push(Violation {
            kind,
            cpu,
            context,
            label,
            message: message.clone(),
        });
        self.arrivals.borrow_mut().end();
        self.trace(What::Violation(format!("{kind}: {message}")));
    }

    /// Record a rule broken with no consequence yet (once per rule, point and context in an
    /// execution); under strict checking it is a violation.
    pub(crate) fn hazard(&self, rule: Rule, message: String) {
        if self.config.machine.strict {
            self.violate(ViolationKind::Hazard(rule), message);
            return;
        }
        self.hazards_met.set(self.hazards_met.get() + 1);
        let (cpu, context) = self.where_now();
        let hazard = Hazard {
            rule,
            cpu,
            context,
            label: self.last_label(),
            message: message.clone(),
            probed: self.arrivals.borrow().probing() > 0,
        };
        let mut outcome = self.outcome.borrow_mut();
        if !outcome.hazards.iter().any(|h| h.same_place(&hazard)) {
            outcome.hazards.push(hazard);
        }
        drop(outcome);
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
    pub(crate) fn read_cpu(&self) -> CpuId {
        let migratable = {
            let cpu = self.this_cpu();
            cpu.nesting() == 0
                && !cpu.in_scheduler()
                && !cpu.atomic()
                && self.tasks.borrow()[cpu.current().0].migrate == 0
        };
        // The answer is read now: what the crate then does with it, after whatever the arrival
        // point below let happen, is what the explorer must see. It is recorded in the
        // context's place before that point (the crate holds it across it: a state key taken
        // there must tell it from the CPU the task is moved to).
        let cpu = self.cpu();
        self.record_read(Read::Cpu(cpu));
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

    /// The executing CPU and who runs there.
    pub(crate) fn where_now(&self) -> (CpuId, Context) {
        let cpu = self.this_cpu();
        let context = match cpu.innermost().map(|h| h.kind) {
            Some(HandlerKind::Nmi) => Context::Nmi,
            Some(HandlerKind::Irq) => Context::Irq(cpu.nesting_of(HandlerKind::Irq)),
            None if cpu.in_scheduler() => Context::Scheduler,
            None => {
                let tasks = self.tasks.borrow();
                let task = &tasks[cpu.current().0];
                if task.idle {
                    Context::Idle
                } else {
                    Context::Task(task.name.clone())
                }
            }
        };
        (self.cpu(), context)
    }

    pub(crate) fn trace(&self, what: What) {
        if !self.options.trace {
            return;
        }
        let (cpu, context) = self.where_now();
        self.outcome
            .borrow_mut()
            .trace
            .push(Event { cpu, context, what });
    }

    /// Emit `idx` changes of every task since the last look (trace only).
    pub(super) fn trace_depths(&self) {
        for (task, stack) in self.stacks.iter() {
            let depth = stack.depth();
            let last = std::mem::replace(&mut self.traced_depths.borrow_mut()[task.0], depth);
            if depth != last {
                self.trace(What::Idx {
                    task: self.name(task),
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
        let past_end = self.stacks.iter().find_map(|(task, stack)| {
            let (depth, cells) = (stack.raw_idx(), stack.cells());
            (depth < 0 || depth > cells as i64).then(|| {
                format!(
                    "task {}'s idx is {depth}, outside its stack of {cells} cells: the next map \
                     or unmap writes outside the array (Linux: pteval[idx] out of bounds)",
                    self.name(task)
                )
            })
        });
        if let Some(message) = past_end {
            return Some((ViolationKind::Crash, message));
        }
        if !self.config.machine.any_order() {
            return None;
        }
        self.stacks.iter().find_map(|(task, stack)| {
            let depth = stack.depth();
            (depth > 0 && stack.saved(Cell(depth - 1)) == Pte::HOLE).then(|| {
                let message = format!(
                    "task {}'s top cell ({}) is a hole (INV-H): a cell no mapping holds stays in \
                     use, and the stack cannot return to idx 0",
                    self.name(task),
                    depth - 1
                );
                (ViolationKind::Leak, message)
            })
        })
    }

    /// The invariants of the current task's `KmapStack` (documented on the type): every cell
    /// at or above `idx` holds `Pte::EMPTY`, and with guard cells every guard cell does. Only
    /// contexts running on top of the current task write its stack, so checking the current
    /// one at every arrival point sees every change. A hazard, not a violation: Linux never
    /// reads those cells, so nothing goes wrong yet.
    pub(crate) fn check_stack(&self) {
        let task = self.current_task();
        let Some(stack) = self.stacks.try_get(task) else {
            return;
        };
        let depth = stack.depth().min(stack.cells());
        // The cells that must be empty: those at or above idx, then the guard cells below it.
        let guards = (0..depth).filter(|cell| self.config.machine.guard_cells && cell % 2 == 0);
        let Some(cell) = (depth..stack.cells())
            .chain(guards)
            .find(|&cell| !stack.saved(Cell(cell)).is_empty())
        else {
            return;
        };
        let which = if cell >= depth {
            format!("cell {cell} is at or above idx {depth}")
        } else {
            format!("cell {cell} is a guard cell")
        };
        let pte = stack.saved(Cell(cell));
        let what = if pte == Pte::HOLE {
            "a hole".to_string()
        } else {
            format!("frame {}", pte_frame(pte).pfn())
        };
        self.hazard(
            Rule::Stack,
            format!(
                "{}'s {which} but holds {what}: the stack is not what its idx says",
                self.name(task)
            ),
        );
    }

    /// INV-1: on the executing CPU, every slot at or above `task`'s depth is empty.
    pub(crate) fn check_above_idx(&self, task: TaskId, depth: usize, when: &str) {
        let cpu = self.cpu();
        let occupied = (depth..self.cells()).find_map(|cell| {
            let slot = Slot {
                cpu,
                cell: Cell(cell),
            };
            let pte = self.mmu.borrow().pte(slot);
            (!pte.is_empty()).then(|| (slot, pte_frame(pte)))
        });
        if let Some((slot, frame)) = occupied {
            self.hazard(
                Rule::Inv1,
                format!(
                    "{when}, slot {} maps frame {} but current ({}) has idx {depth}: a mapping \
                     made now would land on a live slot",
                    SlotName(slot),
                    frame.pfn(),
                    self.name(task)
                ),
            );
        }
    }

    /// At the end of a run with no refusal it did not survive, nothing may be left behind: no
    /// slot mapped, no TLB entry for a slot, no slot cleared without its invalidation (a leak).
    pub(crate) fn check_end(&self) {
        if self.aborted() || !self.survived_every_refusal() {
            return;
        }
        self.check_leftover(false);
    }

    /// The same check in the middle of a run whose programs never end (a nondeterministic
    /// task's): a run of them ends only where a search stops it (at a state seen before, or at
    /// the end of a schedule), never by every task ending, so [`check_end`](Self::check_end)
    /// never runs in it. Its stand-in, at every arrival point: at a quiescent state (no
    /// handler, no switch and no operation in progress on any CPU) where every task's stack is
    /// empty, the run could end (were the tasks to end there), so what check_end requires must
    /// hold already: nothing maps a slot, translates one or waits for its invalidation. Every
    /// execution through that arrival point meets the check there, so a stateful search, a
    /// stateless one and a replay of either's counterexample find the same leak. (A run of
    /// finite programs gets to its end, where check_end finds what this would, with its
    /// consequence first if it has one.) Returns whether it found a leak (the run is over).
    pub(crate) fn check_quiescent(&self) -> bool {
        let empty = self.stacks.iter().all(|(_, stack)| stack.depth() == 0);
        if !empty || !self.survived_every_refusal() {
            return false;
        }
        self.check_leftover(true)
    }

    /// Whether every refusal so far changed nothing (see [`Refusal::survived`]).
    pub(super) fn survived_every_refusal(&self) -> bool {
        self.outcome.borrow().refusals.iter().all(|r| r.survived)
    }

    /// Rule A-1: a `kmap_atomic` of `frame` that succeeded returned with preemption and
    /// page faults disabled.
    pub(crate) fn check_atomic_map(&self, frame: kmap::Frame) {
        let counts = self.atomic_counts();
        let enabled = counts_named(counts.map(|count| count <= 0));
        if !enabled.is_empty() {
            self.hazard(
                Rule::Atomic,
                format!(
                    "kmap_atomic of frame {} returned with {enabled} enabled",
                    frame.pfn()
                ),
            );
        }
    }

    /// The preemption and page-fault counts of the executing CPU, for
    /// [`check_atomic_release`](Self::check_atomic_release).
    pub(crate) fn atomic_counts(&self) -> [i32; 2] {
        let counters = self.this_cpu().counters();
        [counters.preempt, counters.pagefault]
    }

    /// Rules A-2 and U-2: the release of an atomic mapping of `frame` (fast path or slot)
    /// enabled preemption and page faults once each: the counts are one less than `before`.
    pub(crate) fn check_atomic_release(&self, frame: kmap::Frame, before: [i32; 2]) {
        let after = self.atomic_counts();
        let kept = counts_named([after[0] != before[0] - 1, after[1] != before[1] - 1]);
        if !kept.is_empty() {
            self.hazard(
                Rule::Atomic,
                format!(
                    "the unmap of an atomic mapping of frame {} did not enable {kept} once",
                    frame.pfn()
                ),
            );
        }
    }

    /// A crate's refusal must leave everything as it found it (`before`, taken just before the
    /// call): otherwise the refused operation left something behind, a leak.
    pub(crate) fn check_refusal_undone(&self, what: &str, before: Option<CpuView>) {
        let Some(before) = before else {
            return;
        };
        let after = self.cpu_view();
        if after != before {
            let changes = self.describe_trace(&before, &after);
            self.violate(
                ViolationKind::Leak,
                format!("the refused {what} did not leave everything as it found it: {changes}"),
            );
        }
    }

    /// A leak, if the MMU holds anything of a slot: in the middle of a run (`mid`), or at its
    /// end.
    fn check_leftover(&self, mid: bool) -> bool {
        let when = if mid {
            "with every stack empty"
        } else {
            "after every task ended"
        };
        let left = self.mmu.borrow().leftover();
        let message = match left {
            None => return false,
            Some(Leftover::Mapped(slot, frame)) => format!(
                "slot {} still maps frame {} {when}",
                SlotName(slot),
                frame.pfn()
            ),
            Some(Leftover::Translated(cpu, slot, frame)) => format!(
                "CPU {}'s TLB still translates slot {} to frame {} {when}",
                cpu.0,
                SlotName(slot),
                frame.pfn()
            ),
            Some(Leftover::Unflushed(slot)) => format!(
                "slot {} was cleared but its TLB entry never invalidated{}",
                SlotName(slot),
                if mid { " (every stack empty)" } else { "" }
            ),
        };
        self.violate(ViolationKind::Leak, message);
        true
    }
}

/// "preemption", "page faults" or both, for the counts `which` names (preemption, page faults).
fn counts_named(which: [bool; 2]) -> String {
    let names: Vec<&str> = ["preemption", "page faults"]
        .into_iter()
        .zip(which)
        .filter_map(|(name, named)| named.then_some(name))
        .collect();
    names.join(" and ")
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use kmap::CpuId;

    use super::super::RunOptions;
    use super::*;
    use crate::choice::NoInjection;
    use crate::config::Config;
    use crate::platform::Counter;
    use crate::program::{Op, Program, Task};

    /// A machine with one task that checks its (no) mappings, before it runs.
    fn one_task() -> Machine {
        let config = Config {
            program: Program {
                tasks: vec![Task {
                    name: "A".into(),
                    ops: vec![Op::Check],
                    ..Task::default()
                }],
                ..Program::default()
            },
            ..Config::default()
        };
        Machine::new(
            &config,
            Rc::new(RefCell::new(NoInjection)),
            RunOptions::default(),
        )
    }

    /// Like Linux's `CONFIG_DEBUG_PREEMPT`: reading the CPU while the task can still be
    /// preempted and migrated is a hazard; once migration (or preemption) is disabled it is not.
    /// The crate reads it only after `migrate_disable`; a crate that read it before would be
    /// reported here.
    #[test]
    fn reading_the_cpu_while_migratable_is_a_hazard() {
        let machine = one_task();
        machine.count(Counter::Migrate, 1);
        assert_eq!(machine.read_cpu(), CpuId(0));
        assert!(machine.outcome.borrow().hazards.is_empty());
        machine.count(Counter::Migrate, -1);
        machine.read_cpu();
        let hazards = &machine.outcome.borrow().hazards;
        assert_eq!(hazards.len(), 1);
        assert_eq!(hazards[0].rule, Rule::DebugPreempt);
    }

    /// Issue 20, class (a): a stack whose idx is 0 but whose cell 0 still holds a PTE breaks
    /// the crate's documented invariant with no consequence yet (nothing reads that cell); an
    /// arrival point reports it as a hazard.
    #[test]
    fn a_cell_above_idx_that_is_not_empty_is_a_hazard_at_the_next_arrival_point() {
        let machine = one_task();
        machine.arrive(Label::BeforeStep);
        assert!(machine.outcome.borrow().hazards.is_empty());
        let mut saved = [Pte::EMPTY; 16];
        saved[0] = Pte::from_raw(20 << 12 | 1);
        let broken = kmap::StackState {
            idx: 0,
            home: CpuId(0),
            saved,
        };
        let stack = machine.current_stack();
        // SAFETY: a test of the oracle: no crate code runs on this stack afterwards.
        unsafe { stack.restore(&broken) };
        machine.arrive(Label::BeforeStep);
        let hazards = &machine.outcome.borrow().hazards;
        assert_eq!(hazards.len(), 1, "{hazards:?}");
        assert_eq!(hazards[0].rule, Rule::Stack);
        assert!(
            hazards[0]
                .message
                .contains("cell 0 is at or above idx 0 but holds frame 20"),
            "{}",
            hazards[0].message
        );
    }
}
