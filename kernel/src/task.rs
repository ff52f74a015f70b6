//! Tasks: each one's kmap stack (the crate's per-task state), migration-disable count, saved
//! stack pointer and highmem pages, and the stacks they run on. The scheduler (`crate::sched`)
//! decides which runs where; this file only says what a task is.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize};

use kmap::{KmapStack, Page};

use crate::config::{CELLS, NTASKS, TASKS_PER_CPU};

const STACK: usize = 64 * 1024;

/// A task: its kmap stack (the crate's per-task state), its saved stack pointer, its pages.
pub struct Task {
    pub kmap: KmapStack<CELLS>,
    pub migrate: AtomicI32,
    /// The CPU the task last ran on.
    pub last_cpu: AtomicUsize,
    /// Set while the task is on its way through `preempt_schedule`: the timer does not preempt
    /// it again there, so that at most one preemption context is ever on its stack.
    pub preempting: AtomicBool,
    rsp: UnsafeCell<usize>,
    /// The highmem pages this task owns (set at boot, then used only by the task).
    pub pages: UnsafeCell<Option<[Page; 4]>>,
}

// SAFETY: `rsp` is written only by the context switch while the task switches out, and read only
// by the scheduler of the CPU whose run queue holds it while it switches in; a task moves to the
// other run queue only while it is switched out, published with Release and taken with Acquire
// (`sched::balance`, `sched::pick_next`); `pages` is used only by the task.
unsafe impl Sync for Task {}

impl Task {
    /// Where the context switch keeps the task's stack pointer while it is switched out.
    pub fn rsp(&self) -> *mut usize {
        self.rsp.get()
    }
}

const fn task(id: usize) -> Task {
    Task {
        kmap: KmapStack::new(),
        migrate: AtomicI32::new(0),
        last_cpu: AtomicUsize::new(id / TASKS_PER_CPU),
        preempting: AtomicBool::new(false),
        rsp: UnsafeCell::new(0),
        pages: UnsafeCell::new(None),
    }
}

pub static TASKS: [Task; NTASKS] = [
    task(0),
    task(1),
    task(2),
    task(3),
    task(4),
    task(5),
    task(6),
    task(7),
];

#[repr(C, align(16))]
struct Stacks([[u8; STACK]; NTASKS]);
struct TaskStacks(UnsafeCell<Stacks>);
// SAFETY: each stack belongs to one task, used only as that task's stack.
unsafe impl Sync for TaskStacks {}
static STACKS: TaskStacks = TaskStacks(UnsafeCell::new(Stacks([[0; STACK]; NTASKS])));

/// The top of task `task`'s stack.
pub fn stack_top(task: usize) -> usize {
    // SAFETY: only the address is taken.
    unsafe { (*STACKS.0.get()).0[task].as_ptr() as usize + STACK }
}

/// Task `task`'s own highmem pages.
///
/// # Safety
///
/// Only task `task` calls it, once.
pub unsafe fn task_pages(task: usize) -> &'static mut [Page; 4] {
    // SAFETY: the caller's promise: one user, once.
    unsafe {
        (*TASKS[task].pages.get())
            .as_mut()
            .expect("pages handed out at boot")
    }
}
