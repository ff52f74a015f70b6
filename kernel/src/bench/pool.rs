//! The baseline: Linux's `kmap()` (mm/highmem.c, `kmap_high`) as reference rule 2.10
//! describes it: `LAST_PKMAP` slots in a page table of their own, one lock (`kmap_lock`),
//! `page_address()` through a hash of 128 buckets (`PA_HASH_ORDER` = 7), reference counts, and
//! `flush_all_zero_pkmaps` on every wrap with a flush of the whole kernel range on every CPU.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use kmap::Platform;

use crate::arch::{apic, instructions};
use crate::percpu::{other, percpu};
use crate::platform::{KERNEL, Kernel, PageTable, WINDOW, WINDOW_PD};
use crate::verdict::{Failure, fail};

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
    instructions::flush_tlb();
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
            fail(Failure::Crate, format_args!("the kmap() pool is full"));
        }
    };
    let pte = KERNEL.make_pte(kmap::Frame::new(frame), <Kernel as Platform>::KERNEL_PROT);
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
    instructions::flush_tlb();
    let request = FLUSH_REQUESTS.fetch_add(1, Relaxed) + 1;
    apic::send_fixed(other(percpu().id).apic_id.load(Relaxed), FLUSH_VECTOR);
    while FLUSH_ACKS.load(Relaxed) < request {
        core::hint::spin_loop();
    }
}
