//! How this kernel adopts the kmap crate: one `Platform` implementation.
//!
//! - The kmap window is one page table (`WINDOW_PT`) hung under the last PML4 entry, so CPU
//!   `c`'s cell `i` is the page `WINDOW + (c * CELLS + i) * 4 KiB`. Nothing else maps it.
//! - Install and clear are plain stores to that page table; the one TLB operation is `invlpg`
//!   on the slot being emptied (installing into an empty slot needs none: rule INV-6).
//! - The direct map covers lowmem only (`crate::config::LOWMEM_MIB`): a highmem frame has no
//!   kernel address but a slot.
//! - The current CPU and task come from the per-CPU area at GS; the preemption and page-fault
//!   counts are the per-CPU area's (`crate::percpu`), the migration-disable count is the task's
//!   (`crate::task`).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use x86_64::structures::paging::PageTableFlags;

use kmap::{Cell, CpuId, Frame, KmapStack, Platform, Prot, Pte, Report, Slot, VirtAddr};

use crate::arch::instructions;
use crate::config::{CELLS, LOWMEM_MIB, MAX_CPUS};
use crate::percpu::{current_task, pagefault_add, percpu, preempt_add};
use crate::sched;
use crate::verdict::{Failure, fail};

/// The kmap window: PML4 entry 511.
pub const WINDOW: usize = 0xFFFF_FF80_0000_0000;
const PRESENT: u64 = PageTableFlags::PRESENT.bits();
const WRITABLE: u64 = PageTableFlags::WRITABLE.bits();

#[repr(C, align(4096))]
pub struct PageTable(pub [AtomicU64; 512]);

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: AtomicU64 = AtomicU64::new(0);
pub static WINDOW_PDPT: PageTable = PageTable([EMPTY; 512]);
pub static WINDOW_PD: PageTable = PageTable([EMPTY; 512]);
pub static WINDOW_PT: PageTable = PageTable([EMPTY; 512]);

unsafe extern "C" {
    static boot_pml4: PageTable;
}

/// Hang the window's page tables under PML4 entry 511 (statics are identity-mapped, so their
/// addresses are physical addresses).
pub fn map_window() {
    WINDOW_PD.0[0].store(&WINDOW_PT as *const _ as u64 | PRESENT | WRITABLE, Relaxed);
    WINDOW_PDPT.0[0].store(&WINDOW_PD as *const _ as u64 | PRESENT | WRITABLE, Relaxed);
    // SAFETY: boot_pml4 is the live top-level table; entry 511 is unused until now.
    unsafe {
        boot_pml4.0[511].store(
            &WINDOW_PDPT as *const _ as u64 | PRESENT | WRITABLE,
            Relaxed,
        )
    };
}

/// The CPU and cell of the slot whose page holds `address`, if it is one.
pub fn slot_at(address: usize) -> Option<(usize, usize)> {
    let i = address.checked_sub(WINDOW)? / 4096;
    (i < MAX_CPUS * CELLS).then_some((i / CELLS, i % CELLS))
}

/// The raw PTE of the window page holding `address` (for failure reports; the checks of the
/// `no-bug-on` build do not go through here).
pub fn slot_pte(address: usize) -> u64 {
    let i = (address.wrapping_sub(WINDOW) / 4096).min(511);
    WINDOW_PT.0[i].load(Relaxed) & !0xFFF
}

/// The kernel, as the kmap crate sees it.
pub struct Kernel;

/// The one instance.
pub static KERNEL: Kernel = Kernel;

fn index(slot: Slot) -> usize {
    slot.cpu.0 as usize * CELLS + slot.cell.0
}

// SAFETY: (1) the CPU number is read from this CPU's GS area and the stack is the current
// task's, read in one gs-relative load (`percpu::current_id`), fixed for its life; the CPU
// number is read in two steps (the area's address, then its id), which the crate does only
// with migration disabled; (2) every slot is its own page of WINDOW, mapped only by
// WINDOW_PT, and slot_of inverts slot_address; (3) install_pte writes the PTE the hardware walks
// and invalidate_local is invlpg on this CPU; x86 caches no non-present entry; (4) PTEs carry
// PRESENT, and are never all ones (make_pte keeps only the low 12 bits and NX of `prot`, and
// frame numbers are below 2^20); (5) lowmem is identity-mapped by
// the boot page tables, permanently, on every CPU;
// (6) the balancer moves a task only while its migration-disable count (`migrate_disable`
// below) is zero, and the timer preempts only at preemption count 0 (the `no-migrate-disable`
// build breaks (6) on purpose, and is caught); (7) sched::schedule calls the hooks in prepare- and finish-switch.
unsafe impl Platform for Kernel {
    type Stack = KmapStack<CELLS>;
    const KERNEL_PROT: Prot = Prot::from_raw(WRITABLE);
    const RELEASE_ANY_ORDER: bool = true;

    fn current_cpu(&self) -> CpuId {
        CpuId(percpu().id as u32)
    }

    fn current_stack(&self) -> &KmapStack<CELLS> {
        &current_task().kmap
    }

    fn slot_address(&self, slot: Slot) -> VirtAddr {
        VirtAddr::new(WINDOW + index(slot) * 4096)
    }

    fn slot_of(&self, page: VirtAddr) -> Option<Slot> {
        let i = page.as_usize().checked_sub(WINDOW)? / 4096;
        (i < MAX_CPUS * CELLS).then_some(Slot {
            cpu: CpuId((i / CELLS) as u32),
            cell: Cell(i % CELLS),
        })
    }

    fn direct_map(&self, frame: Frame) -> Option<VirtAddr> {
        ((frame.pfn() as usize) < LOWMEM_MIB * 256)
            .then(|| VirtAddr::new(frame.pfn() as usize * 4096))
    }

    fn make_pte(&self, frame: Frame, prot: Prot) -> Pte {
        // Only the protection bits a PTE has (the low 12 and NX): with the frame below 2^20 the
        // result is never all ones (`Pte::HOLE`), whatever `prot` a caller made.
        Pte::from_raw(frame.pfn() << 12 | (prot.raw() & (0xFFF | 1 << 63)) | PRESENT)
    }

    fn read_pte(&self, slot: Slot) -> Pte {
        // The `no-bug-on` build blinds the crate's check of an occupied slot (its BUG_ON), to
        // show what a kernel without it suffers: the crate reads its PTEs only for that check.
        if cfg!(feature = "no-bug-on") {
            return Pte::EMPTY;
        }
        Pte::from_raw(WINDOW_PT.0[index(slot)].load(Relaxed))
    }

    fn install_pte(&self, slot: Slot, pte: Pte) {
        WINDOW_PT.0[index(slot)].store(pte.raw(), Relaxed);
    }

    fn clear_pte(&self, slot: Slot) {
        WINDOW_PT.0[index(slot)].store(0, Relaxed);
    }

    fn invalidate_local(&self, page: VirtAddr) {
        instructions::invlpg(page.as_usize());
    }

    // Per-CPU counters change in one gs-relative instruction each (`arch::percpu::add_i32`).
    fn preempt_disable(&self) {
        preempt_add(1);
    }
    fn preempt_enable(&self) {
        // As Linux's preempt_enable: the end of a non-preemptible section is a preemption point
        // when a reschedule is pending (only the benchmark build asks for one).
        if preempt_add(-1)
            && percpu().need_resched.load(Relaxed)
            && instructions::interrupts_enabled()
        {
            sched::schedule();
        }
    }
    // The `no-migrate-disable` build leaves the count alone, so the balancer moves tasks that
    // hold mappings.
    fn migrate_disable(&self) {
        if !cfg!(feature = "no-migrate-disable") {
            current_task().migrate.fetch_add(1, Relaxed);
        }
    }
    fn migrate_enable(&self) {
        if !cfg!(feature = "no-migrate-disable") {
            current_task().migrate.fetch_sub(1, Relaxed);
        }
    }
    fn pagefault_disable(&self) {
        pagefault_add(1);
    }
    fn pagefault_enable(&self) {
        pagefault_add(-1);
    }

    fn in_hardirq(&self) -> bool {
        percpu().hardirq.load(Relaxed) > 0
    }

    fn irqs_disabled(&self) -> bool {
        !instructions::interrupts_enabled()
    }

    fn report(&self, report: Report) {
        fail(
            Failure::Crate,
            format_args!("the crate reported {report:?}"),
        );
    }
}
