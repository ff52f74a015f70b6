//! # 6. Differences from Linux
//!
//! | | Linux `kmap_local` | this crate |
//! |---|---|---|
//! | usable cells | `KM_MAX_IDX - 1` = 15 (push, then `BUG` if `idx >= KM_MAX_IDX`) | all `N` of a `KmapStack<N>` (16 by default) |
//! | overflow | `BUG()` | refused with [`MapError::Overflow`](crate::MapError::Overflow) before any state changes |
//! | occupied slot at map | `BUG()` | refused with [`MapError::SlotNotEmpty`](crate::MapError::SlotNotEmpty), counters restored |
//! | out-of-order unmap | warns once, unmaps the top slot, invalidates the *given* address (stale TLB entry) | refused with [`UnmapError::NotTopCell`](crate::UnmapError::NotTopCell); the safe API makes it a compile error |
//! | unmap with nothing mapped | writes `pteval[-1]` (over `idx`), then `BUG()` | refused with [`UnmapError::EmptyStack`](crate::UnmapError::EmptyStack) |
//! | non-slot address under force-map | warns, returns | refused with [`UnmapError::NotKmapAddress`](crate::UnmapError::NotKmapAddress) |
//! | task back on another CPU while holding | not checked (relies on migrate-disable) | reported at `sched_in` ([`Report::Migrated`](crate::Report::Migrated)) |
//! | guard cells, force-map | Kconfig options, one layout per kernel | associated constants of the platform: one binary can run several layouts |
//! | API | pointers; LIFO by convention | guards and closures whose lifetimes enforce LIFO; byte views and copies; pointers only through the `unsafe` [`raw`](crate::raw) module |
//! | leaked mapping | stays until the task exits (undetected) | released with whatever was mapped before it; reported |
//! | the switch hooks with nothing mapped | one load and one branch each | the same (the loops are out of line, `#[cold]`) |
//! | `kmap_atomic` on PREEMPT_RT | migrate-disable instead of preempt-disable | preempt-disable always (a platform that wants RT semantics can make `preempt_disable` pin instead) |
//! | ARM VIVT `kmap_high_get` reuse, xtensa cache colouring | supported | not supported: slot addresses depend on (cpu, cell) only |
