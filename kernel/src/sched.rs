//! Tasks, per-CPU run queues, and a context switch shaped like Linux's.
//!
//! `schedule` runs on the outgoing task's stack: preemption and interrupts off, then
//! prepare-switch (`kmap::sched_out`, with `current` = prev), then the stack switch; the
//! incoming task continues in `finish_switch` on its own stack, with interrupts enabled again,
//! where `kmap::sched_in` runs with `current` = next. The `rfc-v1` build replaces the two hooks by
//! the September 2020 RFC's single-step swap in prepare-switch, with interrupts off as in Linux's
//! `prepare_task_switch` (only an NMI can land in it); `rfc-v1-sti` widens it with interrupts on.
//!
//! Run queues: each CPU has a set of tasks (a bit mask), its boot task pinned to it. Every
//! `BALANCE_TICKS` ticks the timer handler of a CPU moves one of its own waiting tasks to the
//! other CPU, if that task's migration-disable count is zero: a task that holds mappings never
//! moves. A task switched in on another CPU than the one it last ran on while holding mappings
//! stops the machine (it would use the old CPU's slots); the `no-migrate-disable` build, whose
//! platform leaves the count alone, is caught that way.
//!
//! Preemption: the timer interrupt (on its IST stack) does not switch there. It has the
//! interrupted task call `preempt_schedule` on its own stack on `iretq`
//! (`arch::context::redirect_to_preemption`), which runs `schedule` like any other and then
//! resumes the task where it was interrupted.
//!
//! What runs on the tasks is not the scheduler's business: a task starts at its load's
//! `Load::task` (`prepare_task`), and a CPU's first task may be given priority through
//! `PerCpu::set_priority` (the benchmarks' high-priority task).

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::arch::context::{self, Entry};
use crate::arch::instructions;
use crate::arch::interrupts::{Frame, FxArea};
use crate::config::{NTASKS, TASKS_PER_CPU};
use crate::load::Load;
use crate::percpu::{AP_ONLINE, PerCpu, Priority, current_id, current_task, other, percpu};
use crate::task::{TASKS, stack_top};
use crate::verdict::{Failure, fail};

/// Ticks of a CPU between two moves of one of its tasks to the other CPU.
const BALANCE_TICKS: u64 = 4;

/// Make task `task` start at `L::task(task)` when first switched to.
pub fn prepare_task<L: Load>(task: usize) {
    extern "C" fn start<L: Load>(task: usize) -> ! {
        finish_switch();
        L::task(task)
    }
    // SAFETY: the task's own stack, which nothing runs on yet; its saved stack pointer is read
    // only by its first switch-in.
    unsafe {
        *TASKS[task].rsp() = context::initial_stack(stack_top(task), start::<L> as Entry, task)
    };
}

/// Give up the CPU to the next task of this CPU's run queue.
pub fn schedule() {
    let enabled = instructions::interrupts_enabled();
    instructions::disable_interrupts();
    let cpu = percpu();
    cpu.preempt.fetch_add(1, Relaxed);
    let prev = cpu.current.load(Relaxed);
    let next = pick_next(cpu, prev);
    if next == prev {
        cpu.preempt.fetch_sub(1, Relaxed);
        if enabled {
            instructions::enable_interrupts();
        }
        return;
    }
    prepare_switch(prev, next);
    cpu.current.store(next, Relaxed);
    cpu.switches.fetch_add(1, Relaxed);
    // SAFETY: prev's rsp slot is written by this switch only; next's was saved by its own last
    // switch (or by prepare_task), on this CPU.
    unsafe { context::switch(TASKS[prev].rsp(), *TASKS[next].rsp()) };
    // Back on prev's stack: it has just been switched in, perhaps on the other CPU.
    finish_switch();
    let cpu = percpu();
    // As Linux's schedule() loops while a reschedule is pending: a wake-up that came while the
    // switch ran with preemption off is served now, not at the next tick.
    if cpu.need_resched.load(Relaxed) && cpu.preempt.load(Relaxed) == 0 {
        schedule();
    }
    if !enabled {
        instructions::disable_interrupts();
    }
}

/// The next task of this CPU's run queue, round robin by task number from the last one picked
/// (not from `prev`: a task that runs every tick, as the benchmark's high-priority task, would
/// otherwise hand the CPU to the same successor every time). A CPU's first task with priority
/// runs while it is awake, and is passed over while it sleeps.
fn pick_next(cpu: &PerCpu, prev: usize) -> usize {
    let first = cpu.id * TASKS_PER_CPU;
    let priority = cpu.priority();
    if priority == Priority::Awake {
        // Awake (perhaps woken while it was on its way to sleep): it runs, or keeps running.
        cpu.need_resched.store(false, Relaxed);
        return first;
    }
    // Acquire: a task the other CPU moved here was switched out there before it was published.
    let queue = cpu.queue.load(Acquire);
    let asleep = |t: usize| t == first && priority == Priority::Asleep;
    let last = cpu.last_pick.load(Relaxed);
    let next = (1..=NTASKS)
        .map(|k| (last + k) % NTASKS)
        .find(|&t| queue & 1 << t != 0 && !asleep(t))
        .unwrap_or(prev);
    cpu.last_pick.store(next, Relaxed);
    next
}

/// From this CPU's timer interrupt: count the tick, and, when `enabled`, every `BALANCE_TICKS`
/// ticks move one waiting task of this CPU with a zero migration-disable count to the other CPU.
/// Returns whether a task moved.
pub fn balance(enabled: bool) -> bool {
    let cpu = percpu();
    let ticks = cpu.ticks.fetch_add(1, Relaxed) + 1;
    // Not inside the rfc-v1-sti swap, the one place this CPU switches with interrupts on: there
    // `next` is picked but not yet `current`, and must not move.
    if !enabled
        || !ticks.is_multiple_of(BALANCE_TICKS)
        || !AP_ONLINE.load(Acquire)
        || cpu.in_swap.load(Relaxed)
    {
        return false;
    }
    let other = other(cpu.id);
    let current = cpu.current.load(Relaxed);
    let queue = cpu.queue.load(Relaxed);
    // Every task of this queue but `current` is switched out: outside that swap this CPU
    // switches only with interrupts off, and this runs in its timer interrupt. Their counts are
    // stable: only a running task changes its own.
    let movable = (0..NTASKS).find(|&t| {
        queue & 1 << t != 0
            && t != current
            && t % TASKS_PER_CPU != 0 // the boot tasks are pinned
            && TASKS[t].migrate.load(Relaxed) == 0
    });
    let Some(task) = movable else { return false };
    cpu.queue.fetch_and(!(1 << task), Relaxed);
    // Release: the task's saved stack pointer and stack reach the other CPU before the task does.
    other.queue.fetch_or(1 << task, Release);
    true
}

/// Prepare-switch, `current` = prev (rules S-1 to S-4).
#[cfg(not(feature = "rfc-v1"))]
fn prepare_switch(_prev: usize, _next: usize) {
    // SAFETY: prepare-switch, current = prev, after prev's last map or unmap, before the switch.
    unsafe { kmap::sched_out(&crate::platform::KERNEL) };
}

/// Finish-switch, `current` = next, interrupts enabled (rules I-1 to I-6). A task that holds
/// mappings and comes back on another CPU than it left stops the machine first.
fn finish_switch() {
    let cpu = percpu();
    let task = current_task();
    let last = task.last_cpu.swap(cpu.id, Relaxed);
    if last != cpu.id && task.kmap.depth() > 0 {
        fail(
            Failure::MigratedHolding,
            format_args!(
                "task {} was moved from CPU {last} to CPU {} while it holds {} mappings (their \
                 addresses are CPU {last}'s slots; its migration-disable count is {})",
                current_id(),
                cpu.id,
                task.kmap.depth(),
                task.migrate.load(Relaxed)
            ),
        );
    }
    instructions::enable_interrupts();
    #[cfg(not(feature = "rfc-v1"))]
    {
        // Counted as "NMIs during sched_in" only when it has work: the fast path is one load.
        cpu.in_sched_in.store(task.kmap.depth() > 0, Relaxed);
        // SAFETY: finish-switch, current = next, before next runs its own code again.
        unsafe { kmap::sched_in(&crate::platform::KERNEL) };
        cpu.in_sched_in.store(false, Relaxed);
    }
    cpu.preempt.fetch_sub(1, Relaxed);
}

/// The September 2020 RFC: prev's slots cleared and next's installed in one step while
/// `current` is still prev (the crate has no such function on purpose). As Linux had it, in
/// `prepare_task_switch` with interrupts off: only an NMI can land in it. The `rfc-v1-sti` build
/// enables interrupts around it, so that the timer interrupt can land there too.
#[cfg(feature = "rfc-v1")]
fn prepare_switch(prev: usize, next: usize) {
    use kmap::{Cell, CpuId, Platform, Slot};
    let kernel = &crate::platform::KERNEL;
    let cpu = percpu();
    let slot = |cell: usize| Slot {
        cpu: CpuId(cpu.id as u32),
        cell: Cell(cell),
    };
    cpu.in_swap.store(true, Relaxed);
    if cfg!(feature = "rfc-v1-sti") {
        instructions::enable_interrupts();
    }
    // A cell whose mapping was released out of order (a hole, `Pte::HOLE`) has an empty slot
    // and nothing to restore: skipped, as the crate's hooks skip it.
    let live = |pte: kmap::Pte| !pte.is_empty() && pte != kmap::Pte::HOLE;
    for cell in 0..TASKS[prev].kmap.depth() {
        if live(TASKS[prev].kmap.saved(Cell(cell))) {
            kernel.clear_pte(slot(cell));
            kernel.invalidate_local(kernel.slot_address(slot(cell)));
        }
    }
    for cell in 0..TASKS[next].kmap.depth() {
        let pte = TASKS[next].kmap.saved(Cell(cell));
        if live(pte) {
            kernel.install_pte(slot(cell), pte);
        }
    }
    instructions::disable_interrupts();
    cpu.in_swap.store(false, Relaxed);
}

/// From the timer interrupt: make the interrupted task call `preempt_schedule` on return, if
/// it may be preempted (preemption count zero). Returns whether it will.
pub fn preempt(frame: &mut Frame, fx: &FxArea) -> bool {
    let cpu = percpu();
    let task = current_task();
    if cpu.preempt.load(Relaxed) != 0
        || !frame.interrupted_kernel_with_interrupts_on()
        || task.preempting.load(Relaxed)
    {
        return false;
    }
    task.preempting.store(true, Relaxed);
    // SAFETY: a kernel task interrupted with interrupts on, on its own stack, which nothing else
    // uses while it is interrupted; one context at most is on a task's stack (`preempting`), so
    // the 64 KiB stack (no guard page) cannot overflow this way.
    unsafe { context::redirect_to_preemption(frame, fx) };
    true
}

#[unsafe(no_mangle)]
extern "C" fn preempt_schedule(_context: *const context::PreemptContext) {
    schedule();
    // Interrupts off until the trampoline's `iretq`: no timer can preempt the task again before
    // it is back where it was interrupted.
    instructions::disable_interrupts();
    current_task().preempting.store(false, Relaxed);
}
