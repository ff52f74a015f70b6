//! Arrival points: where an interrupt, an NMI, a preemption or another CPU may come, and the
//! chooser decides which.

use super::{Arrival, Label, Machine, NestedKind, Reason, Status, Yield};
use crate::chooser::{Choice, ChoicePoint, STOP};
use crate::outcome::ChoiceRecord;
use crate::trace::What;

/// Whether offering events at arrival point `here` would only repeat what was offered at the
/// point `before` it, both as `(label, handler nesting depth, context epoch)` on the same CPU.
///
/// The rule: `here` is the arrival point before a program's next operation, `before` is the
/// last step of the crate's map or unmap, and both are in the same context: same CPU (the
/// record is per CPU), same nesting depth, and the same epoch, which moves on whenever the
/// context on the CPU changes without an arrival point (a task exits or migrates and another is
/// switched in, a handler enters or returns; a probed handler that is undone puts it back).
///
/// The proof. At an arrival point the machine asks for decisions until one is "continue"
/// (every other decision is followed by another question at the same point), so the state
/// after the last decision at `before` is one from which every event was offered. From there
/// to `here`, with the epoch unchanged, only that context's own code runs: the crate returns
/// and the machine updates the context's own list of mappings and counts, which no interrupt,
/// NMI, preemption or other CPU can observe or change (they read slots, TLBs, stacks and
/// frames, none of which is written in between). So every state reachable by an event at
/// `here` is reachable by the same event at `before` followed by that bookkeeping, which the
/// search explores already. `tests/prune.rs` checks, for every built-in scenario and protocol,
/// that the final states and verdicts with and without pruning are the same.
fn redundant(before: Option<Arrival>, here: Arrival) -> bool {
    use kmap::Point::*;
    matches!(here.0, Label::BeforeOp(_))
        && before.is_some_and(|(label, depth, epoch)| {
            depth == here.1
                && epoch == here.2
                && matches!(
                    label,
                    Label::Crate(
                        MapPreemptionEnabled | UnmapMigrationEnabled | AtomicPreemptionEnabled
                    )
                )
        })
}

impl Machine {
    /// An arrival point: anything the chooser decides may happen here, before the next step.
    pub(crate) fn arrive(&self, label: Label) {
        let (arrival, redundant) = {
            let mut st = self.st.borrow_mut();
            st.last_label = Some(label);
            st.outcome.stats.points += 1;
            st.arrivals += 1;
            let cpu = st.active;
            let here = (label, st.cpus[cpu].nested.len(), st.cpus[cpu].epoch);
            let before = st.cpus[cpu].last_arrival.replace(here);
            if let Some(place) = st.place_mut(cpu) {
                place.steps += 1;
                place.label = Some(label);
            }
            (st.arrivals - 1, redundant(before, here))
        };
        if let Some((kind, message)) = self.broken_stack() {
            self.violate(kind, message);
            self.suspend(Yield::Abort);
            return;
        }
        if self.options.trace {
            self.trace_depths();
            self.trace(What::Point(label));
        }
        let probe = self.options.probe.is_some() && !(redundant && self.options.prune);
        let mut lasting = if probe {
            self.probe_handlers(arrival)
        } else {
            Vec::new()
        };
        loop {
            if self.aborted() {
                self.suspend(Yield::Abort);
                return;
            }
            let options = self.options(label, &lasting);
            if options.len() == 1 {
                return;
            }
            if redundant && self.options.prune {
                self.st.borrow_mut().outcome.stats.pruned += options.len() as u64 - 1;
                return;
            }
            let (index, cpu) = {
                let mut st = self.st.borrow_mut();
                st.choice_index += 1;
                st.outcome.stats.choice_points += 1;
                (st.choice_index - 1, st.active)
            };
            let state = self.options.stateful.then(|| self.state_key(label, false));
            let pick = self.chooser.borrow_mut().choose(&ChoicePoint {
                index,
                arrival,
                cpu,
                label,
                options: &options,
                state,
            });
            if pick == STOP {
                self.stop();
                continue;
            }
            let choice = options[pick.min(options.len() - 1)];
            {
                let mut st = self.st.borrow_mut();
                if self.options.record_choices {
                    st.outcome.choices.push(ChoiceRecord {
                        arrival,
                        options: options.clone(),
                        chosen: pick,
                    });
                }
                if choice != Choice::Continue {
                    st.outcome.schedule.0.push((arrival, choice));
                }
            }
            match choice {
                // A program's steps are decided after its arrival point, not offered at it.
                Choice::Continue | Choice::Do(_) => return,
                Choice::Irq | Choice::Nmi => {
                    let kind = if choice == Choice::Irq {
                        NestedKind::Irq
                    } else {
                        NestedKind::Nmi
                    };
                    if self.options.probe.is_some() {
                        self.st.borrow_mut().used.lasting += 1;
                    }
                    self.interrupt(kind);
                }
                Choice::Preempt | Choice::PreemptTo(_) => {
                    self.st.borrow_mut().used.preemptions += 1;
                    self.schedule(match choice {
                        Choice::PreemptTo(task) => Reason::PreemptTo(task),
                        _ => Reason::Preempt,
                    });
                }
                Choice::Migrate(to) => {
                    let mut st = self.st.borrow_mut();
                    st.used.preemptions += 1;
                    st.outcome.stats.preemptions += 1;
                    drop(st);
                    self.schedule(Reason::Migrate(to));
                }
                Choice::Cpu(to) => {
                    self.st.borrow_mut().used.cpu_switches += 1;
                    self.trace(What::Step { to });
                    self.suspend(Yield::Step(to));
                }
            }
            // Back here after the context ran elsewhere or was switched out: what a handler
            // would find here has changed, so probe again.
            if probe
                && matches!(
                    choice,
                    Choice::Preempt | Choice::PreemptTo(_) | Choice::Migrate(_) | Choice::Cpu(_)
                )
            {
                lasting = self.probe_handlers(arrival);
            }
        }
    }

    /// What may happen at this point.
    fn options(&self, label: Label, lasting: &[NestedKind]) -> Vec<Choice> {
        let st = self.st.borrow();
        let bounds = &self.config.bounds;
        let within = |limit: Option<u32>, used: u32| limit.is_none_or(|l| used < l);
        let mut options = vec![Choice::Continue];
        if st.executing.is_none() || st.probing > 0 {
            return options;
        }
        let cpu = &st.cpus[st.active];
        for kind in [NestedKind::Irq, NestedKind::Nmi] {
            // Probing, a handler is a choice only where its probe left a trace.
            let offered = match self.options.probe {
                None => true,
                Some(_) => {
                    lasting.contains(&kind) && within(bounds.lasting_handlers, st.used.lasting)
                }
            };
            if offered && self.handler_may_arrive(&st, kind) {
                options.push(if kind == NestedKind::Irq {
                    Choice::Irq
                } else {
                    Choice::Nmi
                });
            }
        }
        let current = &st.tasks[cpu.current];
        let preemptible = cpu.nested.is_empty()
            && !cpu.in_scheduler
            && !current.idle
            && cpu.preempt == 0
            && !cpu.irqs_off
            && within(bounds.preemptions, st.used.preemptions);
        if preemptible && (self.options.stateful || self.options.pick_any_next) {
            // Any runnable task may be picked next, as in the SPIN model.
            options.extend(cpu.runqueue.iter().map(|&task| Choice::PreemptTo(task)));
        } else if preemptible
            && (!cpu.runqueue.is_empty()
                || st.tasks.iter().enumerate().any(|(id, t)| {
                    t.status == Status::Sleeping && t.cpu == st.active && id != cpu.current
                }))
        {
            options.push(Choice::Preempt);
        }
        // Load balancing: a preempted task that may migrate can be moved to another CPU.
        if preemptible && current.migrate == 0 {
            options.extend(
                (0..st.cpus.len())
                    .filter(|&c| c != st.active)
                    .map(Choice::Migrate),
            );
        }
        // With the reduction, the executing CPU changes only before a program's next step; a
        // stateful search never suspends a handler half done.
        let between_steps = matches!(label, Label::BeforeOp(_) | Label::BeforeStep | Label::Idle);
        let switch_here = (between_steps || !self.options.reduce)
            && (cpu.nested.is_empty() || !self.options.stateful);
        if switch_here && within(bounds.cpu_switches, st.used.cpu_switches) {
            for other in (0..st.cpus.len()).filter(|&c| c != st.active) {
                if st.has_work(other) {
                    options.push(Choice::Cpu(other));
                }
            }
        }
        options
    }

    /// End the execution here, at the chooser's request (not a violation).
    pub(crate) fn stop(&self) {
        let mut st = self.st.borrow_mut();
        st.aborted = true;
        st.outcome.stopped = true;
    }

    /// Give the host thread back to the driver.
    pub(crate) fn suspend(&self, why: Yield) {
        let yielder = {
            let st = self.st.borrow();
            match st.executing {
                Some(task) => st.yielders[task],
                None => return, // on the driver's own stack: the driver checks `aborted`
            }
        };
        // SAFETY: `yielders[task]` was set by the coroutine of `task` when it started, and that
        // coroutine is the one executing now (the driver sets `executing` around every resume),
        // so the Yielder it points to is alive on this very stack.
        unsafe { (*yielder).suspend(why) }
    }
}
