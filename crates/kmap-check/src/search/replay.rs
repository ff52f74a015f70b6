//! Replay: one execution, from its [`Schedule`], with its trace (`kmap replay`, and every
//! counterexample the other strategies report); and the shortening of a counterexample by
//! replays.

use std::time::Instant;

use kmap_sim::{
    Bounds, Choice, ChoicePoint, Chooser, Config, Decision, Outcome, RunOptions, Schedule, Taken,
};

use super::{Counterexample, Exploration};

/// Replay `schedule` on `config`, as a search of one execution whose counterexample is that
/// execution, whatever its verdict.
pub fn exploration(config: &Config, schedule: Schedule) -> Exploration {
    let start = Instant::now();
    let ce = counterexample(config, schedule);
    Exploration {
        verdict: ce.outcome.verdict(),
        executions: 1,
        stats: ce.outcome.stats,
        elapsed: start.elapsed(),
        hazards: ce.outcome.hazards.clone(),
        counterexample: Some(ce),
        complete: false,
        stopped: None,
        final_states: Default::default(),
        states: None,
    }
}

/// Takes a [`Schedule`]'s choice at each point it names, continues elsewhere, and ends the
/// execution at an endless program's first step past the schedule.
pub struct Replayer {
    schedule: Schedule,
    next: usize,
    /// Choices of the schedule that were not possible where it named them.
    pub mismatches: Vec<Taken>,
}

impl Replayer {
    /// A chooser that replays `schedule`.
    pub fn new(schedule: Schedule) -> Self {
        Replayer {
            schedule,
            next: 0,
            mismatches: Vec::new(),
        }
    }
}

impl Chooser for Replayer {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision {
        let Some(&Taken { arrival, choice }) = self.schedule.0.get(self.next) else {
            // Past the schedule, an endless program's next step ends the replay.
            return if point.is_step() {
                Decision::Stop
            } else {
                Decision::Take(0)
            };
        };
        // A program's own step and an injected event can share an arrival number: each is
        // taken only at a question of its kind.
        if arrival != point.arrival || point.is_step() == choice.is_event() {
            return Decision::Take(0);
        }
        self.next += 1;
        match point.options.iter().position(|&c| c == choice) {
            Some(position) => Decision::Take(position),
            None => {
                self.mismatches.push(Taken { arrival, choice });
                Decision::Take(0)
            }
        }
    }
}

/// Run `schedule` on `config` exactly, with a trace. Bounds do not apply to a replay: the
/// schedule says what happens.
pub fn replay(config: &Config, schedule: &Schedule) -> Outcome {
    let mut unbounded = config.clone();
    unbounded.bounds = Bounds::UNLIMITED;
    kmap_sim::run_with(
        &unbounded,
        Replayer::new(schedule.clone()),
        RunOptions {
            trace: true,
            pick_any_next: schedule
                .0
                .iter()
                .any(|t| matches!(t.choice, Choice::PreemptTo(_))),
            ..RunOptions::default()
        },
    )
    .expect("scenarios are validated when loaded")
}

/// Replay `schedule` on `config` with a trace.
pub fn counterexample(config: &Config, schedule: Schedule) -> Counterexample {
    let outcome = replay(config, &schedule);
    Counterexample { schedule, outcome }
}

/// The counterexample for `schedule`, with trailing events dropped as long as the verdict and
/// the kind of violation stay the same (dropping the last event never renumbers the others). A
/// probe can find a violation inside a nested probe, for example an NMI inside an interrupt,
/// when the interrupt alone already leads to it.
pub fn shortest(config: &Config, schedule: Schedule) -> Counterexample {
    let kind = |ce: &Counterexample| ce.outcome.violations.first().map(|v| v.kind);
    let mut best = counterexample(config, schedule);
    while let Some((_, rest)) = best.schedule.0.split_last() {
        let shorter = counterexample(config, Schedule(rest.to_vec()));
        if shorter.outcome.verdict() != best.outcome.verdict() || kind(&shorter) != kind(&best) {
            break;
        }
        best = shorter;
    }
    best
}
