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
//!
//! At the end the boot CPU prints one `BENCH` record a phase (`crate::record`) and ends the boot
//! with a pass; `cargo xtask bench` reads the records.

mod pool;

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use kmap::Local;

use crate::arch::apic;
use crate::arch::instructions::{self, rdtsc};
use crate::config::{HIGHMEM_FIRST_FRAME, MAX_CPUS, TASKS_PER_CPU};
use crate::load::Load;
use crate::percpu::{PERCPU, Priority, percpu};
use crate::platform::KERNEL;
use crate::verdict::{self, Failure};
use crate::{record, sched, task};

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
static TICKS: AtomicU64 = AtomicU64::new(0);
static WAKE_TSC: [AtomicU64; MAX_CPUS] = [AtomicU64::new(0), AtomicU64::new(0)];
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

/// The benchmarks, as the kernel runs them.
pub struct Bench;

impl Load for Bench {
    /// The per-CPU figures must not depend on where the workers went.
    const BALANCE: bool = false;

    fn init() {
        pool::init();
        // Each CPU's boot task is its high-priority task, awake until it first sleeps.
        for cpu in &PERCPU {
            cpu.set_priority(Priority::Awake);
        }
    }

    fn boot_task(cpu: usize) -> ! {
        high_priority_task(cpu)
    }

    fn task(task: usize) -> ! {
        worker(task)
    }

    fn timer() {
        tick();
    }

    /// No one sends NMIs in the benchmark build.
    fn nmi() {}

    fn interrupt(vector: u64) -> bool {
        if vector != pool::FLUSH_VECTOR as u64 {
            return false;
        }
        pool::flush_ipi();
        apic::eoi();
        true
    }
}

/// From the timer interrupt: wake this CPU's high-priority task, and ask for a reschedule.
fn tick() {
    TICKS.fetch_add(1, Relaxed);
    let cpu = percpu();
    if cpu.priority() == Priority::Asleep {
        WAKE_TSC[cpu.id].store(rdtsc(), Relaxed);
        cpu.set_priority(Priority::Awake);
        cpu.need_resched.store(true, Relaxed);
    }
}

/// The high-priority task of a CPU (its boot task): measure how long each wake-up took to run,
/// then sleep again. On the boot CPU it also moves the phases on and prints the results.
fn high_priority_task(cpu: usize) -> ! {
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
        PERCPU[cpu].set_priority(Priority::Asleep);
        sched::schedule();
    }
}

/// A worker: mapped sections in the latency phases, short accesses as fast as it can in the
/// throughput phases.
fn worker(task: usize) -> ! {
    // SAFETY: this task's one handle, for its whole life.
    let mut local = unsafe { Local::new(&KERNEL) };
    // SAFETY: only this task takes its pages, once.
    let [a, _, _, _] = unsafe { task::task_pages(task) };
    let worker = (task - 1 - task / TASKS_PER_CPU) as u64;
    let mut turn = 0;
    loop {
        let index = PHASE.load(Relaxed);
        match phase_at(index) {
            Phase::Warmup | Phase::Done => instructions::delay(1_000),
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
    verdict::fail(Failure::Crate, what)
}

/// The next of this worker's `frames / WORKERS` frames, in order (each worker has its own).
fn rotating(worker: u64, frames: u64, turn: &mut u64) -> u64 {
    let own = frames / WORKERS;
    *turn = (*turn + 1) % own;
    HIGHMEM_FIRST_FRAME + 1024 + worker * (FRAMES[FRAMES.len() - 1] / WORKERS) + *turn
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
                verdict::fail(
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
            verdict::fail(
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

/// One `BENCH` record a phase (`{"bench":"latency",…}` or `{"bench":"throughput",…}`), for
/// `cargo xtask bench`, then the end of the boot.
fn finish() -> ! {
    verdict::pass(|| {
        let mut scratch = [0u64; SAMPLES];
        for index in 1..PHASES {
            match phase_at(index) {
                Phase::Sections { atomic, passes } => {
                    let (n, p50, p99, worst) = stats(index, &mut scratch);
                    record::emit("BENCH", |r| {
                        r.str("bench", "latency")
                            .u64("passes", passes as u64)
                            .str("kind", if atomic { "atomic" } else { "local" })
                            .u64("samples", n as u64)
                            .u64("p50", p50)
                            .u64("p99", p99)
                            .u64("worst", worst);
                    });
                }
                Phase::Throughput { pool, frames } => {
                    record::emit("BENCH", |r| {
                        r.str("bench", "throughput")
                            .u64("frames", frames)
                            .str("kind", if pool { "pool" } else { "local" })
                            .u64("ops", OPS[index].load(Relaxed))
                            .u64("ticks", PHASE_TICKS)
                            .u64("misses", MISSES[index].load(Relaxed))
                            .u64("wraps", WRAPS[index].load(Relaxed));
                    });
                }
                Phase::Warmup | Phase::Done => {}
            }
        }
    })
}
