//! A deterministic machine that runs the real `kmap` crate code.
//!
//! The crate is written against one trait, [`kmap::Platform`]. This crate implements it over a
//! simulated multi-CPU machine, so the very code a kernel would run can be driven through every
//! situation a kernel meets, and watched while it happens. The machine is made of parts that
//! own their state, as the hardware is:
//!
//! - **memory**: frames, each holding a tag, so every access can be checked against the frame
//!   its mapper asked for; frames below a boundary are direct-mapped (lowmem);
//! - **MMU**: per-CPU kmap slots in a shared kernel page table, and a TLB per CPU that keeps a
//!   stale translation until the crate invalidates it (or no TLB at all);
//! - **CPUs and tasks**: tasks on their own stacks (stackful coroutines), per-CPU run queues,
//!   and a context switch shaped like Linux's, with the switch protocol as a setting
//!   ([`Protocol`]); interrupts and NMIs nested on the current stack at any arrival point,
//!   each running a program of kmap operations;
//! - **the oracle**, reading the parts, which reports *consequences*, as a kernel would suffer
//!   them: a crash (a map or a switch into an occupied slot, Linux's `BUG_ON`), a fault (an
//!   access through a slot with no translation), corruption (an access that reaches another
//!   frame, or reads what another context wrote), a leak (slots, TLB entries or unflushed slots
//!   left at the end). The invariants INV-1 to INV-6 of the reference are watched too: one
//!   broken with no consequence yet is a [`Hazard`], listed with where it happened, and a
//!   violation only under strict checking ([`Settings::strict`]).
//!
//! Around it:
//!
//! - [`settings`]: the machine's settings, each defined once and read by scenario files,
//!   replay strings and command-line flags alike; [`config`]: a run's settings, bounds and
//!   programs, and their one validation; [`program`]: the operations of programs;
//! - [`choice`]: the seam to a search: every decision (an interrupt, an NMI or a preemption
//!   here, another CPU running now) comes from one [`Chooser`], so a run is a pure function
//!   of its choices, named by its [`Schedule`]; the search strategies are `kmap-check`'s;
//! - [`outcome`] and [`trace`]: what a run found, and what happened step by step;
//! - `platform`: the crate plugged into the machine (the one generic layer).
//!
//! ```
//! use kmap::Frame;
//! use kmap_sim::{run_with, Config, NoInjection, Op, Program, RunOptions, Task, Verdict};
//!
//! let config = Config {
//!     program: Program {
//!         tasks: vec![Task {
//!             name: "A".into(),
//!             ops: vec![Op::Map(Frame::new(20)), Op::Check, Op::Unmap],
//!             ..Task::default()
//!         }],
//!         ..Program::default()
//!     },
//!     ..Config::default()
//! };
//! let outcome = run_with(&config, NoInjection, RunOptions::default()).unwrap();
//! assert_eq!(outcome.verdict(), Verdict::Pass);
//! assert_eq!(outcome.stats.kmap_ops, 2);
//! ```

pub mod choice;
pub mod config;
pub mod implementation;
mod machine;
pub mod outcome;
mod platform;
pub mod program;
pub mod settings;
pub mod trace;

pub use choice::{
    Choice, ChoicePoint, Chooser, Decision, NoInjection, Schedule, ScheduleError, StateKey, Taken,
    TaskId,
};
pub use config::{Bounds, Config, ConfigError, Field, HandlerKind};
pub use machine::{ProbeMemo, RunOptions, run, run_with};
pub use outcome::{
    ChoiceRecord, Hazard, Outcome, Refusal, Rule, Stats, Verdict, Violation, ViolationKind,
};
pub use platform::{
    DIRECT_MAP, FIXMAP_TOP, MAX_CELLS, PAGE_SIZE, PTE_PRESENT, PTE_WRITE, SUPPORTED_CELLS, WINDOW,
    pte_frame,
};
pub use program::{Alphabet, AnyOp, Api, Op, OpError, Program, Task};
pub use settings::{Changes, Implementation, Mutation, Protocol, Release, Settings, SettingsError};
pub use trace::{Context, Event, Label, SlotName, What};
