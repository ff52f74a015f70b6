//! The raw API: Linux's `kmap_local_*` / `kunmap_local` with pointers, for code that cannot
//! use [`Local`](crate::Local) (an allocator's page-copy routine, a port of C code).
//!
//! Every misuse that can be detected is refused before any state changes, with a typed error:
//! unmapping with nothing mapped, unmapping anything but the current context's top cell on this
//! CPU, overflowing the stack. What cannot be detected is the caller's obligation, listed under
//! each function's `# Safety`.

use crate::error::{MapError, UnmapError};
use crate::mechanism::{self, Request};
use crate::platform::Platform;
use crate::types::{Frame, Prot, VirtAddr};

#[inline(always)]
fn request(frame: Frame, prot: Prot, always_slot: bool, atomic: bool) -> Request {
    Request {
        frame,
        prot,
        always_slot,
        atomic,
    }
}

/// Map `frame` for the current context and return the address of its first byte
/// (`kmap_local_page`). A frame with a direct-map address gets that address and changes no state
/// (unless the platform forces mapping, rule M-0.2); any other frame gets the next cell's slot
/// on this CPU, and the task cannot migrate until the matching [`unmap`].
///
/// # Safety
///
/// - The pointer is valid for `P::PAGE_SIZE` bytes, in this context on this CPU only, until the
///   matching [`unmap`]; the task may be preempted or sleep meanwhile (rule M-2).
/// - The caller unmaps in LIFO order with every other mapping of this context, before the
///   context ends (an interrupt handler before it returns), and before a guard of this context
///   that was made before this mapping is released (releasing a guard releases every cell above
///   it).
/// - Accesses through the pointer obey Rust's aliasing rules for the frame's memory.
#[inline]
pub unsafe fn map<P: Platform>(platform: &P, frame: Frame) -> Result<*mut u8, MapError> {
    // SAFETY: the caller's obligations are exactly `map_prot`'s.
    unsafe { map_prot(platform, frame, P::KERNEL_PROT) }
}

/// [`map`] with explicit protection bits (`kmap_local_page_prot`); they are saved with the
/// mapping and restored with it at `sched_in`.
///
/// # Safety
///
/// As for [`map`].
#[inline]
pub unsafe fn map_prot<P: Platform>(
    platform: &P,
    frame: Frame,
    prot: Prot,
) -> Result<*mut u8, MapError> {
    mechanism::map(platform, request(frame, prot, false, false)).map(|p| p.address().as_ptr())
}

/// [`map`] that always takes a slot, even for a frame with a direct-map address
/// (`kmap_local_pfn`, rule M-0.3).
///
/// # Safety
///
/// As for [`map`].
#[inline]
pub unsafe fn map_pfn<P: Platform>(platform: &P, frame: Frame) -> Result<*mut u8, MapError> {
    mechanism::map(platform, request(frame, P::KERNEL_PROT, true, false))
        .map(|p| p.address().as_ptr())
}

/// [`map`], with preemption and page faults disabled until the matching [`unmap_atomic`], on the
/// fast path too (`kmap_atomic`, rules A-1 to A-3). Refused without disabling anything.
///
/// # Safety
///
/// As for [`map`], and the mapping is released with [`unmap_atomic`], never [`unmap`].
#[inline]
pub unsafe fn map_atomic<P: Platform>(platform: &P, frame: Frame) -> Result<*mut u8, MapError> {
    mechanism::map(platform, request(frame, P::KERNEL_PROT, false, true))
        .map(|p| p.address().as_ptr())
}

/// [`map_atomic`] that always takes a slot (`kmap_atomic_pfn`).
///
/// # Safety
///
/// As for [`map_atomic`].
#[inline]
pub unsafe fn map_atomic_pfn<P: Platform>(platform: &P, frame: Frame) -> Result<*mut u8, MapError> {
    mechanism::map(platform, request(frame, P::KERNEL_PROT, true, true))
        .map(|p| p.address().as_ptr())
}

/// Release the mapping that holds `addr` (`kunmap_local`). Any address inside the mapped page is
/// accepted (rule U-1.1); a direct-map address is a no-op, as its map was. Refused, with nothing
/// changed, when `addr` is a slot but not the current context's top cell on this CPU (rules U-3,
/// U-5), or when nothing is mapped (rule U-4).
///
/// # Safety
///
/// - `addr` lies in a page returned by [`map`], [`map_prot`] or [`map_pfn`] in this context,
///   not yet unmapped; no pointer into that page is used afterwards.
/// - No live [`Mapping`](crate::Mapping) of this context owns the top cell (guards release
///   their own cells).
#[inline]
pub unsafe fn unmap<P: Platform>(platform: &P, addr: *const u8) -> Result<(), UnmapError> {
    mechanism::unmap(platform, VirtAddr::new(addr as usize), false)
}

/// Release a mapping made by [`map_atomic`] (`kunmap_atomic`, rule U-2): [`unmap`], then page
/// faults and preemption enabled again. Refused, with nothing changed, as [`unmap`] is.
///
/// # Safety
///
/// As for [`unmap`], for a page returned by [`map_atomic`] or [`map_atomic_pfn`].
#[inline]
pub unsafe fn unmap_atomic<P: Platform>(platform: &P, addr: *const u8) -> Result<(), UnmapError> {
    mechanism::unmap(platform, VirtAddr::new(addr as usize), true)
}

/// Release the mapping that holds `addr`, wherever it is on the current context's stack: the
/// top as [`unmap`] does, a cell below the top by leaving a *hole* that is popped when the
/// mappings above it are released (what Rust-for-Linux asked Linux for in 2023; see the book's
/// "Differences from Linux"). Only for platforms with
/// [`Platform::RELEASE_ANY_ORDER`]: on others a build that calls it fails. Refused, with nothing
/// changed, when `addr` is a slot but not a live cell of the current stack on this CPU (rule
/// H-2), or when nothing is mapped (rule U-4).
///
/// On a platform that keeps Linux's LIFO rule, a call is a compile error (E0080):
///
/// ```compile_fail,E0080
/// let platform = kmap_host::HostPlatform::<16>::new(1, 64, 16, 1); // LIFO only
/// // SAFETY: nothing is mapped; the call is refused at compile time anyway.
/// let _ = unsafe { kmap::raw::unmap_any_order(&platform, core::ptr::null()) };
/// ```
///
/// # Safety
///
/// - `addr` lies in a page returned by [`map`], [`map_prot`] or [`map_pfn`] *in this context*,
///   not yet unmapped; no pointer into that page is used afterwards. The crate cannot tell
///   which context a live cell belongs to: an interrupt handler must never release a cell of
///   the task it interrupted (or of another handler beneath it), and a task never one of a
///   handler (handlers release theirs before they return).
/// - No live [`Mapping`](crate::Mapping) or [`ScopedMapping`](crate::ScopedMapping) of this
///   context owns the cell (guards release their own cells).
/// - The context still releases every mapping before it ends, as with [`unmap`]; a hole is
///   popped only when every mapping above it is released.
#[inline]
pub unsafe fn unmap_any_order<P: Platform>(
    platform: &P,
    addr: *const u8,
) -> Result<(), UnmapError> {
    mechanism::unmap_any_order(platform, VirtAddr::new(addr as usize))
}
