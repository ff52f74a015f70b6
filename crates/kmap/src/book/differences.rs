//! # 6. Differences from Linux
//!
//! | | Linux `kmap_local` | this crate |
//! |---|---|---|
//! | usable cells | `KM_MAX_IDX - 1` = 15 (push, then `BUG` if `idx >= KM_MAX_IDX`) | all `N` of a `KmapStack<N>` (16 by default) |
//! | overflow | `BUG()` | refused with [`MapError::Overflow`](crate::MapError::Overflow) before any state changes |
//! | occupied slot at map | `BUG()` | refused with [`MapError::SlotNotEmpty`](crate::MapError::SlotNotEmpty), counters restored |
//! | out-of-order unmap | warns once, unmaps the top slot, invalidates the *given* address (stale TLB entry) | refused with [`UnmapError::NotTopCell`](crate::UnmapError::NotTopCell); the safe API makes it a compile error |
//! | release in any order | not supported (proposed in 2023, not merged) | opt-in ([`Platform::RELEASE_ANY_ORDER`](crate::Platform::RELEASE_ANY_ORDER)): holes and a lazy pop, below |
//! | unmap with nothing mapped | writes `pteval[-1]` (over `idx`), then `BUG()` | refused with [`UnmapError::EmptyStack`](crate::UnmapError::EmptyStack) |
//! | non-slot address under force-map | warns, returns | refused with [`UnmapError::NotKmapAddress`](crate::UnmapError::NotKmapAddress) |
//! | task back on another CPU while holding | not checked (relies on migrate-disable) | reported at `sched_in` ([`Report::Migrated`](crate::Report::Migrated)) |
//! | guard cells, force-map | Kconfig options, one layout per kernel | associated constants of the platform: one binary can run several layouts |
//! | API | pointers; LIFO by convention | guards and closures whose lifetimes enforce LIFO; byte views and copies; pointers only through the `unsafe` [`raw`](crate::raw) module |
//! | leaked mapping | stays until the task exits (undetected) | released with whatever was mapped before it; reported |
//! | the switch hooks with nothing mapped | one load and one branch each | the same (the loops are out of line, `#[cold]`) |
//! | `kmap_atomic` on PREEMPT_RT | migrate-disable instead of preempt-disable | preempt-disable always (a platform that wants RT semantics can make `preempt_disable` pin instead) |
//! | ARM VIVT `kmap_high_get` reuse, xtensa cache colouring | supported | not supported: slot addresses depend on (cpu, cell) only |
//!
//! ## Release in any order
//!
//! ### The request
//!
//! In October 2023, writing the Rust VFS and folio bindings, Wedson Almeida Filho used the
//! global `kmap()` instead of `kmap_local_page()`: Rust guards are dropped in whatever order the
//! code's structure dictates (struct fields in declaration order, early returns, two pages held
//! side by side for a copy), and `kmap_local` must be released in the reverse order of mapping.
//! Matthew Wilcox answered with an untested patch that tolerates "map a, map b, unmap a, unmap
//! b": releasing a cell below the top leaves it empty, the pop happens lazily when the top is
//! released (over every empty cell beneath it), and the switch hooks stop warning about empty
//! cells (linux-fsdevel, 18 October 2023, Message-ID `ZTAwLGi4sCup+B1r@casper.infradead.org`).
//! The reference records it as not merged, and no argument that it is safe with interrupts,
//! NMIs and preemption arriving anywhere came with it. This crate implements the idea, with one
//! change the explorer showed is needed.
//!
//! ### The design
//!
//! A platform opts in with [`Platform::RELEASE_ANY_ORDER`](crate::Platform::RELEASE_ANY_ORDER).
//! The rules, in the reference's style:
//!
//! - **H-1.** Releasing a live cell below the top disables preemption, clears its PTE,
//!   invalidates the local TLB entry, marks its saved value [`Pte::HOLE`](crate::Pte::HOLE) (a
//!   *hole*), and enables preemption and migration again. `idx` does not move.
//! - **H-2.** Only a live cell of the current stack on this CPU can be released; a hole, a
//!   guard cell, a cell at or above `idx` is refused
//!   ([`UnmapError::NotLive`](crate::UnmapError::NotLive)) before anything changes.
//! - **H-3.** Releasing the top zeroes it as a LIFO unmap does, then zeroes every hole directly
//!   beneath it, then pops them all in one store of `idx`. This holds for every release of the
//!   top on such a platform, [`raw::unmap`](crate::raw::unmap) included.
//! - **H-4.** The switch hooks skip holes as a normal case: their slots are already empty.
//! - **INV-H.** The top cell is never a hole. So `idx > 0` still means a live mapping, whose
//!   migration-disable count keeps the task on its CPU (INV-4), and nested contexts, which push
//!   above `idx`, never see a hole.
//!
//! A hole is *marked*, not zeroed, and this is the change. A zero is also what a cell holds
//! between map's push and its record, and between unmap's zeroing and its pop. With holes that
//! are zeros and a pop over empty cells, an interrupt arriving in a task's map right after the
//! PTE install maps above it, and its own unmap pops the task's cell too, since its saved value
//! is still zero: the interrupt returns with `idx` one lower than it found it, and the task's
//! next map lands on its own live slot (Linux: `BUG_ON(!pte_none)`). That is the mutant
//! `holes-are-zero` of `xtask/mutants.toml`, a model of the 2023 proposal: the explorer finds
//! this in scope 1/2/2 with `--release any` and in the built-in scenario `hole-then-irq`
//! (`cargo xtask test` runs the explorer on it and fails unless it is caught; BENCHMARKS.md's
//! table of `cargo xtask mutants` gives its shortest counterexample and which other checks
//! catch it). With a distinct marker a pop stops at a zero, and the top release can zero its
//! holes before its pop, so every cell at or above `idx` stays empty (INV-1) at every arrival
//! point. The price is one value a platform's `make_pte` must never return (all ones).
//!
//! A release below the top keeps preemption off from the PTE clear to the mark: a switch in
//! between would find the saved PTE still there, `sched_in` would re-install it, and the mark
//! would then leave a hole whose slot is mapped and that no pop clears (the mutant
//! `hole-marked-before-cleared`; the switch hooks taking a hole for a PTE and a lazy pop that
//! stops one short are the mutants `switch-does-not-skip-holes` and `lazy-pop-one-short`).
//!
//! ### The API: which to use
//!
//! - [`Mapping`](crate::Mapping), from [`Local::map`](crate::Local::map): LIFO, enforced by the
//!   borrow checker (a nested mapping borrows its parent). Use it whenever the code's shape is a
//!   stack of scopes. It works on every platform and costs nothing extra.
//! - [`Scope`](crate::Scope), from [`Local::scope`](crate::Local::scope): its
//!   [`map`](crate::Scope::map) takes `&self`, so any number of
//!   [`ScopedMapping`](crate::ScopedMapping)s can be held side by side, in a struct or across
//!   early returns, and dropped in any order. The same guarantees: byte views bounded by the
//!   page, `!Send` and `!Sync`, leak-sound (the scope releases what leaked mappings left when it
//!   ends). It compiles only on a platform with the constant on.
//! - [`raw::unmap_any_order`](crate::raw::unmap_any_order), for C-shaped code; `raw::unmap`
//!   stays Linux's and refuses a cell below the top (rule U-3).
//!
//! ### What the proof covers
//!
//! `kmap prove --release any` explores every program of a scope: each task an endless
//! nondeterministic mix of map, check, unmap of the top, release of any mapping below the top,
//! and yield, with unbounded preemption, an interrupt and an NMI that map (and release out of
//! order in the built-in scenarios) at every arrival point of the crate's real code, to a fixed
//! point of the state space. BENCHMARKS.md's table of `kmap prove` has the rows `release any`
//! (1/3/2 and 2/3/2, with their verdicts, states and times). `cargo test` proves 1/2/2
//! and 2/2/2 with `--release any`, and `cargo xtask test` fails unless the explorer alone
//! catches each of the four mechanism mutants of the new path (the fifth, of `Scope`'s drop,
//! is caught by the crate's tests). In these scopes a task maps only while its
//! stack, holes included, is shallower than its number of pages, which keeps the state space
//! finite (see the cost of holes, below).
//!
//! ### The cost of holes
//!
//! - **Cells.** A hole uses its cell until every mapping above it is released. A sliding window
//!   (map the next page, then release the oldest, while never releasing the newest) grows the
//!   stack by one cell per step although it holds two pages: with 16 cells shared with
//!   interrupts and NMIs (rule N-4), that is the budget to watch. The overflow is refused before any state changes (built-in scenario
//!   `hole-overflow`). Linux's LIFO rule has no such cost.
//! - **Instructions** (callgrind, `cargo xtask bench --instructions-only`; BENCHMARKS.md): with
//!   the constant off, the LIFO paths are unchanged (a highmem map and unmap 42 instructions, a
//!   lowmem one 10). With it on, a LIFO map and unmap costs 46 (the look at the cell beneath the
//!   top), a release of the top 36 with no hole beneath and 48 popping one, a release below
//!   the top 31, and a switch out and in of a task with four cells of which two are holes 131.
