//! A deterministic machine that runs the real `kmap` crate code.
//!
//! The crate is written against one trait, [`kmap::Platform`]. This crate implements it over a
//! simulated multi-CPU machine, so the very code a kernel would run can be driven through every
//! situation a kernel meets, and watched while it happens:
//!
//! - **memory**: frames, each holding a tag, so every access can be checked against the frame
//!   its mapper asked for; frames below a boundary are direct-mapped (lowmem);
//! - **MMU**: per-CPU kmap slots in a shared kernel page table, and a TLB per CPU that keeps a
//!   stale translation until the crate invalidates it (or no TLB at all);
//! - **tasks** on their own stacks (stackful coroutines), per-CPU run queues, and a context
//!   switch shaped like Linux's, with the switch protocol as a parameter ([`Protocol`]);
//! - **interrupts and NMIs**, nested on the current stack at any arrival point, each running a
//!   program of kmap operations;
//! - **the oracle**, which reports *consequences*, as a kernel would suffer them: a crash (a
//!   map or a switch into an occupied slot, Linux's `BUG_ON`), a fault (an access through a
//!   slot with no translation), corruption (an access that reaches another frame, or reads what
//!   another context wrote), a leak (slots, TLB entries or unflushed slots left at the end). The
//!   invariants INV-1 to INV-6 of the reference are watched too: one broken with no
//!   consequence yet is a [`Hazard`], listed with where it happened, and a violation only under
//!   strict checking ([`Config::strict`]).
//!
//! Every decision (an interrupt, an NMI or a preemption here, another CPU running now) comes
//! from one [`Chooser`], so a run is a pure function of its choices: the explorer enumerates
//! them, [`stress`] draws them from a seed, and a [`Schedule`] replays any run.
//!
//! ```
//! use kmap_sim::{run_with, Config, NoInjection, Op, Program, RunOptions, Task, Verdict};
//!
//! let config = Config {
//!     program: Program {
//!         tasks: vec![Task {
//!             name: "A".into(),
//!             ops: vec![Op::Map(20), Op::Check, Op::Unmap],
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

mod adapter;
mod chooser;
mod config;
mod machine;
mod outcome;
mod sim;
pub mod stress;
mod trace;

pub use adapter::{DIRECT_MAP, PAGE_SIZE, SUPPORTED_CELLS, WINDOW, pte_frame};
pub use chooser::{
    Choice, ChoicePoint, Chooser, NoInjection, RandomChooser, Rates, Replay, STOP, Schedule,
    StateKey,
};
pub use config::{
    AnyOp, Bounds, Config, ConfigError, MachineConfig, Mutation, Op, Program, Protocol, Release,
    Task,
};
pub use machine::{ProbeMemo, RunOptions};
pub use outcome::{
    ChoiceRecord, Hazard, Outcome, Refusal, Rule, Stats, Verdict, Violation, ViolationKind,
};
pub use sim::{run, run_with};
pub use trace::{Context, Event, Label, What};
