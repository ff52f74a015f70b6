//! How a boot ends, once: with a failure, reported by the first context that meets one (a wrong
//! word, a fault on a slot, a refusal, a panic), or with a pass, reported by the boot task once
//! the workload met its targets. Both CPUs, their interrupts and NMIs may race to end it; the
//! first failure wins over everything, a pass never hides a failure that came while it was
//! being printed, and whoever ends the machine prints its report first.
//!
//! The end is one `RESULT` record (`{"verdict":"pass"}`, or `{"verdict":"fail","failure":KIND,
//! …}` with the CPU, the context, the task and what went wrong), after a `REPORT` and the
//! `NMI-RIPS` records; QEMU then exits with a status of its own for each.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};

use crate::arch::{instructions, serial};
use crate::percpu::{current_id, current_task, percpu};
use crate::{record, stats};

/// How the run ends: `RUNNING`, then `FAILING` (one context reports a failure and exits with
/// RESULT: FAIL) or `PASSING` (the boot task reports the targets met); a failure overrides a
/// pass still being printed, never the other way round.
static STATE: AtomicU8 = AtomicU8::new(RUNNING);
const RUNNING: u8 = 0;
const FAILING: u8 = 1;
const PASSING: u8 = 2;
/// The CPU reporting the failure.
static REPORTER: AtomicUsize = AtomicUsize::new(usize::MAX);

/// What stopped the machine. `xtask` accepts, per build, only the kinds that build is meant to
/// produce; the name is the `failure` of the `RESULT` record.
#[derive(Clone, Copy)]
pub enum Failure {
    /// The crate refused a map into an occupied slot (its BUG_ON): another context's mapping
    /// was about to be overwritten.
    OccupiedSlot,
    /// A word read through a mapping was not the one written.
    WrongWord,
    /// A page fault on a kmap slot's address: the slot was empty under a live mapping.
    SlotFault,
    /// A task holding mappings was switched in on another CPU than it left.
    MigratedHolding,
    /// The crate refused a map for another reason, or reported a broken rule.
    Crate,
    /// Any other exception, or an unexpected vector.
    Exception,
    /// A Rust panic.
    Panic,
    /// The correct build missed its targets before the deadline.
    Deadline,
    /// The second CPU never came up.
    NoSecondCpu,
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::OccupiedSlot => "occupied-slot",
            Failure::WrongWord => "wrong-word",
            Failure::SlotFault => "slot-fault",
            Failure::MigratedHolding => "migrated-holding",
            Failure::Crate => "crate-report",
            Failure::Exception => "exception",
            Failure::Panic => "panic",
            Failure::Deadline => "deadline",
            Failure::NoSecondCpu => "no-second-cpu",
        }
    }
}

/// Whether the machine is ending (a failure or a pass is being reported).
pub fn stopping() -> bool {
    STATE.load(Relaxed) != RUNNING
}

fn context() -> &'static str {
    let cpu = percpu();
    if cpu.hardirq.load(Relaxed) > 0 {
        "interrupt/NMI"
    } else if cpu.preempt.load(Relaxed) > 0 {
        "task (preemption off)"
    } else {
        "task"
    }
}

/// Stop the machine: what went wrong, of which kind, on which CPU, in which context and task.
pub fn fail(kind: Failure, what: core::fmt::Arguments) -> ! {
    instructions::disable_interrupts();
    let me = percpu().id;
    if STATE.swap(FAILING, Relaxed) == FAILING {
        if REPORTER.load(Relaxed) == me {
            // The report itself failed (a panic in it, say): say so and end the machine, on a
            // line of its own (the record it was writing may have stopped half-way).
            serial::write_forced(|port| {
                let _ = port.write_str("\n");
            });
            record::emit("RESULT", |r| {
                r.str("verdict", "fail")
                    .str("failure", kind.name())
                    .u64("cpu", me as u64)
                    .bool("while_reporting", true)
                    .str("message", what);
            });
            instructions::exit_qemu(instructions::EXIT_FAIL);
        }
        // The other CPU is reporting: it ends the machine once its report is out.
        instructions::halt_for_ever();
    }
    REPORTER.store(me, Relaxed);
    serial::take_for_failure();
    stats::report();
    stats::report_nmi_rips();
    record::emit("RESULT", |r| {
        r.str("verdict", "fail")
            .str("failure", kind.name())
            .u64("cpu", me as u64)
            .str("context", context())
            .u64("task", current_id() as u64)
            .u64("depth", current_task().kmap.depth() as u64)
            .str("message", what);
    });
    instructions::exit_qemu(instructions::EXIT_FAIL)
}

/// End the machine with a pass: `report` prints the figures first, unless a failure is being
/// reported already or comes meanwhile (it then ends the machine, and this waits for it).
pub fn pass(report: impl FnOnce()) -> ! {
    instructions::disable_interrupts();
    if STATE
        .compare_exchange(RUNNING, PASSING, Relaxed, Relaxed)
        .is_err()
    {
        instructions::halt_for_ever(); // a failure is being reported
    }
    report();
    if STATE.load(Relaxed) != PASSING {
        instructions::halt_for_ever(); // a failure came meanwhile: it ends the machine
    }
    record::emit("RESULT", |r| {
        r.str("verdict", "pass");
    });
    instructions::exit_qemu(instructions::EXIT_PASS)
}
