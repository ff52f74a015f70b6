//! Who owns each highmem frame: handed out once at boot, four to each task and one to each
//! CPU's interrupt and NMI handlers, from `HIGHMEM_FIRST_FRAME` up; and a frame's owner in words,
//! for failure reports ("page 2 of task 5").

use kmap::{Frame, Page};

use crate::config::{HIGHMEM_FIRST_FRAME, MAX_CPUS, NTASKS};
use crate::percpu::PERCPU;
use crate::task::TASKS;

/// Frames per task.
const TASK_PAGES: usize = 4;

fn page(frame: u64) -> Page {
    // SAFETY: every highmem frame is handed out once, to exactly one owner (a task or one CPU's
    // interrupt or NMI handler), and highmem has no other kernel address.
    unsafe { Page::from_frame(Frame::new(frame)) }
}

/// Give every task and every CPU's handlers their pages (boot, one CPU, before any task or
/// handler runs); how many frames were handed out.
pub fn hand_out() -> u64 {
    let mut next = HIGHMEM_FIRST_FRAME;
    let mut take = || {
        next += 1;
        page(next - 1)
    };
    for task in &TASKS {
        // SAFETY: boot, single CPU, no task runs yet.
        unsafe { *task.pages.get() = Some([take(), take(), take(), take()]) };
    }
    for cpu in &PERCPU {
        // SAFETY: as above; no handler runs yet.
        unsafe {
            *cpu.irq_page.get() = Some(take());
            *cpu.nmi_page.get() = Some(take());
        }
    }
    (NTASKS * TASK_PAGES + 2 * MAX_CPUS) as u64
}

/// Whose page a highmem frame is.
pub fn describe(frame: u64) -> DescribeFrame {
    DescribeFrame(frame)
}

pub struct DescribeFrame(u64);

impl core::fmt::Display for DescribeFrame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let index = self.0.wrapping_sub(HIGHMEM_FIRST_FRAME) as usize;
        let tasks = NTASKS * TASK_PAGES;
        if index < tasks {
            write!(
                f,
                "frame {:#x} (page {} of task {})",
                self.0,
                index % TASK_PAGES,
                index / TASK_PAGES
            )
        } else if index < tasks + 2 * MAX_CPUS {
            let which = if (index - tasks).is_multiple_of(2) {
                "interrupt"
            } else {
                "NMI"
            };
            write!(
                f,
                "frame {:#x} (CPU {}'s {which} page)",
                self.0,
                (index - tasks) / 2
            )
        } else if self.0 == 0 {
            write!(f, "nothing")
        } else {
            write!(f, "frame {:#x}", self.0)
        }
    }
}
