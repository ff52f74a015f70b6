//! The crate's paths on a platform whose hooks are as cheap as a kernel's can be, each path in a
//! function of its own, so that `valgrind --tool=callgrind --toggle-collect=PATH` counts the
//! instructions of exactly that path. `cargo xtask bench` runs them.
//!
//! `kmap-bench PATH N` runs PATH N times; `kmap-bench --list` names the paths.
//!
//! The platform: one CPU; the current stack is a static; PTEs are stores to a static array;
//! counters are plain increments of statics (a per-CPU variable in a kernel); the TLB
//! invalidation is one store (standing for the one `invlpg`); "in hard IRQ" and "interrupts
//! off" are constants; `point` is the crate's default, empty.

use std::hint::black_box;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use kmap::{Cell, CpuId, Frame, KmapStack, Platform, Prot, Pte, Report, Slot, VirtAddr, raw};

const CELLS: usize = 16;
const WINDOW: usize = 0xFFFF_FF80_0000_0000;
const DIRECT: usize = 0xFFFF_8000_0000_0000;
const LOWMEM_FRAMES: u64 = 1 << 18;
const HIGH: u64 = 1 << 20;
const LOW: u64 = 42;
/// The frames the paths map, read from memory as a caller's `struct page` would be.
static HIGH_FRAME: AtomicU64 = AtomicU64::new(HIGH);
static LOW_FRAME: AtomicU64 = AtomicU64::new(LOW);
static ATOMIC_FRAME: AtomicU64 = AtomicU64::new(HIGH + 1);
static IRQ_FRAME: AtomicU64 = AtomicU64::new(HIGH + 2);

struct Minimal;

static STACK: KmapStack<CELLS> = KmapStack::new();
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: AtomicU64 = AtomicU64::new(0);
static PTES: [AtomicU64; CELLS] = [EMPTY; CELLS];
static PREEMPT: AtomicI32 = AtomicI32::new(0);
static MIGRATE: AtomicI32 = AtomicI32::new(0);
static PAGEFAULT: AtomicI32 = AtomicI32::new(0);
static INVALIDATED: AtomicUsize = AtomicUsize::new(0);

fn bump(counter: &AtomicI32, by: i32) {
    counter.store(counter.load(Relaxed) + by, Relaxed);
}

// SAFETY: the addresses handed out are never dereferenced (only counted), so the promises about
// memory hold vacuously; the stack, slots and counters are consistent statics on one CPU.
unsafe impl Platform for Minimal {
    type Stack = KmapStack<CELLS>;
    const KERNEL_PROT: Prot = Prot::from_raw(2);

    #[inline(always)]
    fn current_cpu(&self) -> CpuId {
        CpuId(0)
    }
    #[inline(always)]
    fn current_stack(&self) -> &KmapStack<CELLS> {
        &STACK
    }
    #[inline(always)]
    fn slot_address(&self, slot: Slot) -> VirtAddr {
        VirtAddr::new(WINDOW + (slot.cpu.0 as usize * CELLS + slot.cell.0) * 4096)
    }
    #[inline(always)]
    fn slot_of(&self, page: VirtAddr) -> Option<Slot> {
        let index = page.as_usize().wrapping_sub(WINDOW) / 4096;
        (index < CELLS).then_some(Slot {
            cpu: CpuId(0),
            cell: Cell(index),
        })
    }
    #[inline(always)]
    fn direct_map(&self, frame: Frame) -> Option<VirtAddr> {
        (frame.pfn() < LOWMEM_FRAMES).then(|| VirtAddr::new(DIRECT + frame.pfn() as usize * 4096))
    }
    #[inline(always)]
    fn make_pte(&self, frame: Frame, prot: Prot) -> Pte {
        Pte::from_raw(frame.pfn() << 12 | prot.raw() | 1)
    }
    #[inline(always)]
    fn read_pte(&self, slot: Slot) -> Pte {
        Pte::from_raw(PTES[slot.cell.0].load(Relaxed))
    }
    #[inline(always)]
    fn install_pte(&self, slot: Slot, pte: Pte) {
        PTES[slot.cell.0].store(pte.raw(), Relaxed)
    }
    #[inline(always)]
    fn clear_pte(&self, slot: Slot) {
        PTES[slot.cell.0].store(0, Relaxed)
    }
    #[inline(always)]
    fn invalidate_local(&self, page: VirtAddr) {
        INVALIDATED.store(page.as_usize(), Relaxed)
    }
    #[inline(always)]
    fn preempt_disable(&self) {
        bump(&PREEMPT, 1)
    }
    #[inline(always)]
    fn preempt_enable(&self) {
        bump(&PREEMPT, -1)
    }
    #[inline(always)]
    fn migrate_disable(&self) {
        bump(&MIGRATE, 1)
    }
    #[inline(always)]
    fn migrate_enable(&self) {
        bump(&MIGRATE, -1)
    }
    #[inline(always)]
    fn pagefault_disable(&self) {
        bump(&PAGEFAULT, 1)
    }
    #[inline(always)]
    fn pagefault_enable(&self) {
        bump(&PAGEFAULT, -1)
    }
    #[inline(always)]
    fn in_hardirq(&self) -> bool {
        false
    }
    #[inline(always)]
    fn irqs_disabled(&self) -> bool {
        false
    }
    #[inline(never)]
    fn report(&self, report: Report) {
        eprintln!("unexpected report: {report:?}");
    }
}

fn map(frame: u64) -> *mut u8 {
    // SAFETY: the pointer is only handed back to unmap, in LIFO order.
    unsafe { raw::map(&Minimal, Frame::new(frame)) }.expect("map")
}

fn unmap(addr: *mut u8) {
    // SAFETY: addr came from map, and mappings are released in LIFO order.
    unsafe { raw::unmap(&Minimal, addr) }.expect("unmap")
}

/// Map `frame`, then unmap what it gave (inlined into each path).
#[inline(always)]
fn map_unmap(frame: &AtomicU64) {
    // SAFETY: the address is only handed back to unmap, at once (LIFO).
    unsafe {
        let addr = raw::map(&Minimal, Frame::new(frame.load(Relaxed))).unwrap_unchecked();
        let _ = raw::unmap(&Minimal, black_box(addr));
    }
}

/// Map and unmap a highmem frame (a slot).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn path_map_unmap_highmem() {
    map_unmap(&HIGH_FRAME)
}

/// Map and unmap a lowmem frame (the fast path: its direct-map address).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn path_map_unmap_lowmem() {
    map_unmap(&LOW_FRAME)
}

/// `kmap_atomic` and `kunmap_atomic` of a highmem frame.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn path_map_unmap_atomic() {
    // SAFETY: as in `map_unmap`.
    unsafe {
        let addr =
            raw::map_atomic(&Minimal, Frame::new(ATOMIC_FRAME.load(Relaxed))).unwrap_unchecked();
        let _ = raw::unmap_atomic(&Minimal, black_box(addr));
    }
}

/// `sched_out` then `sched_in` (the current task keeps whatever it holds).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn path_switch() {
    // SAFETY: a benchmark scheduler: the same task goes out and comes back in on CPU 0.
    unsafe {
        kmap::sched_out(&Minimal);
        kmap::sched_in(&Minimal);
    }
}

/// An interrupt that maps and unmaps one frame on top of the task's mappings.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn path_irq_map_unmap() {
    map_unmap(&IRQ_FRAME)
}

/// `(name, function measured, mappings held meanwhile, what it is)`.
const PATHS: &[(&str, &str, usize, &str)] = &[
    (
        "map-unmap-highmem",
        "path_map_unmap_highmem",
        0,
        "map + unmap of a highmem frame",
    ),
    (
        "map-unmap-lowmem",
        "path_map_unmap_lowmem",
        0,
        "map + unmap of a lowmem frame (fast path)",
    ),
    (
        "map-unmap-atomic",
        "path_map_unmap_atomic",
        0,
        "map_atomic + unmap_atomic of a highmem frame",
    ),
    (
        "switch-0",
        "path_switch",
        0,
        "sched_out + sched_in, no mapping",
    ),
    (
        "switch-1",
        "path_switch",
        1,
        "sched_out + sched_in, 1 mapping",
    ),
    (
        "switch-4",
        "path_switch",
        4,
        "sched_out + sched_in, 4 mappings",
    ),
    (
        "switch-15",
        "path_switch",
        15,
        "sched_out + sched_in, 15 mappings",
    ),
    (
        "irq-on-4",
        "path_irq_map_unmap",
        4,
        "an interrupt's map + unmap on top of 4 mappings",
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--list") {
        for (name, function, _, what) in PATHS {
            println!("{name}\t{function}\t{what}");
        }
        return;
    }
    let (Some(name), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: kmap-bench NAME N | kmap-bench --list");
        std::process::exit(2);
    };
    let Some(&(_, function, held, _)) = PATHS.iter().find(|(p, _, _, _)| p == name) else {
        eprintln!("kmap-bench: no path `{name}` (see --list)");
        std::process::exit(2);
    };
    let holding: Vec<*mut u8> = (0..held as u64).map(|i| map(HIGH + 100 + i)).collect();
    for _ in 0..n {
        match function {
            "path_map_unmap_highmem" => path_map_unmap_highmem(),
            "path_map_unmap_lowmem" => path_map_unmap_lowmem(),
            "path_map_unmap_atomic" => path_map_unmap_atomic(),
            "path_irq_map_unmap" => path_irq_map_unmap(),
            _ => path_switch(),
        }
    }
    for addr in holding.into_iter().rev() {
        unmap(addr);
    }
    assert_eq!(STACK.depth(), 0, "every path left the stack as it found it");
    assert_eq!(
        (
            PREEMPT.load(Relaxed),
            MIGRATE.load(Relaxed),
            PAGEFAULT.load(Relaxed)
        ),
        (0, 0, 0)
    );
}
