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

use super::interpreter::map_kind;
use super::task::Held;
use super::{Machine, Yield};
use crate::choice::TaskId;
use crate::outcome::ViolationKind;
use crate::platform::{End, Guard, MapKind, NoneHeld, Release, ScopeMap};
use crate::program::{Alphabet, Op};
use crate::trace::Label;

impl Machine {
    /// Run a fixed program in the safe API, for `task` (or, with `None`, the innermost
    /// handler of the executing CPU).
    pub(crate) fn run_guarded_program(&self, ops: &[Op], task: Option<TaskId>) {
        let base = self.stack(self.current_task()).depth();
        self.kmap.with_local(self, &mut |local| {
            let (_, at) = self.run_guarded(ops, 0, task, local);
            debug_assert_eq!(at, ops.len());
            self.end_in_unmap(task, base);
        });
        self.end_op(task);
    }

    /// At a program's end in a safe API: if forgotten mappings left cells above `base`, the
    /// drop of the `Local` (or the `Scope`) that releases them runs as an `unmap` in progress,
    /// so that its points are not taken for the context's quiet between operations.
    fn end_in_unmap(&self, task: Option<TaskId>, base: usize) {
        if self.stack(self.current_task()).depth() > base {
            self.begin_op(Op::Unmap, task);
            self.outcome.borrow_mut().stats.kmap_ops += 1;
        }
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
                    let kind = map_kind(op).expect("a map");
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
                    let kind = map_kind(op).expect("a map");
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
            if self
                .map_answered(task, caller, frame, kind, Some(base), result)
                .is_none()
            {
                return End::Drop;
            }
            made = true;
            self.end_op(task);
            let end = inside(child);
            if self.aborted() {
                // The execution is over: nothing more of it runs, the release neither (guards
                // own no memory, see `driver.rs`).
                self.suspend(Yield::Abort);
            }
            if end == End::Drop {
                self.outcome.borrow_mut().stats.kmap_ops += 1;
                release_counts = Some(self.atomic_counts());
            }
            end
        });
        if made {
            // Released (or forgotten) now, as a raw unmap's record goes once the crate returns:
            // while the release runs, the context still holds the mapping.
            self.with_held(task, |held| {
                held.pop();
            });
        }
        if let Some(counts) = release_counts.filter(|_| kind == MapKind::Atomic) {
            // `counts` is rebuilt from the counters and the place by the state key (the release
            // runs with the unmap in progress): a copy, kept across the release's points.
            self.check_atomic_release(frame, counts);
        }
        made
    }

    /// Run a fixed program in the scope API ([`Api::Scope`](crate::Api::Scope)), for `task`
    /// (or, with `None`, the innermost handler of the executing CPU).
    pub(crate) fn run_scoped_program(&self, ops: &[Op], task: Option<TaskId>) {
        let base = self.stack(self.current_task()).depth();
        self.kmap.with_scope(
            self,
            &mut |scope| {
                self.run_scoped(ops, 0, task, scope, &mut NoneHeld);
                self.end_in_unmap(task, base);
            },
            &mut || {
                // The Scope's drop releases what its forgotten mappings left: the stack is as
                // the program found it, before the Local's drop would hide it.
                let depth = self.stack(self.current_task()).depth();
                if depth != base {
                    self.violate(
                        ViolationKind::Leak,
                        format!(
                            "the Scope's drop left idx at {depth}, not {base} as it found it: \
                             the cells of its forgotten mappings stay in use"
                        ),
                    );
                }
            },
        );
        self.end_op(task);
    }

    /// Run `ops` from `at` in `scope`, with the scoped mappings of `held` (made by the `map`s
    /// before, each in its own call frame): every `map` runs the rest of the program inside
    /// the frame that holds its mapping, and drops the mapping when the program ends, if
    /// nothing ended it before.
    fn run_scoped(
        &self,
        ops: &[Op],
        mut at: usize,
        task: Option<TaskId>,
        scope: &dyn ScopeMap,
        held: &mut dyn Release,
    ) {
        while at < ops.len() {
            let op = ops[at];
            self.arrive(Label::BeforeOp(op));
            if self.aborted() {
                return;
            }
            match op {
                Op::Map(frame) => {
                    self.begin_op(op, task);
                    self.outcome.borrow_mut().stats.kmap_ops += 1;
                    let caller = self.view_before_call(task);
                    let mut made = false;
                    // The mapping, if the program's end is what releases it.
                    let mut dropped_at_end = None;
                    scope.map(frame, held, &mut |result, inner| {
                        let answered =
                            self.map_answered(task, caller, frame, MapKind::Page, None, result);
                        let Some(mapping) = answered else {
                            return;
                        };
                        made = true;
                        self.end_op(task);
                        self.next_pc(task);
                        self.run_scoped(ops, at + 1, task, scope, inner);
                        if self.aborted() {
                            // Over: nothing more runs (see `guarded_map`).
                            self.suspend(Yield::Abort);
                        }
                        // The program's end drops what is still held, most recent first. Asked
                        // of the frame itself: two fast-path mappings of one lowmem frame have
                        // equal records.
                        if inner.holds() {
                            self.begin_op(Op::Unmap, task);
                            self.outcome.borrow_mut().stats.kmap_ops += 1;
                            dropped_at_end = Some(mapping);
                        }
                    });
                    if let Some(mapping) = dropped_at_end {
                        // Released now: while the release ran, the context still held it.
                        self.forget_held(task, mapping);
                    }
                    self.end_op(task);
                    if made {
                        // The rest of the program ran inside the mapping's frame.
                        return;
                    }
                    self.next_pc(task);
                    at += 1;
                }
                Op::Unmap | Op::UnmapFrame(_) | Op::Leak => {
                    match self.newest_held(task, op) {
                        // Nothing to release: refused, as in the raw API.
                        None => self.run_one(op, task),
                        Some(mapping) => {
                            self.begin_op(op, task);
                            let end = if op == Op::Leak {
                                End::Leak
                            } else {
                                self.outcome.borrow_mut().stats.kmap_ops += 1;
                                End::Drop
                            };
                            let found = held.release(mapping.frame, end);
                            debug_assert!(found, "every mapping held is in a frame");
                            // Released (or forgotten) now, as after a raw unmap.
                            self.forget_held(task, mapping);
                            self.end_op(task);
                        }
                    }
                    self.next_pc(task);
                    at += 1;
                }
                _ => {
                    self.run_one(op, task);
                    self.next_pc(task);
                    at += 1;
                }
            }
        }
    }

    /// An endless nondeterministic program in the scope API: one `Scope` for the whole
    /// program (made on an empty stack, so the depth it keeps is always 0 and the state key
    /// needs none of it); each `map` is a `ScopedMapping` held side by side with the others,
    /// in a call frame of its own that runs the rest of the program; `unmap` drops the most
    /// recent and a release in any order that frame's. No `map_atomic` (refused by the
    /// configuration: a Scope maps with kmap_local_page only).
    pub(super) fn run_any_scoped(&self, task: TaskId, pages: &[Frame], alphabet: Alphabet) {
        self.kmap.with_scope(
            self,
            &mut |scope| {
                self.run_any_in_scope(task, pages, alphabet, scope, &mut NoneHeld, false);
            },
            // An endless program's execution is over before its Scope would be dropped.
            &mut || {},
        );
    }

    /// The steps of an endless program in `scope`, in the frame of the most recent live
    /// mapping (`own`: this frame has one; `held` reaches it and every live mapping before).
    /// Returns `true` when this frame's mapping is to end here (a release of the most recent
    /// mapping, begun: the `ScopedMapping`'s drop as the frame returns releases it) or has
    /// ended already (a release in any order from a frame further in), `false` when the
    /// execution is over. So the frames on the stack that still hold a mapping are exactly the
    /// live mappings, in the order they were made, which `Task::mappings` records; a frame
    /// emptied by a release in any order stays below until the frames above it return, and
    /// is then passed through with no arrival point and no change (its drop finds nothing to
    /// release): the state key needs no more of them. A task's records are unique (a step
    /// maps only a page the task does not hold), so a record names one frame.
    fn run_any_in_scope(
        &self,
        task: TaskId,
        pages: &[Frame],
        alphabet: Alphabet,
        scope: &dyn ScopeMap,
        held: &mut dyn Release,
        own: bool,
    ) -> bool {
        loop {
            self.arrive(Label::BeforeStep);
            let Some(op) = self.any_step(task, pages, alphabet, true) else {
                return false;
            };
            // The most recent live mapping is this frame's own (a frame whose mapping ended
            // returns at once), so releasing it ends this frame.
            let newest = self.newest_held(Some(task), Op::Unmap);
            match op {
                Op::Map(frame) => {
                    self.begin_op(op, Some(task));
                    self.outcome.borrow_mut().stats.kmap_ops += 1;
                    let caller = self.view_before_call(Some(task));
                    // The mapping made, once its frame has returned (released, or ended before).
                    let mut made = None;
                    scope.map(frame, held, &mut |result, inner| {
                        let answered = self.map_answered(
                            Some(task),
                            caller,
                            frame,
                            MapKind::Page,
                            None,
                            result,
                        );
                        let Some(mapping) = answered else {
                            return;
                        };
                        self.end_op(Some(task));
                        if !self.run_any_in_scope(task, pages, alphabet, scope, inner, true) {
                            // Over: nothing more of it runs, the release neither (see
                            // `guarded_map`).
                            self.suspend(Yield::Abort);
                        }
                        made = Some(mapping);
                    });
                    if self.aborted() {
                        return false;
                    }
                    if let Some(mapping) = made {
                        // Released as its frame returned (if it was still live), as after a
                        // raw unmap; nothing is in progress if it had ended before.
                        if self.forget_held(Some(task), mapping) {
                            self.end_op(Some(task));
                        }
                        if own && !held.holds() {
                            // This frame's mapping ended too, from further in.
                            return true;
                        }
                    } else {
                        // Refused: the map is over, and the program goes on.
                        self.end_op(Some(task));
                    }
                }
                Op::Unmap | Op::UnmapFrame(_) => {
                    let mapping = self
                        .newest_held(Some(task), op)
                        .expect("a release is offered only of a mapping held");
                    self.begin_op(op, Some(task));
                    self.outcome.borrow_mut().stats.kmap_ops += 1;
                    if own && Some(mapping) == newest {
                        // This frame's: released by its drop as the frame returns.
                        return true;
                    }
                    let found = held.release(mapping.frame, End::Drop);
                    debug_assert!(found, "every mapping held is in a frame");
                    // Released now, as after a raw unmap.
                    self.forget_held(Some(task), mapping);
                    self.end_op(Some(task));
                }
                _ => self.run_one(op, Some(task)),
            }
        }
    }

    /// The mapping a release in the scope API ends: for `unmap F` the most recent of frame
    /// `F`, for `unmap` (or `leak`) the most recent of all.
    fn newest_held(&self, task: Option<TaskId>, op: Op) -> Option<Held> {
        let named = match op {
            Op::UnmapFrame(frame) => Some(frame),
            _ => None,
        };
        self.with_held(task, |held| {
            held.iter()
                .rev()
                .find(|h| named.is_none_or(|f| f == h.frame))
                .copied()
        })
    }

    /// Take `mapping` off the context's list (the most recent of that frame); whether it was
    /// there.
    fn forget_held(&self, task: Option<TaskId>, mapping: Held) -> bool {
        self.with_held(task, |held| {
            let at = held.iter().rposition(|h| *h == mapping);
            at.map(|at| held.remove(at)).is_some()
        })
    }
}
