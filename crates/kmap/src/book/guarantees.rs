//! # 5. Guarantees and refusals
//!
//! ## What holds, always
//!
//! - **Slot ownership (INV-1).** On every CPU, at every instruction boundary, every non-empty
//!   slot belongs to a cell below `current`'s `idx` (or to a nested context's cell above it, which
//!   that context pops before it returns). So a nested context always lands on empty slots.
//! - **The switch hooks never write a stack (INV-2).** Only map and unmap of the owning context do.
//! - **Nested contexts are balanced (INV-3).** A handler's [`Local`](crate::Local) restores the
//!   depth it found when dropped, even if a guard was leaked.
//! - **No migration while holding (INV-4).** Every slot mapping holds a migration-disable count.
//! - **Atomic record (INV-5).** Between installing a PTE and saving it, and between clearing a
//!   slot and popping it, preemption is off.
//! - **TLB hygiene (INV-6).** Every mapped-to-empty transition of a slot is followed by a local
//!   invalidation of it (unmap and `sched_out`), so installing into an empty slot needs no flush.
//!
//! ## What is refused, before anything changes
//!
//! The raw API returns an error; the guard API's `map` panics with the same message (its
//! `try_map` returns the error).
//!
//! ```
//! use kmap::{raw, Frame, MapError, UnmapError};
//! use kmap_host::HostPlatform;
//!
//! let machine: HostPlatform<2> = HostPlatform::new(1, 64, 16, 1); // 2 cells per task
//! // SAFETY: addresses are only compared and handed back in LIFO order.
//! unsafe {
//!     let a = raw::map(&machine, Frame::new(40)).unwrap();
//!     let b = raw::map(&machine, Frame::new(41)).unwrap();
//!     assert_eq!(raw::map(&machine, Frame::new(42)), Err(MapError::Overflow { cells: 2 }));
//!     // Out of order: refused, and nothing was touched (Linux warns and unmaps the wrong slot).
//!     assert!(matches!(raw::unmap(&machine, a), Err(UnmapError::NotTopCell { .. })));
//!     raw::unmap(&machine, b.add(123)).unwrap(); // any address inside the page will do
//!     raw::unmap(&machine, a).unwrap();
//!     assert_eq!(raw::unmap(&machine, a), Err(UnmapError::EmptyStack));
//! }
//! ```
//!
//! [`MapError::SlotNotEmpty`](crate::MapError::SlotNotEmpty) is not a misuse of the API but the
//! detection of a broken INV-1 (a scheduler that skipped `sched_out`, say); Linux BUGs there.
//!
//! ## What is reported
//!
//! [`Report`](crate::Report) names each situation Linux warns about, plus two it does not check
//! (a task back on another CPU; cells released on behalf of a leaked guard). Reports never change
//! the mechanism's behaviour: a kernel logs them.
//!
//! ## What does not compile
//!
//! See [chapter 2](super::quick_start). Leaking a guard with `mem::forget` is sound: releasing
//! anything made before it releases its cell too. Leaking an *atomic* guard leaks its
//! preemption- and page-fault-disable counts, as leaking a spinlock guard would.
