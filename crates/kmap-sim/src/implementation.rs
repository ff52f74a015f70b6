//! The implementation under test, behind one seam.
//!
//! The machine calls kmap_local's entry points (map, unmap, the switch hooks, fork) through
//! [`KmapOps`], and the code behind them reaches the machine through [`Hardware`]. The crate's
//! code is one implementation (`platform.rs`); Linux's own `mm/highmem.c` is the other
//! (the `kmap-linux` crate, GPL-2.0 like the code it compiles, which registers itself with
//! [`register_linux`] so that this crate never depends on it). Foreign code names its arrival
//! points with a [`ForeignPoint`]: its own file and line, and what it is about to touch.

use std::fmt;
use std::sync::OnceLock;

use kmap::Slot;

pub use crate::platform::{
    Counter, DynStack, End, Guard, Hardware, KmapOps, Layout, MapKind, ScopeMap,
};
use crate::settings::{Implementation, Settings};

/// A place in foreign code where it calls the machine: a memory access (a TSAN hook) or a call
/// of its shim.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Site {
    /// The source file, as the code's own tree names it (`mm/highmem.c`).
    pub file: &'static str,
    /// The line in it.
    pub line: u32,
    /// The compiled function the site is in (functions inlined into it included).
    pub function: &'static str,
    /// The source line, trimmed.
    pub text: &'static str,
}

/// What foreign code is about to read, write or call at an arrival point.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Access {
    /// A read of memory.
    Read(Object),
    /// A write of memory.
    Write(Object),
    /// A call of the shim (a kernel function the machine answers), with the slot whose PTE it
    /// reads or writes, if any.
    Call(&'static str, Option<Slot>),
}

/// A piece of memory foreign code touches.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Object {
    /// `idx` of a task's `kmap_ctrl` (`current`'s, or another's: a forked child's).
    Idx {
        /// Whether it is `current`'s.
        current: bool,
    },
    /// A saved PTE of a task's `kmap_ctrl`.
    Pteval {
        /// Whether it is `current`'s.
        current: bool,
        /// The cell.
        cell: u8,
    },
    /// The page-table entry of a slot, read directly (`*kmap_pte`, as Linux 6.1's check does)
    /// rather than through `ptep_get`.
    Pte(Slot),
    /// A variable of the code, by name.
    Named(&'static str),
    /// Memory the machine cannot name (no address: labels are part of the state key, and an
    /// address is not the same from one run to the next).
    Other,
}

/// An arrival point of foreign code: before the access (or call) at a site.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct ForeignPoint {
    /// Where.
    pub site: &'static Site,
    /// What is touched.
    pub access: Access,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owner = |current: bool| if current { "current" } else { "tsk" };
        match *self {
            Object::Idx { current } => write!(f, "{}->kmap_ctrl.idx", owner(current)),
            Object::Pteval { current, cell } => {
                write!(f, "{}->kmap_ctrl.pteval[{cell}]", owner(current))
            }
            Object::Pte(slot) => write!(f, "PTE of slot {}.{}", slot.cpu.0, slot.cell.0),
            Object::Named(name) => f.write_str(name),
            Object::Other => f.write_str("memory outside every kmap_ctrl"),
        }
    }
}

impl fmt::Display for ForeignPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let site = self.site;
        write!(f, "{}:{} {}: ", site.file, site.line, site.function)?;
        match self.access {
            Access::Read(object) => write!(f, "read {object}"),
            Access::Write(object) => write!(f, "write {object}"),
            Access::Call(name, None) => write!(f, "{name}()"),
            Access::Call(name, Some(slot)) => {
                write!(f, "{name}(PTE of slot {}.{})", slot.cpu.0, slot.cell.0)
            }
        }
    }
}

/// What an implementation gives the machine for a run's settings: its entry points for the
/// run's layout, or why it cannot run them.
pub type Factory = fn(&Settings) -> Result<&'static dyn KmapOps, String>;

static LINUX: OnceLock<Factory> = OnceLock::new();

/// Make Linux's code available to runs with `impl = "linux"` (called by `kmap-linux`'s
/// `register`; a second call changes nothing).
pub fn register_linux(factory: Factory) {
    let _ = LINUX.set(factory);
}

/// The entry points of the implementation `settings` name, for their layout.
pub(crate) fn ops(settings: &Settings) -> Result<&'static dyn KmapOps, String> {
    match settings.implementation {
        Implementation::Crate => crate::platform::ops_for(
            settings.cells,
            settings.guard_cells,
            settings.force_map,
            settings.any_order(),
        )
        .ok_or_else(|| format!("the crate is not built for {} cells", settings.cells)),
        Implementation::Linux => match LINUX.get() {
            Some(factory) => factory(settings),
            None => Err("this program was built without kmap-linux, Linux's code".into()),
        },
    }
}
