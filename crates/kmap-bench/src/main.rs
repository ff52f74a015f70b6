//! The crate's paths on a platform whose hooks are as cheap as a kernel's can be, each path in a
//! function of its own, so that `valgrind --tool=callgrind --toggle-collect=PATH` counts the
//! instructions of exactly that path. `cargo xtask bench` runs them.
//!
//! `kmap-bench PATH N` runs PATH N times; `kmap-bench --list` names the paths.
//!
//! The platform: one CPU; the current stack is a static; PTEs are stores to a static array;
//! counters are plain increments of statics (a per-CPU variable in a kernel); the TLB
//! invalidation is one store (standing for the one `invlpg`); "in hard IRQ" and "interrupts
//! off" are constants; `point` is the crate's default, empty. The same platform with
//! `RELEASE_ANY_ORDER` on measures the paths of release in any order.

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

/// The platform; `ANY` is its `RELEASE_ANY_ORDER`.
struct Minimal<const ANY: bool>;
/// The platform as most kernels would be: LIFO release only.
const LIFO: Minimal<false> = Minimal;
/// The same platform releasing in any order.
const ANY_ORDER: Minimal<true> = Minimal;

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
// memory hold vacuously; the stack, slots and counters are consistent statics on one CPU; a PTE
// is never all ones (Pte::HOLE): the frames are below 2^21 and `prot` is masked to 12 bits.
unsafe impl<const ANY: bool> Platform for Minimal<ANY> {
    type Stack = KmapStack<CELLS>;
    const KERNEL_PROT: Prot = Prot::from_raw(2);
    const RELEASE_ANY_ORDER: bool = ANY;

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
        Pte::from_raw(frame.pfn() << 12 | (prot.raw() & 0xFFF) | 1)
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
    unsafe { raw::map(&LIFO, Frame::new(frame)) }.expect("map")
}

fn unmap(addr: *mut u8) {
    // SAFETY: addr came from map, and mappings are released in LIFO order.
    unsafe { raw::unmap(&LIFO, addr) }.expect("unmap")
}

/// Map `frame`, then unmap what it gave (inlined into each path).
#[inline(always)]
fn map_unmap(frame: &AtomicU64) {
    // SAFETY: the address is only handed back to unmap, at once (LIFO).
    unsafe {
        let addr = raw::map(&LIFO, Frame::new(frame.load(Relaxed))).unwrap_unchecked();
        let _ = raw::unmap(&LIFO, black_box(addr));
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
            raw::map_atomic(&LIFO, Frame::new(ATOMIC_FRAME.load(Relaxed))).unwrap_unchecked();
        let _ = raw::unmap_atomic(&LIFO, black_box(addr));
    }
}

/// `sched_out` then `sched_in` (the current task keeps whatever it holds).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn path_switch() {
    // SAFETY: a benchmark scheduler: the same task goes out and comes back in on CPU 0.
    unsafe {
        kmap::sched_out(&LIFO);
        kmap::sched_in(&LIFO);
    }
}

/// An interrupt that maps and unmaps one frame on top of the task's mappings.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn path_irq_map_unmap() {
    map_unmap(&IRQ_FRAME)
}

/// Map and unmap a highmem frame (LIFO, `raw::map` and `raw::unmap`) on the platform that
/// releases in any order: what the lazy pop's look beneath the top costs the LIFO path.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn path_map_unmap_highmem_any_order() {
    // SAFETY: as in `map_unmap`.
    unsafe {
        let addr = raw::map(&ANY_ORDER, Frame::new(HIGH_FRAME.load(Relaxed))).unwrap_unchecked();
        let _ = raw::unmap(&ANY_ORDER, black_box(addr));
    }
}

/// `raw::unmap_any_order` of `addr`, wherever it is on the stack (the caller sets the scene).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn path_release(addr: *mut u8) {
    // SAFETY: addr is a live mapping of this context; nothing uses it afterwards.
    let _ = unsafe { raw::unmap_any_order(&ANY_ORDER, black_box(addr)) };
}

/// `sched_out` then `sched_in` on the platform that releases in any order.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn path_switch_any_order() {
    // SAFETY: as in `path_switch`.
    unsafe {
        kmap::sched_out(&ANY_ORDER);
        kmap::sched_in(&ANY_ORDER);
    }
}

fn map_any(frame: u64) -> *mut u8 {
    // SAFETY: the pointer is only handed back to an unmap of the same platform.
    unsafe { raw::map(&ANY_ORDER, Frame::new(frame)) }.expect("map")
}

fn release(addr: *mut u8) {
    // SAFETY: addr is a live mapping of this context.
    unsafe { raw::unmap_any_order(&ANY_ORDER, addr) }.expect("release")
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
    (
        "map-unmap-highmem-any-order",
        "path_map_unmap_highmem_any_order",
        0,
        "map + unmap of a highmem frame, on a platform that releases in any order",
    ),
    (
        "release-top-no-hole",
        "path_release",
        0,
        "unmap_any_order of the top, no hole beneath (map not counted)",
    ),
    (
        "release-top-one-hole",
        "path_release",
        0,
        "unmap_any_order of the top, popping one hole beneath it",
    ),
    (
        "release-below-top",
        "path_release",
        0,
        "unmap_any_order of a mapping below the top (leaves a hole)",
    ),
    (
        "switch-4-two-holes",
        "path_switch_any_order",
        0,
        "sched_out + sched_in, 4 cells of which 2 are holes",
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
    // Four cells, the middle two holes.
    let holes = (name == "switch-4-two-holes").then(|| {
        let cells: Vec<*mut u8> = (0..4).map(|i| map_any(HIGH + 100 + i)).collect();
        release(cells[1]);
        release(cells[2]);
        (cells[0], cells[3])
    });
    let (a, b) = (HIGH + 200, HIGH + 201);
    for _ in 0..n {
        // The scene is set outside the measured function.
        match name.as_str() {
            "release-top-no-hole" => path_release(map_any(a)),
            "release-top-one-hole" => {
                let below = map_any(a);
                let top = map_any(b);
                release(below);
                path_release(top);
            }
            "release-below-top" => {
                let below = map_any(a);
                let top = map_any(b);
                path_release(below);
                release(top);
            }
            _ => match function {
                "path_map_unmap_highmem" => path_map_unmap_highmem(),
                "path_map_unmap_lowmem" => path_map_unmap_lowmem(),
                "path_map_unmap_atomic" => path_map_unmap_atomic(),
                "path_irq_map_unmap" => path_irq_map_unmap(),
                "path_map_unmap_highmem_any_order" => path_map_unmap_highmem_any_order(),
                "path_switch_any_order" => path_switch_any_order(),
                _ => path_switch(),
            },
        }
    }
    if let Some((bottom, top)) = holes {
        release(bottom);
        release(top);
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
