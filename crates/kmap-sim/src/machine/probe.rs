//! Probes: at an arrival point, every handler that may arrive runs right there and is undone.
//! A clean handler must leave its CPU exactly as it found it (INV-3), so a clean probe amounts
//! to no event; one that leaves a trace is offered as a lasting handler (a real event).

use dashmap::DashSet;
use kmap::{Cell, CpuId, Pte};
use rustc_hash::FxBuildHasher;

use super::Machine;
use super::arrival::SavedNumbering;
use super::cpu::{Counters, SavedArrival};
use super::memory::Memory;
use super::mmu::{MmuView, SavedMmu};
use crate::choice::{Choice, Taken};
use crate::config::HandlerKind;
use crate::platform::{DynStack, pte_frame};

/// What a handler on the executing CPU may touch and must leave as it found it (INV-3).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct CpuView {
    /// Its slots, TLB and unflushed slots.
    mmu: MmuView,
    /// The current task's `idx` and saved PTEs.
    depth: usize,
    saved: Vec<Pte>,
    /// Preemption, page-fault and migration counts, and whether interrupts are off.
    counters: [i32; 4],
}

/// Everything a handler on the executing CPU can change, as a probed handler found it (see
/// `Machine::save_cpu`).
pub(crate) struct SavedCpu {
    mmu: SavedMmu,
    counters: Counters,
    /// The current task's migration-disable count.
    migrate: i32,
    /// The current task's kmap stack ([`DynStack::save`]).
    stack: Box<dyn std::any::Any>,
    memory: Memory,
    numbering: SavedNumbering,
    arrival: SavedArrival,
    reports: usize,
}

/// Handler kinds (at most one of each), kept inline: probes run at every arrival point.
pub(super) type Handlers = smallvec::SmallVec<[HandlerKind; 2]>;

/// Handler runs already probed clean, by the state they could observe (see
/// [`RunOptions::probe`](super::RunOptions::probe)): a concurrent set, shared by the runs of
/// every thread of a search.
#[derive(Default, Debug)]
pub struct ProbeMemo(DashSet<Box<[u64]>, FxBuildHasher>);

impl ProbeMemo {
    /// How many distinct handler runs are remembered.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Machine {
    /// Everything of the executing CPU that a handler may touch and must leave as it found it.
    pub(super) fn cpu_view(&self) -> CpuView {
        let cpu = self.cpu();
        let counters = self.this_cpu().counters();
        let current = self.current_task();
        let stack = self.stack(current);
        CpuView {
            mmu: self.mmu.borrow().view(cpu),
            depth: stack.depth(),
            saved: (0..stack.cells()).map(|c| stack.saved(Cell(c))).collect(),
            counters: [
                counters.preempt,
                counters.pagefault,
                self.tasks.borrow()[current.0].migrate,
                counters.irqs_off as i32,
            ],
        }
    }

    /// The state a handler of `kind` can observe from here, written into `key`: its CPU's slots,
    /// TLB, unflushed slots and counters, the interrupted stack's `idx` (under LIFO release a
    /// handler never reads the saved PTEs: it writes its own cell and zeroes it; released in
    /// any order, its lazy pop reads the cells beneath its own, so their saved values are in
    /// the key), the handlers it is nested in, the frames its program names, and how deep
    /// probes may still nest in it. The key is the state itself, not a hash of it, so the memo
    /// never mistakes one state for another.
    fn probe_key(&self, kind: HandlerKind, depth_left: u32, key: &mut Vec<u64>) {
        let cpu = self.cpu();
        let current = self.current_task();
        let stack: &dyn DynStack = self.stack(current);
        key.clear();
        key.extend([
            (kind == HandlerKind::Irq) as u64,
            cpu.0 as u64,
            depth_left as u64,
            stack.depth() as u64,
        ]);
        let mmu = self.mmu.borrow();
        key.extend(mmu.slots(cpu).iter().map(|pte| pte.raw()));
        if self.config.machine.any_order() {
            key.extend((0..stack.depth()).map(|cell| stack.saved(Cell(cell)).raw()));
        }
        // The TLB in slot order (a handful of entries).
        let layout = mmu.layout();
        for (slot, frame) in mmu.tlb(cpu) {
            key.extend([layout.index(slot) as u64, frame.pfn()]);
        }
        key.push(u64::MAX);
        key.extend(mmu.unflushed(cpu).into_iter().map(|cell| cell.0 as u64));
        key.push(u64::MAX);
        let counters = self.this_cpu().counters();
        key.extend([
            counters.preempt as u64,
            counters.pagefault as u64,
            self.tasks.borrow()[current.0].migrate as u64,
            counters.irqs_off as u64,
        ]);
        key.extend(
            self.this_cpu()
                .handlers()
                .iter()
                .map(|h| (h.kind == HandlerKind::Irq) as u64),
        );
        key.push(u64::MAX);
        let memory = self.memory.borrow();
        let (irq, nmi) = (&self.config.program.irq, &self.config.program.nmi);
        for op in irq.iter().chain(nmi) {
            if let Some(frame) = op.frame() {
                key.push(memory.intact(frame) as u64);
            }
        }
    }

    /// Run every handler that may arrive here, inline, and check that each leaves no trace.
    /// Returns the kinds whose handler left one: each was undone, and is offered as a lasting
    /// handler (a real event whose effects persist) where the bound allows.
    ///
    /// No choice is taken inside a probe, so a handler nested in the probed one that leaves a
    /// trace there (an NMI inside the interrupt) is explored only if the outer handler runs
    /// as a real event: a probed handler inside which a nested probe found a lasting handler
    /// is offered as lasting too, and, run for real, offers the nested one at its own arrival
    /// points.
    pub(super) fn probe_handlers(&self, arrival: u64) -> Handlers {
        // Nothing that owns memory is kept in a local across the probed handler, in which the
        // execution may end for good (see `driver.rs`): the memo is borrowed from the options,
        // and what must be put back is kept in the machine, one entry per probe in progress
        // (probes nest, and nothing but the end of the execution suspends code inside one).
        let memo = self.options.probe.as_ref().expect("probing");
        let mut lasting = Handlers::new();
        for kind in [HandlerKind::Irq, HandlerKind::Nmi] {
            let depth = self.arrivals.borrow().probing();
            if self.aborted() || depth >= self.options.probe_depth || !self.handler_may_arrive(kind)
            {
                continue;
            }
            let mut key = std::mem::take(&mut *self.probe_scratch.borrow_mut());
            self.probe_key(kind, self.options.probe_depth - depth, &mut key);
            let known = memo.0.contains(key.as_slice());
            if known {
                *self.probe_scratch.borrow_mut() = key;
                self.outcome.borrow_mut().stats.probes_remembered += 1;
                continue;
            }
            let key_copy: Box<[u64]> = key.as_slice().into();
            *self.probe_scratch.borrow_mut() = key;
            let choice = if kind == HandlerKind::Irq {
                Choice::Irq
            } else {
                Choice::Nmi
            };
            self.outcome
                .borrow_mut()
                .schedule
                .0
                .push(Taken { arrival, choice });
            let saved = self.save_cpu();
            self.probes.borrow_mut().push((saved, key_copy));
            let refusals = self.outcome.borrow().refusals.len();
            let hazards = self.hazards_met.get();
            let outer = self.arrivals.borrow_mut().take_traced_inside();
            self.arrivals.borrow_mut().probe(true);
            let left_trace = self.interrupt(kind);
            let traced_inside = {
                let mut arrivals = self.arrivals.borrow_mut();
                arrivals.probe(false);
                let inside = arrivals.take_traced_inside();
                arrivals.set_traced_inside(outer);
                inside
            };
            if self.aborted() || self.outcome.borrow().refusals.len() != refusals {
                // The schedule keeps this probe: a replay runs it as an ordinary event.
                return lasting;
            }
            let (saved, key_copy) = self.probes.borrow_mut().pop().expect("this probe's");
            self.restore_cpu(saved);
            self.outcome.borrow_mut().schedule.0.pop();
            if left_trace || traced_inside {
                self.outcome.borrow_mut().stats.probes_with_trace += 1;
                lasting.push(kind);
            } else {
                self.outcome.borrow_mut().stats.probes += 1;
                // Remembered as clean only if it met no hazard either: a later probe from the
                // same observable state is skipped, and would meet the same hazards, at its own
                // point. So which hazards a search lists does not depend on which of its runs
                // filled the memo first (its threads', or a partitioned search's ranks').
                if self.hazards_met.get() == hazards {
                    memo.0.insert(key_copy);
                }
            }
        }
        if !lasting.is_empty() && self.arrivals.borrow().probing() > 0 {
            self.arrivals.borrow_mut().set_traced_inside(true);
        }
        lasting
    }

    /// Everything a handler on the executing CPU can change, to put back after a probe.
    fn save_cpu(&self) -> SavedCpu {
        let cpu = self.cpu();
        let current = self.current_task();
        let this = self.this_cpu();
        SavedCpu {
            mmu: self.mmu.borrow().save(cpu),
            counters: this.counters(),
            migrate: self.tasks.borrow()[current.0].migrate,
            stack: self.stack(current).save(),
            memory: self.memory.borrow().clone(),
            numbering: self.arrivals.borrow().save(),
            arrival: this.save_arrival(),
            reports: self.outcome.borrow().reports.len(),
        }
    }

    /// Put back what [`save_cpu`](Self::save_cpu) saved, on the same CPU with the same task
    /// current.
    fn restore_cpu(&self, saved: SavedCpu) {
        let cpu = self.cpu();
        let current = self.current_task();
        self.mmu.borrow_mut().restore(cpu, saved.mmu);
        {
            let mut this = self.this_cpu();
            this.set_counters(saved.counters);
            this.restore_arrival(saved.arrival);
        }
        self.task(current).migrate = saved.migrate;
        *self.memory.borrow_mut() = saved.memory;
        self.arrivals.borrow_mut().restore(saved.numbering);
        self.outcome.borrow_mut().reports.truncate(saved.reports);
        // SAFETY: the stack state was saved from this task's stack at this arrival point, and
        // every slot, TLB entry and counter of the CPU was put back above; the handler that ran
        // in between has returned, and the task's own code is suspended at the same point.
        unsafe { self.stack(current).restore(&*saved.stack) };
    }

    /// What differs between two views of the executing CPU, in words.
    pub(super) fn describe_trace(&self, before: &CpuView, after: &CpuView) -> String {
        let cpu: CpuId = self.cpu();
        let show = |pte: &Pte| {
            if pte.is_empty() {
                "empty".to_string()
            } else {
                format!("frame {}", pte_frame(*pte).pfn())
            }
        };
        let (was, is) = (&before.mmu, &after.mmu);
        let mut changes: Vec<String> = (0..was.slots.len())
            .filter(|&cell| was.slots[cell] != is.slots[cell])
            .map(|cell| {
                format!(
                    "slot {}.{cell} was {}, is {}",
                    cpu.0,
                    show(&was.slots[cell]),
                    show(&is.slots[cell])
                )
            })
            .collect();
        changes.extend(is.tlb.iter().filter(|entry| !was.tlb.contains(entry)).map(
            |(slot, frame)| {
                format!(
                    "CPU {}'s TLB translates cell {} to frame {}",
                    cpu.0,
                    slot.cell.0,
                    frame.pfn()
                )
            },
        ));
        changes.extend(
            is.unflushed
                .iter()
                .filter(|cell| !was.unflushed.contains(cell))
                .map(|cell| format!("slot {}.{} is left uninvalidated", cpu.0, cell.0)),
        );
        if before.depth != after.depth {
            changes.push(format!("idx was {}, is {}", before.depth, after.depth));
        } else if before.saved != after.saved {
            changes.push("a saved PTE differs".into());
        }
        if before.counters != after.counters {
            changes.push("the preemption, page-fault or migration count differs".into());
        }
        changes.join(", ")
    }
}
