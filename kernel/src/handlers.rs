//! What each vector does.

use core::sync::atomic::Ordering::Relaxed;

use crate::interrupts::{Frame, FxArea};
use crate::sched::percpu;
use crate::workload::Failure;
use crate::{apic, arch, sched, workload};

pub fn dispatch(frame: &mut Frame, fx: &FxArea) {
    match frame.vector {
        2 => {
            let cpu = percpu();
            cpu.hardirq.fetch_add(1, Relaxed);
            workload::record_nmi_rip(frame.rip);
            workload::nmi_work();
            cpu.hardirq.fetch_sub(1, Relaxed);
        }
        14 => page_fault(frame),
        0..=31 => workload::fail(
            Failure::Exception,
            format_args!(
                "exception {} (error {:#x}) at rip {:#x}, rsp {:#x}, rflags {:#x}",
                frame.vector, frame.error, frame.rip, frame.rsp, frame.rflags
            ),
        ),
        v if v == apic::TIMER_VECTOR as u64 => {
            let cpu = percpu();
            cpu.hardirq.fetch_add(1, Relaxed);
            #[cfg(feature = "bench")]
            crate::bench::tick();
            #[cfg(not(feature = "bench"))]
            workload::irq_work();
            if sched::balance() {
                workload::MIGRATIONS.fetch_add(1, Relaxed);
            }
            cpu.hardirq.fetch_sub(1, Relaxed);
            apic::eoi();
            if sched::preempt(frame, fx) {
                workload::count_preemption(&sched::current_task().kmap);
            }
        }
        #[cfg(feature = "bench")]
        v if v == crate::bench::pool::FLUSH_VECTOR as u64 => {
            crate::bench::pool::flush_ipi();
            apic::eoi();
        }
        0xFF => {} // spurious
        v => workload::fail(Failure::Exception, format_args!("unexpected vector {v}")),
    }
}

/// A page fault: on a kmap slot's address it is the silent consequence of a mapping lost under
/// its user (the slot was cleared, or never installed, while the mapping lived); anywhere else
/// it is a bug of the kernel.
fn page_fault(frame: &Frame) -> ! {
    let address = arch::cr2() as usize;
    match crate::platform::slot_at(address) {
        Some((cpu, cell)) => {
            let task = sched::current_id();
            let saved = sched::current_task().kmap.saved(kmap::Cell(cell)).raw();
            workload::fail(
                Failure::SlotFault,
                format_args!(
                    "page fault at {address:#x}, slot {cpu}.{cell} (rip {:#x}, error {:#x}): the \
                     slot's PTE maps {}, task {task}'s saved PTE for cell {cell} maps {}",
                    frame.rip,
                    frame.error,
                    workload::describe(crate::platform::slot_pte(address) >> 12),
                    workload::describe(saved >> 12),
                ),
            )
        }
        None => workload::fail(
            Failure::Exception,
            format_args!(
                "unexpected page fault at {address:#x} (error {:#x}) at rip {:#x}",
                frame.error, frame.rip
            ),
        ),
    }
}
