//! A [`kmap::Platform`] for an ordinary Linux process, for tests and documentation examples.
//!
//! Physical memory is a memfd. Every per-CPU slot is a page of a reserved address range, and
//! installing a PTE really maps the frame there (`mmap(MAP_FIXED | MAP_SHARED)`), so the byte
//! views of the safe API read and write the frame as they would in a kernel; clearing a PTE maps
//! an inaccessible page back. Frames below `lowmem` form the direct map.
//!
//! Everything the mechanism does to the "hardware" is recorded as an [`Event`], in order: PTE
//! installs and clears, TLB invalidations, counter changes, reports and arrival points. Tests
//! assert on that record. [`HostPlatform::on_point`] runs a closure at every arrival point, which
//! is how a test plays an interrupt or NMI at an exact step of the real code.
//!
//! The CPU and the current task are plain variables: [`HostPlatform::run_on`] moves execution to
//! another CPU, [`HostPlatform::switch_to`] performs a context switch shaped like Linux's. There
//! is no TLB model (the host kernel keeps the real one coherent); the simulator has one.

use std::cell::{Cell as StdCell, RefCell};
use std::collections::HashSet;

use kmap::{Cell, CpuId, Frame, KmapStack, Platform, Point, Prot, Pte, Report, Slot, VirtAddr};

/// Size of a page on the host.
pub const PAGE_SIZE: usize = 4096;

/// PTE bit: present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// PTE bit: writable.
pub const PTE_WRITE: u64 = 1 << 1;
/// Protection: read and write (the kernel default).
pub const PROT_READ_WRITE: Prot = Prot::from_raw(PTE_WRITE);
/// Protection: read only.
pub const PROT_READ_ONLY: Prot = Prot::from_raw(0);

/// A counter the platform keeps for the mechanism.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Counter {
    /// Preemption-disable depth of the executing context.
    Preempt,
    /// Migration-disable depth of the current task.
    Migrate,
    /// Page-fault-disable depth of the executing context.
    Pagefault,
}

/// One thing the mechanism did to the machine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// A PTE was written into a slot.
    Install(Slot, Pte),
    /// A slot's PTE was cleared.
    Clear(Slot),
    /// The local TLB entry of a slot was invalidated (on the CPU named).
    Invalidate(Slot),
    /// A counter moved by `delta`.
    Count(Counter, i32),
    /// The mechanism reported something.
    Report(Report),
    /// An arrival point passed.
    Point(Point),
}

type PointHook<const C: usize, const G: bool, const F: bool, const A: bool> =
    Box<dyn FnMut(&HostPlatform<C, G, F, A>, Point)>;

/// A host process playing the machine: `cpus` CPUs, `frames` frames of which the first `lowmem`
/// are direct-mapped, `tasks` tasks each with a [`KmapStack<CELLS>`]. `GUARD`, `FORCE` and `ANY_ORDER`
/// select guard cells, force-map and release in any order.
pub struct HostPlatform<
    const CELLS: usize = 16,
    const GUARD: bool = false,
    const FORCE: bool = false,
    const ANY_ORDER: bool = false,
> {
    memfd: libc::c_int,
    phys: *mut u8,
    window: *mut u8,
    frames: u64,
    lowmem: u64,
    cpus: u32,
    ptes: RefCell<Vec<Pte>>,
    tasks: Box<[KmapStack<CELLS>]>,
    cpu: StdCell<u32>,
    current: Vec<StdCell<usize>>,
    preempt: StdCell<i32>,
    pagefault: StdCell<i32>,
    migrate: Vec<StdCell<i32>>,
    hardirq: StdCell<bool>,
    irqs_off: StdCell<bool>,
    events: RefCell<Vec<Event>>,
    on_point: RefCell<Option<PointHook<CELLS, GUARD, FORCE, ANY_ORDER>>>,
    pages_out: RefCell<HashSet<u64>>,
}

impl<const CELLS: usize, const GUARD: bool, const FORCE: bool, const ANY_ORDER: bool>
    HostPlatform<CELLS, GUARD, FORCE, ANY_ORDER>
{
    /// A machine with `cpus` CPUs, `frames` frames (`lowmem` of them direct-mapped) and `tasks`
    /// tasks; at first CPU `c` runs task `c % tasks` (then use [`switch_to`](Self::switch_to)).
    ///
    /// # Panics
    ///
    /// If the host refuses the memfd or the mappings, or `lowmem > frames`.
    pub fn new(cpus: u32, frames: u64, lowmem: u64, tasks: usize) -> Self {
        assert!(lowmem <= frames && cpus > 0 && tasks > 0);
        let bytes = frames as usize * PAGE_SIZE;
        // SAFETY: plain system calls with valid arguments; every result is checked.
        let (memfd, phys, window) = unsafe {
            let memfd =
                libc::memfd_create(c"kmap-host-physical-memory".as_ptr(), libc::MFD_CLOEXEC);
            assert!(memfd >= 0, "memfd_create failed");
            assert_eq!(
                libc::ftruncate(memfd, bytes as libc::off_t),
                0,
                "ftruncate failed"
            );
            let phys = libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                memfd,
                0,
            );
            assert_ne!(phys, libc::MAP_FAILED, "mmap of physical memory failed");
            let window = libc::mmap(
                std::ptr::null_mut(),
                cpus as usize * CELLS * PAGE_SIZE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            assert_ne!(window, libc::MAP_FAILED, "mmap of the slot window failed");
            (memfd, phys.cast::<u8>(), window.cast::<u8>())
        };
        HostPlatform {
            memfd,
            phys,
            window,
            frames,
            lowmem,
            cpus,
            ptes: RefCell::new(vec![Pte::EMPTY; cpus as usize * CELLS]),
            tasks: (0..tasks).map(|_| KmapStack::new()).collect(),
            cpu: StdCell::new(0),
            current: (0..cpus as usize)
                .map(|cpu| StdCell::new(cpu % tasks))
                .collect(),
            preempt: StdCell::new(0),
            pagefault: StdCell::new(0),
            migrate: (0..tasks).map(|_| StdCell::new(0)).collect(),
            hardirq: StdCell::new(false),
            irqs_off: StdCell::new(false),
            events: RefCell::new(Vec::new()),
            on_point: RefCell::new(None),
            pages_out: RefCell::new(HashSet::new()),
        }
    }

    /// The page of `frame`, for the safe API. Each frame is handed out once.
    ///
    /// # Panics
    ///
    /// If the frame is out of range or was handed out already.
    pub fn page(&self, frame: u64) -> kmap::Page {
        assert!(frame < self.frames, "frame {frame} out of range");
        assert!(
            self.pages_out.borrow_mut().insert(frame),
            "frame {frame} handed out twice"
        );
        // SAFETY: each frame is handed out once, and the platform touches frame memory only
        // through `fill_frame` / `frame_bytes`, which tests call while no view of it is alive.
        unsafe { kmap::Page::from_frame(Frame::new(frame)) }
    }

    /// Fill a frame with `byte`, through physical memory (as DMA would).
    pub fn fill_frame(&self, frame: u64, byte: u8) {
        assert!(frame < self.frames);
        // SAFETY: in bounds of the physical mapping; see `page` for exclusivity.
        unsafe { std::ptr::write_bytes(self.phys.add(frame as usize * PAGE_SIZE), byte, PAGE_SIZE) }
    }

    /// A copy of a frame's bytes, read through physical memory.
    pub fn frame_bytes(&self, frame: u64) -> Vec<u8> {
        assert!(frame < self.frames);
        let mut bytes = vec![0; PAGE_SIZE];
        // SAFETY: in bounds of the physical mapping; see `page` for exclusivity.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.phys.add(frame as usize * PAGE_SIZE),
                bytes.as_mut_ptr(),
                PAGE_SIZE,
            )
        }
        bytes
    }

    /// The kmap stack of task `task`.
    pub fn task(&self, task: usize) -> &KmapStack<CELLS> {
        &self.tasks[task]
    }

    /// The task current on the executing CPU.
    pub fn current_task(&self) -> usize {
        self.current[self.cpu.get() as usize].get()
    }

    /// The executing CPU.
    pub fn cpu(&self) -> u32 {
        self.cpu.get()
    }

    /// The PTE in `slot`'s page-table entry.
    pub fn pte(&self, cpu: u32, cell: usize) -> Pte {
        self.ptes.borrow()[cpu as usize * CELLS + cell]
    }

    /// The cells whose slot is not empty on `cpu`.
    pub fn occupied(&self, cpu: u32) -> Vec<usize> {
        (0..CELLS)
            .filter(|&cell| !self.pte(cpu, cell).is_empty())
            .collect()
    }

    /// The frame a PTE of this platform maps.
    pub fn pte_frame(pte: Pte) -> Frame {
        Frame::new(pte.raw() >> 12)
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.borrow().clone()
    }

    /// Every event so far, leaving the record empty.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.borrow_mut())
    }

    /// The events so far other than arrival points.
    pub fn hardware_events(&self) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| !matches!(e, Event::Point(_)))
            .collect()
    }

    /// The reports so far.
    pub fn reports(&self) -> Vec<Report> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Report(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// A counter's value (for the current task, for [`Counter::Migrate`]).
    pub fn counter(&self, counter: Counter) -> i32 {
        match counter {
            Counter::Preempt => self.preempt.get(),
            Counter::Pagefault => self.pagefault.get(),
            Counter::Migrate => self.migrate[self.current_task()].get(),
        }
    }

    /// Task `task`'s migration-disable count.
    pub fn migrate_count(&self, task: usize) -> i32 {
        self.migrate[task].get()
    }

    /// Run `hook` at every arrival point from now on (`None` to stop). The hook is not run for
    /// points passed while it is itself running, so it may map and unmap.
    pub fn on_point(&self, hook: Option<PointHook<CELLS, GUARD, FORCE, ANY_ORDER>>) {
        *self.on_point.borrow_mut() = hook;
    }

    /// Run `f` as a hard-interrupt handler (interrupts off, as on entry) on the executing CPU,
    /// on top of whatever is current.
    pub fn interrupt<R>(&self, f: impl FnOnce() -> R) -> R {
        let (hardirq, irqs_off) = (self.hardirq.replace(true), self.irqs_off.replace(true));
        let result = f();
        self.hardirq.set(hardirq);
        self.irqs_off.set(irqs_off);
        result
    }

    /// Set whether interrupts are enabled, and whether we are in hard-IRQ context.
    pub fn set_context(&self, hardirq: bool, irqs_off: bool) {
        self.hardirq.set(hardirq);
        self.irqs_off.set(irqs_off);
    }

    /// Continue execution on CPU `cpu` (the task current there runs).
    pub fn run_on(&self, cpu: u32) {
        assert!(cpu < self.cpus);
        self.cpu.set(cpu);
    }

    /// A context switch on the executing CPU to task `next`, shaped like Linux's: `sched_out`
    /// with `current` = prev, then `current` = next, then `sched_in`.
    pub fn switch_to(&self, next: usize) {
        assert!(next < self.tasks.len());
        // SAFETY: this is the platform's scheduler: prepare-switch with current = prev.
        unsafe { kmap::sched_out(self) };
        self.current[self.cpu.get() as usize].set(next);
        // SAFETY: finish-switch with current = next.
        unsafe { kmap::sched_in(self) };
    }

    /// Make `task` current on `cpu` without running the switch hooks (for setting up a scene,
    /// or for playing a broken scheduler).
    pub fn set_current(&self, cpu: u32, task: usize) {
        self.current[cpu as usize].set(task);
    }

    fn record(&self, event: Event) {
        self.events.borrow_mut().push(event);
    }

    fn count(&self, counter: Counter, delta: i32) {
        let cell = match counter {
            Counter::Preempt => &self.preempt,
            Counter::Pagefault => &self.pagefault,
            Counter::Migrate => &self.migrate[self.current_task()],
        };
        cell.set(cell.get() + delta);
        assert!(cell.get() >= 0, "{counter:?} count went negative");
        self.record(Event::Count(counter, delta));
    }

    fn slot_index(&self, slot: Slot) -> usize {
        assert!(
            slot.cpu.0 < self.cpus && slot.cell.0 < CELLS,
            "{slot:?} out of range"
        );
        slot.cpu.0 as usize * CELLS + slot.cell.0
    }

    fn slot_ptr(&self, slot: Slot) -> *mut u8 {
        // SAFETY: `slot_index` is below cpus * CELLS, the window's size in pages.
        unsafe { self.window.add(self.slot_index(slot) * PAGE_SIZE) }
    }
}

impl<const CELLS: usize, const GUARD: bool, const FORCE: bool, const ANY_ORDER: bool> Drop
    for HostPlatform<CELLS, GUARD, FORCE, ANY_ORDER>
{
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; nothing borrows the platform any more.
        unsafe {
            libc::munmap(self.window.cast(), self.cpus as usize * CELLS * PAGE_SIZE);
            libc::munmap(self.phys.cast(), self.frames as usize * PAGE_SIZE);
            libc::close(self.memfd);
        }
    }
}

// SAFETY: every promise of the trait is kept by a host mapping or by the bookkeeping above:
// (1) the executing CPU and its current task are the `cpu` and `current` variables, and each
// task's stack is a fixed element of `tasks`; (2) each slot is its own page of the reserved
// window and `slot_of` inverts `slot_address`; (3) `install_pte` maps the PTE's frame at the
// slot with MAP_FIXED and `clear_pte` replaces it with an inaccessible page (the host kernel
// keeps its TLBs coherent); (4) a PTE always has the present bit, and is never all ones (the
// frame number is below `frames`); (5) the direct map is the physical mapping of the first
// `lowmem` frames; (6) tasks move between CPUs only through
// `run_on`/`switch_to`, which tests drive; (7) `switch_to` calls the hooks as documented;
// (8) 4096 is a power of two.
unsafe impl<const CELLS: usize, const GUARD: bool, const FORCE: bool, const ANY_ORDER: bool>
    Platform for HostPlatform<CELLS, GUARD, FORCE, ANY_ORDER>
{
    type Stack = KmapStack<CELLS>;
    const GUARD_CELLS: bool = GUARD;
    const FORCE_MAP: bool = FORCE;
    const RELEASE_ANY_ORDER: bool = ANY_ORDER;
    const KERNEL_PROT: Prot = PROT_READ_WRITE;

    fn current_cpu(&self) -> CpuId {
        CpuId(self.cpu.get())
    }

    fn current_stack(&self) -> &KmapStack<CELLS> {
        &self.tasks[self.current_task()]
    }

    fn slot_address(&self, slot: Slot) -> VirtAddr {
        VirtAddr::new(self.slot_ptr(slot) as usize)
    }

    fn slot_of(&self, page: VirtAddr) -> Option<Slot> {
        let offset = page.as_usize().checked_sub(self.window as usize)?;
        let index = offset / PAGE_SIZE;
        (index < self.cpus as usize * CELLS).then(|| Slot {
            cpu: CpuId((index / CELLS) as u32),
            cell: Cell(index % CELLS),
        })
    }

    fn direct_map(&self, frame: Frame) -> Option<VirtAddr> {
        if frame.pfn() >= self.lowmem {
            return None;
        }
        // SAFETY: frames below `lowmem` are inside the physical mapping.
        let address = unsafe { self.phys.add(frame.pfn() as usize * PAGE_SIZE) };
        Some(VirtAddr::new(address as usize))
    }

    fn make_pte(&self, frame: Frame, prot: Prot) -> Pte {
        assert!(frame.pfn() < self.frames, "{frame} out of range");
        Pte::from_raw(frame.pfn() << 12 | (prot.raw() & PTE_WRITE) | PTE_PRESENT)
    }

    fn read_pte(&self, slot: Slot) -> Pte {
        self.ptes.borrow()[self.slot_index(slot)]
    }

    fn install_pte(&self, slot: Slot, pte: Pte) {
        let index = self.slot_index(slot);
        let protection = libc::PROT_READ
            | if pte.raw() & PTE_WRITE != 0 {
                libc::PROT_WRITE
            } else {
                0
            };
        let offset = (Self::pte_frame(pte).pfn() as usize * PAGE_SIZE) as libc::off_t;
        // SAFETY: the target is one page of our reserved window (MAP_FIXED replaces only it).
        let mapped = unsafe {
            libc::mmap(
                self.slot_ptr(slot).cast(),
                PAGE_SIZE,
                protection,
                libc::MAP_SHARED | libc::MAP_FIXED,
                self.memfd,
                offset,
            )
        };
        assert_ne!(mapped, libc::MAP_FAILED, "mmap of a slot failed");
        self.ptes.borrow_mut()[index] = pte;
        self.record(Event::Install(slot, pte));
    }

    fn clear_pte(&self, slot: Slot) {
        let index = self.slot_index(slot);
        // SAFETY: as in `install_pte`; the page becomes inaccessible again.
        let mapped = unsafe {
            libc::mmap(
                self.slot_ptr(slot).cast(),
                PAGE_SIZE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(mapped, libc::MAP_FAILED, "mmap of an empty slot failed");
        self.ptes.borrow_mut()[index] = Pte::EMPTY;
        self.record(Event::Clear(slot));
    }

    fn invalidate_local(&self, page: VirtAddr) {
        let slot = self
            .slot_of(page)
            .expect("invalidate of a non-slot address");
        assert_eq!(
            slot.cpu.0,
            self.cpu.get(),
            "invalidation of another CPU's slot"
        );
        self.record(Event::Invalidate(slot));
    }

    fn preempt_disable(&self) {
        self.count(Counter::Preempt, 1);
    }
    fn preempt_enable(&self) {
        self.count(Counter::Preempt, -1);
    }
    fn migrate_disable(&self) {
        self.count(Counter::Migrate, 1);
    }
    fn migrate_enable(&self) {
        self.count(Counter::Migrate, -1);
    }
    fn pagefault_disable(&self) {
        self.count(Counter::Pagefault, 1);
    }
    fn pagefault_enable(&self) {
        self.count(Counter::Pagefault, -1);
    }

    fn in_hardirq(&self) -> bool {
        self.hardirq.get()
    }

    fn irqs_disabled(&self) -> bool {
        self.irqs_off.get()
    }

    fn report(&self, report: Report) {
        self.record(Event::Report(report));
    }

    fn point(&self, point: Point) {
        self.record(Event::Point(point));
        let hook = self.on_point.borrow_mut().take();
        if let Some(mut hook) = hook {
            hook(self, point);
            let mut slot = self.on_point.borrow_mut();
            if slot.is_none() {
                *slot = Some(hook);
            }
        }
    }
}
