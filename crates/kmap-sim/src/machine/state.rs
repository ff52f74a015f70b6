//! The state of the whole system at a choice point, as a stateful search remembers it; and the
//! fingerprint of a run's final state.
//!
//! A stateful search (`kmap prove`, or `kmap check` under its bounds) ends because it
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
//!   operation, the arrival points of its own it has passed (how many, and the last), the
//!   values the platform answered the crate's reads with, and the stack after each of those
//!   points where something else changed it under the code (what the code read of its own
//!   stack before, it keeps in locals the current stack no longer gives; see
//!   `Machine::arrive`) ([`Place`](super::task::Place)). The
//!   scheduler's code in a switch in progress has a place of its own per CPU, and keeps
//!   nothing else across a suspension that the machine state does not hold (the switch's prev
//!   and next are read from the CPU after its arrival point; an arrival point probes again
//!   after every event it offered, so what it offers is a function of the state). Handlers run
//!   to completion inside one step (a stateful run never switches the executing CPU inside
//!   one), but a lasting handler may be asked at its own arrival points (a lasting NMI offered
//!   inside a lasting interrupt): every handler in progress has its program position and its
//!   place, as a task has;
//! - where the question is asked: the arrival point's label and nesting depth, or the step
//!   choice of a task's program;
//! - under bounds (a stateful `kmap check`), what the run has used of each finite bound;
//!   and whether every refusal so far was survived (the leak checks still to come depend on
//!   it).
//!
//! Left out on purpose: counters that only number things (arrival points, fresh tag values:
//! tags matter only by equality, so two states that differ only in the next fresh tag have the
//! same futures up to renaming), statistics and the trace, and the pruning record (a stateful
//! search does not prune).
//!
//! The state is hashed to 128 bits (XXH3-128): a search that remembers `n` states confuses two
//! of them with probability at most `n² / 2^129`.

use std::hash::{Hash, Hasher};

use kmap::Cell;
use rustc_hash::FxHasher;
use xxhash_rust::xxh3::xxh3_128;

use super::symmetry::Relabel;
use super::{Label, Machine};
use crate::choice::{StateKey, TaskId};
use crate::platform::DynStack;

impl Machine {
    /// The state at the current choice point (see the module doc).
    ///
    /// `question` is the arrival point asking, and `step` whether the question is a program's
    /// choice of its next step rather than the events of that arrival point.
    ///
    /// With [`RunOptions::symmetry`](super::RunOptions::symmetry) the key is the state's
    /// canonical form under the relabelling of interchangeable tasks (see `symmetry.rs`), so
    /// that states that differ only in which of those tasks is which share it.
    pub(crate) fn state_key(&self, question: Label, step: bool) -> StateKey {
        let quiescent = self.quiescent();
        let orbit =
            (self.options.symmetry || self.options.orbits).then(|| self.orbit_key(question, step));
        let key = match orbit {
            Some(orbit) if self.options.symmetry => orbit,
            _ => self.digest(|hasher| self.hash_state(question, step, &Relabel::IDENTITY, hasher)),
        };
        StateKey {
            key,
            quiescent,
            orbit: orbit.filter(|_| self.options.orbits),
        }
    }

    /// The key of the state's canonical form: the least, over the rotations of the CPUs (the
    /// identity alone where CPU symmetry does not hold), of the key of the rotated state with
    /// every class of interchangeable tasks in the order of their signatures (see
    /// `symmetry.rs`).
    fn orbit_key(&self, question: Label, step: bool) -> u128 {
        let tasks = self.tasks.borrow().len();
        let frames = self.config.machine.frames;
        self.symmetry
            .rotations(tasks, frames)
            .map(|rotation| {
                // One relabelling, made local to each task in turn and put back after.
                let mut local = rotation.clone();
                let order: Vec<Vec<TaskId>> = self
                    .symmetry
                    .classes()
                    .iter()
                    .map(|class| {
                        let mut signed: Vec<(u64, TaskId)> = class
                            .iter()
                            .map(|&task| {
                                self.symmetry.localize(&mut local, class, task);
                                let signature = self.signature(task, &local);
                                self.symmetry.unlocalize(&mut local, &rotation, task);
                                (signature, task)
                            })
                            .collect();
                        signed.sort_unstable();
                        signed.into_iter().map(|(_, task)| task).collect()
                    })
                    .collect();
                let relabel = self.symmetry.relabel(&order, &rotation);
                self.digest(|hasher| self.hash_state(question, step, &relabel, hasher))
            })
            .min()
            .expect("the identity is a rotation")
    }

    /// Everything of the state, renamed by `local` (a rotation of the CPUs, with `task`'s
    /// pages named by their place in its list), that concerns `task` (see `symmetry.rs`).
    ///
    /// A signature only orders the tasks of a class, so it is a 64-bit hash: two tasks whose
    /// signatures collide are put in either order, which may leave a class two keys (a
    /// state explored twice), never two classes one key (the key itself is the 128-bit hash
    /// of a relabelled state).
    fn signature(&self, task: TaskId, local: &Relabel) -> u64 {
        let mut hasher = FxHasher::default();
        self.tasks.borrow()[task.0].hash_contents(local, &mut hasher);
        hash_stack(self.stack(task), local, &mut hasher);
        let cpus = self.cpus.borrow();
        for new in 0..cpus.len() {
            cpus[local.old_cpu(new)].hash_standing(task, &mut hasher);
        }
        let (memory, mmu) = (self.memory.borrow(), self.mmu.borrow());
        for &page in self.symmetry.pages(task) {
            memory.intact(page).hash(&mut hasher);
            mmu.hash_references(page, local, &mut hasher);
            0xffu8.hash(&mut hasher);
        }
        hasher.finish()
    }

    /// The XXH3-128 of the bytes `hash` writes, gathered first in the machine's scratch buffer
    /// and hashed in one call (cheaper than feeding the hasher field by field).
    fn digest(&self, hash: impl FnOnce(&mut Bytes)) -> u128 {
        let mut bytes = Bytes(std::mem::take(&mut *self.key_scratch.borrow_mut()));
        bytes.0.clear();
        hash(&mut bytes);
        let digest = xxh3_128(&bytes.0);
        *self.key_scratch.borrow_mut() = bytes.0;
        digest
    }

    /// Whether no CPU runs a handler, a switch or an operation of the crate.
    pub(crate) fn quiescent(&self) -> bool {
        let cpus = self.cpus.borrow();
        let tasks = self.tasks.borrow();
        cpus.iter().all(|c| {
            c.nesting() == 0 && !c.in_scheduler() && tasks[c.current().0].place.op.is_none()
        })
    }

    /// Hash the state at the current choice point, renamed by `relabel`.
    fn hash_state(&self, question: Label, step: bool, relabel: &Relabel, hasher: &mut impl Hasher) {
        // Where the question is asked: the executing CPU, the arrival point (or a program's
        // step) and the nesting depth there.
        let question = relabel.label(question);
        let here = relabel.cpu(self.cpu());
        (here, question, step, self.this_cpu().nesting()).hash(hasher);
        self.arrivals
            .borrow()
            .hash_used(&self.config.bounds, hasher);
        // Whether the end-of-run and quiescent leak checks still run (see `Refusal::survived`).
        self.survived_every_refusal().hash(hasher);
        self.memory.borrow().hash_contents(relabel, hasher);
        self.mmu.borrow().hash_contents(relabel, hasher);
        let tasks = self.tasks.borrow();
        let cpus = self.cpus.borrow();
        for new in 0..cpus.len() {
            let cpu = &cpus[relabel.old_cpu(new)];
            cpu.hash_contents(relabel, hasher);
            if let Some(snapshot) = cpu.snapshot() {
                let ran = tasks[snapshot.prev.0].runs != snapshot.prev_runs;
                (
                    relabel.task(snapshot.prev),
                    relabel.task(snapshot.next),
                    ran,
                )
                    .hash(hasher);
                relabel.hash_image(&snapshot.prev_stack, hasher);
                relabel.hash_image(&snapshot.next_stack, hasher);
            }
        }
        for new in 0..tasks.len() {
            let old = relabel.old_task(new);
            tasks[old.0].hash_contents(relabel, hasher);
            if let Some(stack) = self.stacks.try_get(old) {
                hash_stack(stack, relabel, hasher);
            }
        }
    }

    /// A fingerprint of the final state: memory, page table, TLBs, unflushed slots, every
    /// stack, every task's status and CPU, and what went wrong.
    pub(crate) fn final_state(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let identity = Relabel::IDENTITY;
        self.memory.borrow().hash_contents(&identity, &mut hasher);
        self.mmu.borrow().hash_contents(&identity, &mut hasher);
        let tasks = self.tasks.borrow();
        for (task, state) in tasks.iter().enumerate() {
            (state.cpu, state.status, state.migrate).hash(&mut hasher);
            if let Some(stack) = self.stacks.try_get(TaskId(task)) {
                hash_stack(stack, &identity, &mut hasher);
            }
        }
        let outcome = self.outcome.borrow();
        for v in &outcome.violations {
            (v.kind, &v.label, &v.context, &v.message).hash(&mut hasher);
        }
        for r in &outcome.refusals {
            r.hash(&mut hasher);
        }
        hasher.finish()
    }
}

/// Hash a stack: `idx`, the CPU its cells were mapped on, every saved PTE (renamed by
/// `relabel`).
fn hash_stack(stack: &dyn DynStack, relabel: &Relabel, hasher: &mut impl Hasher) {
    (stack.depth(), stack.home().map(|cpu| relabel.cpu(cpu))).hash(hasher);
    for cell in 0..stack.cells() {
        relabel.pte(stack.saved(Cell(cell))).raw().hash(hasher);
    }
}

/// A hasher that only gathers the bytes written to it (see [`Machine::digest`]).
struct Bytes(Vec<u8>);

impl Hasher for Bytes {
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Never asked: the bytes are hashed as a whole.
    fn finish(&self) -> u64 {
        unreachable!("the bytes are digested by `Machine::digest`")
    }
}
