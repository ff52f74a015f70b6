//! Programs in the crate's safe API ([`Api::Guard`](crate::Api::Guard)): the context makes a
//! `kmap::Local`, each `map` makes a `kmap::Mapping` nested in the one before, `unmap` drops the
//! innermost and `leak` forgets it (`mem::forget`), and whatever is held when the program ends
//! is dropped innermost first, then the `Local`. The guards live where Rust code keeps them, on
//! the context's stack, one call frame each: the rest of the program runs inside the closure
//! that holds the mapping, and returns when the mapping ends.
//!
//! A guard owns no memory, and its drop changes only the machine, so a task's coroutine may be
//! ended for good with guards alive on its stack (the rule of `driver.rs`). What a guard keeps
//! of the stack (the depth it was made at) is in the context's record of the mapping
//! (`Held::base`), so the state key has it.

use kmap::Frame;

use super::Machine;
use super::task::Held;
use crate::choice::TaskId;
use crate::platform::{End, Guard, MapKind};
use crate::program::{Alphabet, Op};
use crate::trace::Label;

impl Machine {
    /// Run a fixed program in the safe API, for `task` (or, with `None`, the innermost
    /// handler of the executing CPU).
    pub(crate) fn run_guarded_program(&self, ops: &[Op], task: Option<TaskId>) {
        self.kmap.with_local(self, &mut |local| {
            let (_, at) = self.run_guarded(ops, 0, task, local);
            debug_assert_eq!(at, ops.len());
        });
    }

    /// Run `ops` from `at` under `guard` (the context's `Local`, or the mapping made by the
    /// `map` before `ops[at]`), until an `unmap` or a `leak` ends the innermost mapping
    /// (returns how, and the position of that operation, begun) or the program ends (returns
    /// its length).
    fn run_guarded(
        &self,
        ops: &[Op],
        mut at: usize,
        task: Option<TaskId>,
        guard: &mut dyn Guard,
    ) -> (End, usize) {
        let inner = self.with_held(task, |held| !held.is_empty());
        while at < ops.len() {
            let op = ops[at];
            self.arrive(Label::BeforeOp(op));
            if self.aborted() {
                return (End::Drop, ops.len());
            }
            match op {
                Op::Map(frame) | Op::MapAtomic(frame) | Op::MapPfn(frame) => {
                    let kind = match op {
                        Op::Map(_) => MapKind::Page,
                        Op::MapAtomic(_) => MapKind::Atomic,
                        _ => MapKind::Pfn,
                    };
                    let mut after = at + 1;
                    self.begin_op(op, task);
                    let made = self.guarded_map(task, frame, kind, guard, &mut |child| {
                        // The map is done: the program goes on inside the mapping.
                        self.next_pc(task);
                        let (end, ended_at) = self.run_guarded(ops, at + 1, task, child);
                        if ended_at == ops.len() {
                            // The program's end drops what it holds, as a `}` would.
                            self.begin_op(Op::Unmap, task);
                        }
                        after = ended_at;
                        end
                    });
                    if made && after < ops.len() {
                        // The `unmap` or `leak` that ended the mapping is done.
                        self.end_op(task);
                        self.next_pc(task);
                        at = after + 1;
                    } else if made {
                        self.end_op(task);
                        at = ops.len();
                    } else {
                        // Refused: the map is over, and the program goes on.
                        self.end_op(task);
                        self.next_pc(task);
                        at += 1;
                    }
                }
                Op::Unmap | Op::Leak if inner => {
                    self.begin_op(op, task);
                    let end = if op == Op::Leak { End::Leak } else { End::Drop };
                    return (end, at);
                }
                _ => {
                    self.run_one(op, task);
                    self.next_pc(task);
                    at += 1;
                }
            }
        }
        (End::Drop, at)
    }

    /// An endless nondeterministic program in the safe API (as `run_any`, without releases
    /// in any order: a guard is released only from the inside out).
    pub(super) fn run_any_guarded(&self, task: TaskId, pages: &[Frame], alphabet: Alphabet) {
        self.kmap.with_local(self, &mut |local| {
            self.run_any_under(task, pages, alphabet, local);
        });
    }

    /// The steps of an endless program under `guard`, until it unmaps the innermost mapping
    /// (begun; returns `true`) or the execution is over (`false`).
    fn run_any_under(
        &self,
        task: TaskId,
        pages: &[Frame],
        alphabet: Alphabet,
        guard: &mut dyn Guard,
    ) -> bool {
        loop {
            self.arrive(Label::BeforeStep);
            let Some(op) = self.any_step(task, pages, alphabet, false) else {
                return false;
            };
            match op {
                Op::Map(frame) | Op::MapAtomic(frame) => {
                    let kind = if matches!(op, Op::Map(_)) {
                        MapKind::Page
                    } else {
                        MapKind::Atomic
                    };
                    self.begin_op(op, Some(task));
                    self.guarded_map(Some(task), frame, kind, guard, &mut |child| {
                        self.run_any_under(task, pages, alphabet, child);
                        End::Drop
                    });
                    if self.aborted() {
                        return false;
                    }
                    // The map was refused, or the `unmap` that ended it is done.
                    self.end_op(Some(task));
                }
                Op::Unmap => {
                    self.begin_op(op, Some(task));
                    return true;
                }
                _ => self.run_one(op, Some(task)),
            }
        }
    }

    /// Map `frame` under `guard` for `task` (or the innermost handler), the operation begun:
    /// on success the mapping is the context's innermost while `inside` runs, and ends as
    /// `inside` says when it returns; a refusal is handled as the raw API's. Returns whether
    /// the mapping was made.
    fn guarded_map(
        &self,
        task: Option<TaskId>,
        frame: Frame,
        kind: MapKind,
        guard: &mut dyn Guard,
        inside: &mut dyn FnMut(&mut dyn Guard) -> End,
    ) -> bool {
        self.outcome.borrow_mut().stats.kmap_ops += 1;
        let base = self.stack(self.current_task()).depth();
        let caller = self.view_before_call(task);
        let mut made = false;
        // The counts as the release of an atomic mapping found them (`None`: no release).
        let mut release_counts = None;
        guard.map(frame, kind, &mut |result, child| {
            let before = self.view_after_call(caller);
            match result {
                Ok(addr) => {
                    // The view is for a refusal's check, and owns memory: not kept while the
                    // rest of the program runs (see `driver.rs`).
                    drop(before);
                    made = true;
                    if kind == MapKind::Atomic {
                        self.check_atomic_map(frame);
                    }
                    self.with_held(task, |held| {
                        held.push(Held {
                            frame,
                            addr,
                            atomic: kind == MapKind::Atomic,
                            base: Some(base),
                        })
                    });
                    self.end_op(task);
                    let end = inside(child);
                    if end == End::Drop {
                        self.outcome.borrow_mut().stats.kmap_ops += 1;
                        release_counts = Some(self.atomic_counts());
                    }
                    // Released (or forgotten) when this returns: the context holds it no more.
                    self.with_held(task, |held| {
                        held.pop();
                    });
                    end
                }
                Err(refused) => {
                    self.map_refused(task, frame, refused, before);
                    End::Drop
                }
            }
        });
        if let Some(counts) = release_counts.filter(|_| kind == MapKind::Atomic && !self.aborted())
        {
            self.check_atomic_release(frame, counts);
        }
        made
    }
}
