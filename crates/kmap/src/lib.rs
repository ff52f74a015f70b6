//! Temporary kernel mappings, as Linux's `kmap_local`, for any Rust kernel or hypervisor.
//!
//! Start with the [`book`]: the problem, a quick start, implementing [`Platform`], where the
//! scheduler calls the hooks, what is guaranteed and refused, and where this crate differs from
//! Linux.
//!
//! # Items by purpose
//!
//! - Map and use pages safely: [`Local`], [`Mapping`], [`Page`]; released in any order:
//!   [`Scope`], [`ScopedMapping`].
//! - Map with pointers, as C does: [`raw`].
//! - Adopt the crate in a kernel: [`Platform`], [`KmapStack`], [`sched_out`], [`sched_in`],
//!   [`KmapStack::fork`], [`assert_no_mappings`].
//! - Observe it (simulators, tests, diagnostics): [`Point`], [`Report`].
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod book;
// The README's examples compile as doc tests: what the crate's page on crates.io shows works.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
mod error;
mod guard;
mod mechanism;
mod platform;
pub mod raw;
mod scope;
mod stack;
mod switch;
mod types;

pub use error::{MapError, UnmapError};
pub use guard::{Local, Mapping, OutOfBounds, Page};
pub use platform::{Checkpoint, Platform, Point, Report};
pub use scope::{Scope, ScopedMapping};
pub use stack::{KmapStack, StackState, TaskStack};
pub use switch::{MappingsHeld, assert_no_mappings, sched_in, sched_out};
pub use types::{Cell, CpuId, Frame, Prot, Pte, Slot, VirtAddr};
