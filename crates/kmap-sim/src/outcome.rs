//! What a run found.

use std::fmt;

use kmap::{CpuId, Report};

use crate::choice::{Choice, Schedule};
use crate::trace::{Context, Event};

/// A rule of the reference that the oracle watches. Broken with no consequence yet, it is a
/// [`Hazard`]; under strict checking ([`Settings::strict`](crate::Settings::strict)) it is a
/// violation by itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// INV-1: a slot at or above `current`'s `idx` is not empty where a nested context could
    /// map, or a map overwrote a live slot.
    Inv1,
    /// INV-2: the switch code changed a task's stack, or a guard cell holds a PTE.
    Inv2,
    /// INV-3: a nested context did not leave `idx`, its slots, the TLB and the counters as it
    /// found them.
    Inv3,
    /// INV-4: a task holding mappings was switched in on another CPU.
    Inv4,
    /// INV-5: at a switch, a cell's saved PTE disagreed with its slot.
    Inv5,
    /// INV-6: a slot was reused before its TLB entry was invalidated.
    Inv6,
    /// Rule F-1: a forked child did not start with an empty stack.
    Fork,
    /// `CONFIG_DEBUG_PREEMPT`: the CPU was read while the context could still migrate.
    DebugPreempt,
    /// A write through a stale translation landed in a frame nobody maps now.
    StrayWrite,
    /// An invariant of the crate's `KmapStack` broken: a cell at or above `idx` (or, with
    /// guard cells, a guard cell) is not empty. Linux never reads those cells, so nothing
    /// follows at once; the next map or switch builds on a stack that is not what it seems.
    Stack,
    /// Rule A-1: `kmap_atomic` returned with preemption or page faults enabled, so the atomic
    /// section its caller relies on is not one.
    Atomic,
    /// Foreign code's own warning (Linux's `WARN_ON_ONCE`, named by its file and line).
    Warn,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Inv1 => "INV-1 (slot ownership)",
            Rule::Inv2 => "INV-2 (switch code is index-neutral)",
            Rule::Inv3 => "INV-3 (nested contexts are balanced)",
            Rule::Inv4 => "INV-4 (no migration while holding)",
            Rule::Inv5 => "INV-5 (atomic record)",
            Rule::Inv6 => "INV-6 (TLB hygiene)",
            Rule::Fork => "F-1 (a child starts empty)",
            Rule::DebugPreempt => "DEBUG_PREEMPT (CPU read while migratable)",
            Rule::StrayWrite => "stray write",
            Rule::Stack => "KmapStack (cells at or above idx are empty)",
            Rule::Atomic => "A-1 (kmap_atomic disables preemption and page faults)",
            Rule::Warn => "WARN_ON_ONCE",
        })
    }
}

/// What a kernel would suffer: the kind of a violation.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    /// What Linux turns into a BUG or an oops: a map that finds its slot occupied
    /// (`BUG_ON(!pte_none)`), a switch installing into a live slot, a handler's map that finds
    /// the stack full, a count gone negative.
    Crash,
    /// An access through a slot with no translation.
    Fault,
    /// An access that reaches another frame than the one its context mapped, or reads what
    /// another context wrote into its frame.
    Corruption,
    /// At the end of an execution: slots still populated, TLB entries or unflushed slots left
    /// behind, migration still disabled; at any point: a hole at the top of a stack (a cell
    /// that is never freed).
    Leak,
    /// A rule broken with no consequence yet, reported as a violation because checking is
    /// strict.
    Hazard(Rule),
}

impl ViolationKind {
    /// The short name: `crash`, `fault`, `corruption`, `leak`, or the rule.
    pub fn name(&self) -> String {
        match self {
            ViolationKind::Crash => "crash".into(),
            ViolationKind::Fault => "fault".into(),
            ViolationKind::Corruption => "corruption".into(),
            ViolationKind::Leak => "leak".into(),
            ViolationKind::Hazard(rule) => format!("hazard {rule}"),
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A consequence, where it happened.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Violation {
    /// What the kernel suffers.
    pub kind: ViolationKind,
    /// The CPU.
    pub cpu: CpuId,
    /// Who was running.
    pub context: Context,
    /// The last arrival point passed.
    pub label: String,
    /// What exactly.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on CPU {} in {} after \"{}\": {}",
            self.kind, self.cpu.0, self.context, self.label, self.message
        )
    }
}

/// A rule broken with no consequence yet: what led to a violation, or what was survived.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Hazard {
    /// The rule.
    pub rule: Rule,
    /// The CPU.
    pub cpu: CpuId,
    /// Who was running.
    pub context: Context,
    /// The last arrival point passed.
    pub label: String,
    /// What exactly.
    pub message: String,
    /// Found by a probed handler that was then undone (so a replay without it does not see it).
    pub probed: bool,
}

impl Hazard {
    /// Whether `other` is the same rule broken at the same point in the same context (hazards
    /// are listed once per place).
    pub fn same_place(&self, other: &Hazard) -> bool {
        self.rule == other.rule && self.label == other.label && self.context == other.context
    }
}

impl fmt::Display for Hazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on CPU {} in {} after \"{}\": {}",
            self.rule, self.cpu.0, self.context, self.label, self.message
        )
    }
}

/// A misuse refused by the crate or by the machine.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Refusal {
    /// The CPU.
    pub cpu: CpuId,
    /// Who was running.
    pub context: Context,
    /// Why.
    pub message: String,
    /// The run went on as if the operation had not been asked: it changed nothing (for the
    /// crate's refusals, checked: the CPU's slots, TLB and unflushed slots, the current stack
    /// and the counters are as they were before the call, or the run ends in a leak), so the
    /// later checks of the run, the end-of-run leak check included, still hold. Not so for a
    /// task that ends holding, or with preemption or page faults disabled or interrupts off,
    /// nor for a handler that returns holding.
    pub survived: bool,
}

/// Counts of what happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Stats {
    /// Program operations run.
    pub ops: u64,
    /// Calls of the crate's map and unmap.
    pub kmap_ops: u64,
    /// Context switches.
    pub switches: u64,
    /// Preemptions.
    pub preemptions: u64,
    /// Interrupts delivered.
    pub irqs: u64,
    /// NMIs delivered.
    pub nmis: u64,
    /// Arrival points passed.
    pub points: u64,
    /// Arrival points where something other than "continue" was possible.
    pub choice_points: u64,
    /// The deepest nesting of interrupt and NMI handlers.
    pub max_nesting: usize,
    /// Branches not offered because they were provably equivalent to ones that were.
    pub pruned: u64,
    /// Handler runs probed clean (see `RunOptions::probe`).
    pub probes: u64,
    /// Handler runs skipped because one was probed clean from the same observable state.
    pub probes_remembered: u64,
    /// Probed handler runs that left a trace (offered as a lasting handler where the bound
    /// allows).
    pub probes_with_trace: u64,
}

impl Stats {
    /// Add another run's counts.
    pub fn add(&mut self, other: &Stats) {
        self.ops += other.ops;
        self.kmap_ops += other.kmap_ops;
        self.switches += other.switches;
        self.preemptions += other.preemptions;
        self.irqs += other.irqs;
        self.nmis += other.nmis;
        self.points += other.points;
        self.choice_points += other.choice_points;
        self.max_nesting = self.max_nesting.max(other.max_nesting);
        self.pruned += other.pruned;
        self.probes += other.probes;
        self.probes_remembered += other.probes_remembered;
        self.probes_with_trace += other.probes_with_trace;
    }
}

/// One choice point: what was possible and what was taken.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChoiceRecord {
    /// The arrival point it was at.
    pub arrival: u64,
    /// What was possible (`options[0]` is continue).
    pub options: Vec<Choice>,
    /// The position taken.
    pub chosen: usize,
}

/// The verdict on a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No consequence, nothing refused (hazards may have been survived).
    Pass,
    /// The crate or the machine refused a misuse; no consequence.
    Refused,
    /// A consequence (or, under strict checking, a hazard).
    Violation,
}

impl Verdict {
    /// Its name in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Refused => "refused",
            Verdict::Violation => "violation",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything a run found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Consequences (the run stops at the first).
    pub violations: Vec<Violation>,
    /// Rules broken with no consequence (each rule, point and context once).
    pub hazards: Vec<Hazard>,
    /// Refused misuse.
    pub refusals: Vec<Refusal>,
    /// The crate's reports.
    pub reports: Vec<Report>,
    /// Counts.
    pub stats: Stats,
    /// The choices that replay this run.
    pub schedule: Schedule,
    /// Every choice point, when asked for.
    pub choices: Vec<ChoiceRecord>,
    /// The step-by-step trace, when asked for.
    pub trace: Vec<Event>,
    /// The chooser ended the execution early ([`Decision::Stop`](crate::Decision::Stop)).
    pub stopped: bool,
    /// A fingerprint of the machine's final state (memory, page table, TLBs, stacks, tasks,
    /// the verdict), for comparing the final states of two searches; 0 when the chooser
    /// stopped the execution (`stopped`).
    pub final_state: u64,
}

impl Outcome {
    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        if !self.violations.is_empty() {
            Verdict::Violation
        } else if !self.refusals.is_empty() {
            Verdict::Refused
        } else {
            Verdict::Pass
        }
    }
}
