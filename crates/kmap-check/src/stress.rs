//! Random runs: many tasks on several CPUs, interrupts and NMIs that map, every decision drawn
//! from a seed.
//!
//! Each execution is a fresh random [`workload`] run with a [`RandomChooser`]; both follow from
//! the execution's own seed, which follows from the stress seed and the execution's number. A
//! violation is reported with that seed, which [`run_one`] replays exactly (with a trace).

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use kmap::{CpuId, Frame};
use kmap_sim::{
    Alphabet, Api, Bounds, Config, Implementation, Op, Outcome, Program, Protocol, Release,
    RunOptions, Settings, Stats, Task, Verdict,
};

use crate::search::random::{RandomChooser, Rates};

/// Frames of a stress machine, and how many are lowmem.
const FRAMES: u64 = 512;
const LOWMEM: u64 = 64;
/// Frames each context owns (so that tags are unambiguous).
const FRAMES_PER_TASK: u64 = 8;

/// A random workload for `cpus` CPUs: two to four tasks per CPU that map up to three nested
/// frames (some lowmem, some atomic), write and check them, yield, sleep, migrate and fork while
/// holding them; interrupt and NMI handlers that map and check. One seed in four gives guard
/// cells, one force-map, one release in any order (the tasks release a random mapping; half of
/// those seeds with guard cells). On Linux's code, which has neither release in any order nor
/// the crate's safe API, every release is LIFO and every map goes through the raw entry points.
pub fn workload(seed: u64, cpus: usize, implementation: Implementation) -> Config {
    let mut rng = SmallRng::seed_from_u64(seed);
    let linux = implementation == Implementation::Linux;
    let (cells, guard_cells, force_map, release) = match seed % 4 {
        1 => (33, true, false, Release::Lifo),
        2 => (16, false, true, Release::Lifo),
        3 if linux => (16, false, false, Release::Lifo),
        3 if (seed / 4).is_multiple_of(2) => (16, false, false, Release::Any),
        3 => (33, true, false, Release::Any),
        _ => (16, false, false, Release::Lifo),
    };
    let mut tasks = Vec::new();
    for cpu in 0..cpus {
        for _ in 0..rng.random_range(2..=4) {
            let id = tasks.len() as u64;
            let frames = [
                id % LOWMEM, // one lowmem frame: the fast path (or a slot under force-map)
                LOWMEM + id * FRAMES_PER_TASK,
                LOWMEM + id * FRAMES_PER_TASK + 1,
                LOWMEM + id * FRAMES_PER_TASK + 2,
                LOWMEM + id * FRAMES_PER_TASK + 3,
            ]
            .map(Frame::new);
            tasks.push(Task {
                name: format!("T{id}"),
                cpu: CpuId(cpu as u32),
                ops: task_program(&mut rng, &frames, cpus, release),
                any: Vec::new(),
                pinned: false,
                alphabet: Alphabet::default(),
                // Every other task maps through the safe API where its program can (LIFO).
                api: if release == Release::Lifo && id % 2 == 1 && !linux {
                    Api::Guard
                } else {
                    Api::Raw
                },
            });
        }
    }
    // Handlers only read: two handlers on different CPUs may map the same frame at once.
    let irq_frame = Frame::new(FRAMES - 2);
    let nmi_frame = Frame::new(FRAMES - 1);
    Config {
        machine: Settings {
            implementation,
            cpus,
            frames: FRAMES,
            lowmem: LOWMEM,
            cells,
            switch: Protocol::Split,
            guard_cells,
            force_map,
            release,
            tlb: true,
            mutation: None,
            edit: None,
            strict: false,
        },
        bounds: Bounds::UNLIMITED,
        program: Program {
            tasks,
            irq: vec![
                Op::Map(irq_frame),
                Op::Check,
                Op::Map(Frame::new(3)),
                Op::Check,
                Op::Unmap,
                Op::Unmap,
            ],
            nmi: vec![Op::MapPfn(nmi_frame), Op::Check, Op::Unmap],
            irq_api: Api::Raw,
            // The NMI maps through the safe API: its `Local` and `Mapping` in a handler.
            nmi_api: if linux { Api::Raw } else { Api::Guard },
        },
    }
}

fn task_program(rng: &mut SmallRng, frames: &[Frame], cpus: usize, release: Release) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut held: Vec<(Frame, bool)> = Vec::new(); // (frame, atomic)
    // The task's stack as the crate keeps it: a cell per mapping made, `false` once released
    // below the top (a hole), popped with the top. Holes use cells, so the program maps only
    // while the stack, holes included, is at most three deep: the cells above stay free for
    // the handlers, whose overflow is a crash.
    let mut cells: Vec<bool> = Vec::new();
    let length = rng.random_range(12..=40);
    while ops.len() < length {
        let atomic = held.iter().any(|&(_, a)| a);
        match rng.random_range(0..100) {
            0..=24 if held.len() < 3 && cells.len() < 3 => {
                let frame = frames[held.len() + rng.random_range(0..=1)];
                let (op, is_atomic) = match rng.random_range(0..10) {
                    0 => (Op::MapAtomic(frame), true),
                    1 => (Op::MapPfn(frame), false),
                    _ => (Op::Map(frame), false),
                };
                if held.iter().any(|&(f, _)| f == frame) {
                    continue;
                }
                ops.push(op);
                held.push((frame, is_atomic));
                cells.push(true);
            }
            25..=39 if !held.is_empty() => {
                ops.push(Op::Write(held[rng.random_range(0..held.len())].0))
            }
            40..=54 => ops.push(Op::Check),
            55..=64 if !atomic => ops.push(Op::Yield),
            65..=69 if !atomic => ops.push(Op::Sleep),
            70..=71 if !atomic && cpus > 1 => {
                ops.push(Op::Migrate(CpuId(rng.random_range(0..cpus) as u32)))
            }
            72 if !atomic => ops.push(Op::Fork),
            // In any order: a random mapping, unless an atomic one is held (atomic sections
            // nest, so those stay LIFO).
            73..=99 if !held.is_empty() && release == Release::Any && !atomic => {
                let at = rng.random_range(0..held.len());
                let (frame, _) = held.remove(at);
                release_cell(&mut cells, at);
                ops.push(Op::UnmapFrame(frame));
            }
            73..=99 if !held.is_empty() => {
                held.pop();
                release_cell(&mut cells, held.len());
                ops.push(Op::Unmap);
            }
            _ => {}
        }
    }
    for _ in held.drain(..).rev() {
        ops.push(Op::Check);
        ops.push(Op::Unmap);
    }
    ops
}

/// Release the `at`-th live cell of the stack model (a hole unless it is the top; the top pops
/// with the holes beneath it).
fn release_cell(cells: &mut Vec<bool>, at: usize) {
    let index = cells
        .iter()
        .enumerate()
        .filter(|(_, live)| **live)
        .nth(at)
        .map(|(i, _)| i)
        .expect("a live cell per held mapping");
    cells[index] = false;
    while cells.last() == Some(&false) {
        cells.pop();
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The stress seed.
    pub seed: u64,
    /// The switch protocol.
    pub protocol: Protocol,
    /// CPUs of every machine.
    pub cpus: usize,
    /// Stop after this many calls of the crate's map and unmap...
    pub kmap_ops: u64,
    /// ... or after this long, whichever comes first.
    pub time: Option<Duration>,
    /// How often events are injected.
    pub rates: Rates,
    /// The code under test.
    pub implementation: Implementation,
}

/// The first violation a stress run found.
#[derive(Clone, Debug)]
pub struct Found {
    /// The seed of the execution that found it ([`run_one`] replays it).
    pub execution_seed: u64,
    /// That execution's outcome.
    pub outcome: Outcome,
}

/// What a stress run did.
#[derive(Clone, Debug)]
pub struct Report {
    /// Executions run.
    pub executions: u64,
    /// Everything they did, added up.
    pub stats: Stats,
    /// How long it took.
    pub elapsed: Duration,
    /// The first violation, if any (the run stops there).
    pub found: Option<Found>,
}

/// The seed of execution `n` of a stress run with seed `seed` (SplitMix64).
pub fn execution_seed(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Run the execution with this seed, as a stress run with these options would.
pub fn run_one(execution_seed: u64, options: &Options, run: RunOptions) -> Outcome {
    let mut config = workload(execution_seed, options.cpus, options.implementation);
    config.machine.switch = options.protocol;
    let chooser = RandomChooser::new(execution_seed ^ 0x0C40_1CE5, options.rates);
    kmap_sim::run_with(&config, chooser, run).expect("generated workloads are valid")
}

/// Run random executions until the operation count or the time is reached, or a violation is
/// found. `progress` is called after every execution with the totals so far.
pub fn stress(options: &Options, mut progress: impl FnMut(u64, &Stats)) -> Report {
    let start = Instant::now();
    let mut stats = Stats::default();
    let mut executions = 0;
    let mut found = None;
    while stats.kmap_ops < options.kmap_ops && options.time.is_none_or(|t| start.elapsed() < t) {
        let seed = execution_seed(options.seed, executions);
        let outcome = run_one(seed, options, RunOptions::default());
        executions += 1;
        stats.add(&outcome.stats);
        progress(executions, &stats);
        if outcome.verdict() != Verdict::Pass {
            found = Some(Found {
                execution_seed: seed,
                outcome,
            });
            break;
        }
    }
    Report {
        executions,
        stats,
        elapsed: start.elapsed(),
        found,
    }
}
