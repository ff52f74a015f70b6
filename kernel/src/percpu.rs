//! What each CPU keeps: its `current` task, its preemption, page-fault and hard-IRQ counts, its
//! run queue and its counters, in one area that GS points at (`arch::percpu`). `current` and the
//! preemption and page-fault counts are read or changed in one gs-relative instruction each, as
//! Linux's `current` and `this_cpu_add`; the rest is reached through the area's address, in two
//! steps, which is right only where migration is disabled or interrupts are off.

use core::cell::UnsafeCell;
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed,
};

use kmap::Page;

use crate::arch::{apic, percpu as gs};
use crate::config::{MAX_CPUS, TASKS_PER_CPU};
use crate::task::{TASKS, Task};

/// Set by the second CPU once it runs (Release: its per-CPU area, APIC id included, is
/// published with it).
pub static AP_ONLINE: AtomicBool = AtomicBool::new(false);

/// Whether a CPU's first task (its boot task) runs ahead of the others: a load with a
/// high-priority task (the benchmarks' latency phases) says whether it is awake; the workload
/// leaves it `None`, plain round robin.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Priority {
    /// No task has priority.
    None = 0,
    /// The first task is awake: it runs, or keeps running.
    Awake = 1,
    /// The first task sleeps: the round robin passes it over.
    Asleep = 2,
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
    priority: AtomicU8,
    pub apic_id: AtomicU32,
    /// The run queue: bit `t` is set while task `t` belongs to this CPU.
    pub queue: AtomicU32,
    /// The task this CPU's round robin picked last.
    pub last_pick: AtomicUsize,
    /// This CPU's timer ticks.
    pub ticks: AtomicU64,
    /// Switches and NMIs on this CPU, for the report.
    pub switches: AtomicU64,
    pub nmis: AtomicU64,
    /// Pages owned by this CPU's interrupt and NMI handlers.
    pub irq_page: UnsafeCell<Option<Page>>,
    pub nmi_page: UnsafeCell<Option<Page>>,
}

// SAFETY: the counters are atomics; the pages are used only by this CPU's own handlers, one at a
// time (interrupt handlers do not nest, NMIs do not nest in NMIs and have their own page).
unsafe impl Sync for PerCpu {}

impl PerCpu {
    pub fn priority(&self) -> Priority {
        match self.priority.load(Relaxed) {
            1 => Priority::Awake,
            2 => Priority::Asleep,
            _ => Priority::None,
        }
    }

    pub fn set_priority(&self, priority: Priority) {
        self.priority.store(priority as u8, Relaxed);
    }
}

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
        priority: AtomicU8::new(Priority::None as u8),
        apic_id: AtomicU32::new(0),
        queue: AtomicU32::new(((1 << TASKS_PER_CPU) - 1) << (id * TASKS_PER_CPU)),
        last_pick: AtomicUsize::new(id * TASKS_PER_CPU),
        ticks: AtomicU64::new(0),
        switches: AtomicU64::new(0),
        nmis: AtomicU64::new(0),
        irq_page: UnsafeCell::new(None),
        nmi_page: UnsafeCell::new(None),
    }
}

pub static PERCPU: [PerCpu; MAX_CPUS] = [percpu_for(0), percpu_for(1)];

/// Point GS at this CPU's area.
pub fn init(cpu: usize) {
    let area = &PERCPU[cpu];
    area.this.store(area as *const PerCpu as usize, Relaxed);
    area.apic_id.store(apic::id(), Relaxed);
    // Nothing else uses GS.
    gs::set_base(area as *const PerCpu as usize);
}

/// This CPU's area.
pub fn percpu() -> &'static PerCpu {
    // SAFETY: GS points at this CPU's PerCpu (`init`), whose first field holds its own address,
    // written before GS was set and never again.
    let area = unsafe { gs::read_word::<{ core::mem::offset_of!(PerCpu, this) }>() };
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

pub fn current_id() -> usize {
    // SAFETY: GS points at this CPU's PerCpu; `current` is a word at that offset, written only
    // by this CPU (with interrupts off), so one load of it is atomic.
    unsafe { gs::read_word::<{ core::mem::offset_of!(PerCpu, current) }>() }
}

/// The other CPU's area (two CPUs).
pub fn other(cpu: usize) -> &'static PerCpu {
    &PERCPU[(cpu + 1) % MAX_CPUS]
}

/// This CPU's preemption count += `delta`, in one instruction; whether it is now zero.
pub fn preempt_add(delta: i32) -> bool {
    // SAFETY: GS points at this CPU's PerCpu; `preempt` is an AtomicI32 only this CPU modifies.
    unsafe { gs::add_i32::<{ core::mem::offset_of!(PerCpu, preempt) }>(delta) }
}

/// This CPU's page-fault-disable count += `delta`, in one instruction.
pub fn pagefault_add(delta: i32) {
    // SAFETY: as in `preempt_add`, for `pagefault`.
    unsafe { gs::add_i32::<{ core::mem::offset_of!(PerCpu, pagefault) }>(delta) };
}
