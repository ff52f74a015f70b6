//! Refusals. Each is returned before the operation changed any state: the stack, the slots,
//! the TLB and every counter are as they were before the call.

use core::fmt;

use crate::types::{Slot, VirtAddr};

/// Why a mapping was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// Every cell of the stack is in use (Linux: `BUG()`, rule M-3). The budget is shared by the
    /// task and every interrupt and NMI nested on top of it (rule N-4).
    Overflow {
        /// The number of cells of the stack.
        cells: usize,
    },
    /// The slot for the next cell already holds a PTE on this CPU (Linux: `BUG()`, rule M-1.5):
    /// someone broke INV-1 (cells at or above `idx` are empty on the current CPU).
    SlotNotEmpty {
        /// The occupied slot.
        slot: Slot,
    },
}

/// Why an unmap was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnmapError {
    /// Nothing is mapped (Linux writes `pteval[-1]` and then BUGs, rule U-4).
    EmptyStack,
    /// The address is a kmap slot, but not the top cell of the current context on this CPU:
    /// an out-of-order, double or foreign unmap (Linux warns and unmaps the top cell anyway,
    /// invalidating the wrong TLB entry, rule U-3).
    NotTopCell {
        /// The slot the address belongs to.
        given: Slot,
        /// The slot that may be unmapped now.
        top: Slot,
    },
    /// Force-map is on, so every mapping is a slot, and this address is not one.
    NotKmapAddress {
        /// The address given.
        addr: VirtAddr,
    },
    /// [`raw::unmap_any_order`](crate::raw::unmap_any_order): the address is a kmap slot, but
    /// not a live cell of the current stack on this CPU (a cell at or above `idx`, a hole, a
    /// guard cell, another CPU's slot): a double or foreign release.
    NotLive {
        /// The slot the address belongs to.
        given: Slot,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Overflow { cells } => {
                write!(f, "kmap stack overflow: all {cells} cells in use")
            }
            MapError::SlotNotEmpty { slot } => write!(
                f,
                "slot for cell {} on CPU {} is not empty (INV-1 broken)",
                slot.cell.0, slot.cpu.0
            ),
        }
    }
}

impl fmt::Display for UnmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnmapError::EmptyStack => write!(f, "unmap with no mapping held"),
            UnmapError::NotTopCell { given, top } => write!(
                f,
                "unmap of cell {} on CPU {}, but the top is cell {} on CPU {} (unmaps are LIFO)",
                given.cell.0, given.cpu.0, top.cell.0, top.cpu.0
            ),
            UnmapError::NotLive { given } => write!(
                f,
                "release of cell {} on CPU {}, which holds no live mapping of this task here",
                given.cell.0, given.cpu.0
            ),
            UnmapError::NotKmapAddress { addr } => {
                write!(f, "{addr:?} is not a kmap address (force-map is on)")
            }
        }
    }
}

impl core::error::Error for MapError {}
impl core::error::Error for UnmapError {}
