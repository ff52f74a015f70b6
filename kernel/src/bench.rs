//! Benchmarks in the kernel (`--features bench`), each a ratio of two measurements made in the
//! same boot, because absolute times under software emulation mean little.
//!
//! 1. Scheduling latency, over section lengths: on each CPU a high-priority task sleeps until
//!    the timer wakes it, while three workers run mapped sections of `passes` passes over the
//!    page. With `kmap_atomic`-style sections the wake waits for the section's end (preemption
//!    is off while mapped); with `kmap_local` sections the timer preempts the worker at once.
//!    Latency is the TSC from the wake-up in the timer interrupt to the task running.
//! 2. Throughput, over working sets: the workers of both CPUs map a page, touch it and unmap it,
//!    as fast as they can, cycling through `frames` frames in all, with kmap_local and then
//!    with a global-pool `kmap()` built here only as a baseline, sized and organised as Linux's
//!    (`pool`): `LAST_PKMAP` = 512 slots, one lock, a hash from frame to slot, reference counts,
//!    and on every wrap a flush of the whole TLB of every CPU (an IPI to the other).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use kmap::Local;

use crate::platform::KERNEL;
use crate::sched::{self, percpu};
use crate::workload::Failure;
use crate::{MAX_CPUS, arch, serial};

/// Ticks (of both CPUs together) each phase lasts.
const PHASE_TICKS: u64 = 3_000;
const SAMPLES: usize = 2048;
/// Section lengths of the latency phases, in passes (a pass writes and reads the whole page).
const PASSES: [u32; 5] = [1, 4, 16, 64, 128];
/// Working sets of the throughput phases, in frames over all workers (the pool has 512 slots).
const FRAMES: [u64; 6] = [48, 192, 384, 768, 1536, 3072];
/// Workers (three a CPU).
const WORKERS: u64 = 6;

/// What the workers do now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Sections { atomic: bool, passes: u32 },
    Throughput { pool: bool, frames: u64 },
    Done,
}

/// The phases in order: index 0 is the warm-up.
fn phase_at(index: usize) -> Phase {
    let latency = 2 * PASSES.len();
    match index {
        0 => Phase::Warmup,
        i if i <= latency => Phase::Sections {
            atomic: (i - 1) % 2 == 0,
            passes: PASSES[(i - 1) / 2],
        },
        i if i <= latency + 2 * FRAMES.len() => Phase::Throughput {
            pool: (i - latency - 1) % 2 == 1,
            frames: FRAMES[(i - latency - 1) / 2],
        },
        _ => Phase::Done,
    }
}

const PHASES: usize = 1 + 2 * PASSES.len() + 2 * FRAMES.len();

static PHASE: AtomicUsize = AtomicUsize::new(0);
pub static TICKS: AtomicU64 = AtomicU64::new(0);
static WAKE_TSC: [AtomicU64; MAX_CPUS] = [AtomicU64::new(0), AtomicU64::new(0)];
static SLEEPING: [AtomicBool; MAX_CPUS] = [AtomicBool::new(false), AtomicBool::new(false)];
static OPS: [AtomicU64; PHASES] = [const { AtomicU64::new(0) }; PHASES];
static WRAPS: [AtomicU64; PHASES] = [const { AtomicU64::new(0) }; PHASES];
static MISSES: [AtomicU64; PHASES] = [const { AtomicU64::new(0) }; PHASES];

struct Samples {
    values: [AtomicU64; SAMPLES],
    count: AtomicUsize,
}

static LATENCY: [Samples; PHASES] = [const {
    Samples {
        values: [const { AtomicU64::new(0) }; SAMPLES],
        count: AtomicUsize::new(0),
    }
}; PHASES];

fn phase() -> Phase {
    phase_at(PHASE.load(Relaxed))
}

fn rdtsc() -> u64 {
    // SAFETY: reading the time-stamp counter has no effect.
    unsafe { core::arch::x86_64::_rdtsc() }
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
    if cpu == 0 {
        pool::init();
    }
    let mut phase_start = TICKS.load(Relaxed);
    loop {
        let woke = WAKE_TSC[cpu].swap(0, Relaxed);
        let index = PHASE.load(Relaxed);
        if woke != 0 && matches!(phase_at(index), Phase::Sections { .. }) {
            let samples = &LATENCY[index];
            let at = samples.count.fetch_add(1, Relaxed);
            if at < SAMPLES {
                samples.values[at].store(rdtsc().wrapping_sub(woke), Relaxed);
            }
        }
        if cpu == 0 && TICKS.load(Relaxed) - phase_start > PHASE_TICKS {
            phase_start = TICKS.load(Relaxed);
            PHASE.store(index + 1, Relaxed);
            if phase_at(index + 1) == Phase::Done {
                finish();
            }
        }
        SLEEPING[cpu].store(true, Relaxed);
        sched::schedule();
    }
}

/// A worker: mapped sections in the latency phases, short accesses as fast as it can in the
/// throughput phases.
pub fn worker(task: usize) -> ! {
    // SAFETY: this task's one handle, for its whole life.
    let mut local = unsafe { Local::new(&KERNEL) };
    // SAFETY: only this task takes its pages, once.
    let [a, _, _, _] = unsafe { sched::task_pages(task) };
    let worker = (task - 1 - task / crate::TASKS_PER_CPU) as u64;
    let mut turn = 0;
    loop {
        let index = PHASE.load(Relaxed);
        match phase_at(index) {
            Phase::Warmup | Phase::Done => crate::delay(1_000),
            Phase::Sections {
                atomic: true,
                passes,
            } => {
                let mut mapping = local.map_atomic(a);
                section(mapping.bytes_mut(), passes);
            }
            Phase::Sections {
                atomic: false,
                passes,
            } => {
                let mut mapping = local.map(a);
                section(mapping.bytes_mut(), passes);
            }
            Phase::Throughput {
                pool: false,
                frames,
            } => {
                let frame = rotating(worker, frames, &mut turn);
                // SAFETY: the frame is this worker's alone (see `rotating`); the address is used
                // only until the unmap, which follows at once.
                unsafe {
                    let address = kmap::raw::map(&KERNEL, kmap::Frame::new(frame))
                        .unwrap_or_else(|e| fail(format_args!("benchmark map: {e}")));
                    touch(core::slice::from_raw_parts_mut(address, 4096));
                    if let Err(e) = kmap::raw::unmap(&KERNEL, address) {
                        fail(format_args!("benchmark unmap: {e}"));
                    }
                }
                OPS[index].fetch_add(1, Relaxed);
            }
            Phase::Throughput { pool: true, frames } => {
                let address = pool::kmap(rotating(worker, frames, &mut turn), index);
                // SAFETY: the pool maps the frame at `address` until kunmap; only this worker
                // uses this frame.
                touch(unsafe { core::slice::from_raw_parts_mut(address as *mut u8, 4096) });
                pool::kunmap(address);
                OPS[index].fetch_add(1, Relaxed);
            }
        }
    }
}

fn fail(what: core::fmt::Arguments) -> ! {
    crate::workload::fail(Failure::Crate, what)
}

/// The next of this worker's `frames / WORKERS` frames, in order (each worker has its own).
fn rotating(worker: u64, frames: u64, turn: &mut u64) -> u64 {
    let own = frames / WORKERS;
    *turn = (*turn + 1) % own;
    crate::HIGHMEM_FIRST_FRAME + 1024 + worker * (FRAMES[FRAMES.len() - 1] / WORKERS) + *turn
}

/// A mapped section: `passes` passes of writing and reading the whole page.
fn section(page: &mut [u8], passes: u32) {
    for pass in 0..passes as u64 {
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
                    Failure::WrongWord,
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
                Failure::WrongWord,
                format_args!("benchmark access read {value:#x} at word {word}"),
            );
        }
    }
}

/// Count, median, 99th percentile and worst of a phase's latencies.
fn stats(index: usize, scratch: &mut [u64; SAMPLES]) -> (usize, u64, u64, u64) {
    let samples = &LATENCY[index];
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

/// One `BENCH` line a phase, for `cargo xtask bench` to parse.
fn finish() -> ! {
    arch::disable_interrupts();
    let mut scratch = [0u64; SAMPLES];
    for index in 1..PHASES {
        match phase_at(index) {
            Phase::Sections { atomic, passes } => {
                let (n, p50, p99, worst) = stats(index, &mut scratch);
                serial::print_forced(format_args!(
                    "BENCH latency passes={passes} kind={} samples={n} p50={p50} p99={p99} worst={worst}\n",
                    if atomic { "atomic" } else { "local" }
                ));
            }
            Phase::Throughput { pool, frames } => {
                serial::print_forced(format_args!(
                    "BENCH throughput frames={frames} kind={} ops={} ticks={PHASE_TICKS} misses={} wraps={}\n",
                    if pool { "pool" } else { "local" },
                    OPS[index].load(Relaxed),
                    MISSES[index].load(Relaxed),
                    WRAPS[index].load(Relaxed)
                ));
            }
            Phase::Warmup | Phase::Done => {}
        }
    }
    serial::print_forced(format_args!("RESULT: PASS\n"));
    arch::exit_qemu(arch::EXIT_PASS)
}

/// The baseline: Linux's `kmap()` (mm/highmem.c, `kmap_high`) as reference rule 2.10
/// describes it: `LAST_PKMAP` slots in a page table of their own, one lock (`kmap_lock`),
/// `page_address()` through a hash of 128 buckets (`PA_HASH_ORDER` = 7), reference counts, and
/// `flush_all_zero_pkmaps` on every wrap with a flush of the whole kernel range on every CPU.
pub mod pool {
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

    use kmap::Platform;

    use crate::platform::{KERNEL, PageTable, WINDOW, WINDOW_PD};
    use crate::sched::percpu;
    use crate::{MAX_CPUS, apic};

    /// `LAST_PKMAP` with PAE.
    pub const SLOTS: usize = 512;
    const BUCKETS: usize = 128;
    /// The pool's addresses: the window's second 2 MiB.
    const BASE: usize = WINDOW + 2 * 1024 * 1024;
    pub const FLUSH_VECTOR: u8 = 0x40;
    const NONE: u32 = u32::MAX;

    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: AtomicU64 = AtomicU64::new(0);
    static POOL_PT: PageTable = PageTable([EMPTY; 512]);

    static LOCK: AtomicBool = AtomicBool::new(false);
    /// 0: free and flushed; 1: free, maybe still in a TLB; n: n - 1 users (Linux's pkmap_count).
    static COUNT: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];
    static FRAME: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
    /// The hash: each bucket's first slot, each slot's next in its bucket.
    static HEAD: [AtomicU32; BUCKETS] = [const { AtomicU32::new(NONE) }; BUCKETS];
    static NEXT: [AtomicU32; SLOTS] = [const { AtomicU32::new(NONE) }; SLOTS];
    static LAST: AtomicU32 = AtomicU32::new(0);
    static FLUSH_REQUESTS: AtomicU64 = AtomicU64::new(0);
    static FLUSH_ACKS: AtomicU64 = AtomicU64::new(0);

    /// Hang the pool's page table in the window's page directory (boot CPU, before any worker
    /// runs a throughput phase).
    pub fn init() {
        const PRESENT_WRITABLE: u64 = 3;
        WINDOW_PD.0[1].store(&POOL_PT as *const _ as u64 | PRESENT_WRITABLE, Relaxed);
    }

    fn address(slot: usize) -> usize {
        BASE + slot * 4096
    }

    fn bucket(frame: u64) -> usize {
        (frame.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) as usize % BUCKETS
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

    /// `page_address()`: the slot mapping `frame`, through the hash.
    fn lookup(frame: u64) -> Option<usize> {
        let mut slot = HEAD[bucket(frame)].load(Relaxed);
        while slot != NONE {
            if FRAME[slot as usize].load(Relaxed) == frame {
                return Some(slot as usize);
            }
            slot = NEXT[slot as usize].load(Relaxed);
        }
        None
    }

    fn hash_insert(slot: usize, frame: u64) {
        let head = &HEAD[bucket(frame)];
        NEXT[slot].store(head.load(Relaxed), Relaxed);
        head.store(slot as u32, Relaxed);
    }

    fn hash_remove(slot: usize) {
        let head = &HEAD[bucket(FRAME[slot].load(Relaxed))];
        let next = NEXT[slot].load(Relaxed);
        if head.load(Relaxed) == slot as u32 {
            head.store(next, Relaxed);
            return;
        }
        let mut at = head.load(Relaxed);
        while at != NONE {
            if NEXT[at as usize].load(Relaxed) == slot as u32 {
                NEXT[at as usize].store(next, Relaxed);
                return;
            }
            at = NEXT[at as usize].load(Relaxed);
        }
    }

    /// The other CPU's side of a flush: its whole TLB (`flush_tlb_kernel_range` over the pkmap
    /// range is a full flush on x86: it is beyond the single-page ceiling).
    pub fn flush_ipi() {
        x86_64::instructions::tlb::flush_all();
        FLUSH_ACKS.fetch_add(1, Relaxed);
    }

    /// `kmap_high`: the frame's slot if it has one, else a new one. `phase` counts the wraps.
    pub fn kmap(frame: u64, phase: usize) -> usize {
        lock();
        let slot = match lookup(frame) {
            Some(slot) => slot,
            None => {
                super::MISSES[phase].fetch_add(1, Relaxed);
                map_new_virtual(frame, phase)
            }
        };
        COUNT[slot].fetch_add(1, Relaxed);
        unlock();
        address(slot)
    }

    /// `map_new_virtual`: the next free slot after the last one taken, flushing on a wrap.
    fn map_new_virtual(frame: u64, phase: usize) -> usize {
        let mut scanned = 0;
        let slot = loop {
            let slot = (LAST.load(Relaxed) as usize + 1) % SLOTS;
            LAST.store(slot as u32, Relaxed);
            if slot == 0 {
                flush_all_zero_pkmaps(phase);
            }
            if COUNT[slot].load(Relaxed) == 0 {
                break slot;
            }
            scanned += 1;
            if scanned > 2 * SLOTS {
                // Linux sleeps here for a kunmap; six workers never hold 512 slots.
                crate::workload::fail(
                    crate::workload::Failure::Crate,
                    format_args!("the kmap() pool is full"),
                );
            }
        };
        let pte = KERNEL.make_pte(
            kmap::Frame::new(frame),
            <crate::platform::Kernel as Platform>::KERNEL_PROT,
        );
        POOL_PT.0[slot].store(pte.raw(), Relaxed);
        FRAME[slot].store(frame, Relaxed);
        hash_insert(slot, frame);
        COUNT[slot].store(1, Relaxed);
        slot
    }

    /// `kunmap_high`.
    pub fn kunmap(address: usize) {
        let slot = (address - BASE) / 4096;
        lock();
        COUNT[slot].fetch_sub(1, Relaxed);
        unlock();
    }

    /// Clear every slot no one uses, drop it from the hash, and flush every CPU's TLB.
    fn flush_all_zero_pkmaps(phase: usize) {
        super::WRAPS[phase].fetch_add(1, Relaxed);
        for (slot, count) in COUNT.iter().enumerate() {
            if count.load(Relaxed) == 1 {
                count.store(0, Relaxed);
                POOL_PT.0[slot].store(0, Relaxed);
                hash_remove(slot);
            }
        }
        x86_64::instructions::tlb::flush_all();
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
