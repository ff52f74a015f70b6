//! Linux's own kmap_local code (`mm/highmem.c`), run by kmap's simulator and explorer.
//!
//! The build script extracts the code from an installed kernel source (nothing of Linux is
//! in this repository) and compiles it with GCC's TSAN instrumentation, as Linux's KCSAN
//! does, against a shim (`c/shim.h`): every memory access of the compiled C calls a hook
//! first, and every kernel function it needs is a call into the simulator (`c/hooks.c`).
//! [`register`] makes it the implementation behind `impl = "linux"`.
//!
//! # Why a point before every hook and every shim call covers every interleaving
//!
//! A context's registers are its own: an interrupt, an NMI or another CPU sees only memory
//! and the machine (the shim). So what one context does can affect another only through an
//! access to memory or a call of the shim, and an arrival point right before each of them
//! lets every other context act at every moment that can matter: between two accesses,
//! nothing another context could see or change happens. The instrumentation sees every
//! access GCC emits for the C; what it does not see is refused by the build script: inline
//! assembly (`#APP`), string instructions (`rep stos`, which `memset` can become: the shim
//! makes `memset` a call, and `-fno-builtin` keeps GCC from emitting one of its own), and a
//! call of anything the shim does not define. A slot's PTE is read and written only through
//! the shim (`ptep_get`, `set_pte_at`, `pte_clear`), so the machine's page table is the one
//! that answers; the build reads Linux 6.1's `*kmap_pte` as `ptep_get(kmap_pte)`, as later
//! kernels do, and a direct access the hooks meet anyway is a crash naming its site (the C's
//! own array of PTEs is never the truth).
//!
//! # The state key
//!
//! A stateful search keys a suspended call by its stack, what the machine answered it, and
//! its stack wherever something else changed it under the code (`Machine::arrive`). That
//! holds for the C as for the crate: all the C reads is `current`'s `kmap_ctrl` (its stack),
//! a forked child's (nobody else's yet), next's in the RFC's `kmap_switch_temporary` (a
//! stack of the machine, in the key), `__kmap_pte` (set at boot, constant after) and the
//! shim's answers (recorded by the machine), so its registers are a function of those.

mod glue;
mod stack;

use core::ffi::{c_ulong, c_void};

use kmap_sim::implementation::{KmapOps, Site};

pub use stack::LinuxStack;

/// The C entry points of one layout.
pub(crate) struct Entries {
    map_page: unsafe extern "C-unwind" fn(c_ulong) -> *mut c_void,
    map_pfn: unsafe extern "C-unwind" fn(c_ulong) -> *mut c_void,
    map_atomic: unsafe extern "C-unwind" fn(c_ulong) -> *mut c_void,
    unmap: unsafe extern "C-unwind" fn(*const c_void),
    unmap_atomic: unsafe extern "C-unwind" fn(*const c_void),
    sched_out: unsafe extern "C-unwind" fn(),
    sched_in: unsafe extern "C-unwind" fn(),
    fork: unsafe extern "C-unwind" fn(*mut c_void),
    switch_temporary: unsafe extern "C-unwind" fn(*mut c_void, *mut c_void),
    boot: unsafe extern "C-unwind" fn(),
    kmap_pte_variable: unsafe extern "C-unwind" fn() -> *const c_void,
}

/// Linux's code compiled for one layout of the machine (`KM_MAX_IDX` = `cells`,
/// `CONFIG_DEBUG_KMAP_LOCAL` = `guard`, `CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP` = `force`).
pub(crate) struct Layout {
    cells: usize,
    guard: bool,
    force: bool,
    /// The scripted edit this code was built with (`build/edits.rs`), if any.
    edit: Option<&'static str>,
    /// Whether this code releases in any order (the `any-order` edit).
    any_order: bool,
    entries: Entries,
    /// The return address of each site's call (a table in the assembly).
    addresses: *const usize,
    /// The sites, in the table's order.
    sites: &'static [Site],
}

// SAFETY: `addresses` points to a read-only table in the executable, and everything else is
// immutable data or a function pointer.
unsafe impl Sync for Layout {}

include!(concat!(env!("OUT_DIR"), "/linux.rs"));

const _: () = {
    // The build compiles a layout for every size of stack the simulator supports.
    assert!(CELLS.len() == kmap_sim::SUPPORTED_CELLS.len());
    let mut i = 0;
    while i < CELLS.len() {
        assert!(CELLS[i] == kmap_sim::SUPPORTED_CELLS[i]);
        i += 1;
    }
    assert!(kmap_sim::FIXMAP_TOP == 0x10_0000_0000 + (8 * 33 - 1) * 4096);
    assert!(kmap_sim::WINDOW == 0x10_0000_0000 && kmap_sim::DIRECT_MAP == 0x1_0000_0000);
    assert!(kmap_sim::MAX_CELLS == 33);
};

/// Linux's version the code was built from (`6.12.118`), if it was.
pub fn version() -> Option<&'static str> {
    UNAVAILABLE.is_none().then_some(VERSION)
}

/// The kernel source the code was extracted from, if it was.
pub fn source() -> Option<&'static str> {
    UNAVAILABLE.is_none().then_some(SOURCE)
}

/// The kernel tree the code was read from (the extracted files of a tarball, or the tree
/// given), if it was.
pub fn tree() -> Option<&'static str> {
    UNAVAILABLE.is_none().then_some(TREE)
}

/// Why this build has no Linux code, if it has none.
pub fn unavailable() -> Option<&'static str> {
    UNAVAILABLE
}

/// Make Linux's code the implementation of runs with `impl = "linux"`.
pub fn register() {
    glue::boot(LAYOUTS);
    kmap_sim::implementation::register_linux(factory);
}

/// A name, and what goes with it.
pub type Named = (&'static str, &'static str);

/// The edits this build made (name, what it changes), and those that did not apply to the
/// kernel source (name, why).
pub fn edits() -> (&'static [Named], &'static [Named]) {
    (EDITS, EDIT_FAILURES)
}

/// The source is chosen when the binary is built: a `KMAP_LINUX_SRC` naming another one now
/// would be silently ignored, so it is an error (looked at once).
fn source_mismatch() -> &'static Option<String> {
    static MISMATCH: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    MISMATCH.get_or_init(|| {
        let asked = std::env::var_os("KMAP_LINUX_SRC")?;
        let (a, b) = (std::path::Path::new(&asked), std::path::Path::new(SOURCE));
        let same = a == b
            || a.canonicalize()
                .ok()
                .is_some_and(|a| b.canonicalize().ok() == Some(a));
        (!same).then(|| {
            format!(
                "this kmap was built from {SOURCE}, but KMAP_LINUX_SRC={}: the source is compiled \
                 in, so build again with it (KMAP_LINUX_SRC={} cargo run --release -- …)",
                a.display(),
                a.display()
            )
        })
    })
}

/// Linux's code for `settings`' layout and edit.
fn factory(settings: &kmap_sim::Settings) -> Result<&'static dyn KmapOps, String> {
    if let Some(why) = UNAVAILABLE {
        return Err(why.to_string());
    }
    if let Some(why) = source_mismatch() {
        return Err(why.clone());
    }
    let edit = settings.edit.as_deref();
    if let Some(name) = edit {
        if let Some((_, why)) = EDIT_FAILURES.iter().find(|(n, _)| *n == name) {
            return Err(format!(
                "the edit {name} does not apply to this kernel: {why}"
            ));
        }
        if !LAYOUTS.iter().any(|l| l.edit == Some(name)) {
            let names: Vec<&str> = EDITS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "no edit {name}: the edits are {}",
                names.join(", ")
            ));
        }
        if settings.guard_cells || settings.force_map {
            return Err(format!(
                "the edit {name} is built without guard cells and force-map only"
            ));
        }
    }
    let layout = LAYOUTS
        .iter()
        .find(|l| {
            l.cells == settings.cells
                && l.guard == settings.guard_cells
                && l.force == settings.force_map
                && l.edit == edit
        })
        .ok_or_else(|| format!("Linux's code is not built for {} cells", settings.cells))?;
    if settings.any_order() && !layout.any_order {
        return Err(
            "release in any order has no Linux counterpart: kunmap_local releases \
                    the top mapping only (edit = \"any-order\" is the Oct 2023 proposal that \
                    would release in any order)"
                .into(),
        );
    }
    Ok(layout)
}
