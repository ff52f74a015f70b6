//! Helpers shared by the integration tests: the raw API wrapped for tests that only compare
//! addresses, and snapshots of the machine state.
#![allow(dead_code)]

use kmap::{Frame, MapError, Platform, Pte, UnmapError, raw};
use kmap_host::HostPlatform;

/// Highmem frames start here in every test machine.
pub const LOWMEM: u64 = 16;
/// Frames in every test machine.
pub const FRAMES: u64 = 64;

/// One CPU, two tasks.
pub fn machine() -> HostPlatform {
    HostPlatform::new(2, FRAMES, LOWMEM, 3)
}

/// `raw::map` for tests, which never dereference the result.
pub fn map<P: Platform>(p: &P, frame: u64) -> Result<usize, MapError> {
    // SAFETY: tests only compare the address and pass it back to `unmap` in LIFO order.
    unsafe { raw::map(p, Frame::new(frame)) }.map(|a| a as usize)
}

/// `raw::map_pfn` for tests.
pub fn map_pfn<P: Platform>(p: &P, frame: u64) -> Result<usize, MapError> {
    // SAFETY: as in `map`.
    unsafe { raw::map_pfn(p, Frame::new(frame)) }.map(|a| a as usize)
}

/// `raw::map_atomic` for tests.
pub fn map_atomic<P: Platform>(p: &P, frame: u64) -> Result<usize, MapError> {
    // SAFETY: as in `map`.
    unsafe { raw::map_atomic(p, Frame::new(frame)) }.map(|a| a as usize)
}

/// `raw::unmap` for tests.
pub fn unmap<P: Platform>(p: &P, addr: usize) -> Result<(), UnmapError> {
    // SAFETY: nothing dereferences the address afterwards; misuse is what some tests check,
    // and the mechanism refuses it before touching any state.
    unsafe { raw::unmap(p, addr as *const u8) }
}

/// `raw::unmap_any_order` for tests.
pub fn unmap_any_order<P: Platform>(p: &P, addr: usize) -> Result<(), UnmapError> {
    // SAFETY: as in `unmap`.
    unsafe { raw::unmap_any_order(p, addr as *const u8) }
}

/// `raw::unmap_atomic` for tests.
pub fn unmap_atomic<P: Platform>(p: &P, addr: usize) -> Result<(), UnmapError> {
    // SAFETY: as in `unmap`.
    unsafe { raw::unmap_atomic(p, addr as *const u8) }
}

/// Everything observable about a machine: every task's depth and saved PTEs, every slot's PTE,
/// the counters.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct State {
    pub stacks: Vec<(usize, Vec<Pte>)>,
    pub slots: Vec<Vec<Pte>>,
    pub counters: (i32, i32, Vec<i32>),
}

pub fn state<const C: usize, const G: bool, const F: bool, const A: bool>(
    p: &HostPlatform<C, G, F, A>,
    tasks: usize,
    cpus: u32,
) -> State {
    use kmap::Cell;
    State {
        stacks: (0..tasks)
            .map(|t| {
                let s = p.task(t);
                (s.depth(), (0..C).map(|c| s.saved(Cell(c))).collect())
            })
            .collect(),
        slots: (0..cpus)
            .map(|cpu| (0..C).map(|c| p.pte(cpu, c)).collect())
            .collect(),
        counters: (
            p.counter(kmap_host::Counter::Preempt),
            p.counter(kmap_host::Counter::Pagefault),
            (0..tasks).map(|t| p.migrate_count(t)).collect(),
        ),
    }
}

/// A 33-cell host machine seen through the guard-cell layout: for playing the March 2021 bug,
/// where the stacks were written by one layout and switched by the other.
pub struct AsGuarded<'a>(pub &'a HostPlatform<33, false, false>);

// SAFETY: every method delegates to the wrapped platform, which keeps every promise; only the
// layout constant differs, which is not one of the promises.
unsafe impl Platform for AsGuarded<'_> {
    type Stack = kmap::KmapStack<33>;
    const GUARD_CELLS: bool = true;
    const KERNEL_PROT: kmap::Prot = kmap_host::PROT_READ_WRITE;

    fn current_cpu(&self) -> kmap::CpuId {
        self.0.current_cpu()
    }
    fn current_stack(&self) -> &Self::Stack {
        self.0.current_stack()
    }
    fn slot_address(&self, slot: kmap::Slot) -> kmap::VirtAddr {
        self.0.slot_address(slot)
    }
    fn slot_of(&self, page: kmap::VirtAddr) -> Option<kmap::Slot> {
        self.0.slot_of(page)
    }
    fn direct_map(&self, frame: Frame) -> Option<kmap::VirtAddr> {
        self.0.direct_map(frame)
    }
    fn make_pte(&self, frame: Frame, prot: kmap::Prot) -> Pte {
        self.0.make_pte(frame, prot)
    }
    fn read_pte(&self, slot: kmap::Slot) -> Pte {
        self.0.read_pte(slot)
    }
    fn install_pte(&self, slot: kmap::Slot, pte: Pte) {
        self.0.install_pte(slot, pte)
    }
    fn clear_pte(&self, slot: kmap::Slot) {
        self.0.clear_pte(slot)
    }
    fn invalidate_local(&self, page: kmap::VirtAddr) {
        self.0.invalidate_local(page)
    }
    fn preempt_disable(&self) {
        self.0.preempt_disable()
    }
    fn preempt_enable(&self) {
        self.0.preempt_enable()
    }
    fn migrate_disable(&self) {
        self.0.migrate_disable()
    }
    fn migrate_enable(&self) {
        self.0.migrate_enable()
    }
    fn pagefault_disable(&self) {
        self.0.pagefault_disable()
    }
    fn pagefault_enable(&self) {
        self.0.pagefault_enable()
    }
    fn in_hardirq(&self) -> bool {
        self.0.in_hardirq()
    }
    fn irqs_disabled(&self) -> bool {
        self.0.irqs_disabled()
    }
    fn report(&self, report: kmap::Report) {
        self.0.report(report)
    }
    fn point(&self, point: kmap::Point) {
        self.0.point(point)
    }
}
