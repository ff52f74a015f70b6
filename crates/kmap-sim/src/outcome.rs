//! What a run found.

use std::fmt;

use kmap::Report;

use crate::chooser::{Choice, Schedule};
use crate::trace::{Context, Event};

/// Which rule a violation broke.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    /// INV-1: a slot at or above `current`'s `idx` is not empty where a nested context could
    /// map, or a PTE was installed over a live one.
    Inv1,
    /// INV-2: the switch code changed a task's stack.
    Inv2,
    /// INV-3: a nested context did not leave `idx` and its slots as it found them.
    Inv3,
    /// INV-4: a task holding mappings was switched in on another CPU.
    Inv4,
    /// INV-5: at a switch, a cell's saved PTE disagreed with its slot.
    Inv5,
    /// INV-6: a slot was reused before its TLB entry was invalidated.
    Inv6,
    /// An access reached another frame than the one mapped.
    WrongFrame,
    /// An access faulted.
    Fault,
    /// A frame did not hold what its owner last wrote.
    Corrupted,
    /// A counter went negative, or a count or a slot leaked.
    Counter,
    /// A forked child did not start empty.
    Fork,
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ViolationKind::Inv1 => "INV-1 (slot ownership)",
            ViolationKind::Inv2 => "INV-2 (switch code is index-neutral)",
            ViolationKind::Inv3 => "INV-3 (nested contexts are balanced)",
            ViolationKind::Inv4 => "INV-4 (no migration while holding)",
            ViolationKind::Inv5 => "INV-5 (atomic record)",
            ViolationKind::Inv6 => "INV-6 (TLB hygiene)",
            ViolationKind::WrongFrame => "wrong frame",
            ViolationKind::Fault => "fault",
            ViolationKind::Corrupted => "corruption",
            ViolationKind::Counter => "counter",
            ViolationKind::Fork => "fork",
        })
    }
}

/// A broken rule, where it was found.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Violation {
    /// The rule.
    pub kind: ViolationKind,
    /// The CPU.
    pub cpu: usize,
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
            self.kind, self.cpu, self.context, self.label, self.message
        )
    }
}

/// A misuse refused by the crate or by the machine.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Refusal {
    /// The CPU.
    pub cpu: usize,
    /// Who was running.
    pub context: Context,
    /// Why.
    pub message: String,
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
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Verdict {
    /// No rule broken, nothing refused.
    Pass,
    /// The crate or the machine refused a misuse; no rule broken.
    Refused,
    /// A rule was broken.
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
    /// Broken rules (the run stops at the first).
    pub violations: Vec<Violation>,
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
