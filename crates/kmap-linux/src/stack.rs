//! A task's `struct kmap_ctrl`, as Linux's code reads and writes it and the machine inspects it.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};

use kmap::{Cell as KCell, CpuId, Pte};
use kmap_sim::MAX_CELLS;
use kmap_sim::implementation::DynStack;

/// `struct kmap_ctrl` (include/linux/sched.h), for the largest `KM_MAX_IDX`: the C of a
/// layout with fewer cells uses a prefix of it. `struct task_struct` in the shim is this, so
/// `current` points here.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KmapCtrl {
    pub(crate) idx: i32,
    pub(crate) pteval: [u64; MAX_CELLS],
}

/// A task's kmap state under Linux's code: its `kmap_ctrl`, and the CPU its mappings were
/// made on, which `kmap_ctrl` does not record (the simulator keeps it, for INV-4).
pub struct LinuxStack {
    ctrl: UnsafeCell<KmapCtrl>,
    home: Cell<Option<CpuId>>,
    cells: usize,
}

impl LinuxStack {
    /// An empty stack of `cells` cells.
    pub(crate) fn new(cells: usize) -> LinuxStack {
        LinuxStack {
            ctrl: UnsafeCell::new(KmapCtrl {
                idx: 0,
                pteval: [0; MAX_CELLS],
            }),
            home: Cell::new(None),
            cells,
        }
    }

    /// A copy of `parent` (what `dup_task_struct` gives a child before `kmap_local_fork`).
    pub(crate) fn copy_of(parent: &LinuxStack) -> LinuxStack {
        LinuxStack {
            ctrl: UnsafeCell::new(parent.ctrl()),
            home: Cell::new(parent.home.get()),
            cells: parent.cells,
        }
    }

    /// The `struct task_struct *` (and `struct kmap_ctrl *`) the C sees.
    pub(crate) fn as_task(&self) -> *mut KmapCtrl {
        self.ctrl.get()
    }

    /// A copy of the control block.
    pub(crate) fn ctrl(&self) -> KmapCtrl {
        // SAFETY: the C writes the block only while it runs, and it runs only on the host
        // thread that is now here (the machine runs one context at a time); a copy is a read
        // between two of its accesses.
        unsafe { *self.ctrl.get() }
    }

    /// Record the CPU the stack's mappings are made on.
    pub(crate) fn set_home(&self, cpu: CpuId) {
        self.home.set(Some(cpu));
    }

    /// Where the byte at `addr` is in the control block (see [`field_at`]).
    pub(crate) fn field_of(&self, addr: usize) -> Option<Option<u8>> {
        field_at(self.ctrl.get() as usize, self.cells, addr)
    }

    /// The block's address and the stack's cells, for [`field_at`].
    pub(crate) fn extent(&self) -> (usize, usize) {
        (self.ctrl.get() as usize, self.cells)
    }
}

impl DynStack for LinuxStack {
    fn depth(&self) -> usize {
        self.ctrl().idx.clamp(0, self.cells as i32) as usize
    }
    fn raw_idx(&self) -> i64 {
        self.ctrl().idx as i64
    }
    fn saved(&self, cell: KCell) -> Pte {
        Pte::from_raw(self.ctrl().pteval[cell.0])
    }
    fn cells(&self) -> usize {
        self.cells
    }
    fn home(&self) -> Option<CpuId> {
        (self.depth() != 0).then_some(self.home.get()).flatten()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn save(&self) -> Box<dyn Any> {
        Box::new((self.ctrl(), self.home.get()))
    }
    unsafe fn restore(&self, saved: &dyn Any) {
        let &(ctrl, home) = saved
            .downcast_ref::<(KmapCtrl, Option<CpuId>)>()
            .expect("saved from a Linux stack");
        // SAFETY: the caller puts the machine back to the moment of `save`, when no C code of
        // this stack's contexts is between two of its accesses on this thread but suspended
        // at an arrival point, as when it was saved.
        unsafe { *self.ctrl.get() = ctrl };
        self.home.set(home);
    }
}

/// Where the byte at `addr` is in a control block at `base` of a stack of `cells`: `Some(None)`
/// for `idx`, `Some(Some(cell))` for `pteval[cell]`, `None` outside (arithmetic only: nothing
/// is read).
pub(crate) fn field_at(base: usize, cells: usize, addr: usize) -> Option<Option<u8>> {
    let offset = addr.checked_sub(base)?;
    let pteval = std::mem::offset_of!(KmapCtrl, pteval);
    if offset < 4 {
        Some(None)
    } else if offset >= pteval && offset < pteval + 8 * cells {
        Some(Some(((offset - pteval) / 8) as u8))
    } else {
        None
    }
}
