//! The workload: tasks that map one to three nested highmem frames, write a pattern naming the
//! task and a counter, get preempted or yield while holding them, and verify every word after;
//! three pages held side by side in a struct and released out of order (release in any order:
//! holes under timer preemption and NMIs); page copies between two highmem frames through two
//! nested mappings; interrupt and NMI
//! handlers that map a frame and verify it. Every access goes through a kmap slot: highmem has
//! no other kernel address. Any wrong word, unexpected fault or refusal stops the machine with
//! RESULT: FAIL and what, where and in which context.

use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};

use kmap::{Local, Page, ScopedMapping};

use crate::platform::{KERNEL, Kernel};
use crate::sched::{self, percpu};
use crate::{MAX_CPUS, apic, arch, serial};

const WORDS: usize = 512;

pub static ACCESSES: AtomicU64 = AtomicU64::new(0);
pub static SWITCHES: AtomicU64 = AtomicU64::new(0);
pub static PREEMPTIONS: AtomicU64 = AtomicU64::new(0);
pub static PREEMPTIONS_HOLDING: AtomicU64 = AtomicU64::new(0);
pub static YIELDS_HOLDING: AtomicU64 = AtomicU64::new(0);
pub static COPIES: AtomicU64 = AtomicU64::new(0);
/// Mappings released below the top (each left a hole), and rounds that did so.
pub static HOLES: AtomicU64 = AtomicU64::new(0);
pub static UNORDERED_ROUNDS: AtomicU64 = AtomicU64::new(0);
/// Preemptions of a task whose stack had a hole.
pub static PREEMPTIONS_WITH_HOLES: AtomicU64 = AtomicU64::new(0);
pub static IRQ_MAPS: AtomicU64 = AtomicU64::new(0);
pub static NMI_MAPS: AtomicU64 = AtomicU64::new(0);
pub static NMIS_IN_SCHED_IN: AtomicU64 = AtomicU64::new(0);
pub static NMIS_IN_SWAP: AtomicU64 = AtomicU64::new(0);
pub static TICKS: AtomicU64 = AtomicU64::new(0);
pub static MIGRATIONS: AtomicU64 = AtomicU64::new(0);
/// How the run ends: `RUNNING`, then `FAILING` (one context reports a failure and exits with
/// RESULT: FAIL) or `PASSING` (the boot task reports the targets met); a failure overrides a
/// pass still being printed, never the other way round.
static STATE: AtomicU8 = AtomicU8::new(RUNNING);
const RUNNING: u8 = 0;
const FAILING: u8 = 1;
const PASSING: u8 = 2;
/// The CPU reporting the failure.
static REPORTER: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Wait, interrupts off, for the context that ends the machine.
fn halt_for_ever() -> ! {
    arch::disable_interrupts();
    loop {
        // SAFETY: halting with interrupts off only waits; NMIs return here at once (see
        // `nmi_work`).
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
    }
}

/// What stopped the machine. `xtask` accepts, per build, only the kinds that build is meant to
/// produce; the name is printed on a line `FAILURE: <name>`.
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

pub fn count_switch() {
    SWITCHES.fetch_add(1, Relaxed);
}

/// A preemption of the current task, whose stack is `stack`.
pub fn count_preemption(stack: &kmap::KmapStack<{ crate::CELLS }>) {
    PREEMPTIONS.fetch_add(1, Relaxed);
    let depth = stack.depth();
    if depth > 0 {
        PREEMPTIONS_HOLDING.fetch_add(1, Relaxed);
    }
    if (0..depth).any(|cell| stack.saved(kmap::Cell(cell)) == kmap::Pte::HOLE) {
        PREEMPTIONS_WITH_HOLES.fetch_add(1, Relaxed);
    }
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
    arch::disable_interrupts();
    let me = percpu().id;
    if STATE.swap(FAILING, Relaxed) == FAILING {
        if REPORTER.load(Relaxed) == me {
            // The report itself failed (a panic in it, say): say so and end the machine.
            serial::print_forced(format_args!(
                "FAIL on CPU {me} again, while reporting: {what}\nFAILURE: {}\nRESULT: FAIL\n",
                kind.name()
            ));
            arch::exit_qemu(arch::EXIT_FAIL);
        }
        // The other CPU is reporting: it ends the machine once its report is out.
        halt_for_ever();
    }
    REPORTER.store(me, Relaxed);
    serial::take_for_failure();
    {
        let cpu = percpu();
        serial::print_forced(format_args!(
            "FAIL on CPU {} in {} (current task {}, kmap depth {}): {what}\n",
            cpu.id,
            context(),
            sched::current_id(),
            sched::current_task().kmap.depth()
        ));
        report();
        print_nmi_rips();
        serial::print_forced(format_args!("FAILURE: {}\nRESULT: FAIL\n", kind.name()));
    }
    arch::exit_qemu(arch::EXIT_FAIL)
}

/// Distinct instruction addresses NMIs interrupted, for `xtask` to resolve against the
/// kernel's symbols (which of them lie in the crate's paths). Open addressing, never removed.
static NMI_RIPS: [AtomicU64; 4096] = [const { AtomicU64::new(0) }; 4096];
static NMI_RIPS_LOST: AtomicU64 = AtomicU64::new(0);

/// From the NMI handler: remember the interrupted instruction's address.
pub fn record_nmi_rip(rip: u64) {
    let mut i = (rip.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize;
    for _ in 0..NMI_RIPS.len() {
        match NMI_RIPS[i].compare_exchange(0, rip, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(seen) if seen == rip => return,
            Err(_) => i = (i + 1) % NMI_RIPS.len(),
        }
    }
    NMI_RIPS_LOST.fetch_add(1, Relaxed);
}

/// `NMI-RIPS` lines: every recorded address, 12 a line, then how many did not fit.
fn print_nmi_rips() {
    let mut line = [0u64; 12];
    let mut n = 0;
    let flush = |rips: &[u64]| {
        use core::fmt::Write as _;
        let mut line = serial::Line::new();
        let _ = write!(line, "NMI-RIPS");
        for rip in rips {
            let _ = write!(line, " {rip:x}");
        }
        serial::print_forced(format_args!("{}\n", line.as_str()));
    };
    for rip in NMI_RIPS.iter().map(|r| r.load(Relaxed)).filter(|&r| r != 0) {
        line[n] = rip;
        n += 1;
        if n == line.len() {
            flush(&line);
            n = 0;
        }
    }
    if n > 0 {
        flush(&line[..n]);
    }
    serial::print_forced(format_args!(
        "NMI-RIPS-LOST {}\n",
        NMI_RIPS_LOST.load(Relaxed)
    ));
}

pub fn report() {
    serial::print_forced(format_args!(
        "stats: {} verified accesses, {} switches, {} preemptions ({} of tasks holding mappings), \
         {} yields holding mappings, {} page copies, {} out-of-order rounds ({} holes, {} \
         preemptions with a hole), \
         {} interrupt maps, {} NMI maps, \
         {} NMIs during sched_in's slow path, {} NMIs during the rfc-v1 swap, {} migrations, \
         {} ticks\n",
        ACCESSES.load(Relaxed),
        SWITCHES.load(Relaxed),
        PREEMPTIONS.load(Relaxed),
        PREEMPTIONS_HOLDING.load(Relaxed),
        YIELDS_HOLDING.load(Relaxed),
        COPIES.load(Relaxed),
        UNORDERED_ROUNDS.load(Relaxed),
        HOLES.load(Relaxed),
        PREEMPTIONS_WITH_HOLES.load(Relaxed),
        IRQ_MAPS.load(Relaxed),
        NMI_MAPS.load(Relaxed),
        NMIS_IN_SCHED_IN.load(Relaxed),
        NMIS_IN_SWAP.load(Relaxed),
        MIGRATIONS.load(Relaxed),
        TICKS.load(Relaxed),
    ));
    for cpu in &sched::PERCPU {
        serial::print_forced(format_args!(
            "  CPU {}: {} switches, {} NMIs received, run queue {:#010b}\n",
            cpu.id,
            cpu.switches.load(Relaxed),
            cpu.nmis.load(Relaxed),
            sched::queue(cpu.id)
        ));
    }
}

/// The word `word` of page `page` of owner `owner` at round `round`.
fn pattern(owner: u64, round: u64, page: u64, word: u64) -> u64 {
    owner << 48 | (round & 0xFF_FFFF) << 24 | page << 16 | word
}

fn fill(bytes: &mut [u8], owner: u64, round: u64, page: u64) {
    for word in 0..WORDS {
        // SAFETY: word * 8 + 8 <= 4096, inside the page this byte view covers.
        unsafe {
            core::ptr::write_volatile(
                bytes.as_mut_ptr().add(word * 8).cast::<u64>(),
                pattern(owner, round, page, word as u64),
            )
        };
    }
}

/// Check the words of `bytes` (a mapping of `frame`; every `stride`-th word) against the
/// pattern; `cell` is the kmap cell it is expected in, for the report.
fn verify(
    bytes: &[u8],
    frame: kmap::Frame,
    owner: u64,
    round: u64,
    page: u64,
    cell: usize,
    stride: usize,
) {
    for word in (0..WORDS).step_by(stride) {
        // SAFETY: as in `fill`, reading.
        let seen = unsafe { core::ptr::read_volatile(bytes.as_ptr().add(word * 8).cast::<u64>()) };
        let expected = pattern(owner, round, page, word as u64);
        if seen != expected {
            let slot = crate::platform::slot_pte(bytes.as_ptr() as usize);
            fail(
                Failure::WrongWord,
                format_args!(
                    "wrong data through slot {}.{cell}: word {word} of page {page} of owner \
                     {owner:#x} (round {round}) is {seen:#018x}, expected {expected:#018x}; the \
                     mapping is of {}, the slot's PTE now maps {}",
                    percpu().id,
                    describe(frame.pfn()),
                    describe(slot >> 12)
                ),
            );
        }
    }
    ACCESSES.fetch_add((WORDS / stride) as u64, Relaxed);
}

fn map<'m>(local: &'m mut Local<'_, Kernel>, page: &'m mut Page) -> kmap::Mapping<'m, Kernel> {
    let frame = page.frame();
    local
        .try_map(page)
        .unwrap_or_else(|refused| refusal(frame, refused))
}

fn map_in<'c>(
    parent: &'c mut kmap::Mapping<'_, Kernel>,
    page: &'c mut Page,
) -> kmap::Mapping<'c, Kernel> {
    let frame = page.frame();
    parent
        .try_map(page)
        .unwrap_or_else(|refused| refusal(frame, refused))
}

/// A refused map, with whose frame occupies the slot when that is why.
fn refusal(frame: kmap::Frame, refused: kmap::MapError) -> ! {
    let cpu = percpu();
    let during = if cpu.in_swap.load(Relaxed) {
        " while this CPU was in the rfc-v1 slot swap"
    } else {
        ""
    };
    if let kmap::MapError::SlotNotEmpty { slot } = refused {
        use kmap::Platform;
        let address = crate::platform::KERNEL.slot_address(slot).as_usize();
        let held = crate::platform::slot_pte(address) >> 12;
        fail(
            Failure::OccupiedSlot,
            format_args!(
                "mapping {} refused: slot {}.{} already maps {} ({}), although current's idx is {}{during}: \
             an interrupt would have overwritten another task's mapping",
                describe(frame.pfn()),
                slot.cpu.0,
                slot.cell.0,
                describe(held),
                refused,
                sched::current_task().kmap.depth()
            ),
        )
    }
    fail(
        Failure::Crate,
        format_args!(
            "mapping {} refused by the crate: {refused}{during}",
            describe(frame.pfn())
        ),
    )
}

/// Whose page a highmem frame is.
pub fn describe(frame: u64) -> DescribeFrame {
    DescribeFrame(frame)
}

pub struct DescribeFrame(u64);

impl core::fmt::Display for DescribeFrame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let index = self.0.wrapping_sub(crate::HIGHMEM_FIRST_FRAME) as usize;
        let tasks = sched::NTASKS * 4;
        if index < tasks {
            write!(
                f,
                "frame {:#x} (page {} of task {})",
                self.0,
                index % 4,
                index / 4
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

/// Hold the mappings a while: yield every fifth round, else spin (the timer preempts), sending
/// NMIs to the other CPU meanwhile so that some land inside its switch path.
fn hold(round: u64) {
    if round.is_multiple_of(5) {
        YIELDS_HOLDING.fetch_add(1, Relaxed);
        sched::schedule();
    } else {
        for _ in 0..32 {
            if crate::AP_ONLINE.load(core::sync::atomic::Ordering::Acquire) {
                apic::send_nmi(other_apic_id());
            }
            crate::delay(jitter(600));
        }
    }
}

/// A worker task's life.
pub fn task_main(task: usize) -> ! {
    // SAFETY: this task's one handle, for its whole life (it never ends).
    let mut local = unsafe { Local::new(&KERNEL) };
    // SAFETY: only this task takes its pages, once.
    let [a, b, c, d] = unsafe { sched::task_pages(task) };
    let [fa, fb, fc, fd] = [a.frame(), b.frame(), c.frame(), d.frame()];
    let owner = task as u64 + 1;
    let mut round = 0u64;
    loop {
        round += 1;
        let depth = 1 + round % 3;
        {
            let mut first = map(&mut local, a);
            fill(first.bytes_mut(), owner, round, 0);
            if depth >= 2 {
                let mut second = map_in(&mut first, b);
                fill(second.bytes_mut(), owner, round, 1);
                if depth >= 3 {
                    let mut third = map_in(&mut second, c);
                    fill(third.bytes_mut(), owner, round, 2);
                    hold(round);
                    verify(third.bytes(), fc, owner, round, 2, 2, 1);
                } else {
                    hold(round);
                }
                verify(second.bytes(), fb, owner, round, 1, 1, 1);
            } else {
                hold(round);
            }
            verify(first.bytes(), fa, owner, round, 0, 0, 1);
        }
        // Work that holds no mapping: the balancer may move the task to the other CPU now (and
        // only now: its migration-disable count is zero).
        if round.is_multiple_of(3) {
            sched::schedule();
        } else {
            crate::delay(400);
        }
        if round % 4 == 2 {
            unordered_round(&mut local, [&mut *a, &mut *b, &mut *c], owner, round);
        }
        if round.is_multiple_of(4) {
            // A page copy through two nested mappings, then the copy checked through a third.
            let mut source = map(&mut local, a);
            fill(source.bytes_mut(), owner, round, 3);
            source.copy_to(d);
            drop(source);
            let copy = map(&mut local, d);
            verify(copy.bytes(), fd, owner, round, 3, 0, 1);
            COPIES.fetch_add(1, Relaxed);
        }
    }
}

/// Three pages held side by side, as struct fields, and released in an order the stack does not
/// dictate: the middle one first (a hole under the third), then, after holding the other two
/// across preemption (the switch skips the hole), the struct is dropped in field order: the
/// first (a second hole), then the third, which pops both holes.
fn unordered_round(local: &mut Local<'_, Kernel>, pages: [&mut Page; 3], owner: u64, round: u64) {
    struct Three<'s> {
        first: ScopedMapping<'s, Kernel>,
        second: Option<ScopedMapping<'s, Kernel>>,
        third: ScopedMapping<'s, Kernel>,
    }
    let [pa, pb, pc] = pages;
    let frames = [pa.frame(), pb.frame(), pc.frame()];
    let scope = local.scope();
    let mut held = Three {
        first: scoped(&scope, pa),
        second: Some(scoped(&scope, pb)),
        third: scoped(&scope, pc),
    };
    fill(held.first.bytes_mut(), owner, round, 4);
    if let Some(second) = &mut held.second {
        fill(second.bytes_mut(), owner, round, 5);
        hold(round);
        verify(second.bytes(), frames[1], owner, round, 5, 1, 1);
    }
    fill(held.third.bytes_mut(), owner, round, 6);
    held.second = None; // below the top: a hole
    HOLES.fetch_add(1, Relaxed);
    hold(round + 1);
    verify(held.first.bytes(), frames[0], owner, round, 4, 0, 1);
    verify(held.third.bytes(), frames[2], owner, round, 6, 2, 1);
    HOLES.fetch_add(1, Relaxed); // `first`, dropped first, is below the top too
    drop(held);
    UNORDERED_ROUNDS.fetch_add(1, Relaxed);
}

fn scoped<'s>(scope: &'s kmap::Scope<'_, Kernel>, page: &'s mut Page) -> ScopedMapping<'s, Kernel> {
    let frame = page.frame();
    scope
        .try_map(page)
        .unwrap_or_else(|refused| refusal(frame, refused))
}

/// Fill the handler pages of every CPU with their patterns (at boot, from the boot task).
pub fn fill_handler_pages() {
    // SAFETY: the boot task's handle, dropped at the end of this function.
    let mut local = unsafe { Local::new(&KERNEL) };
    for cpu in &sched::PERCPU {
        for (page, handler) in [
            (&cpu.irq_page, Handler::Interrupt),
            (&cpu.nmi_page, Handler::Nmi),
        ] {
            // SAFETY: no handler runs yet (interrupts are off, no AP started).
            let page = unsafe { (*page.get()).as_mut().expect("handed out") };
            let mut mapping = map(&mut local, page);
            fill(mapping.bytes_mut(), handler_owner(handler, cpu.id), 0, 0);
        }
    }
}

/// Which of a CPU's two handler pages.
#[derive(Clone, Copy)]
enum Handler {
    Interrupt,
    Nmi,
}

/// The owner a handler page's pattern names.
fn handler_owner(handler: Handler, cpu: usize) -> u64 {
    match handler {
        Handler::Interrupt => 0xA0 + cpu as u64,
        Handler::Nmi => 0xB0 + cpu as u64,
    }
}

/// A handler's share: map this CPU's page for `handler`, verify it (every `stride`-th word),
/// unmap.
fn check_handler_page(handler: Handler, page: &mut Page, stride: usize) {
    // SAFETY: this handler's one handle, dropped before it returns.
    let mut local = unsafe { Local::new(&KERNEL) };
    let frame = page.frame();
    let mapping = map(&mut local, page);
    verify(
        mapping.bytes(),
        frame,
        handler_owner(handler, percpu().id),
        0,
        0,
        mapping_cell(),
        stride,
    );
}

/// The timer interrupt's share: check this CPU's interrupt page; and prod the other CPU with an
/// NMI.
pub fn irq_work() {
    TICKS.fetch_add(1, Relaxed);
    // SAFETY: only this CPU's interrupt handler uses this page, and interrupt handlers do not nest.
    let page = unsafe { (*percpu().irq_page.get()).as_mut().expect("handed out") };
    check_handler_page(Handler::Interrupt, page, 1);
    IRQ_MAPS.fetch_add(1, Relaxed);
    apic::send_nmi(other_apic_id());
}

/// An NMI's share: count where it landed, check this CPU's NMI page.
pub fn nmi_work() {
    if STATE.load(Relaxed) != RUNNING {
        return; // the machine is stopping: let its report finish
    }
    let cpu = percpu();
    cpu.nmis.fetch_add(1, Relaxed);
    if cpu.in_sched_in.load(Relaxed) {
        NMIS_IN_SCHED_IN.fetch_add(1, Relaxed);
    }
    if cpu.in_swap.load(Relaxed) {
        NMIS_IN_SWAP.fetch_add(1, Relaxed);
    }
    // SAFETY: only this CPU's NMI handler uses this page, and NMIs do not nest.
    let page = unsafe { (*cpu.nmi_page.get()).as_mut().expect("handed out") };
    check_handler_page(Handler::Nmi, page, 1);
    NMI_MAPS.fetch_add(1, Relaxed);
}

fn mapping_cell() -> usize {
    sched::current_task().kmap.depth().saturating_sub(1)
}

/// Between `n / 2` and `3n / 2`, pseudo-randomly (xorshift on the TSC): NMIs sent after it land
/// at no fixed distance from the other CPU's ticks.
fn jitter(n: u64) -> u64 {
    // SAFETY: reading the time-stamp counter has no effect.
    let mut x = unsafe { core::arch::x86_64::_rdtsc() } | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    n / 2 + x % n.max(1)
}

fn other_apic_id() -> u32 {
    let me = percpu().id;
    sched::PERCPU[(me + 1) % MAX_CPUS].apic_id.load(Relaxed)
}

/// A CPU's boot task: send NMIs to the other CPU, and on the boot CPU watch for the end.
pub fn boot_task(cpu: usize) -> ! {
    let start = TICKS.load(Relaxed);
    let mut last_report = start;
    loop {
        if crate::AP_ONLINE.load(core::sync::atomic::Ordering::Acquire) {
            apic::send_nmi(other_apic_id());
        }
        crate::delay(jitter(2_000));
        if cpu != 0 {
            continue;
        }
        let enough = ACCESSES.load(Relaxed) >= 1_000_000
            && PREEMPTIONS_HOLDING.load(Relaxed) >= 2_000
            && NMI_MAPS.load(Relaxed) >= 10_000
            && MIGRATIONS.load(Relaxed) >= 100
            && UNORDERED_ROUNDS.load(Relaxed) >= 10
            && PREEMPTIONS_WITH_HOLES.load(Relaxed) >= 100;
        let ticks = TICKS.load(Relaxed) - start;
        // Where the NMIs landed (sched_in's slow path, the rfc-v1 swap) is reported, not a
        // target: an NMI lands in a window of a few dozen instructions only now and then (`cargo
        // xtask kernel --coverage` counts the windows hit).
        // A broken build runs until it is caught or its deadline: its targets prove nothing.
        let done = if crate::BROKEN {
            ticks > crate::BROKEN_DEADLINE_TICKS
        } else {
            enough || ticks > crate::DEADLINE_TICKS
        };
        if done {
            arch::disable_interrupts();
            if !enough && !crate::BROKEN {
                fail(
                    Failure::Deadline,
                    format_args!("the workload did not reach its targets before the deadline"),
                );
            }
            if STATE
                .compare_exchange(RUNNING, PASSING, Relaxed, Relaxed)
                .is_err()
            {
                halt_for_ever(); // a failure is being reported
            }
            report();
            print_nmi_rips();
            if STATE.load(Relaxed) != PASSING {
                halt_for_ever(); // a failure came meanwhile: it ends the machine
            }
            serial::print_forced(format_args!("RESULT: PASS\n"));
            arch::exit_qemu(arch::EXIT_PASS);
        }
        if ticks - (last_report - start) >= crate::REPORT_TICKS {
            last_report = start + ticks;
            report();
        }
    }
}
