//! kdemo: a small x86_64 kernel that uses the `kmap` crate with real page tables, real timer
//! interrupts and real NMIs, on two CPUs, under QEMU.
//!
//! `platform.rs` is how a kernel adopts the crate; `sched.rs` is where the switch hooks go;
//! `workload.rs` is what runs. The broken builds, each caught with its own consequence: `rfc-v1`
//! (the September 2020 RFC's single-step slot swap, interrupts off as in Linux), `rfc-v1-sti`
//! (the same, interrupts on), `no-bug-on` (the crate's occupied-slot check blinded; with
//! `rfc-v1-sti`), `no-migrate-disable` (the platform's migrate_disable does nothing).
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
// The benchmark build runs the benchmarks instead of the workload.
#![cfg_attr(feature = "bench", allow(dead_code))]

mod apic;
mod arch;
#[cfg(feature = "bench")]
mod bench;
mod boot;
mod handlers;
mod interrupts;
mod mem;
mod platform;
mod sched;
mod serial;
mod workload;

use core::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release};

use kmap::{Frame, Page};

/// CPUs the kernel runs on (QEMU `-smp 2`).
pub const MAX_CPUS: usize = 2;
/// Cells of every task's kmap stack.
pub const CELLS: usize = 16;
/// Tasks on each CPU: its boot task (NMI sender) and three workers.
pub const TASKS_PER_CPU: usize = 4;
/// The kernel's permanent direct map covers this much physical memory (lowmem).
pub const LOWMEM_MIB: usize = 32;
/// Highmem frames handed out start here (64 MiB; QEMU runs with 128 MiB).
pub const HIGHMEM_FIRST_FRAME: u64 = 64 * 256;
/// The APIC timer's initial count: about 0.5 ms per tick on the boot CPU. The second CPU's
/// period differs (about 0.46 ms), so that the two CPUs' ticks drift against each other instead
/// of locking in phase: the NMIs one CPU's timer handler sends then land anywhere in the other's
/// code, its switch path included, not at one fixed distance from its own tick.
const TIMER_COUNT: [u32; MAX_CPUS] = [31_250, 28_657];
/// Ticks (of both CPUs together) before the boot CPU gives up: about 50 s.
pub const DEADLINE_TICKS: u64 = 200_000;
/// Ticks between progress reports.
pub const REPORT_TICKS: u64 = 20_000;

/// A build meant to be caught: it runs until it is, or until `BROKEN_DEADLINE_TICKS`.
pub const BROKEN: bool = cfg!(any(feature = "rfc-v1", feature = "no-migrate-disable"));
/// Ticks (of both CPUs together) a broken build runs before it ends uncaught: about 110 s of
/// the guest's time, some 4 minutes under one instruction per translation block (xtask's boot
/// timeout is 400 s). Over 20 boots the slowest catch of `rfc-v1-sti-no-bug-on` took 59 s with
/// a fifth of this; with the out-of-order rounds of the workload, four CI boots of it caught it
/// after 9.4 s, 15.3 s and 133.4 s and once not within 300,000 ticks (154 s): a catch is a matter
/// of when an interrupt lands, not of whether.
pub const BROKEN_DEADLINE_TICKS: u64 = 450_000;

/// Set by the second CPU once it runs (Release: its per-CPU area, APIC id included, is
/// published with it).
pub static AP_ONLINE: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static mut ap_booting: u8;
    static mut ap_stack_top: u64;
}

/// The build, as `xtask` names it.
fn build_name() -> &'static str {
    match (
        cfg!(feature = "rfc-v1"),
        cfg!(feature = "rfc-v1-sti"),
        cfg!(feature = "no-bug-on"),
        cfg!(feature = "no-migrate-disable"),
    ) {
        (_, _, _, true) => "no-migrate-disable",
        (true, true, true, _) => "rfc-v1-sti-no-bug-on",
        (true, true, _, _) => "rfc-v1-sti",
        (true, _, true, _) => "rfc-v1-no-bug-on",
        (true, _, _, _) => "rfc-v1",
        (_, _, true, _) => "split-no-bug-on",
        _ => "split",
    }
}

/// Spin for about `n` iterations.
pub fn delay(n: u64) {
    for _ in 0..n {
        core::hint::spin_loop();
    }
}

fn page(frame: u64) -> Page {
    // SAFETY: every highmem frame is handed out once, to exactly one owner (a task or one CPU's
    // interrupt or NMI handler), and highmem has no other kernel address.
    unsafe { Page::from_frame(Frame::new(frame)) }
}

#[unsafe(no_mangle)]
pub extern "C" fn kmain(_start_info: u32) -> ! {
    serial::init();
    println!("kdemo: kmap on real page tables ({} build)", build_name());
    interrupts::init_idt();
    interrupts::init_cpu(0);
    sched::init_percpu(0);
    platform::map_window();

    let mut next = HIGHMEM_FIRST_FRAME;
    let mut take = || {
        next += 1;
        page(next - 1)
    };
    for task in &sched::TASKS {
        // SAFETY: boot, single CPU, no task runs yet.
        unsafe { *task.pages.get() = Some([take(), take(), take(), take()]) };
    }
    for cpu in &sched::PERCPU {
        // SAFETY: as above; no handler runs yet.
        unsafe {
            *cpu.irq_page.get() = Some(take());
            *cpu.nmi_page.get() = Some(take());
        }
    }
    workload::fill_handler_pages();
    for task in 0..sched::NTASKS {
        if task % TASKS_PER_CPU != 0 {
            sched::prepare_task(task);
        }
    }
    println!(
        "kdemo: direct map {} MiB; {} highmem frames from {:#x} reachable only through kmap slots at {:#x}",
        LOWMEM_MIB,
        next - HIGHMEM_FIRST_FRAME,
        HIGHMEM_FIRST_FRAME * 4096,
        platform::WINDOW
    );

    // The legacy 8259 PIC would deliver its timer as vector 8 (a "double fault"): mask it all.
    arch::outb(0x21, 0xFF);
    arch::outb(0xA1, 0xFF);
    start_ap();
    apic::init(TIMER_COUNT[0]);
    println!(
        "kdemo: {} CPUs, {} tasks each, timer every ~0.5 ms; running",
        MAX_CPUS, TASKS_PER_CPU
    );
    arch::enable_interrupts();
    boot_task(0)
}

/// What a CPU's boot task does: the NMI storm and the watch for the end, or in the benchmark
/// build the high-priority task.
fn boot_task(cpu: usize) -> ! {
    #[cfg(feature = "bench")]
    bench::high_priority_task(cpu);
    #[cfg(not(feature = "bench"))]
    workload::boot_task(cpu)
}

/// Whether the benchmark's high-priority task of `cpu` sleeps (never, outside that build).
pub fn bench_sleeping(cpu: usize) -> bool {
    #[cfg(feature = "bench")]
    return bench::sleeping(cpu);
    #[cfg(not(feature = "bench"))]
    {
        let _ = cpu;
        false
    }
}

fn start_ap() {
    // SAFETY: the trampoline's bytes are in the kernel image; 0x8000 is free low memory inside
    // the identity map; the AP reads ap_booting and ap_stack_top only after the SIPI.
    unsafe {
        let start = core::ptr::addr_of!(ap_trampoline_start);
        let length = core::ptr::addr_of!(ap_trampoline_end) as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, 0x8000 as *mut u8, length);
        core::ptr::write_volatile(
            core::ptr::addr_of_mut!(ap_stack_top),
            (sched::stack_top(TASKS_PER_CPU) & !15) as u64,
        );
        core::ptr::write_volatile(core::ptr::addr_of_mut!(ap_booting), 1);
    }
    apic::start_aps(8);
    for _ in 0..1_000 {
        if AP_ONLINE.load(Acquire) {
            return;
        }
        delay(100_000);
    }
    workload::fail(
        workload::Failure::NoSecondCpu,
        format_args!("the second CPU did not start"),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn ap_main() -> ! {
    interrupts::init_cpu(1);
    sched::init_percpu(1);
    apic::init(TIMER_COUNT[1]);
    AP_ONLINE.store(true, Release);
    arch::enable_interrupts();
    boot_task(1)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    workload::fail(workload::Failure::Panic, format_args!("panic: {info}"))
}
