//! The safe API of the crate (`kmap::Local`, `kmap::Mapping`, `kmap::Scope`) behind the
//! platform's seam: what the interpreter maps through when a program's API is `guard` or
//! `scope` (see `machine/guarded.rs`).

use kmap::{Frame, MapError, Platform, VirtAddr};

use super::{Hardware, MapKind, SimPlatform};

/// What a guard of the safe API was asked to do with the mapping it made, once the code that
/// holds it is done with it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    /// Drop it: the mapping is released.
    Drop,
    /// Leak it (`mem::forget`): its cell stays until a guard below it, or the context's
    /// `Local`, is released.
    Leak,
}

/// What runs while a guard's new mapping is held: given its address (or the refusal) and its
/// own guard, it says how the mapping ends.
pub type Then<'a> = dyn FnMut(Result<VirtAddr, MapError>, &mut dyn Guard) -> End + 'a;

/// A guard of the safe API under which the next mapping is made: the context's
/// [`kmap::Local`] or its innermost [`kmap::Mapping`].
pub trait Guard {
    /// Map `frame` on top of this guard, run `then` with the address (or the refusal) and the
    /// new mapping's own guard (this one again if refused), and end the mapping as `then` says
    /// once it returns.
    fn map(&mut self, frame: Frame, kind: MapKind, then: &mut Then<'_>);
}

/// The page of `frame`, for a guard to borrow.
fn page(frame: Frame) -> kmap::Page {
    // SAFETY: the simulator never dereferences an address the crate hands out (see the
    // Platform impl), so no code accesses the frame's memory through the page or otherwise.
    unsafe { kmap::Page::from_frame(frame) }
}

/// Run `then` on the mapping a guard made, and end it as `then` says; a refusal is handed
/// back, for `then` to run under the guard that was asked (the mapping borrows it, so the
/// refusal is taken out of the result first).
fn then_end<P: Platform>(
    made: Result<kmap::Mapping<'_, P>, MapError>,
    then: &mut Then<'_>,
) -> Option<MapError> {
    let mut mapping = match made {
        Ok(mapping) => mapping,
        Err(refused) => return Some(refused),
    };
    let addr = mapping.addr();
    if then(Ok(addr), &mut mapping) == End::Leak {
        std::mem::forget(mapping);
    }
    None
}

/// `Guard` for the crate's two LIFO guards, whose maps have the same names: the context's
/// `Local` and a `Mapping` (nested on top of it).
macro_rules! lifo_guard {
    ($guard:ident) => {
        impl<P: Platform> Guard for kmap::$guard<'_, P> {
            fn map(&mut self, frame: Frame, kind: MapKind, then: &mut Then<'_>) {
                let mut page = page(frame);
                let made = match kind {
                    MapKind::Page => self.try_map(&mut page),
                    MapKind::Pfn => self.try_map_slot(&mut page),
                    MapKind::Atomic => self.try_map_atomic(&mut page),
                };
                if let Some(refused) = then_end(made, then) {
                    then(Err(refused), self);
                }
            }
        }
    };
}

lifo_guard!(Local);
lifo_guard!(Mapping);

/// The mappings of a [`kmap::Scope`] held so far, innermost first, each in the call frame that
/// made it: releasing one drops (or forgets) it there, while the code inside goes on.
pub trait Release {
    /// End the mapping of `frame` held here or further out, as `end` says; whether one was.
    fn release(&mut self, frame: Frame, end: End) -> bool;
    /// Whether the innermost frame still holds its own mapping.
    fn holds(&self) -> bool;
}

/// What runs while a scoped mapping is held: given its address (or the refusal) and the
/// mappings held so far, this one included (if made).
pub type ThenScoped<'a> = dyn FnMut(Result<VirtAddr, MapError>, &mut dyn Release) + 'a;

/// A [`kmap::Scope`], as the interpreter maps through it.
pub trait ScopeMap {
    /// Map `frame` in the scope, side by side with the mappings of `held`, run `then`, and drop
    /// the mapping when `then` returns if nothing ended it before.
    fn map(&self, frame: Frame, held: &mut dyn Release, then: &mut ThenScoped<'_>);
}

/// No scoped mapping held.
pub(crate) struct NoneHeld;

impl Release for NoneHeld {
    fn release(&mut self, _: Frame, _: End) -> bool {
        false
    }

    fn holds(&self) -> bool {
        false
    }
}

/// A scoped mapping in the frame that made it, and the ones held before it.
struct Scoped<'a, 's, P: Platform> {
    frame: Frame,
    mapping: Option<kmap::ScopedMapping<'s, P>>,
    outer: &'a mut dyn Release,
}

impl<P: Platform> Release for Scoped<'_, '_, P> {
    fn release(&mut self, frame: Frame, end: End) -> bool {
        if frame == self.frame
            && let Some(mapping) = self.mapping.take()
        {
            if end == End::Leak {
                std::mem::forget(mapping);
            }
            return true;
        }
        self.outer.release(frame, end)
    }

    fn holds(&self) -> bool {
        self.mapping.is_some()
    }
}

impl<P: Platform> ScopeMap for kmap::Scope<'_, P> {
    fn map(&self, frame: Frame, held: &mut dyn Release, then: &mut ThenScoped<'_>) {
        let mut page = page(frame);
        match self.try_map(&mut page) {
            Ok(mapping) => {
                let addr = mapping.addr();
                let mut scoped = Scoped {
                    frame,
                    mapping: Some(mapping),
                    outer: held,
                };
                then(Ok(addr), &mut scoped);
            }
            Err(refused) => then(Err(refused), held),
        }
    }
}

/// [`KmapOps::with_scope`](super::KmapOps::with_scope), which compiles only for a platform that
/// releases in any order (`Local::scope` asserts it at compile time), so it is always made on
/// the `A = true` layout; a run with `A` false never calls it (the configuration is refused).
pub(super) fn with_scope<const C: usize, const G: bool, const F: bool, const A: bool>(
    m: &dyn Hardware,
    body: &mut dyn FnMut(&dyn ScopeMap),
    between: &mut dyn FnMut(),
) {
    assert!(A, "the scope API runs only with release = \"any\"");
    let p = SimPlatform::<C, G, F, true>(m);
    // SAFETY: as in `with_local`: one `Local` for the context, dropped in it when `body` returns.
    let mut local = unsafe { kmap::Local::new(&p) };
    {
        let scope = local.scope();
        body(&scope);
    }
    between();
}
