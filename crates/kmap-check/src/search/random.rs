//! Random search: executions whose every decision is drawn from a seed, interrupts and NMIs
//! included (no probes). Also the chooser of `kmap stress`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use kmap_sim::{Choice, ChoicePoint, Chooser, Decision, RunOptions};

use super::{Coverage, Search, Strategy};

/// `executions` executions with decisions drawn from `seed`.
#[derive(Clone, Copy, Debug)]
pub struct Random {
    /// The seed.
    pub seed: u64,
    /// How many executions.
    pub executions: u64,
}

impl Strategy for Random {
    fn explore(&mut self, search: &mut Search<'_>) -> Coverage {
        for n in 0..self.executions {
            let chooser = RandomChooser::new(
                self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                Rates::default(),
            );
            let outcome = search.run(chooser, RunOptions::default());
            if search.count(outcome) {
                break;
            }
        }
        Coverage::default()
    }
}

/// How often a [`RandomChooser`] injects each event, as a probability per choice point.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// An interrupt.
    pub irq: f64,
    /// An NMI.
    pub nmi: f64,
    /// A preemption.
    pub preempt: f64,
    /// Another CPU runs.
    pub cpu: f64,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            irq: 0.04,
            nmi: 0.01,
            preempt: 0.05,
            cpu: 0.2,
        }
    }
}

/// Random choices from a seed.
pub struct RandomChooser {
    rng: SmallRng,
    rates: Rates,
}

impl RandomChooser {
    /// A chooser whose choices follow from `seed`.
    pub fn new(seed: u64, rates: Rates) -> Self {
        RandomChooser {
            rng: SmallRng::seed_from_u64(seed),
            rates,
        }
    }
}

impl Chooser for RandomChooser {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision {
        if point.is_step() {
            return Decision::Take(self.rng.random_range(0..point.options.len()));
        }
        let mut roll: f64 = self.rng.random();
        for (i, option) in point.options.iter().enumerate().skip(1) {
            let rate = match option {
                Choice::Continue | Choice::Do(_) => 0.0,
                Choice::Irq => self.rates.irq,
                Choice::Nmi => self.rates.nmi,
                Choice::Preempt | Choice::PreemptTo(_) | Choice::Migrate(_) => self.rates.preempt,
                Choice::Cpu(_) => self.rates.cpu / (point.options.len() as f64),
            };
            if roll < rate {
                return Decision::Take(i);
            }
            roll -= rate;
        }
        Decision::Take(0)
    }
}
