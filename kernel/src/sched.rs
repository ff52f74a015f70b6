//! Tasks, per-CPU run queues, and a context switch shaped like Linux's.
//!
//! `schedule` runs on the outgoing task's stack: preemption and interrupts off, then
//! prepare-switch (`kmap::sched_out`, with `current` = prev), then the stack switch; the
//! incoming task continues in `finish_switch` on its own stack, with interrupts enabled again,
//! where `kmap::sched_in` runs with `current` = next. The `rfc-v1` build replaces the two hooks by
//! the September 2020 RFC's single-step swap in prepare-switch, interrupts enabled.
//!
//! Preemption: the timer interrupt (on its IST stack) does not switch there. It rewrites the
//! interrupted frame so that, on `iretq`, the task itself calls `preempt_schedule` on its own
//! stack, past the 128-byte red zone libcore may be using, with its registers saved; that call
//! runs `schedule` like any other and then resumes the task where it was interrupted.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering::Relaxed};

use kmap::{KmapStack, Page};

use crate::interrupts::{Frame, FxArea};
use crate::{arch, CELLS, MAX_CPUS, TASKS_PER_CPU};

pub const NTASKS: usize = MAX_CPUS * TASKS_PER_CPU;
const STACK: usize = 64 * 1024;

/// A task: its kmap stack (the crate's per-task state), its saved stack pointer, its pages.
pub struct Task {
    pub kmap: KmapStack<CELLS>,
    pub migrate: AtomicI32,
    rsp: UnsafeCell<usize>,
    /// The highmem pages this task owns (set at boot, then used only by the task).
    pub pages: UnsafeCell<Option<[Page; 4]>>,
}

// SAFETY: `rsp` is written only by `switch_stacks` on the task's own CPU while it switches out,
// and read only by that CPU's scheduler while it switches in; `pages` is used only by the task.
unsafe impl Sync for Task {}

#[allow(clippy::declare_interior_mutable_const)]
const TASK: Task = Task {
    kmap: KmapStack::new(),
    migrate: AtomicI32::new(0),
    rsp: UnsafeCell::new(0),
    pages: UnsafeCell::new(None),
};
pub static TASKS: [Task; NTASKS] = [TASK; NTASKS];

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
    next: AtomicUsize,
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
        next: AtomicUsize::new(0),
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
    // SAFETY: IA32_GS_BASE; nothing else uses GS.
    unsafe { arch::wrmsr(0xC000_0101, area as *const PerCpu as u64) };
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

pub fn current_task() -> &'static Task {
    &TASKS[percpu().current.load(Relaxed)]
}

pub fn current_id() -> usize {
    percpu().current.load(Relaxed)
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

extern "C" {
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

#[no_mangle]
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
    // SAFETY: prev's rsp slot is written by this switch only; next's was saved by its own last
    // switch (or by prepare_task), on this CPU.
    unsafe { switch_stacks(TASKS[prev].rsp.get(), *TASKS[next].rsp.get()) };
    // Back on prev's stack: it has just been switched in.
    finish_switch();
    // As Linux's schedule() loops while a reschedule is pending: a wake-up that came while the
    // switch ran with preemption off is served now, not at the next tick.
    if cpu.need_resched.load(Relaxed) && cpu.preempt.load(Relaxed) == 0 {
        schedule();
    }
    if !enabled {
        arch::disable_interrupts();
    }
}

/// The next task of this CPU's run queue, round robin. In the benchmark build the CPU's first
/// task has priority while it is awake, and is passed over while it sleeps.
fn pick_next(cpu: &PerCpu, prev: usize) -> usize {
    let first = cpu.id * TASKS_PER_CPU;
    if cfg!(feature = "bench") && !crate::bench_sleeping(cpu.id) {
        // Awake (perhaps woken while it was on its way to sleep): it runs, or keeps running.
        cpu.need_resched.store(false, Relaxed);
        let _ = prev;
        return first;
    }
    loop {
        let turn = cpu.next.fetch_add(1, Relaxed) + 1;
        let next = first + turn % TASKS_PER_CPU;
        if !(cfg!(feature = "bench") && next == first && crate::bench_sleeping(cpu.id)) {
            return next;
        }
    }
}

/// Prepare-switch, `current` = prev (rules S-1 to S-4).
#[cfg(not(feature = "rfc-v1"))]
fn prepare_switch(_prev: usize, _next: usize) {
    // SAFETY: prepare-switch, current = prev, after prev's last map or unmap, before the switch.
    unsafe { kmap::sched_out(&crate::platform::KERNEL) };
}

/// Finish-switch, `current` = next, interrupts enabled (rules I-1 to I-6).
fn finish_switch() {
    let cpu = percpu();
    arch::enable_interrupts();
    #[cfg(not(feature = "rfc-v1"))]
    {
        cpu.in_sched_in.store(true, Relaxed);
        // SAFETY: finish-switch, current = next, before next runs its own code again.
        unsafe { kmap::sched_in(&crate::platform::KERNEL) };
        cpu.in_sched_in.store(false, Relaxed);
    }
    cpu.preempt.fetch_sub(1, Relaxed);
}

/// The September 2020 RFC: prev's slots cleared and next's installed in one step while
/// `current` is still prev, interrupts enabled (the crate has no such function on purpose).
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
    arch::enable_interrupts();
    for cell in 0..TASKS[prev].kmap.depth() {
        if !TASKS[prev].kmap.saved(Cell(cell)).is_empty() {
            kernel.clear_pte(slot(cell));
            kernel.invalidate_local(kernel.slot_address(slot(cell)));
        }
    }
    for cell in 0..TASKS[next].kmap.depth() {
        let pte = TASKS[next].kmap.saved(Cell(cell));
        if !pte.is_empty() {
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
    if cpu.preempt.load(Relaxed) != 0 || frame.cs != 0x08 || frame.rflags & (1 << 9) == 0 {
        return false;
    }
    let size = core::mem::size_of::<PreemptContext>() as u64;
    let at = (frame.rsp - 128 - size) & !15;
    let context = at as *mut PreemptContext;
    // SAFETY: `at` is below the interrupted stack pointer and its red zone, on the task's own
    // stack (64 KiB, far from full), which nothing else uses while the task is interrupted.
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

#[no_mangle]
extern "C" fn preempt_schedule(_context: *const PreemptContext) {
    schedule();
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
