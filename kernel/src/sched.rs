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
//! Preemption: the timer interrupt (on its IST stack) does not switch there. It rewrites the
//! interrupted frame so that, on `iretq`, the task itself calls `preempt_schedule` on its own
//! stack, past the 128-byte red zone libcore may be using, with its registers saved; that call
//! runs `schedule` like any other and then resumes the task where it was interrupted.

use core::cell::UnsafeCell;
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};

use kmap::{KmapStack, Page};

use crate::interrupts::{Frame, FxArea};
use crate::{CELLS, MAX_CPUS, TASKS_PER_CPU, arch};

pub const NTASKS: usize = MAX_CPUS * TASKS_PER_CPU;
const STACK: usize = 64 * 1024;

/// A task: its kmap stack (the crate's per-task state), its saved stack pointer, its pages.
pub struct Task {
    pub kmap: KmapStack<CELLS>,
    pub migrate: AtomicI32,
    /// The CPU the task last ran on.
    last_cpu: AtomicUsize,
    /// Set while the task is on its way through `preempt_schedule`: the timer does not preempt
    /// it again there, so that at most one `PreemptContext` is ever on its stack.
    preempting: AtomicBool,
    rsp: UnsafeCell<usize>,
    /// The highmem pages this task owns (set at boot, then used only by the task).
    pub pages: UnsafeCell<Option<[Page; 4]>>,
}

// SAFETY: `rsp` is written only by `switch_stacks` while the task switches out, and read only
// by the scheduler of the CPU whose run queue holds it while it switches in; a task moves to the
// other run queue only while it is switched out, published with Release and taken with Acquire
// (`balance`, `pick_next`); `pages` is used only by the task.
unsafe impl Sync for Task {}

const fn task(id: usize) -> Task {
    Task {
        kmap: KmapStack::new(),
        migrate: AtomicI32::new(0),
        last_cpu: AtomicUsize::new(id / TASKS_PER_CPU),
        preempting: AtomicBool::new(false),
        rsp: UnsafeCell::new(0),
        pages: UnsafeCell::new(None),
    }
}
pub static TASKS: [Task; NTASKS] = [
    task(0),
    task(1),
    task(2),
    task(3),
    task(4),
    task(5),
    task(6),
    task(7),
];

/// Ticks of a CPU between two moves of one of its tasks to the other CPU.
const BALANCE_TICKS: u64 = 4;

#[repr(C, align(16))]
struct Stacks([[u8; STACK]; NTASKS]);
struct TaskStacks(UnsafeCell<Stacks>);
// SAFETY: each stack belongs to one task, used only as that task's stack.
unsafe impl Sync for TaskStacks {}
static STACKS: TaskStacks = TaskStacks(UnsafeCell::new(Stacks([[0; STACK]; NTASKS])));

/// The top of task `task`'s stack.
pub fn stack_top(task: usize) -> usize {
    // SAFETY: only the address is taken.
    unsafe { (*STACKS.0.get()).0[task].as_ptr() as usize + STACK }
}

/// What each CPU keeps; GS points at its own. The first field points at itself.
#[repr(C)]
pub struct PerCpu {
    this: AtomicUsize,
    pub id: usize,
    pub current: AtomicUsize,
    pub preempt: AtomicI32,
    pub pagefault: AtomicI32,
    pub hardirq: AtomicI32,
    pub in_sched_in: AtomicBool,
    pub in_swap: AtomicBool,
    /// A higher-priority task is waiting (set by the timer in the benchmark build).
    pub need_resched: AtomicBool,
    pub apic_id: AtomicU32,
    /// The run queue: bit `t` is set while task `t` belongs to this CPU.
    queue: AtomicU32,
    /// The task this CPU's round robin picked last.
    last_pick: AtomicUsize,
    /// This CPU's timer ticks.
    ticks: core::sync::atomic::AtomicU64,
    /// Switches and NMIs on this CPU, for the report.
    pub switches: core::sync::atomic::AtomicU64,
    pub nmis: core::sync::atomic::AtomicU64,
    /// Pages owned by this CPU's interrupt and NMI handlers.
    pub irq_page: UnsafeCell<Option<Page>>,
    pub nmi_page: UnsafeCell<Option<Page>>,
}

// SAFETY: the counters are atomics; the pages are used only by this CPU's own handlers, one at a
// time (interrupt handlers do not nest, NMIs do not nest in NMIs and have their own page).
unsafe impl Sync for PerCpu {}

const fn percpu_for(id: usize) -> PerCpu {
    PerCpu {
        this: AtomicUsize::new(0),
        id,
        current: AtomicUsize::new(id * TASKS_PER_CPU),
        preempt: AtomicI32::new(0),
        pagefault: AtomicI32::new(0),
        hardirq: AtomicI32::new(0),
        in_sched_in: AtomicBool::new(false),
        in_swap: AtomicBool::new(false),
        need_resched: AtomicBool::new(false),
        apic_id: AtomicU32::new(0),
        queue: AtomicU32::new(((1 << TASKS_PER_CPU) - 1) << (id * TASKS_PER_CPU)),
        last_pick: AtomicUsize::new(id * TASKS_PER_CPU),
        ticks: core::sync::atomic::AtomicU64::new(0),
        switches: core::sync::atomic::AtomicU64::new(0),
        nmis: core::sync::atomic::AtomicU64::new(0),
        irq_page: UnsafeCell::new(None),
        nmi_page: UnsafeCell::new(None),
    }
}

pub static PERCPU: [PerCpu; MAX_CPUS] = [percpu_for(0), percpu_for(1)];

/// Point GS at this CPU's area.
pub fn init_percpu(cpu: usize) {
    let area = &PERCPU[cpu];
    area.this.store(area as *const PerCpu as usize, Relaxed);
    area.apic_id.store(crate::apic::id(), Relaxed);
    // Nothing else uses GS.
    arch::set_gs_base(area as *const PerCpu as u64);
}

/// This CPU's area.
pub fn percpu() -> &'static PerCpu {
    let area: usize;
    // SAFETY: GS points at this CPU's PerCpu, whose first field holds its own address.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) area, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: that address is of a static PerCpu.
    unsafe { &*(area as *const PerCpu) }
}

/// The running task: one `gs`-relative load, as Linux's `current`. Reading the area's address
/// first and its `current` after would be two steps a preemption and a move to the other CPU
/// could split, returning the task now running on the CPU this one left (found by the balancer:
/// a task then disabled migration on another task's count).
pub fn current_task() -> &'static Task {
    &TASKS[current_id()]
}

/// The tasks in CPU `cpu`'s run queue, as a bit mask.
pub fn queue(cpu: usize) -> u32 {
    PERCPU[cpu].queue.load(Relaxed)
}

pub fn current_id() -> usize {
    let id: usize;
    // SAFETY: GS points at this CPU's PerCpu; `current` is a word at that offset, written only
    // by this CPU (with interrupts off), so one load of it is atomic.
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[{offset}]",
            out(reg) id,
            offset = const core::mem::offset_of!(PerCpu, current),
            options(nostack, readonly, preserves_flags)
        )
    };
    id
}

/// Add `delta` to this CPU's counter at `OFFSET` of its PerCpu in one instruction, so that no
/// preemption (and no move to the other CPU) can split the read from the write, as Linux's
/// `this_cpu_add`; whether the counter is now zero.
fn this_cpu_add<const OFFSET: usize>(delta: i32) -> bool {
    let zero: u8;
    // SAFETY: GS points at this CPU's PerCpu; OFFSET is of one of its AtomicI32 counters, which
    // only this CPU modifies (an interrupt in between sees the whole instruction or none of it).
    unsafe {
        core::arch::asm!(
            "add dword ptr gs:[{offset}], {delta:e}",
            "setz {zero}",
            offset = const OFFSET,
            delta = in(reg) delta,
            zero = out(reg_byte) zero,
            options(nostack)
        )
    };
    zero != 0
}

/// This CPU's preemption count += `delta`; whether it is now zero.
pub fn preempt_add(delta: i32) -> bool {
    this_cpu_add::<{ core::mem::offset_of!(PerCpu, preempt) }>(delta)
}

/// This CPU's page-fault-disable count += `delta`.
pub fn pagefault_add(delta: i32) {
    this_cpu_add::<{ core::mem::offset_of!(PerCpu, pagefault) }>(delta);
}

core::arch::global_asm!(
    ".section .text",
    // switch_stacks(prev_rsp: *mut usize, next_rsp: usize)
    ".global switch_stacks",
    "switch_stacks:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov [rdi], rsp",
    "    mov rsp, rsi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    // A new task's first return from switch_stacks lands here, its id in r12.
    "task_trampoline:",
    "    mov rdi, r12",
    "    and rsp, -16",
    "    call task_start",
    "    ud2",
    // The timer made an interrupted task come here, rsp at a saved context (see `preempt`).
    ".global preempt_trampoline",
    "preempt_trampoline:",
    "    mov rdi, rsp",
    "    call preempt_schedule",
    "    cli",
    "    fxrstor64 [rsp]",
    "    add rsp, 512",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rbp",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rbx",
    "    pop rax",
    "    iretq",
);

unsafe extern "C" {
    fn switch_stacks(prev_rsp: *mut usize, next_rsp: usize);
    static task_trampoline: u8;
    static preempt_trampoline: u8;
}

/// Make task `task` start at `crate::workload::task_main(task)` when first switched to.
pub fn prepare_task(task: usize) {
    let top = stack_top(task) & !15;
    let words = [0u64, 0, 0, task as u64, 0, 0, 0, 0]; // r15 r14 r13 r12 rbx rbp ret pad
    let base = top - words.len() * 8;
    for (i, word) in words.iter().enumerate() {
        // SAFETY: within the task's own stack, which nothing runs on yet.
        unsafe { core::ptr::write((base + i * 8) as *mut u64, *word) };
    }
    // SAFETY: as above; the return slot takes the trampoline's address.
    unsafe {
        core::ptr::write(
            (base + 6 * 8) as *mut u64,
            core::ptr::addr_of!(task_trampoline) as u64,
        );
        *TASKS[task].rsp.get() = base;
    }
}

#[unsafe(no_mangle)]
extern "C" fn task_start(task: usize) -> ! {
    finish_switch();
    #[cfg(feature = "bench")]
    crate::bench::worker(task);
    #[cfg(not(feature = "bench"))]
    crate::workload::task_main(task)
}

/// Give up the CPU to the next task of this CPU's run queue.
pub fn schedule() {
    let enabled = arch::interrupts_enabled();
    arch::disable_interrupts();
    let cpu = percpu();
    cpu.preempt.fetch_add(1, Relaxed);
    let prev = cpu.current.load(Relaxed);
    let next = pick_next(cpu, prev);
    if next == prev {
        cpu.preempt.fetch_sub(1, Relaxed);
        if enabled {
            arch::enable_interrupts();
        }
        return;
    }
    prepare_switch(prev, next);
    cpu.current.store(next, Relaxed);
    crate::workload::count_switch();
    cpu.switches.fetch_add(1, Relaxed);
    // SAFETY: prev's rsp slot is written by this switch only; next's was saved by its own last
    // switch (or by prepare_task), on this CPU.
    unsafe { switch_stacks(TASKS[prev].rsp.get(), *TASKS[next].rsp.get()) };
    // Back on prev's stack: it has just been switched in, perhaps on the other CPU.
    finish_switch();
    let cpu = percpu();
    // As Linux's schedule() loops while a reschedule is pending: a wake-up that came while the
    // switch ran with preemption off is served now, not at the next tick.
    if cpu.need_resched.load(Relaxed) && cpu.preempt.load(Relaxed) == 0 {
        schedule();
    }
    if !enabled {
        arch::disable_interrupts();
    }
}

/// The next task of this CPU's run queue, round robin by task number from the last one picked
/// (not from `prev`: a task that runs every tick, as the benchmark's high-priority task, would
/// otherwise hand the CPU to the same successor every time). In the benchmark build the CPU's
/// first task has priority while it is awake, and is passed over while it sleeps.
fn pick_next(cpu: &PerCpu, prev: usize) -> usize {
    let first = cpu.id * TASKS_PER_CPU;
    if cfg!(feature = "bench") && !crate::bench_sleeping(cpu.id) {
        // Awake (perhaps woken while it was on its way to sleep): it runs, or keeps running.
        cpu.need_resched.store(false, Relaxed);
        return first;
    }
    // Acquire: a task the other CPU moved here was switched out there before it was published.
    let queue = cpu.queue.load(Acquire);
    let asleep = |t: usize| cfg!(feature = "bench") && t == first && crate::bench_sleeping(cpu.id);
    let last = cpu.last_pick.load(Relaxed);
    let next = (1..=NTASKS)
        .map(|k| (last + k) % NTASKS)
        .find(|&t| queue & 1 << t != 0 && !asleep(t))
        .unwrap_or(prev);
    cpu.last_pick.store(next, Relaxed);
    next
}

/// From this CPU's timer interrupt: every `BALANCE_TICKS` ticks, move one waiting task of this
/// CPU with a zero migration-disable count to the other CPU (not in the benchmark build, whose
/// per-CPU figures must not depend on where the workers went). Returns whether a task moved.
pub fn balance() -> bool {
    let cpu = percpu();
    let ticks = cpu.ticks.fetch_add(1, Relaxed) + 1;
    // Not inside the rfc-v1-sti swap, the one place this CPU switches with interrupts on: there
    // `next` is picked but not yet `current`, and must not move.
    if cfg!(feature = "bench")
        || !ticks.is_multiple_of(BALANCE_TICKS)
        || !crate::AP_ONLINE.load(Acquire)
        || cpu.in_swap.load(Relaxed)
    {
        return false;
    }
    let other = &PERCPU[(cpu.id + 1) % MAX_CPUS];
    let current = cpu.current.load(Relaxed);
    let queue = cpu.queue.load(Relaxed);
    // Every task of this queue but `current` is switched out: outside that swap this CPU
    // switches only with interrupts off, and this runs in its timer interrupt. Their counts are stable: only a
    // running task changes its own.
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
        crate::workload::fail(
            crate::workload::Failure::MigratedHolding,
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
    arch::enable_interrupts();
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
        arch::enable_interrupts();
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
    arch::disable_interrupts();
    cpu.in_swap.store(false, Relaxed);
}

/// The saved context of a preempted task, on its own stack: the interrupt frame without the
/// vector and error code, so that the trampoline ends with a plain `iretq`.
#[repr(C, align(16))]
struct PreemptContext {
    fx: [u8; 512],
    gprs: [u64; 15],
    iret: [u64; 5],
}

/// From the timer interrupt: make the interrupted task call `preempt_schedule` on return, if
/// it may be preempted (preemption count zero). Returns whether it will.
pub fn preempt(frame: &mut Frame, fx: &FxArea) -> bool {
    let cpu = percpu();
    let task = current_task();
    if cpu.preempt.load(Relaxed) != 0
        || frame.cs != 0x08
        || frame.rflags & (1 << 9) == 0
        || task.preempting.load(Relaxed)
    {
        return false;
    }
    task.preempting.store(true, Relaxed);
    let size = core::mem::size_of::<PreemptContext>() as u64;
    let at = (frame.rsp - 128 - size) & !15;
    let context = at as *mut PreemptContext;
    // SAFETY: `at` is below the interrupted stack pointer and its red zone, on the task's own
    // stack, which nothing else uses while the task is interrupted. One context at most is on a
    // task's stack (`preempting`), so the 64 KiB stack (no guard page) cannot overflow this way.
    unsafe {
        (*context).fx = fx.0;
        (*context).gprs = [
            frame.r15, frame.r14, frame.r13, frame.r12, frame.r11, frame.r10, frame.r9, frame.r8,
            frame.rbp, frame.rdi, frame.rsi, frame.rdx, frame.rcx, frame.rbx, frame.rax,
        ];
        (*context).iret = [frame.rip, frame.cs, frame.rflags, frame.rsp, frame.ss];
    }
    frame.rip = core::ptr::addr_of!(preempt_trampoline) as u64;
    frame.rsp = at;
    frame.rflags &= !(1 << 9);
    true
}

#[unsafe(no_mangle)]
extern "C" fn preempt_schedule(_context: *const PreemptContext) {
    schedule();
    // Interrupts off until the trampoline's `iretq`: no timer can preempt the task again before
    // it is back where it was interrupted.
    arch::disable_interrupts();
    current_task().preempting.store(false, Relaxed);
}

/// Task `task`'s own highmem pages.
///
/// # Safety
///
/// Only task `task` calls it, once.
pub unsafe fn task_pages(task: usize) -> &'static mut [Page; 4] {
    // SAFETY: the caller's promise: one user, once.
    unsafe {
        (*TASKS[task].pages.get())
            .as_mut()
            .expect("pages handed out at boot")
    }
}
