//! The safe API for releasing in any order: mappings held side by side, each dropped whenever
//! the code's structure drops it (struct fields in declaration order, early returns, two pages
//! copied between), for platforms with [`Platform::RELEASE_ANY_ORDER`].
//!
//! A [`Scope`] borrows its context's [`Local`] mutably, so no LIFO [`Mapping`](crate::Mapping)
//! of the context can be made or released while it lives. Its [`map`](Scope::map) takes
//! `&self`: any number of [`ScopedMapping`]s can be alive at once, each borrowing the scope
//! and its own `&mut Page`. Dropping one releases its cell: the top is popped (with every hole
//! directly beneath it), a cell below the top becomes a hole.
//!
//! Soundness does not depend on `Drop` running, as with [`Mapping`](crate::Mapping): the scope
//! remembers the depth of the stack when it was opened, and dropping it releases every cell
//! left at or above that depth: cells of scoped mappings that were leaked (`mem::forget`; the
//! ones that were not borrow the scope, so they are gone), or of raw mappings the context made
//! inside the scope and did not release.

use core::marker::PhantomData;

use crate::error::MapError;
use crate::guard::{self, Local, OutOfBounds, Page};
use crate::mechanism::{self, Placement, Request};
use crate::platform::Platform;
use crate::stack::sealed::Sealed;
use crate::types::VirtAddr;

/// A region of a context in which mappings can be held side by side and released in any order.
///
/// Made by [`Local::scope`], which borrows the [`Local`] mutably: no LIFO
/// [`Mapping`](crate::Mapping) of the context can be made while the scope lives. Its
/// [`map`](Scope::map) takes `&self`, so any number of [`ScopedMapping`]s can be alive at once;
/// dropping one releases its cell (below the top, a hole, popped when the cells above it are
/// released). Dropping the scope releases whatever scoped mappings leaked (`mem::forget`). See
/// the book's "Differences from Linux" for when to use it rather than a
/// [`Mapping`](crate::Mapping).
#[must_use = "a Scope is where mappings released in any order are made; keep it while they live"]
pub struct Scope<'l, P: Platform> {
    platform: &'l P,
    base: usize,
    _local: PhantomData<&'l mut ()>,
    _not_send: PhantomData<*mut ()>,
}

impl<'p, P: Platform> Local<'p, P> {
    /// Open a [`Scope`]: mappings made in it can be held side by side and dropped in any order.
    ///
    /// ```
    /// # use kmap::Local;
    /// // A platform with RELEASE_ANY_ORDER on (the last parameter of the test platform).
    /// let platform = kmap_host::HostPlatform::<16, false, false, true>::new(1, 64, 16, 1);
    /// let (mut a, mut b) = (platform.page(20), platform.page(21));
    /// // SAFETY: one Local for the only context, dropped in it.
    /// let mut local = unsafe { Local::new(&platform) };
    /// let scope = local.scope();
    /// let (first, second) = (scope.map(&mut a), scope.map(&mut b));
    /// drop(first); // below the top: a hole
    /// drop(second); // the top: pops the hole too
    /// assert_eq!(platform.task(0).depth(), 0);
    /// ```
    ///
    /// Only for platforms with [`Platform::RELEASE_ANY_ORDER`]; on others a build that calls it
    /// fails (an error when the call is compiled for the platform, E0080):
    ///
    /// ```compile_fail,E0080
    /// # use kmap::Local;
    /// let platform = kmap_host::HostPlatform::<16>::new(1, 64, 16, 1); // LIFO only
    /// // SAFETY: one Local for the only context, dropped in it.
    /// let mut local = unsafe { Local::new(&platform) };
    /// let scope = local.scope();
    /// ```
    pub fn scope(&mut self) -> Scope<'_, P> {
        const {
            assert!(
                P::RELEASE_ANY_ORDER,
                "the platform does not release in any order"
            )
        };
        Scope {
            platform: self.platform(),
            base: self.platform().current_stack().view().idx(),
            _local: PhantomData,
            _not_send: PhantomData,
        }
    }
}

impl<'l, P: Platform> Scope<'l, P> {
    /// Map `page` (`kmap_local_page`). The task may be preempted or sleep while it holds the
    /// mapping; it cannot migrate.
    ///
    /// # Panics
    ///
    /// When the stack is full or the slot is not empty (Linux: `BUG()`); see [`Scope::try_map`].
    /// A hole counts as a used cell until the mappings above it are released.
    pub fn map<'s>(&'s self, page: &'s mut Page) -> ScopedMapping<'s, P> {
        guard::expect(self.try_map(page))
    }

    /// [`Scope::map`], returning the refusal instead of panicking.
    pub fn try_map<'s>(&'s self, page: &'s mut Page) -> Result<ScopedMapping<'s, P>, MapError> {
        let placement = mechanism::map(
            self.platform,
            Request {
                frame: page.frame(),
                prot: P::KERNEL_PROT,
                always_slot: false,
                atomic: false,
            },
        )?;
        // INVARIANT: `addr` maps `page` for this context until this guard's drop releases it,
        // or, if it is leaked, until the scope's drop releases every cell above `base`.
        Ok(ScopedMapping {
            platform: self.platform,
            addr: placement.address(),
            slot: matches!(placement, Placement::Slot(_)),
            _page: PhantomData,
            _not_send: PhantomData,
        })
    }
}

impl<P: Platform> Drop for Scope<'_, P> {
    fn drop(&mut self) {
        guard::release(self.platform, self.base, 0);
    }
}

/// One mapped page of a [`Scope`], released when dropped, in any order with the others.
///
/// It cannot be sent to another thread, shared with one, or outlive the [`Page`] and the scope
/// it borrows.
#[must_use = "dropping a ScopedMapping unmaps the page at once"]
pub struct ScopedMapping<'s, P: Platform> {
    platform: &'s P,
    addr: VirtAddr,
    /// Whether the page is in a slot (else on the direct map, and nothing is released).
    slot: bool,
    _page: PhantomData<&'s mut Page>,
    _not_send: PhantomData<*mut ()>,
}

impl<P: Platform> ScopedMapping<'_, P> {
    /// The page's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: by the type invariant `addr` maps the page for this context, for PAGE_SIZE
        // bytes (Platform promises 3 and 5), while this guard lives: only its drop, or the
        // scope's (which this guard borrows), releases the cell, and a hole elsewhere in the
        // stack leaves it alone. The slot is re-installed before this context runs again after
        // any switch (`sched_in`), and nested contexts only use cells above the top. The
        // `&'s mut Page` this guard holds means no one else accesses the frame, and the
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
        let range = guard::bounded::<P>(offset, dst.len())?;
        dst.copy_from_slice(&self.bytes()[range]);
        Ok(())
    }

    /// Copy `src` into the page at `offset`.
    pub fn write(&mut self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        let range = guard::bounded::<P>(offset, src.len())?;
        self.bytes_mut()[range].copy_from_slice(src);
        Ok(())
    }

    /// Fill the page with zeroes.
    pub fn zero(&mut self) {
        self.bytes_mut().fill(0);
    }

    /// The address the page is mapped at (a slot, or the direct map): the value, as
    /// [`Mapping::addr`](crate::Mapping::addr) gives it.
    pub fn addr(&self) -> VirtAddr {
        self.addr
    }

    /// Whether the page is in a kmap slot (else it is reached through the direct map).
    pub fn is_slot(&self) -> bool {
        self.slot
    }
}

impl<P: Platform> Drop for ScopedMapping<'_, P> {
    fn drop(&mut self) {
        if !self.slot {
            return;
        }
        if let Err(refused) = mechanism::unmap_any_order(self.platform, self.addr) {
            panic!(
                "kmap: a scoped mapping's cell was released behind its back (raw unmap of a \
                 guard's cell): {refused}"
            );
        }
    }
}
