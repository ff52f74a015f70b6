//! # 1. The problem
//!
//! A kernel often has to touch a physical page that has no permanent kernel address: highmem on
//! a 32-bit machine, or memory kept out of the direct map on purpose (guest memory in a
//! hypervisor, secrets, pages a security policy unmaps). It needs a *temporary* mapping: map the
//! page, use it for a while, unmap it.
//!
//! A global pool of such mappings (Linux's `kmap()`) needs a lock, reference counts and, when
//! the pool wraps, a TLB flush on every CPU. Linux's `kmap_local` instead gives each CPU a small
//! window of slots, and each task a small **stack** of mappings: a depth `idx` and the saved PTE
//! of every cell. Mapping pushes a cell and writes the slot's PTE on this CPU; unmapping clears
//! it, invalidates this CPU's TLB entry for it, and pops. No lock, no IPI, no shared state.
//!
//! Unlike the older `kmap_atomic`, the task may be **preempted or sleep** while it holds the
//! mapping. So the mappings must follow the task: when it is switched out its slots are cleared,
//! and when it comes back (on the same CPU: migration is disabled while it holds mappings) its
//! saved PTEs are installed again. Interrupts and NMIs may map too, on top of whatever task is
//! current, and must pop everything before they return.
//!
//! ## The race
//!
//! The first design (an RFC, September 2020) swapped the slots in one step: while `current` was
//! still the outgoing task *prev*, it cleared prev's slots and installed *next*'s. An interrupt
//! arriving in between mapped at `current->idx` — prev's depth — onto slots that were being
//! filled for next, so it overwrote one of next's mappings (or, with the "slot must be free"
//! check, crashed). Linus Torvalds spotted it in review; it would have shown up only on 32-bit
//! highmem machines, with an interrupt handler that maps, inside a window of a few instructions.
//!
//! The fix splits the swap: prev's slots are cleared in `prepare_task_switch` while `current` is
//! prev, and next's restored in `finish_task_switch` once `current` is next. Neither half changes
//! `idx`, so at every instant the slots at or above `current->idx` are empty, and that is where
//! a nested context lands. This crate is that design, with the argument for each step written
//! beside the step, and an API that makes the remaining misuse impossible or refused.
