//! The per-task state: how deep the task's stack of mappings is, and the PTE of every cell.
//!
//! Linux keeps this in `task_struct.kmap_ctrl` (reference §1.2). The stack is indexed by cell,
//! not by CPU slot, so it means the same thing on any CPU; that is why a task holding mappings
//! must not migrate (rule M-1.1), and why the switch hooks can rebuild the CPU's slots from it.
//!
//! Every field is written only by the map and unmap paths of contexts running on the task's CPU
//! while the task is current: the task itself, and interrupts and NMIs that nest on top of it
//! and restore `idx` before they return (rule N-2). The switch hooks only read it (INV-2). The
//! fields are atomics with relaxed ordering, which on 64-bit kernel architectures are plain
//! loads and stores (the saved PTEs are `AtomicU64`, which several 32-bit targets do not have);
//! they are atomics only so that the type is honestly `Sync` (a task struct is shared) and no
//! access can tear.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::platform::Platform;
use crate::types::{Cell, CpuId, Pte};

/// A task's kmap stack: the depth `idx` and the saved PTE of each of its `CELLS` cells.
///
/// Embed one in each task struct and return it from
/// [`Platform::current_stack`](crate::Platform::current_stack). All `CELLS` cells are usable
/// (Linux can use only `KM_MAX_IDX - 1` of its cells, rule M-3); with guard cells, the odd ones
/// are.
///
/// `KmapStack` is deliberately neither `Clone` nor `Copy`: a child task starts from
/// [`KmapStack::fork`], never from a copy of its parent's mappings (rule F-1).
///
/// # Invariants
///
/// - Every cell at or above `idx` holds [`Pte::EMPTY`] (map records below `idx` only after the
///   push; unmap zeroes the top cell before the pop).
/// - With guard cells, every even cell holds [`Pte::EMPTY`].
/// - While `idx > 0`, `home` is the CPU the mappings were made on.
pub struct KmapStack<const CELLS: usize = 16> {
    idx: AtomicUsize,
    home: AtomicU32,
    saved: [AtomicU64; CELLS],
}

impl<const CELLS: usize> KmapStack<CELLS> {
    /// The number of cells.
    pub const CELLS: usize = CELLS;

    /// An empty stack, for a new task.
    pub const fn new() -> Self {
        KmapStack {
            idx: AtomicUsize::new(0),
            home: AtomicU32::new(0),
            saved: [const { AtomicU64::new(0) }; CELLS],
        }
    }

    /// The stack for a task forked by the current one: always empty (rule F-1). A parent that
    /// holds mappings is reported ([`Report::ForkWithMappings`](crate::Report::ForkWithMappings))
    /// and left untouched.
    pub fn fork<P: Platform>(&self, platform: &P) -> Self {
        let held = self.depth();
        if held != 0 {
            platform.report(crate::Report::ForkWithMappings { held });
        }
        Self::new()
    }

    /// How many cells are in use (`idx`), guard cells included.
    pub fn depth(&self) -> usize {
        self.idx.load(Relaxed)
    }

    /// The saved PTE of `cell` ([`Pte::EMPTY`] for a free or guard cell).
    ///
    /// # Panics
    ///
    /// If `cell` is not below `CELLS`.
    pub fn saved(&self, cell: Cell) -> Pte {
        Pte::from_raw(self.saved[cell.0].load(Relaxed))
    }

    /// The CPU the live mappings were made on, if there are any.
    pub fn home_cpu(&self) -> Option<CpuId> {
        (self.depth() != 0).then(|| CpuId(self.home.load(Relaxed)))
    }
}

/// Everything a [`KmapStack`] holds, as plain values: what a model checker saves at a point of
/// an execution so that it can return to that point later ([`KmapStack::restore`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StackState<const CELLS: usize> {
    /// `idx`.
    pub idx: usize,
    /// The CPU the mappings were made on (meaningful while `idx > 0`).
    pub home: CpuId,
    /// The saved PTE of every cell.
    pub saved: [Pte; CELLS],
}

impl<const CELLS: usize> KmapStack<CELLS> {
    /// A copy of everything the stack holds.
    pub fn state(&self) -> StackState<CELLS> {
        StackState {
            idx: self.depth(),
            home: CpuId(self.home.load(Relaxed)),
            saved: core::array::from_fn(|cell| self.saved(Cell(cell))),
        }
    }

    /// Put the stack back into a state it had earlier in the same execution. For model
    /// checkers that try an event (an interrupt handler, say) and then undo it; a kernel never
    /// needs it.
    ///
    /// # Safety
    ///
    /// - `state` was taken from this stack by [`state`](Self::state), and every slot, TLB entry
    ///   and counter of the machine is put back to what it was at that moment too, so that
    ///   the stack describes the machine again (the invariants listed on [`KmapStack`]).
    /// - Every context that is inside the crate's code on this stack (suspended at an arrival
    ///   point) was already there when `state` was taken, at the same step.
    pub unsafe fn restore(&self, state: &StackState<CELLS>) {
        self.idx.store(state.idx, Relaxed);
        self.home.store(state.home.0, Relaxed);
        for (cell, pte) in self.saved.iter().zip(state.saved.iter()) {
            cell.store(pte.raw(), Relaxed);
        }
    }
}

impl<const CELLS: usize> Default for KmapStack<CELLS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CELLS: usize> core::fmt::Debug for KmapStack<CELLS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let depth = self.depth();
        let mut list = f.debug_struct("KmapStack");
        list.field("idx", &depth);
        list.field("saved", &Saved(&self.saved[..depth.min(CELLS)]));
        list.finish()
    }
}

struct Saved<'a>(&'a [AtomicU64]);

impl core::fmt::Debug for Saved<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|pte| Pte::from_raw(pte.load(Relaxed))))
            .finish()
    }
}

/// The stack types a [`Platform`] may name as its `Stack`: [`KmapStack<N>`] for any `N`.
///
/// Sealed: the mechanism relies on the layout of [`KmapStack`].
pub trait TaskStack: sealed::Sealed + Sync {}

impl<const CELLS: usize> TaskStack for KmapStack<CELLS> {}

impl<const CELLS: usize> sealed::Sealed for KmapStack<CELLS> {
    #[inline(always)]
    fn view(&self) -> sealed::StackView<'_> {
        sealed::StackView {
            idx: &self.idx,
            home: &self.home,
            saved: &self.saved,
        }
    }
}

pub(crate) mod sealed {
    use super::*;

    /// The fields of a [`KmapStack`](super::KmapStack), whatever its size.
    pub struct StackView<'a> {
        pub(crate) idx: &'a AtomicUsize,
        pub(crate) home: &'a AtomicU32,
        pub(crate) saved: &'a [AtomicU64],
    }

    pub trait Sealed {
        fn view(&self) -> StackView<'_>;
    }
}

impl sealed::StackView<'_> {
    #[inline(always)]
    pub(crate) fn idx(&self) -> usize {
        self.idx.load(Relaxed)
    }

    #[inline(always)]
    pub(crate) fn set_idx(&self, idx: usize) {
        self.idx.store(idx, Relaxed)
    }

    #[inline(always)]
    pub(crate) fn saved(&self, cell: usize) -> Pte {
        Pte::from_raw(self.saved[cell].load(Relaxed))
    }

    #[inline(always)]
    pub(crate) fn set_saved(&self, cell: usize, pte: Pte) {
        self.saved[cell].store(pte.raw(), Relaxed)
    }

    #[inline(always)]
    pub(crate) fn home(&self) -> CpuId {
        CpuId(self.home.load(Relaxed))
    }

    #[inline(always)]
    pub(crate) fn set_home(&self, cpu: CpuId) {
        self.home.store(cpu.0, Relaxed)
    }

    #[inline(always)]
    pub(crate) fn cells(&self) -> usize {
        self.saved.len()
    }
}
