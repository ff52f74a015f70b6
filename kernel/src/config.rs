//! The kernel's sizes and deadlines, and which build this is: figures every other module reads,
//! kept in one place that reads nothing else.

/// CPUs the kernel runs on (QEMU `-smp 2`).
pub const MAX_CPUS: usize = 2;
/// Cells of every task's kmap stack.
pub const CELLS: usize = 16;
/// Tasks on each CPU: its boot task (NMI sender) and three workers.
pub const TASKS_PER_CPU: usize = 4;
/// Tasks in all.
pub const NTASKS: usize = MAX_CPUS * TASKS_PER_CPU;
/// The kernel's permanent direct map covers this much physical memory (lowmem).
pub const LOWMEM_MIB: usize = 32;
/// Highmem frames handed out start here (64 MiB; QEMU runs with 128 MiB).
pub const HIGHMEM_FIRST_FRAME: u64 = 64 * 256;
/// The APIC timer's initial count: about 0.5 ms per tick on the boot CPU. The second CPU's
/// period differs (about 0.46 ms), so that the two CPUs' ticks drift against each other instead
/// of locking in phase: the NMIs one CPU's timer handler sends then land anywhere in the other's
/// code, its switch path included, not at one fixed distance from its own tick.
pub const TIMER_COUNT: [u32; MAX_CPUS] = [31_250, 28_657];
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

/// The build, as `xtask` names it.
pub fn build_name() -> &'static str {
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
