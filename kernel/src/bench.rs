//! Benchmarks in the kernel (`--features bench`), each a ratio of two measurements made in the
//! same boot, because absolute times under software emulation mean little.
//!
//! 1. Scheduling latency: on each CPU a high-priority task sleeps until the timer wakes it,
//!    while three workers run long mapped sections. With `kmap_atomic`-style sections the wake
//!    waits for the section's end (preemption is off while mapped); with `kmap_local` sections
//!    the timer preempts the worker at once. Latency is the TSC from the wake-up in the timer
//!    interrupt to the task running.
//! 2. Throughput: the workers of both CPUs map a page, touch it and unmap it, as fast as they
//!    can, with kmap_local and then with a global-pool `kmap()` built here only as a baseline
//!    (`pool`): one lock, reference counts, and on every wrap of the pool a global TLB flush
//!    with an IPI to the other CPU (reference rule 2.10).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use kmap::Local;

use crate::platform::KERNEL;
use crate::sched::{self, percpu};
use crate::{arch, serial, MAX_CPUS};

/// Ticks (of both CPUs together) each phase lasts.
const PHASE_TICKS: u64 = 8_000;
const SAMPLES: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Phase {
    Warmup = 0,
    AtomicSections = 1,
    LocalSections = 2,
    LocalThroughput = 3,
    PoolThroughput = 4,
    Done = 5,
}

static PHASE: AtomicUsize = AtomicUsize::new(0);
pub static TICKS: AtomicU64 = AtomicU64::new(0);
static WAKE_TSC: [AtomicU64; MAX_CPUS] = [AtomicU64::new(0), AtomicU64::new(0)];
static SLEEPING: [AtomicBool; MAX_CPUS] = [AtomicBool::new(false), AtomicBool::new(false)];
static OPS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

struct Samples {
    values: [AtomicU64; SAMPLES],
    count: AtomicUsize,
}

static LATENCY: [Samples; 6] = [const {
    Samples {
        values: [const { AtomicU64::new(0) }; SAMPLES],
        count: AtomicUsize::new(0),
    }
}; 6];

fn phase() -> Phase {
    match PHASE.load(Relaxed) {
        0 => Phase::Warmup,
        1 => Phase::AtomicSections,
        2 => Phase::LocalSections,
        3 => Phase::LocalThroughput,
        4 => Phase::PoolThroughput,
        _ => Phase::Done,
    }
}

fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: reading the time-stamp counter has no effect.
    unsafe {
        core::arch::asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    };
    (high as u64) << 32 | low as u64
}

/// Whether the high-priority task of `cpu` is asleep (the scheduler passes it over).
pub fn sleeping(cpu: usize) -> bool {
    SLEEPING[cpu].load(Relaxed)
}

/// From the timer interrupt: wake this CPU's high-priority task, and ask for a reschedule.
pub fn tick() {
    TICKS.fetch_add(1, Relaxed);
    let cpu = percpu();
    if SLEEPING[cpu.id].load(Relaxed) {
        WAKE_TSC[cpu.id].store(rdtsc(), Relaxed);
        SLEEPING[cpu.id].store(false, Relaxed);
        cpu.need_resched.store(true, Relaxed);
    }
}

/// The high-priority task of a CPU (its boot task): measure how long each wake-up took to run,
/// then sleep again. On the boot CPU it also moves the phases on and prints the results.
pub fn high_priority_task(cpu: usize) -> ! {
    let mut phase_start = TICKS.load(Relaxed);
    loop {
        let woke = WAKE_TSC[cpu].swap(0, Relaxed);
        let current = phase();
        if woke != 0 && matches!(current, Phase::AtomicSections | Phase::LocalSections) {
            let samples = &LATENCY[current as usize];
            let at = samples.count.fetch_add(1, Relaxed);
            if at < SAMPLES {
                samples.values[at].store(rdtsc().wrapping_sub(woke), Relaxed);
            }
        }
        if cpu == 0 && TICKS.load(Relaxed) - phase_start > PHASE_TICKS {
            phase_start = TICKS.load(Relaxed);
            let next = PHASE.load(Relaxed) + 1;
            PHASE.store(next, Relaxed);
            if next == Phase::Done as usize {
                finish();
            }
        }
        SLEEPING[cpu].store(true, Relaxed);
        sched::schedule();
    }
}

/// A worker: long mapped sections in the latency phases, short ones as fast as it can in the
/// throughput phases.
pub fn worker(task: usize) -> ! {
    // SAFETY: this task's one handle, for its whole life.
    let mut local = unsafe { Local::new(&KERNEL) };
    // SAFETY: only this task takes its pages, once.
    let [a, _, _, _] = unsafe { sched::task_pages(task) };
    let mut turn = 0;
    loop {
        match phase() {
            Phase::Warmup | Phase::Done => crate::delay(1_000),
            Phase::AtomicSections => {
                let mut mapping = local.map_atomic(a);
                long_section(mapping.bytes_mut());
            }
            Phase::LocalSections => {
                let mut mapping = local.map(a);
                long_section(mapping.bytes_mut());
            }
            Phase::LocalThroughput => {
                let frame = rotating(task, &mut turn);
                // SAFETY: the frame is this worker's alone (see `rotating`); the address is used
                // only until the unmap, which follows at once.
                unsafe {
                    let address =
                        kmap::raw::map(&KERNEL, kmap::Frame::new(frame)).unwrap_or_else(|e| {
                            crate::workload::fail(
                                crate::workload::Failure::Crate,
                                format_args!("benchmark map: {e}"),
                            )
                        });
                    touch(core::slice::from_raw_parts_mut(address, 4096));
                    if let Err(e) = kmap::raw::unmap(&KERNEL, address) {
                        crate::workload::fail(
                            crate::workload::Failure::Crate,
                            format_args!("benchmark unmap: {e}"),
                        );
                    }
                }
                OPS[Phase::LocalThroughput as usize].fetch_add(1, Relaxed);
            }
            Phase::PoolThroughput => {
                let address = pool::kmap(rotating(task, &mut turn));
                // SAFETY: the pool maps the frame at `address` until kunmap; only this worker
                // uses this frame.
                touch(unsafe { core::slice::from_raw_parts_mut(address as *mut u8, 4096) });
                pool::kunmap(address);
                OPS[Phase::PoolThroughput as usize].fetch_add(1, Relaxed);
            }
        }
    }
}

/// Highmem frames each worker cycles through in the throughput phases: its own, more in all
/// than the pool has slots, so that the pool wraps as it does under a real load of many pages.
const ROTATING: u64 = 16;

fn rotating(task: usize, turn: &mut u64) -> u64 {
    *turn = (*turn + 1) % ROTATING;
    crate::HIGHMEM_FIRST_FRAME + 1024 + task as u64 * ROTATING + *turn
}

/// A long section: many passes of writing and reading the whole page.
fn long_section(page: &mut [u8]) {
    for pass in 0..24u64 {
        for word in 0..512 {
            // SAFETY: within the page.
            unsafe {
                core::ptr::write_volatile(
                    page.as_mut_ptr().add(word * 8).cast::<u64>(),
                    pass ^ word as u64,
                )
            };
        }
        for word in 0..512 {
            // SAFETY: within the page.
            let value =
                unsafe { core::ptr::read_volatile(page.as_ptr().add(word * 8).cast::<u64>()) };
            if value != pass ^ word as u64 {
                crate::workload::fail(
                    crate::workload::Failure::WrongWord,
                    format_args!("benchmark section read {value:#x} at word {word}"),
                );
            }
        }
    }
}

/// A short access: write and read back 16 words.
fn touch(page: &mut [u8]) {
    for word in 0..16 {
        // SAFETY: within the page.
        unsafe {
            core::ptr::write_volatile(page.as_mut_ptr().add(word * 256).cast::<u64>(), word as u64)
        };
        // SAFETY: within the page.
        let value =
            unsafe { core::ptr::read_volatile(page.as_ptr().add(word * 256).cast::<u64>()) };
        if value != word as u64 {
            crate::workload::fail(
                crate::workload::Failure::WrongWord,
                format_args!("benchmark access read {value:#x} at word {word}"),
            );
        }
    }
}

/// Count, median, 99th percentile and worst of a phase's latencies.
fn stats(phase: Phase, scratch: &mut [u64; SAMPLES]) -> (usize, u64, u64, u64) {
    let samples = &LATENCY[phase as usize];
    let n = samples.count.load(Relaxed).min(SAMPLES);
    for (i, slot) in scratch.iter_mut().take(n).enumerate() {
        *slot = samples.values[i].load(Relaxed);
    }
    let values = &mut scratch[..n];
    values.sort_unstable();
    if n == 0 {
        return (0, 0, 0, 0);
    }
    (n, values[n / 2], values[n * 99 / 100], values[n - 1])
}

fn finish() -> ! {
    arch::disable_interrupts();
    let mut scratch = [0u64; SAMPLES];
    let (na, median_a, p99_a, worst_a) = stats(Phase::AtomicSections, &mut scratch);
    let (nl, median_l, p99_l, worst_l) = stats(Phase::LocalSections, &mut scratch);
    let local = OPS[Phase::LocalThroughput as usize].load(Relaxed);
    let pooled = OPS[Phase::PoolThroughput as usize].load(Relaxed);
    let ratio = |a: u64, b: u64| a as f64 / (b.max(1)) as f64;
    serial::print_forced(format_args!(
        "BENCH latency kmap_atomic sections: {na} wake-ups, median {median_a} TSC, p99 {p99_a} TSC, worst {worst_a} TSC\n\
         BENCH latency kmap_local sections: {nl} wake-ups, median {median_l} TSC, p99 {p99_l} TSC, worst {worst_l} TSC\n\
         BENCH latency ratio (atomic / local): median {:.1}x, p99 {:.1}x, worst {:.1}x\n\
         BENCH throughput kmap_local: {local} map+access+unmap on 2 CPUs in {PHASE_TICKS} ticks\n\
         BENCH throughput global-pool kmap(): {pooled} map+access+unmap on 2 CPUs in {PHASE_TICKS} ticks \
         ({wraps} pool wraps, each a global TLB flush with an IPI)\n\
         BENCH throughput ratio (kmap_local / kmap): {:.1}x\n",
        ratio(median_a, median_l),
        ratio(p99_a, p99_l),
        ratio(worst_a, worst_l),
        ratio(local, pooled),
        wraps = pool::WRAPS.load(Relaxed),
    ));
    serial::print_forced(format_args!("RESULT: PASS\n"));
    arch::exit_qemu(arch::EXIT_PASS)
}

/// The baseline: Linux's `kmap()` as reference rule 2.10 describes it, cut to what costs.
pub mod pool {
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

    use kmap::{Platform, Pte};

    use crate::platform::{KERNEL, WINDOW, WINDOW_PT};
    use crate::sched::percpu;
    use crate::{apic, arch, CELLS, MAX_CPUS};

    /// Slots of the pool, after the kmap windows of every CPU in the same page table.
    const SLOTS: usize = 32;
    const FIRST: usize = MAX_CPUS * CELLS;
    pub const FLUSH_VECTOR: u8 = 0x40;

    static LOCK: AtomicBool = AtomicBool::new(false);
    /// 0: free and flushed; 1: free, maybe still in a TLB; n: n - 1 users.
    static COUNT: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];
    static FRAME: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
    static NEXT: AtomicU32 = AtomicU32::new(0);
    pub static WRAPS: AtomicU64 = AtomicU64::new(0);
    static FLUSH_REQUESTS: AtomicU64 = AtomicU64::new(0);
    static FLUSH_ACKS: AtomicU64 = AtomicU64::new(0);

    fn address(slot: usize) -> usize {
        WINDOW + (FIRST + slot) * 4096
    }

    fn lock() {
        // Spin with interrupts on (as spin_lock does): the holder may be waiting for our ack.
        KERNEL.preempt_disable();
        while LOCK
            .compare_exchange(false, true, core::sync::atomic::Ordering::Acquire, Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }

    fn unlock() {
        LOCK.store(false, core::sync::atomic::Ordering::Release);
        KERNEL.preempt_enable();
    }

    fn flush_local() {
        for slot in 0..SLOTS {
            arch::invlpg(address(slot));
        }
    }

    /// The other CPU's side of a global flush.
    pub fn flush_ipi() {
        flush_local();
        FLUSH_ACKS.fetch_add(1, Relaxed);
    }

    /// Map `frame`, reusing its slot if it is already in the pool.
    pub fn kmap(frame: u64) -> usize {
        lock();
        for slot in 0..SLOTS {
            if COUNT[slot].load(Relaxed) > 0 && FRAME[slot].load(Relaxed) == frame {
                COUNT[slot].fetch_add(1, Relaxed);
                unlock();
                return address(slot);
            }
        }
        let slot = loop {
            let slot = NEXT.load(Relaxed) as usize;
            NEXT.store(((slot + 1) % SLOTS) as u32, Relaxed);
            if slot == SLOTS - 1 {
                wrap();
            }
            if COUNT[slot].load(Relaxed) == 0 {
                break slot;
            }
        };
        let pte = KERNEL.make_pte(
            kmap::Frame::new(frame),
            <crate::platform::Kernel as Platform>::KERNEL_PROT,
        );
        WINDOW_PT.0[FIRST + slot].store(pte.raw(), Relaxed);
        FRAME[slot].store(frame, Relaxed);
        COUNT[slot].store(2, Relaxed);
        unlock();
        address(slot)
    }

    /// Release a mapping made by `kmap`.
    pub fn kunmap(address: usize) {
        let slot = (address - WINDOW) / 4096 - FIRST;
        lock();
        COUNT[slot].fetch_sub(1, Relaxed);
        unlock();
    }

    /// The pool wrapped: clear every free slot and flush the TLBs of every CPU.
    fn wrap() {
        WRAPS.fetch_add(1, Relaxed);
        for (slot, count) in COUNT.iter().enumerate() {
            if count.load(Relaxed) == 1 {
                WINDOW_PT.0[FIRST + slot].store(Pte::EMPTY.raw(), Relaxed);
                count.store(0, Relaxed);
            }
        }
        flush_local();
        let request = FLUSH_REQUESTS.fetch_add(1, Relaxed) + 1;
        let other = crate::sched::PERCPU[(percpu().id + 1) % MAX_CPUS]
            .apic_id
            .load(Relaxed);
        apic::send_fixed(other, FLUSH_VECTOR);
        while FLUSH_ACKS.load(Relaxed) < request {
            core::hint::spin_loop();
        }
    }
}
