//! What each vector does.

use core::sync::atomic::Ordering::Relaxed;

use crate::interrupts::{Frame, FxArea};
use crate::sched::percpu;
use crate::{apic, arch, sched, workload};

pub fn dispatch(frame: &mut Frame, fx: &FxArea) {
    match frame.vector {
        2 => {
            let cpu = percpu();
            cpu.hardirq.fetch_add(1, Relaxed);
            workload::nmi_work();
            cpu.hardirq.fetch_sub(1, Relaxed);
        }
        14 => workload::fail(format_args!(
            "unexpected page fault at {:#x} (error {:#x}) at rip {:#x}",
            arch::cr2(),
            frame.error,
            frame.rip
        )),
        0..=31 => workload::fail(format_args!(
            "exception {} (error {:#x}) at rip {:#x}, rsp {:#x}, rflags {:#x}",
            frame.vector, frame.error, frame.rip, frame.rsp, frame.rflags
        )),
        v if v == apic::TIMER_VECTOR as u64 => {
            let cpu = percpu();
            cpu.hardirq.fetch_add(1, Relaxed);
            #[cfg(feature = "bench")]
            crate::bench::tick();
            #[cfg(not(feature = "bench"))]
            workload::irq_work();
            cpu.hardirq.fetch_sub(1, Relaxed);
            apic::eoi();
            if sched::preempt(frame, fx) {
                workload::count_preemption(sched::current_task().kmap.depth() > 0);
            }
        }
        #[cfg(feature = "bench")]
        v if v == crate::bench::pool::FLUSH_VECTOR as u64 => {
            crate::bench::pool::flush_ipi();
            apic::eoi();
        }
        0xFF => {} // spurious
        v => workload::fail(format_args!("unexpected vector {v}")),
    }
}
