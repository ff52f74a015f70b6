//! x86_64 under QEMU, from the PVH entry to the interrupt stubs.
//!
//! A kernel needs a dozen hardware facts to run the kmap crate on real page tables: how it
//! boots and starts the second CPU (`boot`), how it takes interrupts and NMIs on stacks of their
//! own (`interrupts`), how it switches stacks and turns a timer interrupt into a preemption on
//! the task's own stack (`context`), how it reaches its per-CPU area in one instruction
//! (`percpu`), its local APIC (`apic`), its serial port (`serial`), the few instructions it
//! issues (`instructions`), and the memory functions libcore expects from libc (`libc`). The
//! `x86_64` crate gives the instructions and the table layouts; what it cannot give on stable
//! Rust is written here by hand, each file saying why.

pub mod apic;
pub mod boot;
pub mod context;
pub mod instructions;
pub mod interrupts;
mod libc;
pub mod percpu;
pub mod serial;
