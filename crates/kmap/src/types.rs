//! The nouns of the mechanism as newtypes, so that mixing up a frame number, a PTE value, a
//! virtual address and a stack cell is a type error rather than a silent bug.

use core::fmt;

/// A physical page frame, named by its page frame number (pfn).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Frame(u64);

impl Frame {
    /// The frame with page frame number `pfn`.
    pub const fn new(pfn: u64) -> Self {
        Frame(pfn)
    }

    /// The page frame number.
    pub const fn pfn(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({})", self.0)
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frame {}", self.0)
    }
}

/// A page-table entry value, in the platform's own format.
///
/// The crate never looks inside a `Pte`: it stores it in the task's saved cells and hands it
/// back to the platform to re-install. The only values it interprets are [`Pte::EMPTY`], the
/// all-zero bit pattern, and with any-order release [`Pte::HOLE`], compared by raw value (as
/// Linux does since the 2022 xtensa fix, where zero is not `pte_none`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Pte(u64);

impl Pte {
    /// The all-zero value: a free cell, a guard cell, a cleared slot.
    pub const EMPTY: Pte = Pte(0);

    /// The all-ones value: the saved value of a *hole*, a cell below the top whose mapping was
    /// released out of order and that is popped with the top
    /// ([`Platform::RELEASE_ANY_ORDER`](crate::Platform::RELEASE_ANY_ORDER)). Never written to a
    /// slot.
    pub const HOLE: Pte = Pte(u64::MAX);

    /// A PTE with this raw value.
    pub const fn from_raw(raw: u64) -> Self {
        Pte(raw)
    }

    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Whether this is the all-zero value.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pte({:#x})", self.0)
    }
}

/// Protection bits for a mapping, in the platform's own format (`kmap_local_page_prot`).
///
/// They travel inside the saved [`Pte`], so a mapping restored at `sched_in` has exactly the
/// protection it was made with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(transparent)]
pub struct Prot(u64);

impl Prot {
    /// Protection bits with this raw value.
    pub const fn from_raw(raw: u64) -> Self {
        Prot(raw)
    }

    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// A kernel virtual address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct VirtAddr(usize);

impl VirtAddr {
    /// The address `addr`.
    pub const fn new(addr: usize) -> Self {
        VirtAddr(addr)
    }

    /// The address as an integer.
    pub const fn as_usize(self) -> usize {
        self.0
    }

    /// The address as a raw pointer.
    pub const fn as_ptr(self) -> *mut u8 {
        self.0 as *mut u8
    }

    /// The start of the page of size `page_size` (a power of two) that holds this address.
    pub const fn align_down(self, page_size: usize) -> Self {
        VirtAddr(self.0 & !(page_size - 1))
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

/// A CPU number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub struct CpuId(pub u32);

/// A cell of a task's kmap stack: cell `i` is mapped, on whatever CPU the task runs, at that
/// CPU's slot `i`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub struct Cell(pub usize);

/// One per-CPU kmap slot: the page of virtual address space that CPU `cpu` uses for cell `cell`.
///
/// Every slot has a fixed virtual address and a PTE in the kernel page tables, shared by all
/// address spaces (Linux: the fixmap block `KM_MAX_IDX × NR_CPUS`, reference §1.3).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Slot {
    /// The CPU whose window holds the slot.
    pub cpu: CpuId,
    /// The cell it serves.
    pub cell: Cell,
}
