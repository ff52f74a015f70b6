//! Task and CPU symmetry: which tasks are interchangeable, whether the CPUs are, and the
//! relabelling of tasks, frames and CPUs that puts a state in a canonical form, so that a
//! stateful search remembers one state of each class of states that differ only in which of
//! those tasks or CPUs is which.
//!
//! The argument for tasks. Two tasks are interchangeable when they run the same endless
//! nondeterministic program, each over a list of pages of its own, of the same length, that
//! nothing else names (no other task, no handler), all of them highmem, with the same alphabet
//! ([`Alphabet`](crate::Alphabet)) and API, and either all pinned to their CPUs or none; where
//! each starts does not matter (a task's CPU is part of its state, and moves with it when
//! tasks are relabelled). Let π be a permutation of such tasks (within their classes) and σ
//! the renaming of frames it induces: the `j`-th page of task `t` becomes the `j`-th page of
//! task `π(t)`. Apply both to a state, everywhere a task or a frame is named in it (`current`,
//! the run queues, a switch in progress, a task's stack, mappings and place, PTEs in the page
//! table, the TLBs and the stacks, the values the crate read, memory): the result is a state
//! from which the machine does the same as from the first, up to π and σ. Nothing the machine
//! does depends on a task's number or a frame's number except through equality, with three
//! exceptions, each handled: the order of a run queue (a preemption may pick any queued task,
//! a yield the first; the queue is relabelled in place, so its order is kept), a frame's
//! direct-map address (lowmem frames are never interchangeable) and the tags memory holds (a
//! tag matters only by whether a frame holds what its owner last wrote there, so that bit is
//! what is remembered of memory, not the tags; a tag is written into one frame only).
//!
//! The argument for CPUs. The CPUs are interchangeable by rotation when no program names one
//! (`migrate C`). Let ρ rename CPU `c` as `c + r` (mod the number of CPUs), and with it its
//! idle task (task `c`) and its slots (slot `(c, i)` becomes `(ρ(c), i)`, every address in it
//! moving with it), everywhere a CPU is named in a state: the executing CPU, each CPU's part
//! (current, run queue, counters, switch, handlers: hashed in the new order), a task's CPU and
//! pending migration, a stack's home, the CPU numbers the crate read
//! ([`Read::Cpu`](super::task::Read)), the addresses of mappings, the page table's slots, each
//! TLB and the unflushed slots. The handlers are the same on every CPU, the bounds count
//! events and not CPUs, and nothing the machine does depends on a CPU's number except through
//! equality and two orders, both kept by a rotation: the window is laid out CPU after CPU (a
//! rotation moves whole blocks and keeps the order of the cells in each), and a CPU with
//! nothing to do hands over to the first CPU after it that has work (a rotation of the circle
//! keeps "after"). The choices that name another CPU (`Choice::Cpu`, `Choice::Migrate`) are
//! offered for every other CPU. So ρ maps the machine's steps onto its steps, as π and σ do.
//! With two CPUs the one rotation is the swap. Where every task is pinned and none can stand
//! for another, a state and its rotation are never both reached, and no rotation is tried.
//!
//! What follows. A violation is a violation whatever the names, so a state and its
//! relabelling are both safe or both not, and their futures are the same up to the renaming
//! (the initial state need not be symmetric for that): a search that explores one state per
//! class reaches a violation iff the search of every state does. Each state the search
//! expands is a state it really reached: only the key is canonical, so every counterexample is
//! a real run that replays.
//!
//! The canonical form. For each rotation of the CPUs (the identity alone where they are not
//! interchangeable), each interchangeable task of the rotated state gets a signature:
//! everything of the state that concerns it, with its pages named by their position in its
//! list (its status, CPU, program position, place, mappings, stack, where it stands in every
//! CPU's `current`, run queue and switch, which slots and TLB entries map each of its pages,
//! and the memory bit of each). Sorted by signature, the tasks of a class take the class's
//! numbers in order. Two tasks with the same signature are interchangeable in that state, so
//! either order gives the same relabelled state. The key is the least, over the rotations,
//! of the key of the state so relabelled. Task relabellings and rotations rename different
//! things (an idle task is in no class) and commute, so every state of a class gives the same
//! set of keys, one per rotation, and the least depends only on the class.

use std::hash::{Hash, Hasher};

use kmap::{CpuId, Frame, Pte, Slot, VirtAddr};

use super::cpu::StackImage;
use super::task::{Held, Place, Read};
use crate::choice::TaskId;
use crate::config::Config;
use crate::platform::{Layout, pte_flags, pte_frame};
use crate::program::Op;
use crate::trace::Label;

/// The classes of interchangeable tasks of a configuration.
#[derive(Clone, Debug)]
pub(crate) struct Symmetry {
    /// Each class (two tasks or more), by task number, in increasing order.
    classes: Vec<Vec<TaskId>>,
    /// The pages of every task of a class, by task number.
    pages: Vec<Vec<Frame>>,
    /// How many rotations of the CPUs leave the machine's behaviour the same up to renaming:
    /// all of them (the number of CPUs) where CPU symmetry holds, else only the identity.
    rotations: usize,
    /// The number of CPUs.
    cpus: usize,
    /// The window, whose slots a rotation renames.
    layout: Layout,
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
        let classed = |n: usize| classes.iter().flatten().any(|t| t.0 == first + n);
        let rotations = if cpus_rotate(config, classed) {
            m.cpus
        } else {
            1
        };
        Symmetry {
            classes,
            pages,
            rotations,
            cpus: m.cpus,
            layout: Layout::of(m),
        }
    }

    /// No interchangeable tasks, and the identity alone as rotation (for runs whose keys are
    /// not canonical).
    pub(crate) fn none(config: &Config) -> Symmetry {
        let m = &config.machine;
        Symmetry {
            classes: Vec::new(),
            pages: Vec::new(),
            rotations: 1,
            cpus: m.cpus,
            layout: Layout::of(m),
        }
    }

    /// The classes, each in increasing order of task number.
    pub(crate) fn classes(&self) -> &[Vec<TaskId>] {
        &self.classes
    }

    /// The pages of a task of a class.
    pub(crate) fn pages(&self, task: TaskId) -> &[Frame] {
        self.pages.get(task.0).map_or(&[], |p| p.as_slice())
    }

    /// The renamings of the CPUs to try, each with their idle tasks and slots: the identity
    /// first, then, where CPU symmetry holds, every other rotation.
    pub(crate) fn rotations(&self, tasks: usize, frames: u64) -> impl Iterator<Item = Relabel> {
        let (cpus, layout) = (self.cpus, self.layout);
        (0..self.rotations as u32).map(move |by| {
            let to: Vec<u32> = (0..cpus as u32).map(|c| (c + by) % cpus as u32).collect();
            Relabel::of_cpus(&to, tasks, frames, layout)
        })
    }

    /// Name `task`'s pages in `relabel` as the first task of its class names its own (for
    /// its signature); [`unlocalize`](Self::unlocalize) puts them back.
    pub(crate) fn localize(&self, relabel: &mut Relabel, class: &[TaskId], task: TaskId) {
        for (&from, &to) in self.pages(task).iter().zip(self.pages(class[0])) {
            relabel.frames[from.pfn() as usize] = to.pfn();
        }
    }

    /// Name `task`'s pages in `relabel` as `base` names them.
    pub(crate) fn unlocalize(&self, relabel: &mut Relabel, base: &Relabel, task: TaskId) {
        for &page in self.pages(task) {
            let at = page.pfn() as usize;
            relabel.frames[at] = base.frames[at];
        }
    }

    /// `base` with each task of every class given the number `order` assigns it: the `k`-th
    /// task of `order[c]` becomes the `k`-th task of class `c`, and its pages the pages of that
    /// task.
    pub(crate) fn relabel(&self, order: &[Vec<TaskId>], base: &Relabel) -> Relabel {
        let mut relabel = base.clone();
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

/// Whether to rotate `config`'s CPUs (see the module doc): more than one CPU, no program names
/// one (`migrate C`), and every task may migrate or is interchangeable with another (`classed`,
/// by position in the program). Without the last condition a rotation is still sound but
/// useless: a pinned task that no other task can stand for stays on its CPU, so a state and
/// its rotation are never both reached, and each key would cost a hash per CPU for nothing.
fn cpus_rotate(config: &Config, classed: impl Fn(usize) -> bool) -> bool {
    let program = &config.program;
    let names_cpu = |op: &Op| matches!(op, Op::Migrate(_));
    config.machine.cpus > 1
        && !program.irq.iter().chain(&program.nmi).any(names_cpu)
        && !program.tasks.iter().any(|t| t.ops.iter().any(names_cpu))
        && program
            .tasks
            .iter()
            .enumerate()
            .all(|(n, t)| !t.pinned || classed(n))
}

/// The frame an operation names, if it names one.
fn op_frame(op: Op) -> Option<Frame> {
    match op {
        Op::Map(f) | Op::MapAtomic(f) | Op::MapPfn(f) | Op::UnmapFrame(f) | Op::Write(f) => Some(f),
        _ => None,
    }
}

/// A renaming of tasks, frames and CPUs, applied to a state as it is hashed.
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
    /// Old CPU number to new (empty: no CPU renamed).
    cpus: Vec<u32>,
    /// New CPU number to old.
    cpu_order: Vec<u32>,
    /// The window, to rename a slot with its CPU (`None`: no CPU renamed).
    layout: Option<Layout>,
}

impl Relabel {
    /// The relabelling that changes nothing (every number outside its tables is kept).
    pub(crate) const IDENTITY: Relabel = Relabel {
        tasks: Vec::new(),
        order: Vec::new(),
        frames: Vec::new(),
        inverse: Vec::new(),
        cpus: Vec::new(),
        cpu_order: Vec::new(),
        layout: None,
    };

    /// The relabelling that gives CPU `c` the number `cpus[c]`, and with it its idle task
    /// (task `c`) and its slots, and changes no other task and no frame; with room to change
    /// `tasks` tasks and `frames` frames.
    pub(crate) fn of_cpus(cpus: &[u32], tasks: usize, frames: u64, layout: Layout) -> Relabel {
        let mut relabel = Relabel {
            tasks: (0..tasks).map(TaskId).collect(),
            order: (0..tasks).map(TaskId).collect(),
            frames: (0..frames).collect(),
            inverse: (0..frames).collect(),
            cpus: cpus.to_vec(),
            cpu_order: cpus.to_vec(),
            layout: Some(layout),
        };
        for (old, &new) in cpus.iter().enumerate() {
            relabel.cpu_order[new as usize] = old as u32;
            relabel.tasks[old] = TaskId(new as usize);
            relabel.order[new as usize] = TaskId(old);
        }
        relabel
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

    /// A CPU's new number.
    pub(crate) fn cpu(&self, cpu: CpuId) -> CpuId {
        CpuId(self.cpus.get(cpu.0 as usize).copied().unwrap_or(cpu.0))
    }

    /// The CPU that gets number `new`.
    pub(crate) fn old_cpu(&self, new: usize) -> usize {
        self.cpu_order.get(new).map_or(new, |&old| old as usize)
    }

    /// The place in the window of the slot that gets place `new`.
    pub(crate) fn old_slot_index(&self, layout: Layout, new: usize) -> usize {
        let slot = layout.slot(new);
        layout.index(Slot {
            cpu: CpuId(self.old_cpu(slot.cpu.0 as usize) as u32),
            ..slot
        })
    }

    /// An address with the slot it lies in renamed with its CPU (any other address is kept).
    pub(crate) fn addr(&self, addr: VirtAddr) -> VirtAddr {
        let Some(layout) = self.layout else {
            return addr;
        };
        match layout.slot_of(addr) {
            Some(slot) => {
                let offset = addr.as_usize() - layout.slot_address(slot).as_usize();
                let moved = Slot {
                    cpu: self.cpu(slot.cpu),
                    ..slot
                };
                VirtAddr::new(layout.slot_address(moved).as_usize() + offset)
            }
            None => addr,
        }
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
            addr: self.addr(held.addr),
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
                Read::Cpu(cpu) => Read::Cpu(self.cpu(cpu)),
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
