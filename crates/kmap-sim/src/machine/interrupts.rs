//! Interrupts and NMIs: a handler runs nested on the current stack, to completion, and must
//! leave its CPU as it found it (INV-3). Probing runs a handler at an arrival point and undoes
//! it; one that leaves a trace is offered as a lasting handler.

use kmap::Pte;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet, FxHashSet};

use super::{Arrival, Label, Machine, Nested, NestedKind, State};
use crate::adapter::{PAGE_SIZE, WINDOW, pte_frame};
use crate::chooser::Choice;
use crate::outcome::Rule;
use crate::trace::What;

/// What a handler on the executing CPU may touch and must leave as it found it (INV-3).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct CpuView {
    /// The CPU's slots.
    slots: Vec<Pte>,
    /// Its TLB's entries, sorted.
    tlb: Vec<(usize, u64)>,
    /// Its slots cleared and not yet invalidated, by cell.
    unflushed: Vec<usize>,
    /// The current task's `idx` and saved PTEs.
    depth: usize,
    saved: Vec<Pte>,
    /// Preemption, page-fault and migration counts, and whether interrupts are off.
    counters: [i32; 4],
}

/// Everything a handler on the executing CPU can change, as a probed handler found it (see
/// `Machine::save_cpu`).
pub(crate) struct SavedCpu {
    pt: Vec<Pte>,
    tlb: HashMap<usize, u64>,
    unflushed: HashSet<usize>,
    preempt: i32,
    pagefault: i32,
    irqs_off: bool,
    /// The current task's migration-disable count.
    migrate: i32,
    /// The current task's kmap stack ([`DynStack::save`]).
    stack: Box<dyn std::any::Any>,
    tags: Vec<u64>,
    expected: Vec<u64>,
    next_tag: u64,
    arrivals: u64,
    last_arrival: Option<Arrival>,
    last_label: Option<Label>,
    epoch: u64,
    reports: usize,
}

/// Handler runs already probed clean, by the state they could observe (see [`RunOptions::probe`](super::RunOptions::probe)).
#[derive(Default, Debug)]
pub struct ProbeMemo(FxHashSet<Box<[u64]>>);

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
    /// An interrupt or NMI arrives: its handler runs here, nested, to completion (rules N-1 to
    /// N-3).
    ///
    /// Returns whether the handler left a trace (INV-3: it must leave the CPU exactly as it
    /// found it), which is then a hazard.
    pub(crate) fn interrupt(&self, kind: NestedKind) -> bool {
        let task = self.current_task();
        let entry_depth = self.stack(task).depth();
        let before = self.cpu_view();
        {
            let mut st = self.st.borrow_mut();
            let cpu = st.active;
            st.cpus[cpu].epoch += 1;
            match kind {
                NestedKind::Irq => st.outcome.stats.irqs += 1,
                NestedKind::Nmi => st.outcome.stats.nmis += 1,
            }
        }
        let saved_irqs_off = {
            let mut st = self.st.borrow_mut();
            let cpu = st.active;
            st.cpus[cpu].nested.push(Nested {
                kind,
                mappings: Vec::new(),
            });
            let depth = st.cpus[cpu].nested.len();
            st.outcome.stats.max_nesting = st.outcome.stats.max_nesting.max(depth);
            std::mem::replace(&mut st.cpus[cpu].irqs_off, true)
        };
        let (_, context) = self.where_now();
        self.trace(What::Enter(context.clone()));
        self.check_above_idx(task, entry_depth, "when an interrupt arrives");
        let ops = match kind {
            NestedKind::Irq => self.irq_ops.clone(),
            NestedKind::Nmi => self.nmi_ops.clone(),
        };
        self.run_ops(&ops, None);
        let left = {
            let st = self.st.borrow();
            st.cpus[st.active]
                .nested
                .last()
                .map_or(0, |n| n.mappings.len())
        };
        if left > 0 {
            self.refuse(format!("{context} returned holding {left} mapping(s)"));
        }
        self.check_above_idx(task, entry_depth, "when an interrupt returns");
        self.trace(What::Exit(context.clone()));
        {
            let mut st = self.st.borrow_mut();
            let cpu = st.active;
            st.cpus[cpu].nested.pop();
            st.cpus[cpu].irqs_off = saved_irqs_off;
            st.cpus[cpu].epoch += 1;
        }
        if self.aborted() {
            return false;
        }
        let after = self.cpu_view();
        if after == before {
            return false;
        }
        let (_, under) = self.where_now();
        let trace = self.describe_trace(&before, &after);
        self.hazard(
            Rule::Inv3,
            format!("{context} on top of {under} left a trace: {trace}"),
        );
        true
    }

    /// Whether a handler of `kind` may arrive now: interrupts need interrupts on, nothing
    /// arrives inside an NMI, a handler needs a program, and the nesting depth of that kind is
    /// within its bound.
    pub(super) fn handler_may_arrive(&self, st: &State, kind: NestedKind) -> bool {
        let cpu = &st.cpus[st.active];
        let in_nmi = cpu.nested.iter().any(|n| n.kind == NestedKind::Nmi);
        let (program, bound) = match kind {
            NestedKind::Irq => (&self.irq_ops, self.config.bounds.irq_depth),
            NestedKind::Nmi => (&self.nmi_ops, self.config.bounds.nmi_depth),
        };
        let used = cpu.nested.iter().filter(|n| n.kind == kind).count() as u32;
        !in_nmi
            && !program.is_empty()
            && (kind == NestedKind::Nmi || !cpu.irqs_off)
            && bound.is_none_or(|limit| used < limit)
    }

    /// Everything of the executing CPU that a handler may touch and must leave as it found it.
    fn cpu_view(&self) -> CpuView {
        let st = self.st.borrow();
        let cpu = st.active;
        let c = &st.cpus[cpu];
        let cells = self.cells();
        let mut tlb: Vec<(usize, u64)> = st.tlb[cpu]
            .iter()
            .map(|(&page, &frame)| (page, frame))
            .collect();
        tlb.sort_unstable();
        let stack = self.stack(c.current);
        CpuView {
            slots: st.pt[cpu * cells..(cpu + 1) * cells].to_vec(),
            tlb,
            unflushed: (0..cells)
                .filter(|cell| st.unflushed.contains(&(cpu * cells + cell)))
                .collect(),
            depth: stack.depth(),
            saved: (0..stack.cells()).map(|cell| stack.saved(cell)).collect(),
            counters: [
                c.preempt,
                c.pagefault,
                st.tasks[c.current].migrate,
                c.irqs_off as i32,
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
    fn probe_key(&self, kind: NestedKind, depth_left: u32, key: &mut Vec<u64>) {
        let st = self.st.borrow();
        let cpu = st.active;
        let c = &st.cpus[cpu];
        let cells = self.cells();
        let stack = self.stack(c.current);
        key.clear();
        key.extend([
            (kind == NestedKind::Irq) as u64,
            cpu as u64,
            depth_left as u64,
            stack.depth() as u64,
        ]);
        key.extend(
            st.pt[cpu * cells..(cpu + 1) * cells]
                .iter()
                .map(|pte| pte.raw()),
        );
        if self.config.machine.release == crate::config::Release::Any {
            key.extend((0..stack.depth()).map(|cell| stack.saved(cell).raw()));
        }
        // The TLB in the order of its pages (a handful of entries).
        let mut last = None;
        while let Some((&page, &frame)) = st.tlb[cpu]
            .iter()
            .filter(|&(&page, _)| last.is_none_or(|l| page > l))
            .min_by_key(|&(&page, _)| page)
        {
            key.extend([page as u64, frame]);
            last = Some(page);
        }
        key.push(u64::MAX);
        key.extend(
            (0..cells)
                .filter(|cell| st.unflushed.contains(&(cpu * cells + cell)))
                .map(|cell| cell as u64),
        );
        key.push(u64::MAX);
        key.extend([
            c.preempt as u64,
            c.pagefault as u64,
            st.tasks[c.current].migrate as u64,
            c.irqs_off as u64,
        ]);
        key.extend(c.nested.iter().map(|n| (n.kind == NestedKind::Irq) as u64));
        key.push(u64::MAX);
        for op in self.irq_ops.iter().chain(self.nmi_ops.iter()) {
            if let Some(frame) = op.frame() {
                key.extend([st.tags[frame as usize], st.expected[frame as usize]]);
            }
        }
    }

    /// Run every handler that may arrive here, inline, and check that each leaves no trace.
    /// Returns the kinds whose handler left one: each was undone, and is offered as a lasting
    /// handler (a real event whose effects persist) where the bound allows.
    pub(super) fn probe_handlers(&self, arrival: u64) -> Vec<NestedKind> {
        let memo = self.options.probe.clone().expect("probing");
        let mut lasting = Vec::new();
        for kind in [NestedKind::Irq, NestedKind::Nmi] {
            let depth = self.st.borrow().probing;
            if self.aborted()
                || depth >= self.options.probe_depth
                || !self.handler_may_arrive(&self.st.borrow(), kind)
            {
                continue;
            }
            let mut key = std::mem::take(&mut *self.probe_scratch.borrow_mut());
            self.probe_key(kind, self.options.probe_depth - depth, &mut key);
            let known = memo.borrow().0.contains(key.as_slice());
            let key_copy: Box<[u64]> = if known {
                Box::default()
            } else {
                key.as_slice().into()
            };
            *self.probe_scratch.borrow_mut() = key;
            if known {
                self.st.borrow_mut().outcome.stats.probes_remembered += 1;
                continue;
            }
            let choice = if kind == NestedKind::Irq {
                Choice::Irq
            } else {
                Choice::Nmi
            };
            self.st
                .borrow_mut()
                .outcome
                .schedule
                .0
                .push((arrival, choice));
            let saved = self.save_cpu();
            let refusals = self.st.borrow().outcome.refusals.len();
            self.st.borrow_mut().probing += 1;
            let left_trace = self.interrupt(kind);
            self.st.borrow_mut().probing -= 1;
            if self.aborted() || self.st.borrow().outcome.refusals.len() != refusals {
                // The schedule keeps this probe: a replay runs it as an ordinary event.
                return lasting;
            }
            self.restore_cpu(saved);
            self.st.borrow_mut().outcome.schedule.0.pop();
            if left_trace {
                self.st.borrow_mut().outcome.stats.probes_with_trace += 1;
                lasting.push(kind);
            } else {
                self.st.borrow_mut().outcome.stats.probes += 1;
                memo.borrow_mut().0.insert(key_copy);
            }
        }
        lasting
    }

    /// Everything a handler on the executing CPU can change, to put back after a probe.
    fn save_cpu(&self) -> SavedCpu {
        let st = self.st.borrow();
        let cpu = st.active;
        let c = &st.cpus[cpu];
        SavedCpu {
            pt: st.pt.clone(),
            tlb: st.tlb[cpu].clone(),
            unflushed: st.unflushed.clone(),
            preempt: c.preempt,
            pagefault: c.pagefault,
            irqs_off: c.irqs_off,
            migrate: st.tasks[c.current].migrate,
            stack: self.stack(c.current).save(),
            tags: st.tags.clone(),
            expected: st.expected.clone(),
            next_tag: st.next_tag,
            arrivals: st.arrivals,
            last_arrival: c.last_arrival,
            last_label: st.last_label,
            epoch: c.epoch,
            reports: st.outcome.reports.len(),
        }
    }

    /// Put back what [`save_cpu`](Self::save_cpu) saved, on the same CPU with the same task
    /// current.
    fn restore_cpu(&self, saved: SavedCpu) {
        let mut st = self.st.borrow_mut();
        let cpu = st.active;
        let current = st.cpus[cpu].current;
        st.pt = saved.pt;
        st.tlb[cpu] = saved.tlb;
        st.unflushed = saved.unflushed;
        let c = &mut st.cpus[cpu];
        c.preempt = saved.preempt;
        c.pagefault = saved.pagefault;
        c.irqs_off = saved.irqs_off;
        c.last_arrival = saved.last_arrival;
        c.epoch = saved.epoch;
        st.tasks[current].migrate = saved.migrate;
        st.tags = saved.tags;
        st.expected = saved.expected;
        st.next_tag = saved.next_tag;
        st.arrivals = saved.arrivals;
        st.last_label = saved.last_label;
        st.outcome.reports.truncate(saved.reports);
        drop(st);
        // SAFETY: the stack state was saved from this task's stack at this arrival point, and
        // every slot, TLB entry and counter of the CPU was put back above; the handler that ran
        // in between has returned, and the task's own code is suspended at the same point.
        unsafe { self.stack(current).restore(&*saved.stack) };
    }

    /// What differs between two views of the executing CPU, in words.
    fn describe_trace(&self, before: &CpuView, after: &CpuView) -> String {
        let cpu = self.cpu();
        let show = |pte: &Pte| {
            if pte.is_empty() {
                "empty".to_string()
            } else {
                format!("frame {}", pte_frame(*pte))
            }
        };
        let mut changes: Vec<String> = (0..before.slots.len())
            .filter(|&cell| before.slots[cell] != after.slots[cell])
            .map(|cell| {
                format!(
                    "slot {cpu}.{cell} was {}, is {}",
                    show(&before.slots[cell]),
                    show(&after.slots[cell])
                )
            })
            .collect();
        changes.extend(
            after
                .tlb
                .iter()
                .filter(|entry| !before.tlb.contains(entry))
                .map(|&(page, frame)| {
                    let cell = (page - WINDOW) / PAGE_SIZE % before.slots.len();
                    format!("CPU {cpu}'s TLB translates cell {cell} to frame {frame}")
                }),
        );
        changes.extend(
            after
                .unflushed
                .iter()
                .filter(|cell| !before.unflushed.contains(cell))
                .map(|cell| format!("slot {cpu}.{cell} is left uninvalidated")),
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
