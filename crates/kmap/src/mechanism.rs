//! The map and unmap paths: the only code that writes a task's stack.
//!
//! Every operation first *decides* (reads `idx`, checks the request) and only then *acts*, so a
//! refusal leaves no trace. Deciding before disabling preemption is sound because nothing that
//! can run in between changes `idx`: a nested interrupt or NMI restores it before it returns
//! (rule N-2) and the switch hooks never write it (INV-2).
//!
//! The order of the acts is the safety argument of the whole design (reference §3.4):
//! - map pushes `idx` *before* it installs the PTE, so a nested context that arrives in between
//!   lands above the new cell (INV-1), and records the PTE *before* preemption is enabled again,
//!   so `sched_out` never sees a slot its cell does not describe (INV-5);
//! - unmap clears the PTE, invalidates the TLB entry and zeroes the saved value *before* the
//!   pop, so a nested context never finds a dirty slot at or above `idx` (the 2010 race fix),
//!   and no stale translation survives a slot becoming empty (INV-6).
//!
//! - with [`Platform::RELEASE_ANY_ORDER`], a release below the top disables preemption, then
//!   clears the PTE, invalidates the TLB entry and marks the saved value [`Pte::HOLE`], and
//!   never moves `idx`. Nested contexts push above `idx`, so they never see the hole, half made
//!   or whole. A switch cannot come in the middle: `sched_in` would re-install the saved PTE of
//!   a cell whose PTE was already cleared, and the mark would then leave a hole with a live PTE,
//!   which no pop clears (the next map of that cell would find its slot taken). The mark comes
//!   last because it is what lets the switch hooks skip the cell and a pop pass it;
//! - releasing the top zeroes it as [`unmap`] does, then zeroes every hole directly beneath it,
//!   and only then pops them all in one store of `idx`. A hole is marked, not zeroed, because a
//!   zero is what the top holds between its zeroing and its pop: were a pop to pass zeroes, an
//!   interrupt arriving in that window would map above the top, and its own unmap would pop
//!   the interrupted task's top cell too, returning with `idx` lower than it found it (the
//!   explorer's counterexample to the untested 2023 proposal, which popped over empty cells).
//!   Holes are zeroed before the pop so that every cell at or above `idx` stays empty (INV-1),
//!   and the top cell is never a hole (INV-H), so `idx > 0` still means a live mapping and
//!   migration still disabled (INV-4).
//!
//! Between every two acts the platform's [`point`](Platform::point) is called behind a compiler
//! fence: in a kernel that is where a real interrupt may arrive, so the compiler must not move
//! an act across it; in the simulator it is where one is delivered.
//!
//! On hardware an interrupt can arrive between any two instructions, so every call into the
//! platform is followed by a point before the next call, with two arguments instead of points:
//!
//! - **Identity reads** ([`current_cpu`](Platform::current_cpu),
//!   [`current_stack`](Platform::current_stack), [`in_hardirq`](Platform::in_hardirq),
//!   [`irqs_disabled`](Platform::irqs_disabled)) need no point after them: an interrupt returns
//!   to the same CPU, task and interrupt state, so it cannot change what the read returned, and
//!   an event right after the read is equivalent to one at the point before it. A preemption
//!   could change the CPU, which is why the CPU is read only once migration is disabled (the
//!   simulator reports a read of it while the context can migrate, as Linux's
//!   `CONFIG_DEBUG_PREEMPT` does).
//! - **The refusal's undo**: between the `read_pte` that refuses a map and the first counter
//!   it undoes (see `map_slot`).
//!
//! The pure calls ([`slot_address`](Platform::slot_address), [`slot_of`](Platform::slot_of),
//! [`make_pte`](Platform::make_pte), [`direct_map`](Platform::direct_map)) read nothing that
//! changes, and [`report`](Platform::report) changes nothing the mechanism reads: they count as
//! part of the step around them.

use core::sync::atomic::{Ordering::SeqCst, compiler_fence};

use crate::error::{MapError, UnmapError};
use crate::platform::{Platform, Point, Report};
use crate::stack::sealed::{Sealed, StackView};
use crate::types::{Cell, Frame, Prot, Pte, Slot, VirtAddr};

/// Hand the platform an arrival point. Compiles to nothing on a kernel whose `point` is empty.
#[inline(always)]
pub(crate) fn step<P: Platform>(platform: &P, point: Point) {
    compiler_fence(SeqCst);
    platform.point(point);
    compiler_fence(SeqCst);
}

/// How far a push moves `idx`: 2 with guard cells (every mapping gets an empty neighbour on each
/// side, rule 1.4), else 1.
#[inline(always)]
pub(crate) const fn cell_step<P: Platform>() -> usize {
    if P::GUARD_CELLS { 2 } else { 1 }
}

/// What a map request asks for.
#[derive(Clone, Copy)]
pub(crate) struct Request {
    pub(crate) frame: Frame,
    pub(crate) prot: Prot,
    /// `kmap_local_pfn`: take a slot even for a frame with a direct-map address (rule M-0.3).
    pub(crate) always_slot: bool,
    /// `kmap_atomic`: preemption and page faults stay disabled until the unmap (rule A-1).
    pub(crate) atomic: bool,
}

/// Where a mapping landed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Placement {
    /// The frame's permanent address; nothing was pushed.
    Direct(VirtAddr),
    /// A slot of the current CPU; its cell was pushed.
    Slot(VirtAddr),
}

impl Placement {
    pub(crate) fn address(self) -> VirtAddr {
        match self {
            Placement::Direct(addr) | Placement::Slot(addr) => addr,
        }
    }
}

/// Map `request.frame` for the current context (rules M-0 to M-3, A-1, A-2).
#[inline(always)]
pub(crate) fn map<P: Platform>(platform: &P, request: Request) -> Result<Placement, MapError> {
    // The fast path: a frame with a direct-map address needs no per-task state, no migration
    // or preemption window, and cannot be refused (rule M-0.2).
    if !(request.always_slot || P::FORCE_MAP)
        && let Some(addr) = platform.direct_map(request.frame)
    {
        if request.atomic {
            atomic_begin(platform);
        }
        return Ok(Placement::Direct(addr));
    }

    // Decide.
    let stack = platform.current_stack().view();
    let pushed = stack.idx() + cell_step::<P>();
    if pushed > stack.cells() {
        return Err(MapError::Overflow {
            cells: stack.cells(),
        });
    }

    // Act.
    if request.atomic {
        atomic_begin(platform);
    }
    match map_slot(platform, &stack, request, pushed) {
        Ok(addr) => Ok(Placement::Slot(addr)),
        Err(refused) => {
            if request.atomic {
                atomic_end(platform);
            }
            Err(refused)
        }
    }
}

/// The mapped path, exactly in Linux's order (rule M-1). `pushed` is `idx` after the push.
#[inline(always)]
fn map_slot<P: Platform>(
    platform: &P,
    stack: &StackView<'_>,
    request: Request,
    pushed: usize,
) -> Result<VirtAddr, MapError> {
    platform.migrate_disable();
    step(platform, Point::MapMigrationDisabled);
    platform.preempt_disable();
    step(platform, Point::MapPreemptionDisabled);

    // Identity reads (see the module doc): no point is needed between them.
    if platform.in_hardirq() && !platform.irqs_disabled() {
        platform.report(Report::MapInHardIrqWithIrqsOn);
    }
    let cpu = platform.current_cpu();
    let slot = Slot {
        cpu,
        cell: Cell(pushed - 1),
    };
    if !platform.read_pte(slot).is_empty() {
        // INV-1 is broken by someone else; undo our two counters and refuse (Linux: BUG).
        // Argued, not a point, before the first undo: the refusal is decided, and the undo is
        // of counters a handler returns as it found them.
        platform.preempt_enable();
        step(platform, Point::MapRefusedPreemptionEnabled);
        platform.migrate_enable();
        step(platform, Point::MapRefusedMigrationEnabled);
        return Err(MapError::SlotNotEmpty { slot });
    }

    stack.set_home(cpu);
    step(platform, Point::MapHomeSet);
    stack.set_idx(pushed);
    step(platform, Point::MapPushed);

    let pte = platform.make_pte(request.frame, request.prot);
    platform.install_pte(slot, pte);
    step(platform, Point::MapInstalled);

    stack.set_saved(slot.cell.0, pte);
    step(platform, Point::MapRecorded);

    platform.preempt_enable();
    step(platform, Point::MapPreemptionEnabled);
    Ok(platform.slot_address(slot))
}

/// The start of an atomic section (rule A-1): preemption, then page faults, disabled.
#[inline(always)]
fn atomic_begin<P: Platform>(platform: &P) {
    platform.preempt_disable();
    step(platform, Point::AtomicPreemptionDisabled);
    platform.pagefault_disable();
    step(platform, Point::AtomicPagefaultsDisabled);
}

/// The end of an atomic section (rule U-2): page faults, then preemption, enabled again.
#[inline(always)]
pub(crate) fn atomic_end<P: Platform>(platform: &P) {
    platform.pagefault_enable();
    step(platform, Point::AtomicPagefaultsEnabled);
    platform.preempt_enable();
    step(platform, Point::AtomicPreemptionEnabled);
}

/// Unmap the mapping that holds `addr` (rule U-1): any address inside the mapped page is
/// accepted; a direct-map address is a no-op (as the map of it was); anything else that is not
/// the current context's top cell on this CPU is refused.
#[inline(always)]
pub(crate) fn unmap<P: Platform>(
    platform: &P,
    addr: VirtAddr,
    atomic: bool,
) -> Result<(), UnmapError> {
    // Decide.
    let page = addr.align_down(P::PAGE_SIZE);
    let top = match platform.slot_of(page) {
        None if P::FORCE_MAP => return Err(UnmapError::NotKmapAddress { addr }),
        None => None,
        Some(given) => {
            let stack = platform.current_stack().view();
            let idx = stack.idx();
            if idx == 0 {
                return Err(UnmapError::EmptyStack);
            }
            // `idx > 0` keeps the task on this CPU (INV-4), so the CPU read here stays right.
            let top = Slot {
                cpu: platform.current_cpu(),
                cell: Cell(idx - 1),
            };
            if given != top {
                return Err(UnmapError::NotTopCell { given, top });
            }
            Some(top)
        }
    };

    // Act.
    if let Some(top) = top {
        unmap_top(platform, top);
    }
    if atomic {
        atomic_end(platform);
    }
    Ok(())
}

/// Release the current context's top cell, `top` (rule U-1, steps 3 to 8).
#[inline(always)]
pub(crate) fn unmap_top<P: Platform>(platform: &P, top: Slot) {
    let stack = platform.current_stack().view();
    platform.preempt_disable();
    step(platform, Point::UnmapPreemptionDisabled);

    platform.clear_pte(top);
    step(platform, Point::UnmapCleared);

    platform.invalidate_local(platform.slot_address(top));
    step(platform, Point::UnmapInvalidated);

    stack.set_saved(top.cell.0, Pte::EMPTY);
    step(platform, Point::UnmapZeroed);

    let mut idx = top.cell.0 + 1 - cell_step::<P>();
    if P::RELEASE_ANY_ORDER {
        idx = zero_holes_beneath::<P>(platform, &stack, idx);
    }
    stack.set_idx(idx);
    step(platform, Point::UnmapPopped);

    platform.preempt_enable();
    step(platform, Point::UnmapPreemptionEnabled);
    platform.migrate_enable();
    step(platform, Point::UnmapMigrationEnabled);
}

/// Zero every hole directly beneath depth `idx` (the lazy pop's first half) and return the depth
/// below them. With guard cells the cell beneath a used cell is a guard cell, and the one
/// beneath that is the next that can be a hole.
#[inline(always)]
fn zero_holes_beneath<P: Platform>(platform: &P, stack: &StackView<'_>, mut idx: usize) -> usize {
    while idx >= cell_step::<P>() && stack.saved(idx - 1) == Pte::HOLE {
        idx -= cell_step::<P>();
        stack.set_saved(idx + cell_step::<P>() - 1, Pte::EMPTY);
        step(platform, Point::UnmapHoleZeroed);
    }
    idx
}

/// Release the mapping that holds `addr`, wherever it is in the current stack (rules U-1, H-1
/// to H-3): the top cell as [`unmap`] does (popping the holes beneath it), a live cell below
/// the top by leaving a hole. Refused, with nothing changed, when `addr` is a slot of no live
/// cell of the current stack on this CPU.
#[inline(always)]
pub(crate) fn unmap_any_order<P: Platform>(platform: &P, addr: VirtAddr) -> Result<(), UnmapError> {
    const {
        assert!(
            P::RELEASE_ANY_ORDER,
            "the platform does not release in any order"
        )
    };
    // Decide.
    let page = addr.align_down(P::PAGE_SIZE);
    let Some(given) = platform.slot_of(page) else {
        return if P::FORCE_MAP {
            Err(UnmapError::NotKmapAddress { addr })
        } else {
            Ok(())
        };
    };
    let stack = platform.current_stack().view();
    let idx = stack.idx();
    if idx == 0 {
        return Err(UnmapError::EmptyStack);
    }
    // `idx > 0` keeps the task on this CPU (INV-4), so the CPU read here stays right.
    let this_cpu = platform.current_cpu();
    // The bound first: a slot's cell can be past the stack (a window larger than the stack).
    if given.cpu != this_cpu || given.cell.0 >= idx {
        return Err(UnmapError::NotLive { given });
    }
    let saved = stack.saved(given.cell.0);
    if saved.is_empty() || saved == Pte::HOLE {
        return Err(UnmapError::NotLive { given });
    }

    // Act.
    if given.cell.0 == idx - 1 {
        unmap_top(platform, given);
    } else {
        release_below_top(platform, &stack, given);
    }
    Ok(())
}

/// Release a live cell below the top, leaving a hole (rule H-1; the order is argued in the
/// module doc).
#[inline(always)]
fn release_below_top<P: Platform>(platform: &P, stack: &StackView<'_>, cell: Slot) {
    platform.preempt_disable();
    step(platform, Point::ReleasePreemptionDisabled);

    platform.clear_pte(cell);
    step(platform, Point::ReleaseCleared);

    platform.invalidate_local(platform.slot_address(cell));
    step(platform, Point::ReleaseInvalidated);

    stack.set_saved(cell.cell.0, Pte::HOLE);
    step(platform, Point::ReleaseHoled);

    platform.preempt_enable();
    step(platform, Point::ReleasePreemptionEnabled);
    platform.migrate_enable();
    step(platform, Point::ReleaseMigrationEnabled);
}

/// Release every live cell at or above depth `base` on the current stack, top first, and return
/// how many were released (holes are popped with the cell above them and not counted). Used by
/// the guard API, whose guards remember the depth they started at.
pub(crate) fn release_down_to<P: Platform>(platform: &P, base: usize) -> usize {
    let mut released = 0;
    loop {
        let idx = platform.current_stack().view().idx();
        if idx <= base {
            return released;
        }
        unmap_top(
            platform,
            Slot {
                cpu: platform.current_cpu(),
                cell: Cell(idx - 1),
            },
        );
        released += 1;
    }
}
