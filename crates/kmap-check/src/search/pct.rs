//! Probabilistic concurrency testing (PCT): each execution takes a few branching events at
//! choice points drawn at random, with interrupts and NMIs probed everywhere.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use kmap_sim::{ChoicePoint, Chooser, Decision, NoInjection, ProbeMemo};

use super::{Coverage, Search, Strategy, handler_depth};

/// `executions` executions, each with `depth` branching events at choice points drawn from
/// `seed`.
#[derive(Clone, Copy, Debug)]
pub struct Pct {
    /// The seed.
    pub seed: u64,
    /// How many executions.
    pub executions: u64,
    /// Events per execution.
    pub depth: u32,
}

impl Strategy for Pct {
    fn explore(&mut self, search: &mut Search<'_>) -> Coverage {
        let memo = Arc::new(ProbeMemo::default());
        let nesting = handler_depth(search.config);
        let base = search.run(NoInjection, search.probing(&memo, nesting));
        let points = base.stats.choice_points.max(1);
        search.tally.add(base);
        for n in 0..self.executions {
            let mut rng =
                SmallRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let change_points = (0..self.depth)
                .map(|_| rng.random_range(0..points))
                .collect();
            let chooser = ChangePoints { change_points, rng };
            let outcome = search.run(chooser, search.probing(&memo, nesting));
            if search.count(outcome) {
                break;
            }
        }
        Coverage::default()
    }
}

/// PCT's chooser: a random branching event at each of its change points.
struct ChangePoints {
    change_points: Vec<u64>,
    rng: SmallRng,
}

impl Chooser for ChangePoints {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision {
        if point.options.len() > 1 && self.change_points.contains(&point.index) {
            Decision::Take(self.rng.random_range(1..point.options.len()))
        } else {
            Decision::Take(0)
        }
    }
}
