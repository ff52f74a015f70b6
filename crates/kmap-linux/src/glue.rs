//! The simulator's side of the C: the entry points the machine calls ([`KmapOps`] for each
//! compiled layout) and the callbacks the C calls (`kmap_linux_*`, from `c/hooks.c`).

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_uint, c_ulong, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Once, OnceLock};

use kmap::{Checkpoint, Frame, MapError, MappingsHeld, Pte, Report, Slot, UnmapError, VirtAddr};
use kmap_sim::implementation::{
    Access, Counter, DynStack, ForeignPoint, Guard, Hardware, KmapOps, MapKind, Object, ScopeMap,
    Site,
};
use kmap_sim::{PAGE_SIZE, WINDOW};
use rustc_hash::FxHashMap;

use crate::Layout;
use crate::stack::{KmapCtrl, LinuxStack, field_at};

thread_local! {
    /// The machine the C on this thread runs on, set by every entry point before it calls
    /// the C (see [`enter`]).
    static MACHINE: Cell<Option<*const (dyn Hardware + 'static)>> = const { Cell::new(None) };
    /// The task other than `current` whose `kmap_ctrl` the C in progress works on: the child
    /// of a `kmap_local_fork`, or next in the RFC's `kmap_switch_temporary` (for the labels
    /// of its accesses only: `tsk->kmap_ctrl.idx`).
    /// Its block's address and cells, arithmetic only (nothing is read through it, so a value
    /// left by a context that never came back, a crash, can only mislabel an access).
    static OTHER: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Make `m` the machine of the C that runs on this thread from now on.
fn enter(m: &dyn Hardware) {
    let m: *const (dyn Hardware + '_) = m;
    // SAFETY: only the lifetime is erased. The pointer is used (by [`machine`]) only while C
    // code called from an entry point on this thread runs, and the machine outlives every
    // context of its execution: an execution's contexts are ended before it is dropped
    // (`driver.rs`), and a suspended context of an ended execution is never resumed.
    let m: *const (dyn Hardware + 'static) = unsafe { std::mem::transmute(m) };
    MACHINE.with(|c| c.set(Some(m)));
}

/// The machine of the C running now.
fn machine() -> &'static dyn Hardware {
    let m = MACHINE
        .with(Cell::get)
        .expect("the C runs only when called from an entry point");
    // SAFETY: set by `enter` for the execution whose C is running (see there).
    unsafe { &*m }
}

/// The payload of the unwind out of a BUG on the scheduler's own stack (see [`Hardware::bug`]).
struct Bugged;

/// Run the C behind an entry point, on `m`; `fallback` if it BUGs where the context cannot be
/// suspended (the machine has recorded the crash and ends the execution).
fn run<R>(m: &dyn Hardware, fallback: R, body: impl FnOnce() -> R) -> R {
    enter(m);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) if payload.is::<Bugged>() => fallback,
        Err(payload) => resume_unwind(payload),
    }
}

/// Every site of every layout by its return address, and the variables the C's accesses name.
struct Sites {
    by_address: FxHashMap<usize, &'static Site>,
    variables: HashMap<usize, &'static str>,
}

static SITES: OnceLock<Sites> = OnceLock::new();

/// Boot every layout's code (what a kernel's first kmap_local does) and index its sites.
pub(crate) fn boot(layouts: &'static [Layout]) {
    static BOOT: Once = Once::new();
    BOOT.call_once(|| {
        let mut sites = Sites {
            by_address: FxHashMap::default(),
            variables: HashMap::new(),
        };
        for layout in layouts {
            // SAFETY: `boot` writes the unit's own `__kmap_pte`, once, before any other of the
            // unit's code runs (under `BOOT`, before `register` returns).
            unsafe { (layout.entries.boot)() };
            // SAFETY: as above; it returns an address.
            let variable = unsafe { (layout.entries.kmap_pte_variable)() } as usize;
            sites.variables.insert(variable, "__kmap_pte");
            for (n, site) in layout.sites.iter().enumerate() {
                // SAFETY: the table has one entry per site, in the same order (build.rs).
                let address = unsafe { *layout.addresses.add(n) };
                sites.by_address.insert(address, site);
            }
        }
        let _ = SITES.set(sites);
    });
}

static UNKNOWN: Site = Site {
    file: "?",
    line: 0,
    function: "?",
    text: "",
};

fn site(address: *const c_void) -> &'static Site {
    SITES
        .get()
        .and_then(|s| s.by_address.get(&(address as usize)).copied())
        .unwrap_or(&UNKNOWN)
}

fn current(m: &dyn Hardware) -> &LinuxStack {
    m.current_stack()
        .as_any()
        .downcast_ref()
        .expect("every stack of a Linux run is a LinuxStack")
}

/// What the byte at `addr` is.
fn object(m: &dyn Hardware, addr: usize) -> Object {
    if let Some(field) = current(m).field_of(addr) {
        return match field {
            None => Object::Idx { current: true },
            Some(cell) => Object::Pteval {
                current: true,
                cell,
            },
        };
    }
    let (base, cells) = OTHER.with(Cell::get);
    if let Some(field) = (base != 0).then(|| field_at(base, cells, addr)).flatten() {
        return match field {
            None => Object::Idx { current: false },
            Some(cell) => Object::Pteval {
                current: false,
                cell,
            },
        };
    }
    if let Some(slot) = slot_of_pte(m, addr as c_ulong) {
        return Object::Pte(slot);
    }
    match SITES.get().and_then(|s| s.variables.get(&addr)) {
        Some(name) => Object::Named(name),
        None => Object::Other,
    }
}

const ACCESS_WRITE: c_uint = 1;

/// A TSAN hook: an access of `size` bytes at `addr` is next.
#[unsafe(no_mangle)]
extern "C-unwind" fn kmap_linux_access(
    addr: *const c_void,
    _size: c_uint,
    flags: c_uint,
    at: *const c_void,
) {
    let m = machine();
    let object = object(m, addr as usize);
    let access = if flags & ACCESS_WRITE != 0 {
        Access::Write(object)
    } else {
        Access::Read(object)
    };
    let site = site(at);
    m.foreign_point(ForeignPoint { site, access });
    // A slot's PTE read or written directly, not through the shim: the machine's page table is
    // the truth, and a hook sees neither the value read nor the one written (the build script
    // turns Linux 6.1's `*kmap_pte` into `ptep_get(kmap_pte)`, as later kernels read it).
    // A store the machine cannot place would land in the simulator's own memory: a crash at
    // its site, before it happens.
    if object == Object::Other && flags & ACCESS_WRITE != 0 {
        m.bug(format!(
            "{}:{}: a write outside every kmap_ctrl (out of bounds), which would corrupt memory",
            site.file, site.line
        ));
        resume_unwind(Box::new(Bugged))
    }
    if let Object::Pte(slot) = object {
        m.bug(format!(
            "{}:{}: a direct access to the PTE of slot {}.{} (not through ptep_get, set_pte_at \
             or pte_clear), which the simulator cannot model",
            site.file, site.line, slot.cpu.0, slot.cell.0
        ));
        resume_unwind(Box::new(Bugged))
    }
}

/// The shim's calls, as `c/hooks.c` numbers them.
const CALLS: &[&str] = &[
    "current",
    "smp_processor_id",
    "preempt_disable",
    "preempt_enable",
    "migrate_disable",
    "migrate_enable",
    "pagefault_disable",
    "pagefault_enable",
    "in_hardirq",
    "irqs_disabled",
    "ptep_get",
    "set_pte_at",
    "pte_clear",
    "flush_tlb_one_kernel",
    "PageHighMem",
    "page_address",
    "memset",
];

/// The slot whose PTE `ptep` is (shim.h: `virt_to_kpte`).
fn slot_of_pte(m: &dyn Hardware, ptep: c_ulong) -> Option<Slot> {
    let base = SHIM_WINDOW_PTES.with(|b| *b);
    let entry = (ptep as usize).checked_sub(base)? / size_of::<u64>();
    m.layout()
        .slot_of(VirtAddr::new(WINDOW + entry * PAGE_SIZE))
}

thread_local! {
    static SHIM_WINDOW_PTES: usize = {
        unsafe extern "C" {
            static kmap_sim_window_ptes: [u64; 0];
        }
        &raw const kmap_sim_window_ptes as usize
    };
}

/// A call of the shim: an arrival point, then what the kernel function does.
#[unsafe(no_mangle)]
extern "C-unwind" fn kmap_linux_call(
    call: c_uint,
    a: c_ulong,
    b: c_ulong,
    c: c_ulong,
    at: *const c_void,
) -> c_ulong {
    let m = machine();
    let name = CALLS[call as usize];
    let slot = if (10..=12).contains(&call) {
        slot_of_pte(m, a)
    } else {
        None
    };
    let site = site(at);
    m.foreign_point(ForeignPoint {
        site,
        access: Access::Call(name, slot),
    });
    m.call(name);
    let no_slot = |m: &dyn Hardware| {
        m.bug(format!(
            "{}:{}: {name} of a PTE outside the kmap window",
            site.file, site.line
        ));
        resume_unwind(Box::new(Bugged))
    };
    match call {
        0 => current(m).as_task() as c_ulong,
        1 => m.read_cpu().0 as c_ulong,
        2 => counter(m, Counter::Preempt, 1),
        3 => counter(m, Counter::Preempt, -1),
        4 => counter(m, Counter::Migrate, 1),
        5 => counter(m, Counter::Migrate, -1),
        6 => counter(m, Counter::Pagefault, 1),
        7 => counter(m, Counter::Pagefault, -1),
        8 => m.in_interrupt() as c_ulong,
        9 => m.irqs_disabled() as c_ulong,
        10 => match slot {
            // Without the BUG_ON, its check sees every slot free (as the crate's platform).
            Some(slot) if m.bug_on() => m.read_pte(slot).raw() as c_ulong,
            Some(_) => 0,
            None => no_slot(m),
        },
        11 => match slot {
            Some(slot) => {
                // The CPU a map installs on is the one its task's mappings live on (kmap_ctrl
                // does not say; INV-4 needs it). The switch installs a task's slots where it
                // runs, which is what INV-4 compares with.
                if !site.function.contains("sched_") && !site.function.contains("switch_temporary")
                {
                    current(m).set_home(slot.cpu);
                }
                m.install_pte(slot, Pte::from_raw(b));
                0
            }
            None => no_slot(m),
        },
        12 => match slot {
            Some(slot) => {
                m.clear_pte(slot);
                0
            }
            None => no_slot(m),
        },
        13 => {
            m.invalidate_local(VirtAddr::new(a as usize));
            0
        }
        14 => (a >= m.layout().lowmem) as c_ulong,
        15 => m
            .layout()
            .direct_map(Frame::new(a))
            .map_or(0, |addr| addr.as_usize() as c_ulong),
        16 => {
            // SAFETY: the C's memset of a `kmap_ctrl` it owns (a forked child's), in bounds.
            unsafe { std::ptr::write_bytes(a as *mut u8, b as u8, c as usize) };
            0
        }
        _ => unreachable!("hooks.c numbers its calls as CALLS does"),
    }
}

fn counter(m: &dyn Hardware, counter: Counter, delta: i32) -> c_ulong {
    m.count(counter, delta);
    0
}

fn message(what: &str, file: *const c_char, line: c_int, condition: *const c_char) -> String {
    // SAFETY: the shim passes `__FILE__` and a stringified condition: NUL-terminated literals.
    let (file, condition) = unsafe { (CStr::from_ptr(file), CStr::from_ptr(condition)) };
    format!(
        "{what}({}) at {}:{line}",
        condition.to_string_lossy(),
        file.to_string_lossy()
    )
}

/// Linux's `WARN_ON_ONCE`.
#[unsafe(no_mangle)]
extern "C-unwind" fn kmap_linux_warn(
    file: *const c_char,
    line: c_int,
    condition: *const c_char,
    at: *const c_void,
) {
    let m = machine();
    m.foreign_point(ForeignPoint {
        site: site(at),
        access: Access::Call("WARN_ON_ONCE", None),
    });
    m.warn(message("WARN_ON_ONCE", file, line, condition));
}

/// Linux's `BUG_ON`: a crash; the context never goes on.
#[unsafe(no_mangle)]
extern "C-unwind" fn kmap_linux_bug(
    file: *const c_char,
    line: c_int,
    condition: *const c_char,
    at: *const c_void,
) -> ! {
    let m = machine();
    m.foreign_point(ForeignPoint {
        site: site(at),
        access: Access::Call("BUG_ON", None),
    });
    m.bug(message("BUG_ON", file, line, condition));
    resume_unwind(Box::new(Bugged))
}

impl KmapOps for Layout {
    fn map(&self, m: &dyn Hardware, frame: Frame, kind: MapKind) -> Result<VirtAddr, MapError> {
        let entry = match kind {
            MapKind::Page => self.entries.map_page,
            MapKind::Pfn => self.entries.map_pfn,
            MapKind::Atomic => self.entries.map_atomic,
        };
        // SAFETY: the C maps the frame in the current context; it never dereferences the
        // address, and every machine state it touches goes through the shim.
        let addr = run(m, 0, || unsafe { entry(frame.pfn() as c_ulong) } as usize);
        Ok(VirtAddr::new(addr))
    }

    fn unmap(&self, m: &dyn Hardware, addr: VirtAddr, atomic: bool) -> Result<(), UnmapError> {
        let entry = if atomic {
            self.entries.unmap_atomic
        } else {
            self.entries.unmap
        };
        // SAFETY: as in `map`.
        run(m, (), || unsafe { entry(addr.as_usize() as *const c_void) });
        Ok(())
    }

    fn unmap_any_order(&self, m: &dyn Hardware, addr: VirtAddr) -> Result<(), UnmapError> {
        assert!(
            self.any_order,
            "the factory refuses release in any order but with the any-order edit"
        );
        self.unmap(m, addr, false)
    }

    fn sched_out(&self, m: &dyn Hardware) {
        // SAFETY: called by the scheduler in prepare-switch, current = prev, as Linux does.
        run(m, (), || unsafe { (self.entries.sched_out)() });
    }

    fn sched_in(&self, m: &dyn Hardware) {
        // SAFETY: called by the scheduler in finish-switch, current = next, as Linux does.
        run(m, (), || unsafe { (self.entries.sched_in)() });
    }

    fn fork(&self, m: &dyn Hardware) -> Box<dyn DynStack> {
        // The child starts as a copy of the parent (dup_task_struct), then kmap_local_fork.
        // It lives on this stack while the C runs (it owns no memory: see `driver.rs`), and
        // is boxed once the C is done.
        let child = LinuxStack::copy_of(current(m));
        let outer = OTHER.with(|o| o.replace(child.extent()));
        // SAFETY: `child` is alive for the call; the C writes only its kmap_ctrl.
        run(m, (), || unsafe {
            (self.entries.fork)(child.as_task() as *mut c_void)
        });
        OTHER.with(|o| o.set(outer));
        Box::new(child)
    }

    fn switch_temporary(&self, m: &dyn Hardware, prev: &dyn DynStack, next: &dyn DynStack) -> bool {
        let stack = |s: &dyn DynStack| -> *const LinuxStack {
            s.as_any()
                .downcast_ref::<LinuxStack>()
                .expect("every stack of a Linux run is a LinuxStack")
        };
        let (prev, next) = (stack(prev), stack(next));
        // SAFETY: `next` is a stack of the machine, alive for the whole run.
        let outer = OTHER.with(|o| o.replace(unsafe { (*next).extent() }));
        // SAFETY: both stacks live in the machine for the whole run; the C reads and writes
        // only their kmap_ctrl, and every machine state through the shim.
        run(m, (), || unsafe {
            (self.entries.switch_temporary)(
                (*prev).as_task() as *mut c_void,
                (*next).as_task() as *mut c_void,
            )
        });
        OTHER.with(|o| o.set(outer));
        true
    }

    fn assert_no_mappings(&self, m: &dyn Hardware, at: Checkpoint) -> Result<(), MappingsHeld> {
        // Linux's kmap_assert_nomap() (DEBUG_LOCKS_WARN_ON(current->kmap_ctrl.idx)).
        match current(m).depth() {
            0 => Ok(()),
            held => {
                m.report(Report::MappingsHeld { at, held });
                Err(MappingsHeld { held })
            }
        }
    }

    fn new_stack(&self) -> Box<dyn DynStack> {
        Box::new(LinuxStack::new(self.cells))
    }

    fn with_local(&self, _: &dyn Hardware, _: &mut dyn FnMut(&mut dyn Guard)) {
        unreachable!("Config::validate refuses the guard API with impl = \"linux\"")
    }

    fn with_scope(&self, _: &dyn Hardware, _: &mut dyn FnMut(&dyn ScopeMap), _: &mut dyn FnMut()) {
        unreachable!("Config::validate refuses the scope API with impl = \"linux\"")
    }
}

const _: () = assert!(std::mem::offset_of!(KmapCtrl, pteval) == 8);
