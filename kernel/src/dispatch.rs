//! What each vector does: NMIs and the timer run the load's share (`Load::nmi`, `Load::timer`)
//! in hard-IRQ context, then the timer balances the run queues and may preempt the interrupted
//! task; a page fault on a slot's address is the silent consequence of a lost mapping; any other
//! exception, or a vector no one asked for, stops the machine.

use core::sync::atomic::Ordering::Relaxed;

use crate::arch::interrupts::{Frame, FxArea};
use crate::arch::{apic, instructions};
use crate::frames::describe;
use crate::load::Load;
use crate::percpu::{current_id, current_task, percpu};
use crate::verdict::{Failure, fail};
use crate::{platform, sched, stats};

/// Handle the interrupt or exception `frame` describes, for the load `L`.
pub fn dispatch<L: Load>(frame: &mut Frame, fx: &FxArea) {
    match frame.vector {
        2 => {
            let cpu = percpu();
            cpu.hardirq.fetch_add(1, Relaxed);
            stats::record_nmi_rip(frame.rip);
            L::nmi();
            cpu.hardirq.fetch_sub(1, Relaxed);
        }
        14 => page_fault(frame),
        0..=31 => fail(
            Failure::Exception,
            format_args!(
                "exception {} (error {:#x}) at rip {:#x}, rsp {:#x}, rflags {:#x}",
                frame.vector, frame.error, frame.rip, frame.rsp, frame.rflags
            ),
        ),
        v if v == apic::TIMER_VECTOR as u64 => {
            let cpu = percpu();
            cpu.hardirq.fetch_add(1, Relaxed);
            L::timer();
            if sched::balance(L::BALANCE) {
                stats::MIGRATIONS.fetch_add(1, Relaxed);
            }
            cpu.hardirq.fetch_sub(1, Relaxed);
            apic::eoi();
            if sched::preempt(frame, fx) {
                stats::count_preemption(&current_task().kmap);
            }
        }
        0xFF => {} // spurious
        v if L::interrupt(v) => {}
        v => fail(Failure::Exception, format_args!("unexpected vector {v}")),
    }
}

/// A page fault: on a kmap slot's address it is the silent consequence of a mapping lost under
/// its user (the slot was cleared, or never installed, while the mapping lived); anywhere else
/// it is a bug of the kernel.
fn page_fault(frame: &Frame) -> ! {
    let address = instructions::cr2() as usize;
    match platform::slot_at(address) {
        Some((cpu, cell)) => {
            let task = current_id();
            let saved = current_task().kmap.saved(kmap::Cell(cell)).raw();
            fail(
                Failure::SlotFault,
                format_args!(
                    "page fault at {address:#x}, slot {cpu}.{cell} (rip {:#x}, error {:#x}): the \
                     slot's PTE maps {}, task {task}'s saved PTE for cell {cell} maps {}",
                    frame.rip,
                    frame.error,
                    describe(platform::slot_pte(address) >> 12),
                    describe(saved >> 12),
                ),
            )
        }
        None => fail(
            Failure::Exception,
            format_args!(
                "unexpected page fault at {address:#x} (error {:#x}) at rip {:#x}",
                frame.error, frame.rip
            ),
        ),
    }
}
