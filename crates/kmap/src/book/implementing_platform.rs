//! # 3. Implementing `Platform`
//!
//! [`Platform`](crate::Platform) is an `unsafe trait`: the crate hands out references into mapped
//! memory on the strength of what the implementation promises (the list is in the trait's
//! `# Safety` section). Three groups of methods:
//!
//! - **Where things are**: the executing CPU, the current task's [`KmapStack`](crate::KmapStack)
//!   (embed one in your task struct), the address of each per-CPU slot and its inverse, the
//!   direct-map address of a lowmem frame.
//! - **Hardware**: make a PTE, read / write / clear a slot's PTE, invalidate one local TLB entry.
//! - **Scheduler state**: preemption, migration and page-fault disable counts; whether we are in
//!   hard-IRQ context and whether interrupts are off (for the warnings Linux gives).
//!
//! Leave [`point`](crate::Platform::point) alone: its default is empty and costs nothing. A
//! simulator overrides it to deliver interrupts between the mechanism's steps.
//!
//! Layout choices are associated constants, so one build can hold several layouts:
//! `GUARD_CELLS` (debug guard cells: name a `KmapStack<33>` as the stack), `FORCE_MAP` (map lowmem
//! pages through slots too), `PAGE_SIZE`, `KERNEL_PROT`.
//!
//! A complete, working implementation is the demo kernel's, in the repository at
//! `kernel/src/platform.rs` (about two hundred lines with its comments): it boots under QEMU on two
//! CPUs, maps highmem frames that have no other kernel address from tasks, interrupts and NMIs,
//! and `kernel/src/sched.rs` shows where the switch hooks go. `cargo xtask kernel` runs it.
//!
//! The shape of an x86_64 implementation (compiled, not run: `invlpg` needs ring 0):
//!
//! ```no_run
//! # #[cfg(target_arch = "x86_64")] mod x86 {
//! use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, Ordering::Relaxed};
//! use kmap::{Cell, CpuId, Frame, KmapStack, Platform, Prot, Pte, Report, Slot, VirtAddr};
//!
//! const CPUS: usize = 2;
//! const CELLS: usize = 16;
//! /// The kmap window: CPU `c`'s cell `i` is page `c * CELLS + i` of it.
//! const WINDOW: usize = 0xffff_ff80_0000_0000;
//! /// The page table that maps the window (linked into the kernel page tables at boot).
//! static WINDOW_PTES: [AtomicU64; CPUS * CELLS] = [const { AtomicU64::new(0) }; CPUS * CELLS];
//! /// Frames below this are permanently mapped at `DIRECT_MAP + pfn * 4096`.
//! const LOWMEM_FRAMES: u64 = 0x8000;
//! const DIRECT_MAP: usize = 0xffff_8000_0000_0000;
//! const PRESENT: u64 = 1;
//! const WRITABLE: u64 = 2;
//! const NO_EXECUTE: u64 = 1 << 63;
//!
//! pub struct Task {
//!     pub kmap: KmapStack<CELLS>,
//!     pub migrate_disabled: AtomicI32,
//! }
//!
//! #[repr(C)]
//! pub struct PerCpu {
//!     pub current: AtomicPtr<Task>,     // gs:[0]
//!     pub preempt_count: AtomicI32,     // gs:[8]
//!     pub pagefault_disabled: AtomicI32, // gs:[12]
//!     pub in_hardirq: AtomicI32,        // gs:[16]
//!     pub id: usize,                    // gs:[24]
//! }
//!
//! pub struct Kernel {
//!     pub cpus: [PerCpu; CPUS],
//! }
//!
//! // GS points at this CPU's `PerCpu` (set up at boot for every CPU). Each read of `current` and
//! // each change of a per-CPU counter is ONE gs-relative instruction, as Linux's `current` and
//! // `this_cpu_add`: computing the CPU's address first and using it after is two steps, and a
//! // task preempted and moved to another CPU between them would use that CPU's `current` (the
//! // demo kernel's balancer found exactly this).
//! impl Kernel {
//!     fn this_cpu(&self) -> usize {
//!         let id: usize;
//!         // SAFETY: gs:[24] holds this CPU's number (`PerCpu::id`), never written again.
//!         unsafe { core::arch::asm!("mov {}, gs:[24]", out(reg) id, options(nostack, readonly)) };
//!         id
//!     }
//!     fn current(&self) -> &Task {
//!         let task: *const Task;
//!         // SAFETY: gs:[0] is `PerCpu::current`, the running task, which outlives this call.
//!         unsafe {
//!             core::arch::asm!("mov {}, gs:[0]", out(reg) task, options(nostack, readonly));
//!             &*task
//!         }
//!     }
//! }
//!
//! /// `gs:[OFFSET] += delta` in one instruction: a counter of this CPU's `PerCpu`.
//! fn this_cpu_add<const OFFSET: usize>(delta: i32) {
//!     // SAFETY: OFFSET is that of an AtomicI32 of PerCpu, which only this CPU changes.
//!     unsafe {
//!         core::arch::asm!("add dword ptr gs:[{o}], {d:e}", o = const OFFSET, d = in(reg) delta,
//!             options(nostack))
//!     };
//! }
//!
//! // SAFETY: slots are distinct pages of WINDOW mapped only by WINDOW_PTES; install/clear write
//! // the real PTE and `invlpg` drops the local translation; the direct map covers lowmem
//! // permanently; `current` and the counters are the scheduler's own; PTEs have PRESENT set.
//! unsafe impl Platform for Kernel {
//!     type Stack = KmapStack<CELLS>;
//!     const KERNEL_PROT: Prot = Prot::from_raw(WRITABLE | NO_EXECUTE);
//!
//!     fn current_cpu(&self) -> CpuId {
//!         CpuId(self.this_cpu() as u32)
//!     }
//!     fn current_stack(&self) -> &KmapStack<CELLS> {
//!         &self.current().kmap
//!     }
//!     fn slot_address(&self, slot: Slot) -> VirtAddr {
//!         VirtAddr::new(WINDOW + (slot.cpu.0 as usize * CELLS + slot.cell.0) * 4096)
//!     }
//!     fn slot_of(&self, page: VirtAddr) -> Option<Slot> {
//!         let index = page.as_usize().checked_sub(WINDOW)? / 4096;
//!         (index < CPUS * CELLS).then(|| Slot { cpu: CpuId((index / CELLS) as u32), cell: Cell(index % CELLS) })
//!     }
//!     fn direct_map(&self, frame: Frame) -> Option<VirtAddr> {
//!         (frame.pfn() < LOWMEM_FRAMES).then(|| VirtAddr::new(DIRECT_MAP + frame.pfn() as usize * 4096))
//!     }
//!     fn make_pte(&self, frame: Frame, prot: Prot) -> Pte {
//!         Pte::from_raw(frame.pfn() << 12 | prot.raw() | PRESENT)
//!     }
//!     fn read_pte(&self, slot: Slot) -> Pte {
//!         Pte::from_raw(WINDOW_PTES[slot.cpu.0 as usize * CELLS + slot.cell.0].load(Relaxed))
//!     }
//!     fn install_pte(&self, slot: Slot, pte: Pte) {
//!         WINDOW_PTES[slot.cpu.0 as usize * CELLS + slot.cell.0].store(pte.raw(), Relaxed);
//!     }
//!     fn clear_pte(&self, slot: Slot) {
//!         WINDOW_PTES[slot.cpu.0 as usize * CELLS + slot.cell.0].store(0, Relaxed);
//!     }
//!     fn invalidate_local(&self, page: VirtAddr) {
//!         // SAFETY: invlpg only drops a translation of this CPU.
//!         unsafe { core::arch::asm!("invlpg [{}]", in(reg) page.as_usize(), options(nostack)) };
//!     }
//!     fn preempt_disable(&self) {
//!         this_cpu_add::<8>(1);
//!     }
//!     fn preempt_enable(&self) {
//!         this_cpu_add::<8>(-1);
//!         // ... and reschedule here if a reschedule is pending and the count is now 0.
//!     }
//!     fn migrate_disable(&self) {
//!         self.current().migrate_disabled.fetch_add(1, Relaxed);
//!     }
//!     fn migrate_enable(&self) {
//!         self.current().migrate_disabled.fetch_sub(1, Relaxed);
//!     }
//!     fn pagefault_disable(&self) {
//!         this_cpu_add::<12>(1);
//!     }
//!     fn pagefault_enable(&self) {
//!         this_cpu_add::<12>(-1);
//!     }
//!     fn in_hardirq(&self) -> bool {
//!         // In task context it is 0 on every CPU, so a stale CPU number cannot mislead it.
//!         self.cpus[self.this_cpu()].in_hardirq.load(Relaxed) != 0
//!     }
//!     fn irqs_disabled(&self) -> bool {
//!         let flags: u64;
//!         // SAFETY: reads RFLAGS through the stack, with no other effect.
//!         unsafe { core::arch::asm!("pushfq", "pop {}", out(reg) flags) };
//!         flags & (1 << 9) == 0
//!     }
//!     fn report(&self, report: Report) {
//!         let _ = report; // log it, once per kind, as Linux's WARN_ON_ONCE does
//!     }
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! ## Checking an implementation
//!
//! The repository's `kmap-host` crate is a `Platform` for an ordinary process, with real memory
//! behind every slot and a record of every hardware action in order; the tests of this crate, one
//! per rule of the Linux reference, run on it and show what each rule looks like from the
//! platform's side. [`Point`](crate::Point) lists every step at which an interrupt may arrive.
