//! kdemo: a small x86_64 kernel that uses the `kmap` crate with real page tables, real timer
//! interrupts and real NMIs, on two CPUs, under QEMU.
//!
//! `platform.rs` is how a kernel adopts the crate; `sched.rs` is where the switch hooks go;
//! `workload/` is what runs, `bench/` what runs instead with `--features bench` (the one choice,
//! `Run` below, behind the interface of `load.rs`); `arch/x86_64/` is the machine. The broken
//! builds, each caught with its own consequence: `rfc-v1` (the September 2020 RFC's single-step
//! slot swap, interrupts off as in Linux), `rfc-v1-sti` (the same, interrupts on), `no-bug-on`
//! (the crate's occupied-slot check blinded; with `rfc-v1-sti`), `no-migrate-disable` (the
//! platform's migrate_disable does nothing).
//!
//! The kernel reports over the serial port: sentences for people, and one record a line
//! (`REPORT {…}`, `NMI-RIPS {…}`, `BENCH {…}`, `RESULT {…}`, see `record.rs`) for xtask.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod arch;
// Both loads are compiled in every build, so that each build's checks cover both; the one that
// `Run` does not choose is dead code there.
#[cfg_attr(not(feature = "bench"), allow(dead_code))]
mod bench;
mod config;
mod dispatch;
mod frames;
mod load;
mod percpu;
mod platform;
mod record;
mod sched;
mod stats;
mod task;
mod verdict;
#[cfg_attr(feature = "bench", allow(dead_code))]
mod workload;

use core::sync::atomic::Ordering::{Acquire, Release};

use arch::interrupts::{Frame, FxArea};
use arch::{apic, boot, instructions, interrupts, serial};
use config::{HIGHMEM_FIRST_FRAME, LOWMEM_MIB, MAX_CPUS, NTASKS, TASKS_PER_CPU, TIMER_COUNT};
use load::Load;
use percpu::AP_ONLINE;
use verdict::{Failure, fail};

/// What runs: the workload that checks the crate, or the benchmarks. The one place that
/// chooses.
#[cfg(not(feature = "bench"))]
type Run = workload::Workload;
#[cfg(feature = "bench")]
type Run = bench::Bench;

#[unsafe(no_mangle)]
pub extern "C" fn kmain(_start_info: u32) -> ! {
    serial::init();
    println!(
        "kdemo: kmap on real page tables ({} build)",
        config::build_name()
    );
    interrupts::init_idt();
    interrupts::init_cpu(0);
    percpu::init(0);
    platform::map_window();
    let frames = frames::hand_out();
    Run::init();
    for task in 0..NTASKS {
        if task % TASKS_PER_CPU != 0 {
            sched::prepare_task::<Run>(task);
        }
    }
    println!(
        "kdemo: direct map {} MiB; {} highmem frames from {:#x} reachable only through kmap slots at {:#x}",
        LOWMEM_MIB,
        frames,
        HIGHMEM_FIRST_FRAME * 4096,
        platform::WINDOW
    );

    instructions::mask_legacy_pic();
    if !boot::start_ap(task::stack_top(TASKS_PER_CPU), || AP_ONLINE.load(Acquire)) {
        fail(
            Failure::NoSecondCpu,
            format_args!("the second CPU did not start"),
        );
    }
    apic::init(TIMER_COUNT[0]);
    println!(
        "kdemo: {} CPUs, {} tasks each, timer every ~0.5 ms; running",
        MAX_CPUS, TASKS_PER_CPU
    );
    instructions::enable_interrupts();
    Run::boot_task(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn ap_main() -> ! {
    interrupts::init_cpu(1);
    percpu::init(1);
    apic::init(TIMER_COUNT[1]);
    AP_ONLINE.store(true, Release);
    instructions::enable_interrupts();
    Run::boot_task(1)
}

/// Every interrupt and exception, from `isr_common` (`arch::interrupts`).
#[unsafe(no_mangle)]
extern "C" fn isr_dispatch(frame: &mut Frame, fx: &mut FxArea) {
    dispatch::dispatch::<Run>(frame, fx);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    fail(Failure::Panic, format_args!("panic: {info}"))
}
