//! What the kernel runs on its tasks, timer and NMIs: the workload that checks the crate
//! (`crate::workload`), or the benchmarks (`crate::bench`, `--features bench`). Both need the
//! same kernel (boot, scheduler, interrupts) and differ only in what runs at a few hooks; the
//! interrupt dispatch and the scheduler call those hooks through this trait, and `main.rs` picks
//! the one implementation, in one place, so no `cfg` of the benchmark reaches either.

/// The hooks the kernel calls. Every function runs in the context its doc names; none may
/// assume another load's state exists.
pub trait Load {
    /// Whether the balancer moves tasks between the CPUs (the benchmarks' per-CPU figures must
    /// not depend on where the workers went).
    const BALANCE: bool;

    /// At boot, on the boot CPU, before the second CPU starts and before interrupts are on; the
    /// highmem frames are handed out.
    fn init();

    /// A CPU's boot task (task `cpu * TASKS_PER_CPU`, pinned to it), once the CPU is up with
    /// interrupts on.
    fn boot_task(cpu: usize) -> !;

    /// Every other task's life, from its first switch-in.
    fn task(task: usize) -> !;

    /// The timer interrupt's share, in hard-IRQ context, before the balancer and the preemption.
    fn timer();

    /// An NMI's share, in hard-IRQ context (the count of the CPU's `hardirq` is raised).
    fn nmi();

    /// A device interrupt other than the timer: handled (its end of interrupt sent), or `false`
    /// when the load has no such vector.
    fn interrupt(vector: u64) -> bool;
}
