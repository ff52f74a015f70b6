//! Task symmetry: which tasks are interchangeable, and the relabelling of tasks and frames
//! that puts a state in a canonical form, so that a stateful search remembers one state of
//! each class of states that differ only in which of those tasks is which.
//!
//! The argument. Two tasks are interchangeable when they run the same endless nondeterministic
//! program, each over a list of pages of its own, of the same length, that nothing else names
//! (no other task, no handler), all of them highmem, with the same alphabet
//! ([`Alphabet`](crate::Alphabet)), and either all pinned to their CPUs or none; where each starts does not matter (a task's CPU is part of its state, and moves with
//! it when tasks are relabelled). Let π be
//! a permutation of such tasks (within their classes) and σ the renaming of frames it
//! induces: the `j`-th page of task `t` becomes the `j`-th page of task `π(t)`. Apply both to
//! a state, everywhere a task or a frame is named in it (`current`, the run queues, a switch
//! in progress, a task's stack, mappings and place, PTEs in the page table, the TLBs and the
//! stacks, the values the crate read, memory): the result is a state from which the machine
//! does the same as from the first, up to π and σ. Nothing the machine does depends on a
//! task's number or a frame's number except through equality, with three exceptions, each
//! handled: the order of a run queue (a preemption may pick any queued task, a yield the
//! first; the queue is relabelled in place, so its order is kept), a frame's direct-map
//! address (lowmem frames are never interchangeable) and the tags memory holds (a tag
//! matters only by whether a frame holds what its owner last wrote there, so that bit is what
//! is remembered of memory, not the tags; a tag is written into one frame only). A violation
//! is a violation whatever the names, so a state and its relabelling are both safe or both
//! not, and a search that explores one state per class reaches a violation iff the search
//! of every state does. Each state the search expands is a state it really reached: only the
//! key is canonical, so every counterexample is a real run that replays.
//!
//! The canonical form. Each interchangeable task gets a signature: everything of the state
//! that concerns it, with its pages named by their position in its list (its status, CPU,
//! program position, place, mappings, stack, where it stands in every CPU's `current`, run
//! queue and switch, which slots and TLB entries map each of its pages, and the memory bit of
//! each). Sorted by signature, the tasks of a class take the class's numbers in order. Two
//! tasks with the same signature are interchangeable in that state, so either order gives
//! the same relabelled state, and the key depends only on the class of the state.

use std::hash::{Hash, Hasher};

use kmap::{Frame, Pte};

use super::cpu::StackImage;
use super::task::{Held, Place, Read};
use crate::choice::TaskId;
use crate::config::Config;
use crate::platform::{pte_flags, pte_frame};
use crate::program::Op;
use crate::trace::Label;

/// The classes of interchangeable tasks of a configuration.
#[derive(Clone, Debug, Default)]
pub(crate) struct Symmetry {
    /// Each class (two tasks or more), by task number, in increasing order.
    classes: Vec<Vec<TaskId>>,
    /// The pages of every task of a class, by task number.
    pages: Vec<Vec<Frame>>,
}

impl Symmetry {
    /// The classes of `config`'s tasks, numbered as the machine numbers them (after the idle
    /// tasks, one per CPU).
    pub(crate) fn of(config: &Config) -> Symmetry {
        let m = &config.machine;
        let program = &config.program;
        let first = m.cpus;
        let mut named: Vec<Frame> = program
            .irq
            .iter()
            .chain(&program.nmi)
            .copied()
            .filter_map(op_frame)
            .collect();
        for task in &program.tasks {
            named.extend(task.ops.iter().copied().filter_map(op_frame));
        }
        let mut pages = vec![Vec::new(); first + program.tasks.len()];
        let mut classes: Vec<Vec<TaskId>> = Vec::new();
        for (n, task) in program.tasks.iter().enumerate() {
            let own = task.is_any()
                && task.ops.is_empty()
                && task
                    .any
                    .iter()
                    .all(|f| f.pfn() >= m.lowmem && f.pfn() < m.frames)
                && task.any.iter().enumerate().all(|(i, f)| {
                    !named.contains(f)
                        && !task.any[..i].contains(f)
                        && program
                            .tasks
                            .iter()
                            .enumerate()
                            .all(|(o, other)| o == n || !other.any.contains(f))
                });
            if !own {
                continue;
            }
            let id = TaskId(first + n);
            pages[id.0] = task.any.clone();
            let like = |class: &Vec<TaskId>| {
                let other = &program.tasks[class[0].0 - first];
                other.any.len() == task.any.len()
                    && other.pinned == task.pinned
                    && other.alphabet == task.alphabet
                    && other.api == task.api
            };
            match classes.iter_mut().find(|class| like(class)) {
                Some(class) => class.push(id),
                None => classes.push(vec![id]),
            }
        }
        classes.retain(|class| class.len() > 1);
        Symmetry { classes, pages }
    }

    /// The classes, each in increasing order of task number.
    pub(crate) fn classes(&self) -> &[Vec<TaskId>] {
        &self.classes
    }

    /// The pages of a task of a class.
    pub(crate) fn pages(&self, task: TaskId) -> &[Frame] {
        self.pages.get(task.0).map_or(&[], |p| p.as_slice())
    }

    /// The relabelling that names `task`'s pages as the first task of its class names its
    /// own, and changes nothing else (for signatures).
    pub(crate) fn local(
        &self,
        class: &[TaskId],
        task: TaskId,
        tasks: usize,
        frames: u64,
    ) -> Relabel {
        let mut relabel = Relabel::identity(tasks, frames);
        for (&from, &to) in self.pages(task).iter().zip(self.pages(class[0])) {
            relabel.frames[from.pfn() as usize] = to.pfn();
        }
        relabel
    }

    /// The relabelling that gives each task of every class the number `order` assigns it: the
    /// `k`-th task of `order[c]` becomes the `k`-th task of class `c`, and its pages the pages
    /// of that task.
    pub(crate) fn relabel(&self, order: &[Vec<TaskId>], tasks: usize, frames: u64) -> Relabel {
        let mut relabel = Relabel::identity(tasks, frames);
        for (class, sorted) in self.classes.iter().zip(order) {
            for (&to, &from) in class.iter().zip(sorted) {
                relabel.tasks[from.0] = to;
                relabel.order[to.0] = from;
                for (&page, &onto) in self.pages(from).iter().zip(self.pages(to)) {
                    relabel.frames[page.pfn() as usize] = onto.pfn();
                    relabel.inverse[onto.pfn() as usize] = page.pfn();
                }
            }
        }
        relabel
    }
}

/// The frame an operation names, if it names one.
fn op_frame(op: Op) -> Option<Frame> {
    match op {
        Op::Map(f) | Op::MapAtomic(f) | Op::MapPfn(f) | Op::UnmapFrame(f) | Op::Write(f) => Some(f),
        _ => None,
    }
}

/// A renaming of tasks and frames, applied to a state as it is hashed.
#[derive(Clone, Debug)]
pub(crate) struct Relabel {
    /// Old task number to new.
    tasks: Vec<TaskId>,
    /// New task number to old.
    order: Vec<TaskId>,
    /// Old frame number to new.
    frames: Vec<u64>,
    /// New frame number to old.
    inverse: Vec<u64>,
}

impl Relabel {
    /// The relabelling that changes nothing (every number outside its tables is kept).
    pub(crate) const IDENTITY: Relabel = Relabel {
        tasks: Vec::new(),
        order: Vec::new(),
        frames: Vec::new(),
        inverse: Vec::new(),
    };

    /// The relabelling that changes nothing, with room to change `tasks` tasks and `frames`
    /// frames.
    pub(crate) fn identity(tasks: usize, frames: u64) -> Relabel {
        Relabel {
            tasks: (0..tasks).map(TaskId).collect(),
            order: (0..tasks).map(TaskId).collect(),
            frames: (0..frames).collect(),
            inverse: (0..frames).collect(),
        }
    }

    /// A task's new number.
    pub(crate) fn task(&self, task: TaskId) -> TaskId {
        self.tasks.get(task.0).copied().unwrap_or(task)
    }

    /// The task that gets number `new`.
    pub(crate) fn old_task(&self, new: usize) -> TaskId {
        self.order.get(new).copied().unwrap_or(TaskId(new))
    }

    /// A frame's new number.
    pub(crate) fn frame(&self, frame: Frame) -> Frame {
        Frame::new(
            self.frames
                .get(frame.pfn() as usize)
                .copied()
                .unwrap_or(frame.pfn()),
        )
    }

    /// The frame that gets number `new`.
    pub(crate) fn old_frame(&self, new: u64) -> u64 {
        self.inverse.get(new as usize).copied().unwrap_or(new)
    }

    /// A PTE with its frame renamed (empty and hole values are no frame's).
    pub(crate) fn pte(&self, pte: Pte) -> Pte {
        if pte == Pte::EMPTY || pte == Pte::HOLE {
            return pte;
        }
        let frame = self.frame(pte_frame(pte));
        Pte::from_raw(frame.pfn() << 12 | pte_flags(pte))
    }

    /// An operation with its frame renamed.
    pub(crate) fn op(&self, op: Op) -> Op {
        match op {
            Op::Map(f) => Op::Map(self.frame(f)),
            Op::MapAtomic(f) => Op::MapAtomic(self.frame(f)),
            Op::MapPfn(f) => Op::MapPfn(self.frame(f)),
            Op::UnmapFrame(f) => Op::UnmapFrame(self.frame(f)),
            Op::Write(f) => Op::Write(self.frame(f)),
            other => other,
        }
    }

    /// An arrival point's label with the frame of its operation renamed.
    pub(crate) fn label(&self, label: Label) -> Label {
        match label {
            Label::BeforeOp(op) => Label::BeforeOp(self.op(op)),
            other => other,
        }
    }

    /// A mapping with its frame renamed.
    pub(crate) fn held(&self, held: Held) -> Held {
        Held {
            frame: self.frame(held.frame),
            ..held
        }
    }

    /// Hash a stack image with its PTEs renamed.
    pub(crate) fn hash_image(&self, image: &StackImage, hasher: &mut impl Hasher) {
        (image.depth, image.saved.len()).hash(hasher);
        for &pte in &image.saved {
            self.pte(pte).raw().hash(hasher);
        }
    }

    /// Hash a place with its frames renamed.
    pub(crate) fn hash_place(&self, place: &Place, hasher: &mut impl Hasher) {
        (
            place.op.map(|op| self.op(op)),
            place.steps,
            place.label.map(|l| self.label(l)),
        )
            .hash(hasher);
        place.reads.len().hash(hasher);
        for &read in &place.reads {
            match read {
                Read::Pte(pte) => Read::Pte(self.pte(pte)),
                other => other,
            }
            .hash(hasher);
        }
        place.changed.len().hash(hasher);
        for changed in &place.changed {
            changed.step.hash(hasher);
            self.hash_image(&changed.stack, hasher);
        }
    }
}
