//! The crate, plugged into the machine.
//!
//! The crate's stack size, guard cells and force-map are compile-time constants of a
//! [`Platform`], while a scenario chooses them at run time. So this module is the one generic
//! layer: [`SimPlatform`] implements `Platform` by delegating every method to the (non-generic)
//! machine through [`Hardware`], and [`KmapOps`] is the object through which the machine calls the crate's real
//! map, unmap and switch code for the layout a run asked for. Everything else in the simulator
//! is compiled once.

use std::any::Any;

use kmap::{
    Cell, Checkpoint, CpuId, Frame, KmapStack, MapError, MappingsHeld, Platform, Point, Prot, Pte,
    Report, Slot, UnmapError, VirtAddr,
};

mod guards;

pub use guards::End;
pub(crate) use guards::NoneHeld;
pub use guards::{Guard, Release, ScopeMap};

/// A counter the platform keeps for the crate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Counter {
    /// The CPU's preemption count.
    Preempt,
    /// The task's migration-disable count.
    Migrate,
    /// The CPU's page-fault-disable count.
    Pagefault,
}

/// Which of the crate's map entry points a program's operation calls.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapKind {
    /// `raw::map` (`kmap_local_page`).
    Page,
    /// `raw::map_pfn` (`kmap_local_pfn`): always a slot.
    Pfn,
    /// `raw::map_atomic` (`kmap_atomic`).
    Atomic,
}

/// What an implementation needs of the machine underneath: the hardware facts and actions of
/// [`Platform`], in the crate's own types, and for foreign code its arrival points and its
/// verdicts. The machine implements it; this module needs nothing else of the machine, so the
/// machine depends on the crate's adapter and not the other way.
pub trait Hardware {
    /// The crate called this platform method (for the trace).
    fn call(&self, name: &'static str);
    /// The executing CPU, as the crate reads it.
    fn read_cpu(&self) -> CpuId;
    /// The current task's stack.
    fn current_stack(&self) -> &dyn DynStack;
    /// Where things are in the address space.
    fn layout(&self) -> Layout;
    /// Whether the kernel has Linux's `BUG_ON(!pte_none)` (see `Mutation::NoBugOn`).
    fn bug_on(&self) -> bool;
    /// The PTE of a slot.
    fn read_pte(&self, slot: Slot) -> Pte;
    /// Write it.
    fn install_pte(&self, slot: Slot, pte: Pte);
    /// Clear it.
    fn clear_pte(&self, slot: Slot);
    /// Invalidate the executing CPU's TLB entry for the page of `addr`.
    fn invalidate_local(&self, addr: VirtAddr);
    /// Move a counter.
    fn count(&self, counter: Counter, delta: i32);
    /// Whether the executing CPU is in an interrupt or NMI handler.
    fn in_interrupt(&self) -> bool;
    /// Whether interrupts are off on the executing CPU.
    fn irqs_disabled(&self) -> bool;
    /// The crate reported something.
    fn report(&self, report: Report);
    /// An arrival point of the crate.
    fn point(&self, point: Point);
    /// An arrival point of foreign code.
    fn foreign_point(&self, point: crate::implementation::ForeignPoint);
    /// Foreign code warned (Linux's `WARN_ON_ONCE`): a hazard, a violation under strict
    /// checking.
    fn warn(&self, message: String);
    /// Foreign code stopped the machine (Linux's `BUG_ON`): a crash. The context is suspended
    /// for good; this returns only where nothing can be suspended (the scheduler's code on the
    /// driver's own stack), and the caller must then not go on with the code that crashed.
    fn bug(&self, message: String);
}

/// Stack sizes (cells per task) the simulator is built for.
pub const SUPPORTED_CELLS: &[usize] = &[1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 33];

/// The most cells of a stack the simulator is built for.
pub const MAX_CELLS: usize = 33;

const _: () = {
    let mut i = 0;
    while i < SUPPORTED_CELLS.len() {
        assert!(SUPPORTED_CELLS[i] <= MAX_CELLS);
        i += 1;
    }
};

/// Page size of the simulated machine.
pub const PAGE_SIZE: usize = 4096;
/// Frame `f` of lowmem is at `DIRECT_MAP + f * PAGE_SIZE`.
pub const DIRECT_MAP: usize = 0x1_0000_0000;
/// The kmap window: CPU `c`'s cell `i` is at `WINDOW + (c * cells + i) * PAGE_SIZE` (or, for
/// Linux's code, at `FIXMAP_TOP - (c * cells + i) * PAGE_SIZE`).
pub const WINDOW: usize = 0x10_0000_0000;
/// The top of the fixmap Linux's code maps into: `__fix_to_virt(FIX_KMAP_BEGIN)`, with room
/// below it down to `WINDOW` for the most CPUs (8) times the most cells (33).
pub const FIXMAP_TOP: usize = WINDOW + (8 * MAX_CELLS - 1) * PAGE_SIZE;
/// PTE bit: present.
pub const PTE_PRESENT: u64 = 1;
/// PTE bit: writable.
pub const PTE_WRITE: u64 = 2;

/// Where things are in the simulated address space: the direct map of lowmem and the kmap
/// window of `cpus × cells` slots. The crate's platform and the MMU both read addresses
/// through it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Layout {
    /// CPUs.
    pub cpus: usize,
    /// Cells per stack (slots per CPU).
    pub cells: usize,
    /// Frames below this are direct-mapped.
    pub lowmem: u64,
    /// The slots are laid out as Linux's fixmap, down from [`FIXMAP_TOP`] (slot `i` of the
    /// window at `FIXMAP_TOP - i * PAGE_SIZE`), for Linux's code, which computes its addresses
    /// itself; else up from [`WINDOW`].
    pub fixmap: bool,
}

impl Layout {
    /// The layout of a machine with `settings`.
    pub(crate) fn of(settings: &crate::Settings) -> Layout {
        Layout {
            cpus: settings.cpus,
            cells: settings.cells,
            lowmem: settings.lowmem,
            fixmap: settings.implementation == crate::settings::Implementation::Linux,
        }
    }

    /// The slot's place in the window (and in the page table).
    pub(crate) fn index(&self, slot: Slot) -> usize {
        slot.cpu.0 as usize * self.cells + slot.cell.0
    }

    /// The slot at place `index` of the window.
    pub(crate) fn slot(&self, index: usize) -> Slot {
        Slot {
            cpu: CpuId((index / self.cells) as u32),
            cell: Cell(index % self.cells),
        }
    }

    /// The virtual address of a slot.
    pub fn slot_address(&self, slot: Slot) -> VirtAddr {
        if self.fixmap {
            VirtAddr::new(FIXMAP_TOP - self.index(slot) * PAGE_SIZE)
        } else {
            VirtAddr::new(WINDOW + self.index(slot) * PAGE_SIZE)
        }
    }

    /// The slot whose page holds `addr`, if it is in the window.
    pub fn slot_of(&self, addr: VirtAddr) -> Option<Slot> {
        let index = if self.fixmap {
            let page = addr.as_usize().checked_sub(WINDOW)? / PAGE_SIZE;
            ((FIXMAP_TOP - WINDOW) / PAGE_SIZE).checked_sub(page)?
        } else {
            addr.as_usize().checked_sub(WINDOW)? / PAGE_SIZE
        };
        (index < self.cpus * self.cells).then(|| self.slot(index))
    }

    /// The lowmem frame whose direct mapping holds `addr`, if any.
    pub(crate) fn direct_frame(&self, addr: VirtAddr) -> Option<Frame> {
        let pfn = (addr.as_usize().checked_sub(DIRECT_MAP)? / PAGE_SIZE) as u64;
        (pfn < self.lowmem).then(|| Frame::new(pfn))
    }

    /// The direct-map address of a lowmem frame.
    pub fn direct_map(&self, frame: Frame) -> Option<VirtAddr> {
        (frame.pfn() < self.lowmem)
            .then(|| VirtAddr::new(DIRECT_MAP + frame.pfn() as usize * PAGE_SIZE))
    }
}

/// The frame a PTE of this machine maps.
pub fn pte_frame(pte: Pte) -> Frame {
    Frame::new(pte.raw() >> 12)
}

/// The flags of a PTE of this machine (below its frame number, see `make_pte`).
pub(crate) fn pte_flags(pte: Pte) -> u64 {
    pte.raw() & 0xfff
}

/// A task's [`KmapStack`], whatever its size, as the machine inspects it.
pub trait DynStack: Any {
    /// `idx`.
    fn depth(&self) -> usize;
    /// `idx` as the stack holds it, even outside the stack (foreign code may leave any value:
    /// [`depth`](Self::depth) is then clamped to the stack's bounds).
    fn raw_idx(&self) -> i64 {
        self.depth() as i64
    }
    /// The saved PTE of a cell.
    fn saved(&self, cell: Cell) -> Pte;
    /// The number of cells.
    fn cells(&self) -> usize;
    /// The CPU the live cells were mapped on, if there are any.
    fn home(&self) -> Option<CpuId>;
    /// The concrete stack, for the crate's platform to reach its own `KmapStack`.
    fn as_any(&self) -> &dyn Any;
    /// Everything the stack holds ([`kmap::StackState`]), to put back with [`restore`](Self::restore).
    fn save(&self) -> Box<dyn Any>;
    /// Put back what [`save`](Self::save) returned.
    ///
    /// # Safety
    ///
    /// As for [`KmapStack::restore`]: `saved` came from this stack in this execution, and the
    /// machine is put back to that moment too.
    unsafe fn restore(&self, saved: &dyn Any);
}

impl<const C: usize> DynStack for KmapStack<C> {
    fn depth(&self) -> usize {
        KmapStack::depth(self)
    }
    fn saved(&self, cell: Cell) -> Pte {
        KmapStack::saved(self, cell)
    }
    fn cells(&self) -> usize {
        C
    }
    fn home(&self) -> Option<CpuId> {
        self.home_cpu()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn save(&self) -> Box<dyn Any> {
        Box::new(self.state())
    }
    unsafe fn restore(&self, saved: &dyn Any) {
        let state = saved
            .downcast_ref::<kmap::StackState<C>>()
            .expect("saved from a stack of the same layout");
        // SAFETY: the caller's obligations are `KmapStack::restore`'s.
        unsafe { KmapStack::restore(self, state) }
    }
}

/// The crate's entry points, for the layout of one run.
pub trait KmapOps {
    /// `raw::map` / `map_pfn` / `map_atomic`.
    fn map(&self, m: &dyn Hardware, frame: Frame, kind: MapKind) -> Result<VirtAddr, MapError>;
    /// `raw::unmap` / `unmap_atomic`.
    fn unmap(&self, m: &dyn Hardware, addr: VirtAddr, atomic: bool) -> Result<(), UnmapError>;
    /// `raw::unmap_any_order` (only for a run with `release = "any"`).
    fn unmap_any_order(&self, m: &dyn Hardware, addr: VirtAddr) -> Result<(), UnmapError>;
    /// `sched_out`.
    fn sched_out(&self, m: &dyn Hardware);
    /// `sched_in`.
    fn sched_in(&self, m: &dyn Hardware);
    /// `KmapStack::fork` of the current task's stack.
    fn fork(&self, m: &dyn Hardware) -> Box<dyn DynStack>;
    /// `assert_no_mappings`.
    fn assert_no_mappings(&self, m: &dyn Hardware, at: Checkpoint) -> Result<(), MappingsHeld>;
    /// A new, empty stack.
    fn new_stack(&self) -> Box<dyn DynStack>;
    /// Run `body` with a [`kmap::Local`] of the current context (the safe API), dropped when
    /// `body` returns.
    fn with_local(&self, m: &dyn Hardware, body: &mut dyn FnMut(&mut dyn Guard));
    /// Run `body` in a [`kmap::Scope`] of a [`kmap::Local`] of the current context, both
    /// dropped when `body` returns, and `between` after the `Scope`'s drop and before the
    /// `Local`'s (only in a run that releases in any order).
    fn with_scope(
        &self,
        m: &dyn Hardware,
        body: &mut dyn FnMut(&dyn ScopeMap),
        between: &mut dyn FnMut(),
    );
    /// The 2020 RFC's one-step switch (`rfc-v1`: prev's slots cleared, next's installed,
    /// `current` still prev), if the implementation has its own: Linux's code runs its
    /// `kmap_switch_temporary`; `false` (the crate, which has none) lets the machine run its
    /// model of it.
    fn switch_temporary(&self, m: &dyn Hardware, prev: &dyn DynStack, next: &dyn DynStack) -> bool {
        let _ = (m, prev, next);
        false
    }
}

/// The machine as a `Platform` with `C` cells, guard cells `G`, force-map `F` and release in
/// any order `A`.
pub struct SimPlatform<'m, const C: usize, const G: bool, const F: bool, const A: bool>(
    pub &'m dyn Hardware,
);

// SAFETY: the machine models every promised fact: (1) `cpu()` is the executing CPU and
// `current_stack` the current task's stack (fixed for the task's life, in `Machine::stacks`);
// (2) slots are distinct pages of WINDOW and `slot_of` inverts `slot_address`; (3) accesses go
// through the modelled MMU, which reaches the installed frame; (4) PTEs have PTE_PRESENT, and frame numbers below 2^20 never make all ones (Pte::HOLE);
// (5) lowmem is the permanent direct map; (6)-(7) the scheduler honours the counters and calls
// the hooks per protocol. The crate never dereferences the addresses in the simulator: every
// access is made by the machine through its MMU, so a broken protocol shows up as a wrong
// frame or a fault, never as host memory corruption.
unsafe impl<const C: usize, const G: bool, const F: bool, const A: bool> Platform
    for SimPlatform<'_, C, G, F, A>
{
    type Stack = KmapStack<C>;
    const GUARD_CELLS: bool = G;
    const FORCE_MAP: bool = F;
    const RELEASE_ANY_ORDER: bool = A;
    const PAGE_SIZE: usize = PAGE_SIZE;
    const KERNEL_PROT: Prot = Prot::from_raw(PTE_WRITE);

    fn current_cpu(&self) -> CpuId {
        self.0.call("current_cpu");
        self.0.read_cpu()
    }

    fn current_stack(&self) -> &KmapStack<C> {
        self.0.call("current_stack");
        self.0
            .current_stack()
            .as_any()
            .downcast_ref()
            .expect("every stack of a run has the run's layout")
    }

    fn slot_address(&self, slot: Slot) -> VirtAddr {
        self.0.layout().slot_address(slot)
    }

    fn slot_of(&self, page: VirtAddr) -> Option<Slot> {
        self.0.layout().slot_of(page)
    }

    fn direct_map(&self, frame: Frame) -> Option<VirtAddr> {
        self.0.layout().direct_map(frame)
    }

    fn make_pte(&self, frame: Frame, prot: Prot) -> Pte {
        Pte::from_raw(frame.pfn() << 12 | (prot.raw() & PTE_WRITE) | PTE_PRESENT)
    }

    fn read_pte(&self, slot: Slot) -> Pte {
        self.0.call("read_pte");
        // Without the BUG_ON, the crate's "slot must be free" check sees every slot free.
        if self.0.bug_on() {
            self.0.read_pte(slot)
        } else {
            Pte::EMPTY
        }
    }

    fn install_pte(&self, slot: Slot, pte: Pte) {
        self.0.call("install_pte");
        self.0.install_pte(slot, pte)
    }

    fn clear_pte(&self, slot: Slot) {
        self.0.call("clear_pte");
        self.0.clear_pte(slot)
    }

    fn invalidate_local(&self, page: VirtAddr) {
        self.0.call("invalidate_local");
        self.0.invalidate_local(page)
    }

    fn preempt_disable(&self) {
        self.0.call("preempt_disable");
        self.0.count(Counter::Preempt, 1)
    }
    fn preempt_enable(&self) {
        self.0.call("preempt_enable");
        self.0.count(Counter::Preempt, -1)
    }
    fn migrate_disable(&self) {
        self.0.call("migrate_disable");
        self.0.count(Counter::Migrate, 1)
    }
    fn migrate_enable(&self) {
        self.0.call("migrate_enable");
        self.0.count(Counter::Migrate, -1)
    }
    fn pagefault_disable(&self) {
        self.0.call("pagefault_disable");
        self.0.count(Counter::Pagefault, 1)
    }
    fn pagefault_enable(&self) {
        self.0.call("pagefault_enable");
        self.0.count(Counter::Pagefault, -1)
    }

    fn in_hardirq(&self) -> bool {
        self.0.call("in_hardirq");
        self.0.in_interrupt()
    }

    fn irqs_disabled(&self) -> bool {
        self.0.call("irqs_disabled");
        self.0.irqs_disabled()
    }

    fn report(&self, report: Report) {
        self.0.report(report)
    }

    fn point(&self, point: Point) {
        self.0.point(point)
    }
}

struct Ops<const C: usize, const G: bool, const F: bool, const A: bool>;

impl<const C: usize, const G: bool, const F: bool, const A: bool> KmapOps for Ops<C, G, F, A> {
    fn map(&self, m: &dyn Hardware, frame: Frame, kind: MapKind) -> Result<VirtAddr, MapError> {
        let p = SimPlatform::<C, G, F, A>(m);
        // SAFETY: the simulator never dereferences the pointer (see the Platform impl); LIFO
        // order is the program's business, and misuse is refused by the crate.
        let result = unsafe {
            match kind {
                MapKind::Page => kmap::raw::map(&p, frame),
                MapKind::Pfn => kmap::raw::map_pfn(&p, frame),
                MapKind::Atomic => kmap::raw::map_atomic(&p, frame),
            }
        };
        result.map(|addr| VirtAddr::new(addr as usize))
    }

    fn unmap(&self, m: &dyn Hardware, addr: VirtAddr, atomic: bool) -> Result<(), UnmapError> {
        let p = SimPlatform::<C, G, F, A>(m);
        // SAFETY: as in `map`.
        unsafe {
            if atomic {
                kmap::raw::unmap_atomic(&p, addr.as_ptr())
            } else {
                kmap::raw::unmap(&p, addr.as_ptr())
            }
        }
    }

    fn unmap_any_order(&self, m: &dyn Hardware, addr: VirtAddr) -> Result<(), UnmapError> {
        any_order_unmap::<C, G, F, A>(m, addr)
    }

    fn sched_out(&self, m: &dyn Hardware) {
        // SAFETY: called by the machine's scheduler in prepare-switch with current = prev.
        unsafe { kmap::sched_out(&SimPlatform::<C, G, F, A>(m)) }
    }

    fn sched_in(&self, m: &dyn Hardware) {
        // SAFETY: called by the machine's scheduler in finish-switch with current = next.
        unsafe { kmap::sched_in(&SimPlatform::<C, G, F, A>(m)) }
    }

    fn fork(&self, m: &dyn Hardware) -> Box<dyn DynStack> {
        let p = SimPlatform::<C, G, F, A>(m);
        Box::new(p.current_stack().fork(&p))
    }

    fn assert_no_mappings(&self, m: &dyn Hardware, at: Checkpoint) -> Result<(), MappingsHeld> {
        kmap::assert_no_mappings(&SimPlatform::<C, G, F, A>(m), at)
    }

    fn new_stack(&self) -> Box<dyn DynStack> {
        Box::new(KmapStack::<C>::new())
    }

    fn with_local(&self, m: &dyn Hardware, body: &mut dyn FnMut(&mut dyn Guard)) {
        let p = SimPlatform::<C, G, F, A>(m);
        // SAFETY: the interpreter makes one `Local` per context, at the start of a program in
        // the safe API, and this one is dropped when `body` returns, before the context ends
        // (a task's exit, a handler's return), in that context.
        let mut local = unsafe { kmap::Local::new(&p) };
        body(&mut local);
    }

    fn with_scope(
        &self,
        m: &dyn Hardware,
        body: &mut dyn FnMut(&dyn ScopeMap),
        between: &mut dyn FnMut(),
    ) {
        guards::with_scope::<C, G, F, A>(m, body, between)
    }
}

/// `raw::unmap_any_order`, which compiles only for a platform that releases in any order, so
/// it is always called on the `A = true` layout; a run with `A` false never calls it.
fn any_order_unmap<const C: usize, const G: bool, const F: bool, const A: bool>(
    m: &dyn Hardware,
    addr: VirtAddr,
) -> Result<(), UnmapError> {
    assert!(
        A,
        "the machine releases out of order only in a run with release = \"any\""
    );
    // SAFETY: as in `map`: the simulator never dereferences the pointer, and the machine releases
    // only a frame the current context holds.
    unsafe { kmap::raw::unmap_any_order(&SimPlatform::<C, G, F, true>(m), addr.as_ptr()) }
}

/// The crate's entry points for `cells` cells, guard cells, force-map and release in any order
/// as given, or `None` when `cells` is not in [`SUPPORTED_CELLS`].
pub fn ops_for(
    cells: usize,
    guard: bool,
    force: bool,
    any_order: bool,
) -> Option<&'static dyn KmapOps> {
    macro_rules! dispatch {
        ($($c:literal)*) => {
            match (cells, guard, force, any_order) {
                $(
                    ($c, false, false, false) => Some(&Ops::<$c, false, false, false>),
                    ($c, true, false, false) => Some(&Ops::<$c, true, false, false>),
                    ($c, false, true, false) => Some(&Ops::<$c, false, true, false>),
                    ($c, true, true, false) => Some(&Ops::<$c, true, true, false>),
                    ($c, false, false, true) => Some(&Ops::<$c, false, false, true>),
                    ($c, true, false, true) => Some(&Ops::<$c, true, false, true>),
                    ($c, false, true, true) => Some(&Ops::<$c, false, true, true>),
                    ($c, true, true, true) => Some(&Ops::<$c, true, true, true>),
                )*
                _ => None,
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 16 32 33)
}
