//! Tasks: each with its program and where it is in it, its status and CPU, the mappings it
//! holds as its program sees them, its migration-disable count; and their kmap stacks, which
//! the crate reads and writes through the platform.

use std::cell::OnceCell;
use std::hash::{Hash, Hasher};

use kmap::{Cell, CpuId, Frame, Pte, VirtAddr};

use super::cpu::StackImage;
use super::symmetry::Relabel;
use crate::choice::TaskId;
use crate::platform::DynStack;
use crate::program::Op;
use crate::trace::Label;

/// A mapping a context holds, as its program sees it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Held {
    pub(crate) frame: Frame,
    pub(crate) addr: VirtAddr,
    pub(crate) atomic: bool,
    /// A guard of the safe API: the stack depth it was made at, which it keeps and releases
    /// down to (`None`: a raw mapping, which keeps nothing).
    pub(crate) base: Option<usize>,
}

/// Where a task is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Status {
    Runnable,
    Running,
    Sleeping,
    Exited,
}

/// Where a task's own code is inside an operation, as far as its future depends on it: the
/// operation, how many arrival points of its own (not its handlers', not the scheduler's) it
/// has passed in it and the last of them, and every value the platform answered the crate's
/// reads with in it. The code is deterministic, so these fix every local variable of the
/// suspended call (see `state.rs`).
#[derive(Clone, Default, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Place {
    pub(crate) op: Option<Op>,
    pub(crate) steps: u32,
    pub(crate) label: Option<Label>,
    pub(crate) reads: Vec<Read>,
    /// The stack as it was after the arrival points of its own where something else changed
    /// it (a lasting handler, or another context while the task was switched out), with the
    /// number of the point: the code's locals follow from the stack only where its own code
    /// alone changed it (see `Machine::arrive`).
    pub(crate) changed: Vec<ChangedStack>,
}

/// A value the platform answered one of the crate's reads with (see [`Place::reads`]): a PTE
/// names a frame and a CPU number a CPU (each renamed with what it names, see `symmetry.rs`),
/// anything else is a number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Read {
    /// The executing CPU.
    Cpu(CpuId),
    /// A yes-or-no answer.
    Value(u64),
    /// A slot's PTE.
    Pte(Pte),
}

/// A stack changed under the code at one of its own arrival points (see [`Place::changed`]).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct ChangedStack {
    /// The number of the arrival point ([`Place::steps`] there).
    pub(crate) step: u32,
    /// The stack after the events there.
    pub(crate) stack: StackImage,
}

/// Which program a task runs: the machine reads it from the configuration, which lives as long
/// as the machine, so the code of a task borrows it and keeps nothing of its own that would
/// need dropping (see `driver.rs`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Code {
    /// A CPU's idle task: no program.
    Idle,
    /// The task of the configuration's program at this position.
    Config(usize),
    /// A forked child: it checks it starts with no mappings ([`FORK_CHILD`]).
    ForkChild,
}

/// The program of a forked child.
pub(crate) const FORK_CHILD: [Op; 1] = [Op::Check];

/// One task.
pub(crate) struct TaskState {
    pub(super) name: String,
    pub(super) cpu: CpuId,
    /// Bound to `cpu` (see [`Task::pinned`](crate::Task::pinned)).
    pub(super) pinned: bool,
    pub(super) status: Status,
    pub(super) idle: bool,
    /// Its program (see [`Machine::program`](super::Machine::program)).
    pub(super) code: Code,
    /// The next operation of `ops`.
    pub(super) pc: usize,
    /// Where its own code is inside the current operation (kept for stateful searches).
    pub(super) place: Place,
    pub(super) mappings: Vec<Held>,
    pub(super) migrate: i32,
    pub(super) pending_migration: Option<CpuId>,
    /// How many times it became current (to tell whether it ran since a snapshot).
    pub(super) runs: u64,
}

impl TaskState {
    /// A task that has not run yet (an idle task is running from the start).
    pub(crate) fn new(name: String, cpu: CpuId, code: Code) -> Self {
        let idle = code == Code::Idle;
        TaskState {
            name,
            cpu,
            pinned: false,
            status: if idle {
                Status::Running
            } else {
                Status::Runnable
            },
            idle,
            code,
            pc: 0,
            place: Place::default(),
            mappings: Vec::new(),
            migrate: 0,
            pending_migration: None,
            runs: 0,
        }
    }

    /// Hash everything its future depends on (see `state.rs`), renamed by `relabel`.
    pub(crate) fn hash_contents(&self, relabel: &Relabel, hasher: &mut impl Hasher) {
        (
            self.status,
            relabel.cpu(self.cpu),
            self.pinned,
            self.pc,
            self.migrate,
            self.pending_migration.map(|cpu| relabel.cpu(cpu)),
        )
            .hash(hasher);
        relabel.hash_place(&self.place, hasher);
        self.mappings.len().hash(hasher);
        for &held in &self.mappings {
            relabel.held(held).hash(hasher);
        }
    }
}

/// Every task's kmap stack, by [`TaskId`]. A stack lives outside the machine's other state
/// because the crate holds a reference to it (`Platform::current_stack`) while it runs; each is
/// set once, when its task is created, and lives as long as the run.
pub(crate) struct Stacks(Box<[OnceCell<Box<dyn DynStack>>]>);

impl Stacks {
    /// Room for `capacity` tasks.
    pub(crate) fn new(capacity: usize) -> Stacks {
        Stacks((0..capacity).map(|_| OnceCell::new()).collect())
    }

    /// Give `task` its stack.
    pub(crate) fn set(&self, task: TaskId, stack: Box<dyn DynStack>) {
        if self.0[task.0].set(stack).is_err() {
            unreachable!("a task's stack is set once");
        }
    }

    /// `task`'s stack.
    pub(crate) fn get(&self, task: TaskId) -> &dyn DynStack {
        &**self.0[task.0]
            .get()
            .expect("a task's stack exists while it can run")
    }

    /// `task`'s stack, if it has one yet.
    pub(crate) fn try_get(&self, task: TaskId) -> Option<&dyn DynStack> {
        self.0[task.0].get().map(|stack| &**stack)
    }

    /// Every stack that exists, with its task.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (TaskId, &dyn DynStack)> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(t, stack)| stack.get().map(|s| (TaskId(t), &**s)))
    }
}

/// A stack's `idx` and every saved PTE.
pub(crate) fn image(stack: &dyn DynStack) -> StackImage {
    StackImage {
        depth: stack.depth(),
        saved: (0..stack.cells()).map(|c| stack.saved(Cell(c))).collect(),
    }
}

/// Whether a stack holds anything: an `idx` above 0 or a saved PTE.
pub(crate) fn holds_anything(stack: &dyn DynStack) -> bool {
    stack.depth() != 0 || (0..stack.cells()).any(|c| stack.saved(Cell(c)) != Pte::EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a value's hashing feeds the hasher.
    #[derive(Default)]
    struct Bytes(Vec<u8>);

    impl Hasher for Bytes {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    fn encoding(task: &TaskState) -> Vec<u8> {
        let mut bytes = Bytes::default();
        task.hash_contents(&Relabel::IDENTITY, &mut bytes);
        bytes.0
    }

    /// K5: the state key is a concatenation of the parts' encodings, which identifies the
    /// state (up to hash collisions) only if no part's encoding is a prefix of another's. A
    /// task's mappings are a list of any length: without its length first, the encoding of a
    /// task holding nothing is a prefix of the same task holding one mapping, and the bytes
    /// that follow (the next task's) can make the two states' keys equal.
    #[test]
    fn a_task_s_encoding_is_prefix_free_in_its_mappings() {
        let empty = TaskState::new("A".into(), CpuId(0), Code::Config(0));
        let mut holding = TaskState::new("A".into(), CpuId(0), Code::Config(0));
        holding.mappings.push(Held {
            frame: Frame::new(20),
            addr: VirtAddr::new(0x1000),
            atomic: false,
            base: None,
        });
        let (a, b) = (encoding(&empty), encoding(&holding));
        assert!(!b.starts_with(&a) && !a.starts_with(&b), "{a:?} / {b:?}");
    }
}
