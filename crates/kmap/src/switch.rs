//! The context-switch hooks, and the checks at fork, exit and return to user space.
//!
//! A task's mappings live in per-CPU slots, so they must leave the CPU with the task and come
//! back with it. The September 2020 RFC swapped prev's slots for next's in one step while
//! `current` was still prev; an interrupt that mapped in the middle pushed at prev's `idx` onto
//! slots that were being filled for next (reference §3). The fix, which this module is, splits
//! the swap into two halves that each look at `current` only:
//!
//! - [`sched_out`] runs in prepare-switch with `current` = prev and clears prev's slots;
//! - [`sched_in`] runs in finish-switch with `current` = next and re-installs next's saved PTEs.
//!
//! Neither half ever writes `idx` or a saved value (rules S-4, I-4, INV-2), and both skip holes
//! (cells released out of order, [`Pte::HOLE`](crate::Pte::HOLE)): their slots are already empty. An interrupt during
//! `sched_out` pushes above prev's `idx`, onto slots that were already empty; one between the
//! stack switch and the end of `sched_in` pushes above next's `idx`, onto slots prev emptied and
//! the restore never writes. Both hooks cost one load and one branch when the task holds nothing
//! (rules S-2, I-2); the loops are out of line.

use crate::mechanism::step;
use crate::platform::{Checkpoint, Platform, Point, Report};
use crate::stack::sealed::Sealed;
use crate::types::{Cell, Pte, Slot};

/// Clear the outgoing task's slots on this CPU (rules S-1 to S-4).
///
/// # Safety
///
/// Call it from the scheduler's prepare-switch path, with `current` = the outgoing task, after
/// the last point at which that task could map or unmap and before the stack switch. Its
/// mappings stay recorded in its [`KmapStack`](crate::KmapStack) and come back at its
/// [`sched_in`]; until then no code may touch them.
#[inline(always)]
pub unsafe fn sched_out<P: Platform>(platform: &P) {
    if platform.current_stack().view().idx() != 0 {
        sched_out_slow(platform);
    }
}

// The reads of `current_stack` and `current_cpu` below are identity reads: no arrival point is
// needed after them (see the `mechanism` module doc).
#[cold]
#[inline(never)]
fn sched_out_slow<P: Platform>(platform: &P) {
    let stack = platform.current_stack().view();
    let cpu = platform.current_cpu();
    for cell in 0..stack.idx() {
        let Some(_) = saved_mapping(platform, cell) else {
            continue;
        };
        let slot = Slot {
            cpu,
            cell: Cell(cell),
        };
        platform.clear_pte(slot);
        step(platform, Point::SchedOutCleared);
        platform.invalidate_local(platform.slot_address(slot));
        step(platform, Point::SchedOutInvalidated);
    }
}

/// Re-install the incoming task's slots on this CPU (rules I-1 to I-6). A task that comes back
/// on another CPU than the one its mappings were made on is reported
/// ([`Report::Migrated`]), and its mappings are installed on this CPU's slots.
///
/// # Safety
///
/// Call it from the scheduler's finish-switch path, with `current` = the incoming task, after
/// the stack switch and before the task runs its own code again (interrupts may be enabled). A
/// newly created task's first run must call it too (it costs one branch).
#[inline(always)]
pub unsafe fn sched_in<P: Platform>(platform: &P) {
    if platform.current_stack().view().idx() != 0 {
        sched_in_slow(platform);
    }
}

#[cold]
#[inline(never)]
fn sched_in_slow<P: Platform>(platform: &P) {
    let stack = platform.current_stack().view();
    let cpu = platform.current_cpu();
    let home = stack.home();
    if home != cpu {
        platform.report(Report::Migrated {
            from: home,
            to: cpu,
        });
    }
    for cell in 0..stack.idx() {
        let Some(pte) = saved_mapping(platform, cell) else {
            continue;
        };
        platform.install_pte(
            Slot {
                cpu,
                cell: Cell(cell),
            },
            pte,
        );
        step(platform, Point::SchedInInstalled);
    }
}

/// The saved PTE of a cell below `idx`, or `None` for a cell the switch hooks must skip: a guard
/// cell (reported if it is not empty), a hole (with [`Platform::RELEASE_ANY_ORDER`]: a normal
/// case, whose slot the release cleared) or a cell with no saved value (a bug, reported).
fn saved_mapping<P: Platform>(platform: &P, cell: usize) -> Option<Pte> {
    let pte = platform.current_stack().view().saved(cell);
    if P::GUARD_CELLS && cell.is_multiple_of(2) {
        if !pte.is_empty() {
            platform.report(Report::GuardCellNotEmpty { cell: Cell(cell) });
        }
        return None;
    }
    if P::RELEASE_ANY_ORDER && pte == Pte::HOLE {
        return None;
    }
    if pte.is_empty() {
        platform.report(Report::SavedValueEmpty { cell: Cell(cell) });
        return None;
    }
    Some(pte)
}

/// Mappings still held where none may be (see [`assert_no_mappings`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MappingsHeld {
    /// The number of cells in use.
    pub held: usize,
}

/// Check that the current task holds no mapping, on return to user space or at exit (rules F-2,
/// F-3). A task that does is reported ([`Report::MappingsHeld`]); nothing is cleaned up, as in
/// Linux: the mappings belong to code that is still on the task's stack, or that leaked them.
pub fn assert_no_mappings<P: Platform>(platform: &P, at: Checkpoint) -> Result<(), MappingsHeld> {
    match platform.current_stack().view().idx() {
        0 => Ok(()),
        held => {
            platform.report(Report::MappingsHeld { at, held });
            Err(MappingsHeld { held })
        }
    }
}
