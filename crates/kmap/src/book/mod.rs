//! # The kmap book
//!
//! A short book in six chapters; every example in it is compiled by `cargo test`, and run
//! unless it says why not (the x86_64 platform of "Implementing Platform" needs ring 0).
//!
//! 1. [The problem](problem): what a temporary kernel mapping is, and the race that hid in the
//!    first design of Linux's preemptible one.
//! 2. [Quick start](quick_start): map a page, use it, nest a second one, copy between them.
//! 3. [Implementing `Platform`](implementing_platform): what your kernel provides.
//! 4. [Where the scheduler calls the hooks](scheduler): `sched_out`, `sched_in`, fork, exit.
//! 5. [Guarantees and refusals](guarantees): what you can rely on, and what is refused.
//! 6. [Differences from Linux](differences).

pub mod differences;
pub mod guarantees;
pub mod implementing_platform;
pub mod problem;
pub mod quick_start;
pub mod scheduler;
