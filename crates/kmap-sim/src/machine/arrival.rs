//! Arrival points: where an interrupt, an NMI, a preemption or another CPU may come, and the
//! chooser decides which; and a program's own choice of its next step.

use super::cpu::{Arrival, StackImage};
use super::probe::Handlers;
use super::sched::Reason;
use super::task::{ChangedStack, Status, image};
use super::{Label, Machine, Yield};
use crate::choice::{Choice, ChoicePoint, Decision, Taken, TaskId};
use crate::config::{Bounds, Config, HandlerKind};
use crate::outcome::ChoiceRecord;
use crate::program::Op;
use crate::trace::What;

/// What an arrival point offers, kept inline (a handful of choices at every arrival point).
type Options = smallvec::SmallVec<[Choice; 8]>;

/// Branching events used so far in an execution, against the bounds.
#[derive(Default, Clone, Copy)]
struct Used {
    preemptions: u32,
    cpu_switches: u32,
    lasting: u32,
}

/// A branching event, as the bounds count it.
#[derive(Clone, Copy)]
enum Spent {
    Preemption,
    CpuSwitch,
    Lasting,
}

/// The numbering of a run's arrival and choice points, what it has used of its bounds, and
/// whether it is over.
#[derive(Default)]
pub(crate) struct Arrivals {
    /// Arrival points passed (numbering for schedules: clean probes give theirs back).
    passed: u64,
    /// Choice points asked.
    asked: u64,
    used: Used,
    /// Handler probes in progress (no choice is taken inside one).
    probing: u32,
    /// A probe nested in the probe in progress found a lasting handler (see
    /// `Machine::probe_handlers`).
    traced_inside: bool,
    /// The execution is over: a violation, or the chooser stopped it.
    over: bool,
    /// The last arrival point passed, anywhere.
    last_label: Option<Label>,
}

impl Arrivals {
    /// Hash what the run has used of each of `bounds` that is finite: under bounds, what is
    /// left of them is part of the state (the same machine with less left has fewer futures).
    /// Nothing for a bound that is not set, so an unbounded search hashes nothing here.
    pub(crate) fn hash_used(&self, bounds: &Bounds, hasher: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        let used = &self.used;
        for (limit, used) in [
            (bounds.preemptions, used.preemptions),
            (bounds.cpu_switches, used.cpu_switches),
            (bounds.lasting_handlers, used.lasting),
        ] {
            if limit.is_some() {
                used.hash(hasher);
            }
        }
    }
}

/// What a probe puts back of the numbering.
#[derive(Clone, Copy)]
pub(crate) struct SavedNumbering {
    passed: u64,
    last_label: Option<Label>,
}

impl Arrivals {
    /// An arrival point: its number.
    fn pass(&mut self, label: Label) -> u64 {
        self.last_label = Some(label);
        self.passed += 1;
        self.passed - 1
    }

    /// A choice point: its number.
    fn ask(&mut self) -> u64 {
        self.asked += 1;
        self.asked - 1
    }

    /// The number of the last arrival point passed.
    fn last(&self) -> u64 {
        self.passed - 1
    }

    /// Count a branching event against its bound.
    fn spend(&mut self, event: Spent) {
        match event {
            Spent::Preemption => self.used.preemptions += 1,
            Spent::CpuSwitch => self.used.cpu_switches += 1,
            Spent::Lasting => self.used.lasting += 1,
        }
    }

    /// How many probes are in progress.
    pub(crate) fn probing(&self) -> u32 {
        self.probing
    }

    /// A probe begins (`true`) or ends.
    pub(crate) fn probe(&mut self, begins: bool) {
        if begins {
            self.probing += 1;
        } else {
            self.probing -= 1;
        }
    }

    /// Whether a nested probe found a lasting handler since the last call (and forget it).
    pub(crate) fn take_traced_inside(&mut self) -> bool {
        std::mem::take(&mut self.traced_inside)
    }

    /// A probe nested in another found a lasting handler (or put back what the outer probe
    /// saw).
    pub(crate) fn set_traced_inside(&mut self, traced: bool) {
        self.traced_inside |= traced;
    }

    /// The execution ends here.
    pub(crate) fn end(&mut self) {
        self.over = true;
    }

    /// Whether the execution is over.
    pub(crate) fn is_over(&self) -> bool {
        self.over
    }

    /// The last arrival point passed, anywhere.
    pub(crate) fn last_label(&self) -> Option<Label> {
        self.last_label
    }

    pub(crate) fn save(&self) -> SavedNumbering {
        SavedNumbering {
            passed: self.passed,
            last_label: self.last_label,
        }
    }

    pub(crate) fn restore(&mut self, saved: SavedNumbering) {
        self.passed = saved.passed;
        self.last_label = saved.last_label;
    }
}

/// Whether offering events at arrival point `here` would only repeat what was offered at the
/// point `before` it, on the same CPU.
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
    matches!(here.label, Label::BeforeOp(_))
        && before.is_some_and(|before| {
            before.depth == here.depth
                && before.epoch == here.epoch
                && matches!(
                    before.label,
                    Label::Crate(
                        MapPreemptionEnabled | UnmapMigrationEnabled | AtomicPreemptionEnabled
                    )
                )
        })
}

impl Machine {
    /// An arrival point: anything the chooser decides may happen here, before the next step.
    ///
    /// In a stateful run, the code suspended here keeps in its locals what it read of its own
    /// stack before (`pushed` in the crate's map, `top` in its unmap, the bounds of the
    /// switch's loops), and the state key holds the stack as it is now, not those locals. The
    /// stack is a deterministic function of what the code did as long as only that code
    /// changes it; a lasting handler, or another context while the task was switched out, may
    /// change it under the code, and then the locals no longer follow from the stack. So when
    /// the stack differs after the events of an arrival point of the code's own from before
    /// them, the new stack is recorded in its place (with the step it came at), so that the
    /// key tells apart suspended calls whose locals differ because their stacks were changed
    /// under them.
    pub(crate) fn arrive(&self, label: Label) {
        // Between two operations the code keeps nothing read from the stack.
        let between = matches!(label, Label::BeforeOp(_) | Label::BeforeStep | Label::Idle);
        if !self.options.stateful || between {
            self.arrive_events(label, None);
            return;
        }
        // The stack the code here reads as its own: the current task's, in a task's own code,
        // the scheduler's or a handler's (a lasting handler may be asked at its own arrival
        // points, and a lasting NMI there may change the stack under it). Only an event can
        // change it (a probed handler is undone), so it is imaged before the first one.
        let task = self.current_task();
        let mut before = None;
        self.arrive_events(label, Some(&mut before));
        let Some(before) = before else {
            return;
        };
        if self.aborted() {
            return;
        }
        let stack = image(self.stack(task));
        if stack != before {
            self.with_place(|place| {
                place.changed.push(ChangedStack {
                    step: place.steps,
                    stack,
                })
            });
        }
    }

    /// The events of an arrival point (see [`arrive`](Self::arrive)); with `before`, the
    /// current stack is imaged into it before the first event.
    fn arrive_events(&self, label: Label, mut before: Option<&mut Option<StackImage>>) {
        let arrival = self.arrivals.borrow_mut().pass(label);
        self.outcome.borrow_mut().stats.points += 1;
        let (here, last) = self.this_cpu().arrive(label);
        let redundant = redundant(last, here);
        self.with_place(|place| {
            place.steps += 1;
            place.label = Some(label);
        });
        // Retracing a path, the run that first went this way checked this point already (the
        // code is deterministic), so the checks are not run again; neither are the probes, and
        // before the path's next choice nothing is asked.
        let (retraces, next_choice) = {
            let chooser = self.chooser.borrow();
            (chooser.retraces(), chooser.next_choice_at())
        };
        if retraces && next_choice.is_some_and(|at| at != arrival) {
            self.trace_point(label);
            return;
        }
        if !retraces {
            if let Some((kind, message)) = self.broken_stack() {
                self.violate(kind, message);
                self.suspend(Yield::Abort);
                return;
            }
            self.check_stack();
            if self.endless && self.quiescent() && self.check_quiescent() {
                self.suspend(Yield::Abort);
                return;
            }
        }
        self.trace_point(label);
        let prunable = redundant && self.options.prune;
        // The handlers that leave a trace here, once probed (`None`: not probed; a chooser
        // retracing a path wants no probe, see `Chooser::retraces`). A
        // point pruned as redundant offers none.
        let mut lasting: Option<Handlers> = None;
        loop {
            if self.aborted() {
                self.suspend(Yield::Abort);
                return;
            }
            if self.options.probe.is_some() && lasting.is_none() {
                if prunable {
                    lasting = Some(Handlers::new());
                } else if !self.chooser.borrow().retraces() {
                    lasting = Some(self.probe_handlers(arrival));
                    if self.aborted() {
                        self.suspend(Yield::Abort);
                        return;
                    }
                }
            }
            // The options are dropped before anything happens: code may be suspended for good
            // by what does (see `driver.rs`).
            let choice = {
                let options = self.options(label, lasting.as_deref());
                if options.len() == 1 {
                    return;
                }
                if redundant && self.options.prune {
                    self.outcome.borrow_mut().stats.pruned += options.len() as u64 - 1;
                    return;
                }
                match self.ask(arrival, label, &options, false) {
                    Some(choice) => choice,
                    None => continue,
                }
            };
            if let Some(before) = before.as_mut().filter(|b| b.is_none() && choice.is_event()) {
                **before = Some(image(self.stack(self.current_task())));
            }
            match choice {
                // A program's steps are decided after its arrival point, not offered at it.
                Choice::Continue | Choice::Do(_) => return,
                Choice::Irq | Choice::Nmi => {
                    let kind = if choice == Choice::Irq {
                        HandlerKind::Irq
                    } else {
                        HandlerKind::Nmi
                    };
                    if self.options.probe.is_some() {
                        self.arrivals.borrow_mut().spend(Spent::Lasting);
                    }
                    self.interrupt(kind);
                }
                Choice::Preempt | Choice::PreemptTo(_) => {
                    self.arrivals.borrow_mut().spend(Spent::Preemption);
                    self.schedule(match choice {
                        Choice::PreemptTo(task) => Reason::PreemptTo(task),
                        _ => Reason::Preempt,
                    });
                }
                Choice::Migrate(to) => {
                    self.arrivals.borrow_mut().spend(Spent::Preemption);
                    self.outcome.borrow_mut().stats.preemptions += 1;
                    self.schedule(Reason::Migrate(to));
                }
                Choice::Cpu(to) => {
                    self.arrivals.borrow_mut().spend(Spent::CpuSwitch);
                    self.trace(What::Step { to });
                    self.suspend(Yield::Step(to));
                }
            }
            // Back here after an event: a lasting handler left a trace, or the context ran
            // elsewhere or was switched out. What a handler would find here has changed, so
            // probe again: what is offered next is always what leaves a trace on the state
            // as it is now (a function of that state, so the state key needs no offer list).
            lasting = None;
        }
    }

    /// Put the arrival point, and the stacks' depths where they changed, in the trace.
    fn trace_point(&self, label: Label) {
        if self.options.trace {
            self.trace_depths();
            self.trace(What::Point(label));
        }
    }

    /// A program's own decision among `options`, asked of the chooser like an arrival point's
    /// (and recorded in the schedule, so that a replay takes it again).
    pub(crate) fn decide(&self, options: &[Choice]) -> Choice {
        if options.len() == 1 {
            return options[0];
        }
        let (arrival, label) = {
            let arrivals = self.arrivals.borrow();
            (
                arrivals.last(),
                arrivals.last_label.unwrap_or(Label::BeforeStep),
            )
        };
        self.ask(arrival, label, options, true)
            .unwrap_or(options[0])
    }

    /// Ask the chooser at a choice point, and record the answer; `None` when it ends the
    /// execution here. `step` is whether this is a program's choice of its next step.
    fn ask(&self, arrival: u64, label: Label, options: &[Choice], step: bool) -> Option<Choice> {
        let index = self.arrivals.borrow_mut().ask();
        self.outcome.borrow_mut().stats.choice_points += 1;
        let question = if step { Label::BeforeStep } else { label };
        let wanted = self.options.stateful && self.chooser.borrow().wants_state();
        let state = wanted.then(|| self.state_key(question, step));
        let decision = self.chooser.borrow_mut().choose(&ChoicePoint {
            index,
            arrival,
            cpu: self.cpu(),
            label,
            options,
            state,
        });
        let Decision::Take(pick) = decision else {
            self.stop();
            return None;
        };
        let choice = *options.get(pick).unwrap_or_else(|| {
            panic!(
                "the chooser took option {pick} of {} at arrival point {arrival}",
                options.len()
            )
        });
        let mut outcome = self.outcome.borrow_mut();
        if self.options.record_choices {
            outcome.choices.push(ChoiceRecord {
                arrival,
                options: options.to_vec(),
                chosen: pick,
            });
        }
        if step || choice != Choice::Continue {
            outcome.schedule.0.push(Taken { arrival, choice });
        }
        Some(choice)
    }

    /// What may happen at this point: with probes, the handlers in `lasting` (`None`: not
    /// probed here, every handler that may arrive, see `Chooser::retraces`).
    fn options(&self, label: Label, lasting: Option<&[HandlerKind]>) -> Options {
        let bounds = &self.config.bounds;
        let used = self.arrivals.borrow().used;
        let within = |limit: Option<u32>, used: u32| limit.is_none_or(|l| used < l);
        let mut options: Options = smallvec::smallvec![Choice::Continue];
        if self.driver.borrow().executing.is_none() || self.arrivals.borrow().probing() > 0 {
            return options;
        }
        for kind in [HandlerKind::Irq, HandlerKind::Nmi] {
            // Probing, a handler is a choice only where its probe left a trace.
            let offered = match (&self.options.probe, lasting) {
                (None, _) => true,
                (Some(_), None) => within(bounds.lasting_handlers, used.lasting),
                (Some(_), Some(lasting)) => {
                    lasting.contains(&kind) && within(bounds.lasting_handlers, used.lasting)
                }
            };
            if offered && self.handler_may_arrive(kind) {
                options.push(if kind == HandlerKind::Irq {
                    Choice::Irq
                } else {
                    Choice::Nmi
                });
            }
        }
        let here = self.cpu();
        let cpus = self.cpus.borrow();
        let tasks = self.tasks.borrow();
        let cpu = &cpus[here.0 as usize];
        let current = &tasks[cpu.current().0];
        let preemptible = cpu.nesting() == 0
            && !cpu.in_scheduler()
            && !current.idle
            && !cpu.atomic()
            && within(bounds.preemptions, used.preemptions);
        if preemptible && (self.options.stateful || self.options.pick_any_next) {
            // Any runnable task may be picked next, as in the SPIN model, and so may a task
            // sleeping on this CPU (the scheduler wakes it first, as a plain preemption does).
            options.extend(cpu.queue().iter().map(|&task| Choice::PreemptTo(task)));
            options.extend(
                tasks
                    .iter()
                    .enumerate()
                    .filter(|&(id, t)| {
                        t.status == Status::Sleeping && t.cpu == here && id != cpu.current().0
                    })
                    .map(|(id, _)| Choice::PreemptTo(TaskId(id))),
            );
        } else if preemptible
            && (!cpu.queue().is_empty()
                || tasks.iter().enumerate().any(|(id, t)| {
                    t.status == Status::Sleeping && t.cpu == here && id != cpu.current().0
                }))
        {
            options.push(Choice::Preempt);
        }
        // Load balancing: a preempted task that may migrate can be moved to another CPU.
        if preemptible && current.migrate == 0 && !current.pinned {
            options.extend(self.other_cpus().map(Choice::Migrate));
        }
        // With the reduction, the executing CPU changes only before a program's next step; a
        // stateful search never suspends a handler half done. The argument, in two parts:
        //
        // 1. Each operation is atomic with respect to the other CPUs. From one program step's
        //    arrival point to the next, what a CPU runs (the crate's map or unmap, the handlers
        //    nested on it, a preemption and the switch it runs) reads and writes its own slots,
        //    TLB, unflushed slots and counters, the stack of its current task and the frames
        //    that context maps, none of which another CPU's code touches meanwhile (slots are
        //    per CPU, a stack is written only on top of its task, a frame only by the context
        //    that maps it, and a write into a frame another context holds is a violation that
        //    ends the run; handlers of both CPUs only read theirs). The one shared state is the
        //    run queues (a preemption may move the task to another CPU's queue), which another
        //    CPU reads only in its own scheduler, at its own steps or preemptions.
        // 2. Each CPU's local history is reproducible: given the choices taken on it, a CPU
        //    computes the same thing whatever the other CPUs did in between, except for what
        //    it reads of the run queues. So in any interleaving the other CPU's actions that
        //    fall inside an operation can be moved to just before it (they commute with its
        //    local actions by 1) or just after it (a run queue it reads was written by the
        //    operation either way, and reading after the write is the order the interleaving
        //    had); every interleaving is equivalent to one whose CPU switches fall between
        //    program steps, with the same per-CPU histories and the same final states.
        //
        // `kmap-check/tests/prove.rs` checks on small scopes that verdicts, final states and
        // quiescent states are the same with and without the reduction (`--no-reduce`).
        //
        // With isolated CPUs (see [`isolated`]), no switch at all: the CPU runs until it has
        // nothing left to do, and the driver then moves to the next CPU that has work.
        let between_steps = matches!(label, Label::BeforeOp(_) | Label::BeforeStep | Label::Idle);
        let switch_here = (between_steps || !self.options.reduce)
            && (cpu.nesting() == 0 || !self.options.stateful)
            && !self.isolated;
        drop((cpus, tasks));
        if switch_here && within(bounds.cpu_switches, used.cpu_switches) {
            let others: Vec<_> = self.other_cpus().filter(|&c| self.has_work(c)).collect();
            options.extend(others.into_iter().map(Choice::Cpu));
        }
        options
    }

    /// Every CPU but the executing one.
    fn other_cpus(&self) -> impl Iterator<Item = kmap::CpuId> + use<> {
        let here = self.cpu();
        (0..self.config.machine.cpus as u32)
            .map(kmap::CpuId)
            .filter(move |&c| c != here)
    }

    /// End the execution here, at the chooser's request (not a violation).
    pub(crate) fn stop(&self) {
        self.arrivals.borrow_mut().end();
        self.outcome.borrow_mut().stopped = true;
    }

    /// Whether the execution is over.
    pub(crate) fn aborted(&self) -> bool {
        self.arrivals.borrow().is_over()
    }

    /// Give the host thread back to the driver.
    pub(crate) fn suspend(&self, why: Yield) {
        let yielder = {
            let driver = self.driver.borrow();
            match driver.executing {
                Some(task) => driver.yielders[task.0],
                None => return, // on the driver's own stack: the driver checks `aborted`
            }
        };
        // SAFETY: `yielders[task]` was set by the coroutine of `task` when it started, and that
        // coroutine is the one executing now (the driver sets `executing` around every resume),
        // so the Yielder it points to is alive on this very stack.
        unsafe { (*yielder).suspend(why) }
    }
}

/// Whether `config`'s CPUs are isolated: more than one CPU, every task pinned to its CPU and
/// running a program that ends, and no `write`, `migrate` or `fork` in any program (tasks'
/// and handlers'). Then, with the reduction, one CPU runs until it has nothing left to do before
/// the next one runs, and that loses no violation and no final state.
///
/// The argument. Part 1 of the reduction's argument (see `Machine::options`) names the one
/// state CPUs share: the run queues, which another CPU writes only by migrating a task onto
/// them; and memory, which only writes change. With neither, no CPU reads anything another
/// CPU writes, so by part 2 each CPU's local history, given the choices taken on it, is the
/// same whatever the others do. Take any run and reorder it: all of CPU 0's actions first,
/// then CPU 1's, and so on. Each CPU does what it did, so the reordered run reaches the same
/// state; the global bounds of `kmap check` (preemptions, lasting handlers) still hold, since
/// before any action the reordered run has used no more than the whole original run, and
/// that was within them. If the original run ends in a violation on CPU c while CPU b < c
/// still has work, the search runs b on to the end of its programs first (they end, a task
/// can always go on, and a sleeper wakes on its own), then c does what it did and meets the
/// same violation: the verdict is the same, though the counterexample found first may be
/// another one. `kmap-check/tests/prove.rs` checks verdicts and final states against the
/// search without the reduction.
pub(crate) fn isolated(config: &Config) -> bool {
    let program = &config.program;
    // A fork numbers its child from one count shared by every CPU: forks on two CPUs would
    // number their children by the order the CPUs ran in.
    let shared = |op: &Op| matches!(op, Op::Write(_) | Op::Migrate(_) | Op::Fork);
    config.machine.cpus > 1
        && program
            .tasks
            .iter()
            .all(|t| t.pinned && !t.is_any() && !t.ops.iter().any(shared))
        && !program.irq.iter().chain(&program.nmi).any(shared)
}
