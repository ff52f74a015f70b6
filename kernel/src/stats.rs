//! What the workload did, counted where it happens, and reported as one `REPORT` record (every
//! `REPORT_TICKS` ticks, at the end, and in a failure's report): a passing boot means something
//! only if it verified many accesses, preempted many tasks holding mappings, took many NMIs. And
//! the instruction addresses NMIs interrupted, for `cargo xtask kernel --coverage`.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use kmap::{Cell, KmapStack, Pte};

use crate::config::CELLS;
use crate::percpu::PERCPU;
use crate::record;

pub static ACCESSES: AtomicU64 = AtomicU64::new(0);
pub static PREEMPTIONS: AtomicU64 = AtomicU64::new(0);
pub static PREEMPTIONS_HOLDING: AtomicU64 = AtomicU64::new(0);
pub static YIELDS_HOLDING: AtomicU64 = AtomicU64::new(0);
pub static COPIES: AtomicU64 = AtomicU64::new(0);
/// Mappings released below the top (each left a hole), and rounds that did so.
pub static HOLES: AtomicU64 = AtomicU64::new(0);
pub static UNORDERED_ROUNDS: AtomicU64 = AtomicU64::new(0);
/// Preemptions of a task whose stack had a hole.
pub static PREEMPTIONS_WITH_HOLES: AtomicU64 = AtomicU64::new(0);
pub static IRQ_MAPS: AtomicU64 = AtomicU64::new(0);
pub static NMI_MAPS: AtomicU64 = AtomicU64::new(0);
pub static NMIS_IN_SCHED_IN: AtomicU64 = AtomicU64::new(0);
pub static NMIS_IN_SWAP: AtomicU64 = AtomicU64::new(0);
pub static TICKS: AtomicU64 = AtomicU64::new(0);
pub static MIGRATIONS: AtomicU64 = AtomicU64::new(0);

/// A preemption of the current task, whose stack is `stack`.
pub fn count_preemption(stack: &KmapStack<CELLS>) {
    PREEMPTIONS.fetch_add(1, Relaxed);
    let depth = stack.depth();
    if depth > 0 {
        PREEMPTIONS_HOLDING.fetch_add(1, Relaxed);
    }
    if (0..depth).any(|cell| stack.saved(Cell(cell)) == Pte::HOLE) {
        PREEMPTIONS_WITH_HOLES.fetch_add(1, Relaxed);
    }
}

/// The `REPORT` record: every counter, and each CPU's switches, NMIs and run queue.
pub fn report() {
    record::emit("REPORT", |r| {
        let switches: u64 = PERCPU.iter().map(|c| c.switches.load(Relaxed)).sum();
        r.u64("accesses", ACCESSES.load(Relaxed))
            .u64("switches", switches)
            .u64("preemptions", PREEMPTIONS.load(Relaxed))
            .u64("preemptions_holding", PREEMPTIONS_HOLDING.load(Relaxed))
            .u64("yields_holding", YIELDS_HOLDING.load(Relaxed))
            .u64("copies", COPIES.load(Relaxed))
            .u64("unordered_rounds", UNORDERED_ROUNDS.load(Relaxed))
            .u64("holes", HOLES.load(Relaxed))
            .u64(
                "preemptions_with_holes",
                PREEMPTIONS_WITH_HOLES.load(Relaxed),
            )
            .u64("irq_maps", IRQ_MAPS.load(Relaxed))
            .u64("nmi_maps", NMI_MAPS.load(Relaxed))
            .u64("nmis_in_sched_in", NMIS_IN_SCHED_IN.load(Relaxed))
            .u64("nmis_in_swap", NMIS_IN_SWAP.load(Relaxed))
            .u64("migrations", MIGRATIONS.load(Relaxed))
            .u64("ticks", TICKS.load(Relaxed))
            .objects("cpus", &PERCPU, |c, cpu| {
                c.u64("cpu", cpu.id as u64)
                    .u64("switches", cpu.switches.load(Relaxed))
                    .u64("nmis", cpu.nmis.load(Relaxed))
                    .u64("queue", cpu.queue.load(Relaxed) as u64);
            });
    });
}

/// Distinct instruction addresses NMIs interrupted, for `xtask` to resolve against the
/// kernel's symbols (which of them lie in the crate's paths). Open addressing, never removed.
static NMI_RIPS: [AtomicU64; 4096] = [const { AtomicU64::new(0) }; 4096];
static NMI_RIPS_LOST: AtomicU64 = AtomicU64::new(0);
/// Addresses a `NMI-RIPS` record carries.
const RIPS_A_RECORD: usize = 32;

/// From the NMI handler: remember the interrupted instruction's address.
pub fn record_nmi_rip(rip: u64) {
    let mut i = (rip.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize;
    for _ in 0..NMI_RIPS.len() {
        match NMI_RIPS[i].compare_exchange(0, rip, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(seen) if seen == rip => return,
            Err(_) => i = (i + 1) % NMI_RIPS.len(),
        }
    }
    NMI_RIPS_LOST.fetch_add(1, Relaxed);
}

/// `NMI-RIPS` records: `{"rips":[…]}` with every recorded address, `RIPS_A_RECORD` a record,
/// then `{"rips":[],"lost":N}` with how many did not fit.
pub fn report_nmi_rips() {
    let mut chunk = [0u64; RIPS_A_RECORD];
    let mut n = 0;
    let flush = |rips: &[u64]| {
        record::emit("NMI-RIPS", |r| {
            r.u64s("rips", rips.iter().copied());
        })
    };
    for rip in NMI_RIPS.iter().map(|r| r.load(Relaxed)).filter(|&r| r != 0) {
        chunk[n] = rip;
        n += 1;
        if n == chunk.len() {
            flush(&chunk);
            n = 0;
        }
    }
    if n > 0 {
        flush(&chunk[..n]);
    }
    record::emit("NMI-RIPS", |r| {
        r.u64s("rips", []).u64("lost", NMI_RIPS_LOST.load(Relaxed));
    });
}
