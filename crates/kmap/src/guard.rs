//! The safe API: mappings as guards that can only be released in the order they were made.
//!
//! Linux's `kmap_local` is a stack, and its documentation calls an out-of-order unmap a
//! "malfunction" that it only warns about (rule U-3). Here the stack discipline is carried by
//! the borrow checker instead:
//!
//! - a context has one [`Local`] handle, and making a mapping borrows it mutably, so a context
//!   has at most one outermost [`Mapping`] at a time;
//! - a nested mapping is made *through* its parent ([`Mapping::map`]), borrowing the parent
//!   mutably, so the parent cannot be released, or even used, while the child lives;
//! - guards are `!Send` and `!Sync` (the address is one CPU's slot) and `#[must_use]`;
//! - the bytes are handed out as views and copies bounded by the page, never as raw pointers,
//!   and a view borrows its guard.
//!
//! Soundness does not depend on `Drop` running. Every guard remembers the depth of the stack
//! when it was made, and releasing it releases every cell at or above that depth. The only
//! cells that can be there are its own and those of guards that were leaked (`mem::forget`)
//! above it: every guard made after it borrows it, so none of them is alive. The same rule
//! lets [`Local`] restore the stack to the depth it found when it is dropped, which keeps an
//! interrupt handler balanced (rule N-2) whatever it leaked.
//!
//! Leaking an atomic guard leaks its preemption- and page-fault-disable counts, as leaking a
//! spinlock guard would; its cell is still released by whatever is released below it.

use core::marker::PhantomData;
use core::ptr;

use crate::error::MapError;
use crate::mechanism::{self, Placement, Request};
use crate::platform::{Platform, Report};
use crate::stack::sealed::Sealed;
use crate::types::{Frame, Prot, VirtAddr};

/// A frame whose contents the holder owns: the right to map it and read or write its bytes.
///
/// A kernel's page allocator hands these out; `&mut Page` is what makes a byte view of a
/// mapping exclusive.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    frame: Frame,
}

impl Page {
    /// The page whose memory is `frame`.
    ///
    /// # Safety
    ///
    /// While the returned `Page` (or anything borrowing it) lives, no other code accesses the
    /// memory of `frame`: not through another `Page`, not through the direct map, not by DMA.
    pub unsafe fn from_frame(frame: Frame) -> Self {
        Page { frame }
    }

    /// The frame.
    pub fn frame(&self) -> Frame {
        self.frame
    }

    /// Give up the page, returning its frame (for example to a page allocator).
    pub fn into_frame(self) -> Frame {
        self.frame
    }
}

/// Out-of-page access: `offset + len` passes the end of the page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OutOfBounds {
    /// The offset asked for.
    pub offset: usize,
    /// The length asked for.
    pub len: usize,
    /// The page size.
    pub page_size: usize,
}

impl core::fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} bytes at offset {} pass the end of a {}-byte page",
            self.len, self.offset, self.page_size
        )
    }
}

impl core::error::Error for OutOfBounds {}

/// The kmap handle of one context (a task, or one run of an interrupt or NMI handler): the only
/// way to make guarded mappings in it.
///
/// Dropping it releases whatever leaked guards left above the depth it started at, so an
/// interrupt handler that drops its `Local` before returning leaves the stack as it found it.
#[must_use = "a Local is the context's right to map; keep it for the context's lifetime"]
pub struct Local<'p, P: Platform> {
    platform: &'p P,
    base: usize,
    _not_send: PhantomData<*mut ()>,
}

impl<'p, P: Platform> Local<'p, P> {
    /// The handle of the current context.
    ///
    /// # Safety
    ///
    /// - No other `Local` of the current context is alive (a `Local` made by an interrupt or NMI
    ///   nested on top of it is another context).
    /// - It is dropped in the context that made it, before that context ends: before the
    ///   interrupt handler returns, before the task exits.
    pub unsafe fn new(platform: &'p P) -> Self {
        Local {
            platform,
            base: platform.current_stack().view().idx(),
            _not_send: PhantomData,
        }
    }

    pub(crate) fn platform(&self) -> &'p P {
        self.platform
    }

    /// Map `page` (`kmap_local_page`). The task may be preempted or sleep while it holds the
    /// mapping; it cannot migrate.
    ///
    /// # Panics
    ///
    /// When the stack is full or the slot is not empty (Linux: `BUG()`); see [`Local::try_map`].
    pub fn map<'m>(&'m mut self, page: &'m mut Page) -> Mapping<'m, P> {
        expect(self.try_map(page))
    }

    /// [`Local::map`], returning the refusal instead of panicking.
    pub fn try_map<'m>(&'m mut self, page: &'m mut Page) -> Result<Mapping<'m, P>, MapError> {
        Mapping::new(self.platform, page, Mode::LOCAL)
    }

    /// Map `page` and keep preemption and page faults disabled until the guard is released
    /// (`kmap_atomic`, rule A-1), on the fast path too.
    ///
    /// # Panics
    ///
    /// As [`Local::map`].
    pub fn map_atomic<'m>(&'m mut self, page: &'m mut Page) -> Mapping<'m, P> {
        expect(self.try_map_atomic(page))
    }

    /// [`Local::map_atomic`], returning the refusal instead of panicking (a refused map leaves
    /// preemption and page faults as it found them).
    pub fn try_map_atomic<'m>(
        &'m mut self,
        page: &'m mut Page,
    ) -> Result<Mapping<'m, P>, MapError> {
        Mapping::new(self.platform, page, Mode::ATOMIC)
    }

    /// Map `page` with explicit protection bits (`kmap_local_page_prot`).
    pub fn try_map_prot<'m>(
        &'m mut self,
        page: &'m mut Page,
        prot: Prot,
    ) -> Result<Mapping<'m, P>, MapError> {
        Mapping::new(
            self.platform,
            page,
            Mode {
                prot: Some(prot),
                ..Mode::LOCAL
            },
        )
    }

    /// Map `page` in a slot even if it has a direct-map address (`kmap_local_pfn`).
    pub fn try_map_slot<'m>(&'m mut self, page: &'m mut Page) -> Result<Mapping<'m, P>, MapError> {
        Mapping::new(self.platform, page, Mode::SLOT)
    }

    /// Run `f` with `page` mapped, and release the mapping when `f` returns.
    pub fn with_mapped<R>(
        &mut self,
        page: &mut Page,
        f: impl FnOnce(&mut Mapping<'_, P>) -> R,
    ) -> R {
        f(&mut self.map(page))
    }

    /// Copy all of `src` into `dst`, through two nested mappings.
    pub fn copy_page(&mut self, src: &mut Page, dst: &mut Page) {
        self.map(src).copy_to(dst);
    }
}

impl<P: Platform> Drop for Local<'_, P> {
    fn drop(&mut self) {
        release(self.platform, self.base, 0);
    }
}

#[derive(Clone, Copy)]
struct Mode {
    /// `None`: the platform's `KERNEL_PROT`.
    prot: Option<Prot>,
    always_slot: bool,
    atomic: bool,
}

impl Mode {
    const LOCAL: Mode = Mode {
        prot: None,
        always_slot: false,
        atomic: false,
    };
    const ATOMIC: Mode = Mode {
        atomic: true,
        ..Mode::LOCAL
    };
    const SLOT: Mode = Mode {
        always_slot: true,
        ..Mode::LOCAL
    };
}

/// One mapped page of the current context, released when dropped (along with every cell a leaked
/// guard left above it).
///
/// Made by [`Local::map`] or, nested, by [`Mapping::map`]; it cannot be sent to another thread,
/// shared with one, or outlive the [`Page`] and the parent it borrows.
#[must_use = "dropping a Mapping unmaps the page at once"]
pub struct Mapping<'m, P: Platform> {
    platform: &'m P,
    addr: VirtAddr,
    /// The stack depth before this mapping: releasing it releases every cell at or above.
    base: usize,
    /// Cells this guard itself pushed (0 on the fast path).
    own: usize,
    atomic: bool,
    _page: PhantomData<&'m mut Page>,
    _not_send: PhantomData<*mut ()>,
}

impl<'m, P: Platform> Mapping<'m, P> {
    fn new(platform: &'m P, page: &'m mut Page, mode: Mode) -> Result<Self, MapError> {
        let base = platform.current_stack().view().idx();
        let placement = mechanism::map(
            platform,
            Request {
                frame: page.frame,
                prot: mode.prot.unwrap_or(P::KERNEL_PROT),
                always_slot: mode.always_slot,
                atomic: mode.atomic,
            },
        )?;
        let own = match placement {
            Placement::Direct(_) => 0,
            Placement::Slot(_) => 1,
        };
        // INVARIANT: `addr` maps `page` for this context until `release` below pops `base`.
        Ok(Mapping {
            platform,
            addr: placement.address(),
            base,
            own,
            atomic: mode.atomic,
            _page: PhantomData,
            _not_send: PhantomData,
        })
    }

    /// Map `page` on top of this mapping. This one cannot be used or released until the nested
    /// one is.
    ///
    /// # Panics
    ///
    /// As [`Local::map`].
    pub fn map<'c>(&'c mut self, page: &'c mut Page) -> Mapping<'c, P> {
        expect(self.try_map(page))
    }

    /// [`Mapping::map`], returning the refusal instead of panicking.
    pub fn try_map<'c>(&'c mut self, page: &'c mut Page) -> Result<Mapping<'c, P>, MapError> {
        Mapping::new(self.platform, page, Mode::LOCAL)
    }

    /// [`Local::map_atomic`], nested on top of this mapping (rule A-3).
    pub fn map_atomic<'c>(&'c mut self, page: &'c mut Page) -> Mapping<'c, P> {
        expect(self.try_map_atomic(page))
    }

    /// [`Mapping::map_atomic`], returning the refusal instead of panicking.
    pub fn try_map_atomic<'c>(
        &'c mut self,
        page: &'c mut Page,
    ) -> Result<Mapping<'c, P>, MapError> {
        Mapping::new(self.platform, page, Mode::ATOMIC)
    }

    /// [`Local::try_map_slot`], nested on top of this mapping.
    pub fn try_map_slot<'c>(&'c mut self, page: &'c mut Page) -> Result<Mapping<'c, P>, MapError> {
        Mapping::new(self.platform, page, Mode::SLOT)
    }

    /// The address the page is mapped at (a slot of the kmap window, or the direct map): the
    /// value, for a kernel's bookkeeping or a checker's; the bytes are reached through
    /// [`bytes`](Self::bytes) and the other views, which borrow the guard.
    pub fn addr(&self) -> VirtAddr {
        self.addr
    }

    /// Run `f` with `page` mapped on top of this mapping.
    pub fn with_mapped<R>(
        &mut self,
        page: &mut Page,
        f: impl FnOnce(&mut Mapping<'_, P>) -> R,
    ) -> R {
        f(&mut self.map(page))
    }

    /// The page's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: by the type invariant `addr` maps the page for this context, for PAGE_SIZE
        // bytes (Platform promises 3 and 5); the slot is re-installed before this context runs
        // again after any switch (`sched_in`), and nested contexts only use cells above ours.
        // The `&'m mut Page` this guard holds means no one else accesses the frame, and the
        // returned borrow of `self` keeps the guard alive and unmodified.
        unsafe { core::slice::from_raw_parts(self.addr.as_ptr(), P::PAGE_SIZE) }
    }

    /// The page's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes the view exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.addr.as_ptr(), P::PAGE_SIZE) }
    }

    /// Copy `dst.len()` bytes from `offset` into `dst`.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        let range = bounded::<P>(offset, dst.len())?;
        dst.copy_from_slice(&self.bytes()[range]);
        Ok(())
    }

    /// Copy `src` into the page at `offset`.
    pub fn write(&mut self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        let range = bounded::<P>(offset, src.len())?;
        self.bytes_mut()[range].copy_from_slice(src);
        Ok(())
    }

    /// Fill the page with zeroes.
    pub fn zero(&mut self) {
        self.bytes_mut().fill(0);
    }

    /// Copy this page into `dst`, mapping `dst` on top of this mapping for the copy.
    pub fn copy_to(&mut self, dst: &mut Page) {
        let src = self.addr;
        let mut nested = self.map(dst);
        // SAFETY: `src` maps this guard's page for PAGE_SIZE bytes (type invariant); `nested`
        // borrows this guard mutably, so nothing else reads or writes it during the copy, and the
        // two pages are different frames (two `&mut Page`), so the ranges do not overlap.
        unsafe {
            ptr::copy_nonoverlapping(src.as_ptr(), nested.bytes_mut().as_mut_ptr(), P::PAGE_SIZE)
        }
    }

    /// Copy `src` into this page, mapping `src` on top of this mapping for the copy.
    pub fn copy_from(&mut self, src: &mut Page) {
        let dst = self.addr;
        let nested = self.map(src);
        // SAFETY: as in `copy_to`, with the roles swapped.
        unsafe { ptr::copy_nonoverlapping(nested.bytes().as_ptr(), dst.as_ptr(), P::PAGE_SIZE) }
    }

    /// Whether the page is in a kmap slot (else it is reached through the direct map).
    pub fn is_slot(&self) -> bool {
        self.own != 0
    }
}

impl<P: Platform> Drop for Mapping<'_, P> {
    fn drop(&mut self) {
        release(self.platform, self.base, self.own);
        if self.atomic {
            mechanism::atomic_end(self.platform);
        }
    }
}

/// Release every cell at or above depth `base`; `own` of them belonged to the releasing guard,
/// the rest were left by leaked guards and are reported.
pub(crate) fn release<P: Platform>(platform: &P, base: usize, own: usize) {
    let depth = platform.current_stack().view().idx();
    // A guard's own cell must still be there. A handle (`own` 0) may find the stack below its
    // base: a raw mapping made before it was released meanwhile, or popped as a hole.
    assert!(
        own == 0 || depth >= base + own * mechanism::cell_step::<P>(),
        "kmap: a guard's cell was released behind its back (raw unmap below a live guard)"
    );
    let released = mechanism::release_down_to(platform, base);
    if released > own {
        platform.report(Report::LeakedMappingsReleased {
            cells: released - own,
        });
    }
}

pub(crate) fn bounded<P: Platform>(
    offset: usize,
    len: usize,
) -> Result<core::ops::Range<usize>, OutOfBounds> {
    match offset.checked_add(len) {
        Some(end) if end <= P::PAGE_SIZE => Ok(offset..end),
        _ => Err(OutOfBounds {
            offset,
            len,
            page_size: P::PAGE_SIZE,
        }),
    }
}

#[track_caller]
pub(crate) fn expect<T>(result: Result<T, MapError>) -> T {
    match result {
        Ok(value) => value,
        Err(refused) => panic!("kmap: map refused: {refused}"),
    }
}
