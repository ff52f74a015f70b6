//! # 4. Where the scheduler calls the hooks
//!
//! Two calls in the context switch, one in fork, and two checks.
//!
//! | where | call | `current` is |
//! |---|---|---|
//! | prepare-switch (Linux: `prepare_task_switch`), before the stack switch | [`sched_out`](crate::sched_out) | prev |
//! | finish-switch (Linux: `finish_task_switch`), after the stack switch; interrupts may be on | [`sched_in`](crate::sched_in) | next |
//! | a new task's first run (Linux: `schedule_tail`) | [`sched_in`](crate::sched_in) (one branch) | the new task |
//! | fork, when the child's task struct is made | [`KmapStack::fork`](crate::KmapStack::fork) | the parent |
//! | return to user space, task exit | [`assert_no_mappings`](crate::assert_no_mappings) | the task |
//!
//! Never write one function that handles prev and next together: that is the 2020 race
//! ([chapter 1](super::problem)). Each hook looks only at `current`. The demo kernel's
//! `kernel/src/sched.rs` (in the repository) is a real switch path with both hooks, and a
//! preemption that happens on the task's own stack; built with `--features rfc-v1` it does the
//! RFC's single-step swap instead, and its workload catches the corruption on real page tables.
//!
//! ```
//! use kmap::{assert_no_mappings, Checkpoint, KmapStack, Platform};
//! use kmap_host::HostPlatform;
//!
//! /// The context switch of a kernel, reduced to what concerns kmap.
//! fn context_switch(machine: &HostPlatform, next: usize) {
//!     // SAFETY: prepare-switch, current = prev.
//!     unsafe { kmap::sched_out(machine) };
//!     machine.set_current(machine.cpu(), next); // the stack switch: current = next
//!     // SAFETY: finish-switch, current = next.
//!     unsafe { kmap::sched_in(machine) };
//! }
//!
//! let machine: HostPlatform = HostPlatform::new(1, 64, 16, 2);
//! let mut page = machine.page(40);
//! // SAFETY: the only handle of task 0.
//! let mut local = unsafe { kmap::Local::new(&machine) };
//! let mapping = local.map(&mut page);
//!
//! context_switch(&machine, 1);                     // task 0 is preempted holding its mapping
//! assert!(machine.occupied(0).is_empty(), "task 1 finds every slot empty");
//! let child: KmapStack = machine.current_stack().fork(&machine); // task 1 forks: the child is empty
//! assert_eq!(child.depth(), 0);
//! context_switch(&machine, 0);                     // task 0 comes back; its slot is restored
//! assert_eq!(machine.occupied(0), vec![0]);
//! assert!(mapping.bytes().iter().all(|&b| b == 0));
//!
//! drop(mapping);
//! drop(local);
//! assert_eq!(assert_no_mappings(&machine, Checkpoint::ReturnToUser), Ok(()));
//! ```
//!
//! Preemption: a task holding mappings may be preempted anywhere preemption is allowed, and may
//! sleep. It may not migrate: each mapping holds a migration-disable count until it is released,
//! and [`sched_in`](crate::sched_in) reports a task that comes back on another CPU anyway
//! ([`Report::Migrated`](crate::Report::Migrated)).
//!
//! Interrupts and NMIs: the handler entry makes the handler's own [`Local`](crate::Local) and
//! drops it before returning; it maps on the interrupted task's stack, above its `idx`.
