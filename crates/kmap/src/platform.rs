//! The one contact between the mechanism and the machine.
//!
//! The mechanism needs a handful of facts and actions from the kernel it runs in: which CPU
//! and task are current, where each per-CPU slot lives, how to write a slot's PTE and drop a
//! stale translation, and the preemption / migration / page-fault counters. A kernel provides
//! them by implementing [`Platform`]; a simulator provides the same methods over a model of the
//! hardware, and then the very same compiled mechanism runs in both.
//!
//! The trait also carries [`Platform::point`], called between every two steps that change shared
//! state. A kernel leaves it empty (it compiles to nothing); a simulator delivers an interrupt,
//! an NMI or a preemption there, which is how every interleaving of the real code is explored.

use crate::stack::TaskStack;
use crate::types::{Cell, CpuId, Frame, Prot, Pte, Slot, VirtAddr};

/// What a kernel (or a simulated machine) provides to the mechanism.
///
/// # Safety
///
/// The crate hands out references into mapped memory on the strength of these promises, so an
/// implementation must keep every one of them:
///
/// 1. [`current_cpu`](Self::current_cpu) returns the CPU executing the call;
///    [`current_stack`](Self::current_stack) returns the [`KmapStack`](crate::KmapStack) embedded
///    in the task that is `current` on that CPU, the same object for the whole life of the task,
///    in interrupt and NMI context too (they map on the interrupted task's stack, rule N-1).
///    Each is read in a way no preemption can split: a task preempted and moved to another CPU
///    between reading "which CPU" and reading that CPU's `current` would get another task's stack
///    (one gs-relative load on x86, as Linux's `current`).
/// 2. [`slot_address`](Self::slot_address) gives every [`Slot`] its own `PAGE_SIZE`-aligned page
///    of kernel virtual address space, used for nothing else, and
///    [`slot_of`](Self::slot_of) is its exact inverse (it returns `None` for every other page).
/// 3. After `install_pte(slot, make_pte(frame, prot))`, the `PAGE_SIZE` bytes at
///    `slot_address(slot)` reach `frame`'s memory on CPU `slot.cpu` as long as the PTE stays;
///    after [`clear_pte`](Self::clear_pte) followed by
///    [`invalidate_local`](Self::invalidate_local) on that CPU, no access through that page reaches
///    the old frame. [`read_pte`](Self::read_pte) returns the last value written to the slot
///    ([`Pte::EMPTY`] once cleared). Installing into an empty slot needs no invalidation (an empty
///    slot has no cached translation: rule INV-6); if the architecture caches non-present
///    entries, `install_pte` must flush itself.
/// 4. [`make_pte`](Self::make_pte) never returns [`Pte::EMPTY`], nor, if
///    [`RELEASE_ANY_ORDER`](Self::RELEASE_ANY_ORDER) is on, [`Pte::HOLE`].
/// 5. [`direct_map`](Self::direct_map) returns `Some` only for a frame whose `PAGE_SIZE` bytes are
///    permanently mapped at that address on every CPU.
/// 6. While the current task's migration-disable count is non-zero it is only ever switched in
///    on the CPU it was on; while its preemption-disable count is non-zero it is not switched
///    out; while page faults are disabled a fault does not sleep.
/// 7. The scheduler calls [`sched_out`](crate::sched_out) and [`sched_in`](crate::sched_in) as
///    their documentation says.
/// 8. `PAGE_SIZE` is a power of two.
pub unsafe trait Platform {
    /// The per-task stack this kernel embeds in its task struct: [`KmapStack<N>`](crate::KmapStack)
    /// with the number of cells it reserves per CPU (Linux: `KM_MAX_IDX`, 16; 33 with guard cells).
    type Stack: TaskStack;

    /// The page size, in bytes.
    const PAGE_SIZE: usize = 4096;

    /// Debug guard cells (rule 1.4, `CONFIG_DEBUG_KMAP_LOCAL`): mappings use odd cells only, so
    /// every mapping has an unmapped page on each side and a linear overrun faults.
    const GUARD_CELLS: bool = false;

    /// Force-map (rule 2.9, `CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP`): frames with a direct-map
    /// address take a slot too, so code that assumes one mapping covers more than a page breaks
    /// loudly in testing.
    const FORCE_MAP: bool = false;

    /// Release in any order (what Rust-for-Linux asked Linux for in October 2023, and Linux never
    /// merged): a mapping below the top may be released, leaving a *hole* ([`Pte::HOLE`]) that
    /// is popped when the top is released ([`raw::unmap_any_order`](crate::raw::unmap_any_order),
    /// [`Scope`](crate::Scope)). Off, a build that calls those two fails (an error when the
    /// call is compiled for the platform: `cargo check` does not report it, `cargo build` does)
    /// and the LIFO paths are exactly Linux's; on, every release of the top also looks at the
    /// cell beneath it (measured in BENCHMARKS.md), and [`make_pte`](Self::make_pte) must never
    /// return [`Pte::HOLE`].
    const RELEASE_ANY_ORDER: bool = false;

    /// The protection of an ordinary mapping (Linux: `kmap_prot`, normally `PAGE_KERNEL`).
    const KERNEL_PROT: Prot;

    /// The CPU executing this call.
    fn current_cpu(&self) -> CpuId;

    /// The kmap stack of the task that is `current` on this CPU.
    fn current_stack(&self) -> &Self::Stack;

    /// The virtual address of a per-CPU slot.
    fn slot_address(&self, slot: Slot) -> VirtAddr;

    /// The slot whose page starts at `page`, if `page` is inside the kmap window.
    fn slot_of(&self, page: VirtAddr) -> Option<Slot>;

    /// The permanent kernel address of `frame`, if it has one (lowmem).
    fn direct_map(&self, frame: Frame) -> Option<VirtAddr>;

    /// The PTE that maps `frame` with protection `prot`.
    fn make_pte(&self, frame: Frame, prot: Prot) -> Pte;

    /// The PTE currently in `slot` (for the "slot must be free" check, rule M-1.5).
    fn read_pte(&self, slot: Slot) -> Pte;

    /// Write `pte` into `slot`'s page-table entry.
    fn install_pte(&self, slot: Slot, pte: Pte);

    /// Clear `slot`'s page-table entry.
    fn clear_pte(&self, slot: Slot);

    /// Invalidate this CPU's TLB entry for `page` (x86: `invlpg`). Local only: never an IPI.
    fn invalidate_local(&self, page: VirtAddr);

    /// Disable preemption (nests).
    fn preempt_disable(&self);
    /// Undo one [`preempt_disable`](Self::preempt_disable); may reschedule.
    fn preempt_enable(&self);
    /// Pin the current task to this CPU (nests).
    fn migrate_disable(&self);
    /// Undo one [`migrate_disable`](Self::migrate_disable).
    fn migrate_enable(&self);
    /// Make page faults fail instead of sleeping (nests).
    fn pagefault_disable(&self);
    /// Undo one [`pagefault_disable`](Self::pagefault_disable).
    fn pagefault_enable(&self);

    /// Whether the CPU is in hard-interrupt (or NMI) context.
    fn in_hardirq(&self) -> bool;
    /// Whether interrupts are disabled on this CPU.
    fn irqs_disabled(&self) -> bool;

    /// Something the kernel should hear about (Linux warns once for each of these). Called with
    /// the mechanism's state consistent; must not map or unmap.
    fn report(&self, report: Report);

    /// An arrival point: the mechanism has just finished `point` and is about to take its next
    /// step. A kernel leaves this empty; a simulator may deliver an interrupt, an NMI or a
    /// preemption here.
    #[inline(always)]
    fn point(&self, point: Point) {
        let _ = point;
    }
}

/// Something the mechanism noticed that Linux would warn about, or that Linux does not check.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Report {
    /// A mapping was made in hard-interrupt context with interrupts enabled (rule N-1).
    MapInHardIrqWithIrqsOn,
    /// A switch hook found a guard cell whose saved value is not empty (rule 1.4).
    GuardCellNotEmpty {
        /// The even cell.
        cell: Cell,
    },
    /// A switch hook found a cell below `idx` with no saved value (rules S-3, I-3). A hole
    /// ([`Pte::HOLE`]) is not one: the hooks skip holes as a normal case.
    SavedValueEmpty {
        /// The cell.
        cell: Cell,
    },
    /// `sched_in` found a task holding mappings on another CPU than the one its mappings were
    /// made on: the addresses it holds are the old CPU's (rule I-5, INV-4).
    Migrated {
        /// The CPU the mappings were made on.
        from: CpuId,
        /// The CPU the task came back on.
        to: CpuId,
    },
    /// A task forked while holding mappings; the child starts empty (rule F-1).
    ForkWithMappings {
        /// Cells the parent holds.
        held: usize,
    },
    /// A task returns to user space, or exits, holding mappings (rules F-2, F-3).
    MappingsHeld {
        /// Where the check ran.
        at: Checkpoint,
        /// Cells still held.
        held: usize,
    },
    /// A guard released cells above its own that a leaked (`mem::forget`) guard had left.
    LeakedMappingsReleased {
        /// How many cells were released.
        cells: usize,
    },
}

/// Where [`assert_no_mappings`](crate::assert_no_mappings) is called from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Checkpoint {
    /// On the way back to user space (Linux: `kmap_assert_nomap` in
    /// `exit_to_user_mode_prepare`).
    ReturnToUser,
    /// At task exit.
    TaskExit,
}

macro_rules! points {
    ($($(#[$doc:meta])* $name:ident => $label:literal,)*) => {
        /// A step of the mechanism that has just completed, at which an interrupt, an NMI or a
        /// preemption may arrive before the next step. See [`Platform::point`].
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub enum Point {
            $($(#[$doc])* $name,)*
        }

        impl Point {
            /// Every point, in the order the mechanism's paths pass them.
            pub const ALL: &'static [Point] = &[$(Point::$name,)*];

            /// A short human-readable label, such as `"map: after push"`.
            pub const fn label(self) -> &'static str {
                match self {
                    $(Point::$name => $label,)*
                }
            }
        }
    };
}

points! {
    /// `map_atomic`: preemption disabled (rule A-1).
    AtomicPreemptionDisabled => "map_atomic: after preempt_disable",
    /// `map_atomic`: page faults disabled (rule A-1).
    AtomicPagefaultsDisabled => "map_atomic: after pagefault_disable",
    /// map: migration disabled until the matching unmap (rule M-1.1).
    MapMigrationDisabled => "map: after migrate_disable",
    /// map: the short preemption-disabled window begins (rule M-1.2).
    MapPreemptionDisabled => "map: after preempt_disable",
    /// map: the stack records the CPU its mappings are on (read by `sched_in`, INV-4).
    MapHomeSet => "map: after recording the home CPU",
    /// map: `idx` advanced, the cell is ours, its slot still empty (rule M-1.3).
    MapPushed => "map: after push",
    /// map: the slot's PTE is written (rule M-1.6).
    MapInstalled => "map: after PTE install",
    /// map: the PTE is saved in the task's cell (rule M-1.7).
    MapRecorded => "map: after record",
    /// map: preemption enabled again; the mapping is complete (rule M-1.8).
    MapPreemptionEnabled => "map: after preempt_enable",
    /// map refused (the slot was not empty): preemption enabled again.
    MapRefusedPreemptionEnabled => "map refused: after preempt_enable",
    /// map refused: migration enabled again; nothing of the map is left.
    MapRefusedMigrationEnabled => "map refused: after migrate_enable",
    /// unmap: preemption disabled (rule U-1.3).
    UnmapPreemptionDisabled => "unmap: after preempt_disable",
    /// unmap: the top cell's PTE is cleared (rule U-1.5).
    UnmapCleared => "unmap: after PTE clear",
    /// unmap: the local TLB entry of the slot is invalidated (rule U-1.5, INV-6).
    UnmapInvalidated => "unmap: after TLB invalidate",
    /// unmap: the saved value is zeroed (rule U-1.6).
    UnmapZeroed => "unmap: after zeroing the saved value",
    /// unmap, with [`Platform::RELEASE_ANY_ORDER`]: a hole directly beneath the top zeroed,
    /// ready to be popped with it.
    UnmapHoleZeroed => "unmap: after zeroing a hole beneath",
    /// unmap: `idx` moved back (rule U-1.7).
    UnmapPopped => "unmap: after pop",
    /// unmap: preemption enabled again (rule U-1.8).
    UnmapPreemptionEnabled => "unmap: after preempt_enable",
    /// unmap: migration enabled again (rule U-1.8).
    UnmapMigrationEnabled => "unmap: after migrate_enable",
    /// `unmap_atomic`: page faults enabled again (rule U-2).
    AtomicPagefaultsEnabled => "unmap_atomic: after pagefault_enable",
    /// `unmap_atomic`: preemption enabled again (rule U-2).
    AtomicPreemptionEnabled => "unmap_atomic: after preempt_enable",
    /// release below the top: preemption disabled.
    ReleasePreemptionDisabled => "release below top: after preempt_disable",
    /// release below the top: the cell's PTE is cleared.
    ReleaseCleared => "release below top: after PTE clear",
    /// release below the top: the local TLB entry of the slot is invalidated.
    ReleaseInvalidated => "release below top: after TLB invalidate",
    /// release below the top: the saved value is marked [`Pte::HOLE`]; the cell is a hole.
    ReleaseHoled => "release below top: after marking the hole",
    /// release below the top: preemption enabled again.
    ReleasePreemptionEnabled => "release below top: after preempt_enable",
    /// release below the top: migration enabled again.
    ReleaseMigrationEnabled => "release below top: after migrate_enable",
    /// `sched_out`: one of prev's slots cleared (rule S-3).
    SchedOutCleared => "sched_out: after PTE clear",
    /// `sched_out`: that slot's local TLB entry invalidated (rule S-3, INV-6).
    SchedOutInvalidated => "sched_out: after TLB invalidate",
    /// `sched_in`: one of next's saved PTEs re-installed (rule I-3).
    SchedInInstalled => "sched_in: after PTE install",
}

impl core::fmt::Display for Point {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.label())
    }
}
