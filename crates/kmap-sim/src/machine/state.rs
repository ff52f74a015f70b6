//! The state of the whole system at a choice point, as a stateful search remembers it.
//!
//! A stateful search (`kmap prove`) explores without bounds on preemption and ends because it
//! remembers the states it has seen: at a choice point whose state it has met before, every
//! continuation has been or will be explored from the first meeting. That is sound only if the
//! state captures everything the future depends on:
//!
//! - the machine: memory (tags), the page table, every TLB and the slots cleared but not yet
//!   invalidated, every CPU's `current`, run queue, counters and nested handlers, and where it
//!   is in a switch;
//! - every task: its status, CPU, kmap stack, mappings, migration count, program position;
//! - every context suspended inside code: the crate's and the machine's locals live on the
//!   task's coroutine stack. The code is deterministic, so a suspended operation is fixed by the
//!   operation, the arrival points of its own it has passed (how many, and the last), and the
//!   values the platform answered the crate's reads with ([`Place`](super::Place)). The
//!   scheduler's code in a switch in progress has a place of its own per CPU, and keeps
//!   nothing else across a suspension that the machine state does not hold (the switch's prev
//!   and next are read from the CPU after its arrival point; an arrival point probes again when
//!   the context is resumed there). Handlers run to completion inside one step (a stateful run
//!   never switches the executing CPU inside one);
//! - where the question is asked: the arrival point's label and nesting depth, or the step
//!   choice of a task's program.
//!
//! Left out on purpose: counters that only number things (arrival points, fresh tag values:
//! tags matter only by equality, so two states that differ only in the next fresh tag have the
//! same futures up to renaming), statistics and the trace, and the pruning record (a stateful
//! search does not prune).
//!
//! The state is hashed to 128 bits (XXH3-128): a search that remembers `n` states confuses two
//! of them with probability at most `n² / 2^129`.

use std::hash::Hash;

use xxhash_rust::xxh3::Xxh3;

use super::{Label, Machine};
use crate::chooser::StateKey;

impl Machine {
    /// The state at the current choice point (see the module doc).
    ///
    /// `question` is the arrival point asking, and `step` whether the question is a program's
    /// choice of its next step rather than the events of that arrival point.
    pub(crate) fn state_key(&self, question: Label, step: bool) -> StateKey {
        let quiescent = {
            let st = self.st.borrow();
            st.cpus.iter().all(|c| {
                c.nested.is_empty() && !c.in_scheduler && st.tasks[c.current].place.op.is_none()
            })
        };
        StateKey {
            key: self.state_hash(question, step),
            quiescent,
        }
    }

    /// The state at the current choice point, hashed to 128 bits.
    fn state_hash(&self, question: Label, step: bool) -> u128 {
        let mut hasher = Xxh3::new();
        let st = self.st.borrow();
        // Where the question is asked: the executing CPU, the arrival point (or a program's
        // step) and the nesting depth there.
        (st.active, question, step, st.cpus[st.active].nested.len()).hash(&mut hasher);
        (&st.tags, &st.expected).hash(&mut hasher);
        for pte in &st.pt {
            pte.raw().hash(&mut hasher);
        }
        for tlb in &st.tlb {
            let mut entries: Vec<(usize, u64)> = tlb.iter().map(|(&p, &f)| (p, f)).collect();
            entries.sort_unstable();
            entries.hash(&mut hasher);
        }
        let mut unflushed: Vec<usize> = st.unflushed.iter().copied().collect();
        unflushed.sort_unstable();
        unflushed.hash(&mut hasher);
        for cpu in &st.cpus {
            (
                cpu.current,
                &cpu.runqueue,
                cpu.preempt,
                cpu.pagefault,
                cpu.irqs_off,
                cpu.in_scheduler,
                cpu.last_prev,
                cpu.idle_host,
                &cpu.sched_place,
            )
                .hash(&mut hasher);
            for nested in &cpu.nested {
                (nested.kind as u8).hash(&mut hasher);
                for held in &nested.mappings {
                    (held.frame, held.addr, held.atomic).hash(&mut hasher);
                }
            }
            if let Some(snapshot) = &cpu.switch_snapshot {
                let ran = st.tasks[snapshot.prev].runs != snapshot.prev_runs;
                (snapshot.prev, snapshot.next, ran).hash(&mut hasher);
                (&snapshot.prev_stack, &snapshot.next_stack).hash(&mut hasher);
            }
        }
        for (id, task) in st.tasks.iter().enumerate() {
            (
                task.status as u8,
                task.cpu,
                task.pc,
                &task.place,
                task.migrate,
                task.pending_migration,
            )
                .hash(&mut hasher);
            for held in &task.mappings {
                (held.frame, held.addr, held.atomic).hash(&mut hasher);
            }
            if let Some(stack) = self.stacks[id].get() {
                (stack.depth(), stack.home()).hash(&mut hasher);
                for cell in 0..stack.cells() {
                    stack.saved(cell).raw().hash(&mut hasher);
                }
            }
        }
        hasher.digest128()
    }
}
