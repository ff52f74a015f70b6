//! `kmap prove`: every execution of a scope, with no bound on preemption.

use std::path::PathBuf;

use clap::Parser;
use kmap_check::scope::Scope;
use kmap_check::search::bfs::{self, Bfs};
use kmap_check::search::{Partitioned, Ranks};
use kmap_check::{Options, Scenario};
use kmap_sim::{Alphabet, Api, Bounds, Changes, Settings};

use crate::check::prepare;
use crate::error::CliError;
use crate::report::{Checked, finish, print_proof, proof_json, search, write_svg};

#[derive(Parser, Clone, Debug)]
pub struct Args {
    /// Scenario files or built-in names (tasks with `any = true` run endless nondeterministic
    /// programs); without any, the scope given by --cpus, --tasks and --depth.
    pub scenarios: Vec<String>,
    /// Tasks of the scope, each an endless mix of map, check, unmap and yield.
    #[arg(long, default_value_t = 2)]
    pub tasks: usize,
    /// How many pages each task maps at most.
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// No interrupt handler that maps.
    #[arg(long)]
    pub no_irq: bool,
    /// No NMI handler that maps.
    #[arg(long)]
    pub no_nmi: bool,
    /// Pages each handler of the scope maps, nested (1 or 2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub handler_pages: u8,
    /// What the tasks of the scope may do besides map, check, unmap, release and yield, a comma
    /// list: `atomic` (map through kmap_atomic: preemption and page faults off until that
    /// mapping's unmap), `write` (a fresh value through the most recent mapping), `irq-off`
    /// (interrupts off and on again around any steps), `sleep`, `lowmem` (a lowmem page of the
    /// task's own besides its highmem ones); or `base` for none of them (the
    /// alphabet of the SPIN model). The default is each addition that costs under twice the
    /// base alphabet's time on 1/3/2. A scenario file names its tasks' alphabets itself.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_ALPHABET, conflicts_with = "scenarios")]
    pub alphabet: Vec<Letter>,
    /// The crate's API the tasks and the handlers of the scope map through: `raw` (kmap::raw),
    /// `guard` (the safe API: a Local per context, each map a Mapping nested in the one
    /// before, unmap drops the innermost; no release in any order) or `scope` (with
    /// `--release any`: a Scope per context, each map a ScopedMapping, released in any order).
    #[arg(long, value_enum, default_value_t = Api::Raw, conflicts_with = "scenarios")]
    pub api: Api,
    /// The machine's settings (for a scope, `--cpus` is its CPUs), changed from each
    /// scenario's.
    #[command(flatten, next_help_heading = "Machine")]
    pub settings: Changes<Settings>,
    /// Switch the executing CPU anywhere, not only before a program's step (no reduction).
    #[arg(long)]
    pub no_reduce: bool,
    /// Remember every state as it is, not by its canonical form under task and CPU symmetry
    /// (tasks that run the same nondeterministic program over pages of their own are
    /// interchangeable, and so are the CPUs by rotation where no program names one: of states
    /// that differ only in which is which, one is explored).
    #[arg(long)]
    pub no_symmetry: bool,
    /// Threads that run executions (default: one per core). Every figure, the verdict and the
    /// counterexample are the same for any number.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Stop after remembering this many states (the verdict is then incomplete).
    #[arg(long)]
    pub max_states: Option<u64>,
    /// Stop when resident memory passes this much (e.g. `8G`, `512M`): the verdict is then
    /// incomplete, with the figures so far, never an out-of-memory kill.
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Spread the states over the ranks of the MPI job this process is one of
    /// (`mpirun -np N kmap prove --mpi …`, or `srun`): each rank owns the states whose key
    /// falls to it, and the verdict, the figures and the counterexample are those of one
    /// process. Rank 0 prints. Each rank runs one thread unless --threads says otherwise.
    /// Needs a build with `--features mpi`.
    #[arg(long)]
    pub mpi: bool,
    /// The most bytes a rank sends in one round of an exchange under --mpi (default 1 GiB;
    /// MPI counts in 32-bit integers). Small values are for tests of the rounds.
    #[arg(long, hide = true, default_value_t = 1 << 30, value_parser = clap::value_parser!(u32).range(1..=(1 << 30)))]
    pub mpi_round_bytes: u32,
    /// Write the counterexample as a swimlane picture.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Print a machine-readable result.
    #[arg(long)]
    pub json: bool,
}

/// The additions to the tasks' alphabet `kmap prove` makes unless told otherwise.
pub const DEFAULT_ALPHABET: &str = "write,irq-off,sleep";

/// An addition to the alphabet of a scope's tasks, or none.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Letter {
    /// No addition.
    Base,
    /// `kmap_atomic`.
    Atomic,
    /// Writes.
    Write,
    /// Interrupts off and on.
    IrqOff,
    /// Sleep.
    Sleep,
    /// A lowmem page.
    Lowmem,
}

/// The alphabet `letters` name (`base` adds nothing).
fn alphabet(letters: &[Letter]) -> Alphabet {
    let mut alphabet = Alphabet::default();
    for letter in letters {
        match letter {
            Letter::Base => {}
            Letter::Atomic => alphabet.atomic = true,
            Letter::Write => alphabet.write = true,
            Letter::IrqOff => alphabet.irq_off = true,
            Letter::Sleep => alphabet.sleep = true,
            Letter::Lowmem => alphabet.lowmem = true,
        }
    }
    alphabet
}

/// Why text is not a size.
#[derive(Debug, thiserror::Error)]
pub enum SizeError {
    /// No number.
    #[error("`{text}` is not a size (such as 8G, 512M or 1000000)")]
    Number {
        /// The text.
        text: String,
    },
    /// A unit that is not K, M or G.
    #[error("`{text}`: the unit is K, M or G")]
    Unit {
        /// The text.
        text: String,
    },
}

/// A size in bytes, with an optional unit: `8G`, `512M`, `1000000`.
fn parse_size(text: &str) -> Result<u64, SizeError> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| SizeError::Number { text: text.into() })?;
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return Err(SizeError::Unit { text: text.into() }),
    };
    Ok(number << shift)
}

pub fn main(args: &Args) -> Result<bool, CliError> {
    let mut changes = args.settings.clone();
    let names = if args.scenarios.is_empty() {
        // A scope's CPUs are in its name, not a change of its settings.
        let cpus = changes.remove("cpus").map_or(Ok(1), |n| n.parse::<usize>());
        let scope = Scope {
            cpus: cpus.unwrap_or(0),
            tasks: args.tasks,
            depth: args.depth,
            irq: !args.no_irq,
            nmi: !args.no_nmi,
            handler_pages: args.handler_pages.into(),
            alphabet: alphabet(&args.alphabet),
            api: args.api,
        };
        scope.check()?;
        vec![scope.to_string()]
    } else {
        args.scenarios.clone()
    };
    let threads = args.threads.map(|n| n as usize).or(args.mpi.then_some(1));
    let ranks = ranks(
        args.mpi,
        threads.unwrap_or(0),
        args.mpi_round_bytes as usize,
    )?;
    let fits = memory_fits(args.max_memory);
    agreed(&ranks, fits)?;
    // Only the first rank of a job speaks: every rank has the whole result.
    let speaks = ranks.as_ref().is_none_or(|r| r.rank() == 0);
    let mut all_ok = true;
    let mut results = Vec::new();
    for name in names {
        let prepared =
            prepare(&name, &changes, &Changes::<Bounds>::default()).and_then(|scenario| {
                scenario_fits(&scenario, args.max_memory)?;
                Ok(scenario)
            });
        let scenario = agreed(&ranks, prepared)?;
        let bfs = Bfs {
            reduce: !args.no_reduce,
            symmetry: !args.no_symmetry,
            threads,
            max_states: args.max_states,
            max_memory: args.max_memory,
            ..Bfs::default()
        };
        let exploration = match &ranks {
            Some(ranks) => {
                let mut strategy = Partitioned {
                    bfs,
                    ranks: ranks.as_ref(),
                };
                if speaks {
                    search(&scenario, &mut strategy, Options::default())
                } else {
                    kmap_check::explore(&scenario.config, &mut strategy, Options::default(), |_| {})
                }
            }
            None => search(&scenario, &mut bfs.clone(), Options::default()),
        };
        let checked = Checked {
            scenario,
            changes: changes.clone(),
            exploration,
        };
        all_ok &= checked.ok() && checked.exploration.complete;
        let mut written = Ok(());
        if speaks {
            if args.json {
                results.push(proof_json(&checked));
            } else {
                print_proof(&checked);
            }
            if let (Some(path), Some(ce)) = (&args.svg, &checked.exploration.counterexample) {
                written = write_svg(path, &checked, ce);
            }
        }
        // Only the first rank writes the picture; if it cannot, no rank goes on to the next
        // scenario's search without it.
        agreed(&ranks, written)?;
    }
    if !speaks {
        return Ok(all_ok);
    }
    finish(args.json, results, all_ok)
}

/// Whether `--max-memory` leaves room for the checker before its first state.
fn memory_fits(max_memory: Option<u64>) -> Result<(), CliError> {
    if let Some(limit) = max_memory {
        let needed = bfs::resident_bytes() + (16 << 20);
        if limit < needed {
            return Err(CliError::MemoryTooSmall {
                limit_mib: limit >> 20,
                needed_mib: needed >> 20,
            });
        }
    }
    Ok(())
}

/// Whether `scenario`'s fewest states can fit in `--max-memory`.
fn scenario_fits(scenario: &Scenario, max_memory: Option<u64>) -> Result<(), CliError> {
    if let Some(limit) = max_memory {
        let needed = bfs::memory_lower_bound(&scenario.config);
        if needed > limit as f64 {
            return Err(CliError::CannotFit {
                name: scenario.name.clone(),
                limit_mib: limit >> 20,
                states: bfs::states_lower_bound(&scenario.config),
                needed_mib: needed / (1u64 << 20) as f64,
            });
        }
    }
    Ok(())
}

/// `result`, once every rank of the job knows whether each of them has one: a rank that
/// stopped alone would leave the others waiting for it in the search's first exchange, so if
/// any rank failed, every rank stops (with its own error, or [`CliError::OtherRank`]).
/// Without MPI, `result` as it is.
fn agreed<T>(ranks: &Option<Box<dyn Ranks>>, result: Result<T, CliError>) -> Result<T, CliError> {
    let Some(ranks) = ranks else {
        return result;
    };
    let failed = ranks
        .all_gather(vec![u8::from(result.is_err())])
        .iter()
        .any(|m| m == &[1]);
    match result {
        Ok(_) if failed => Err(CliError::OtherRank),
        result => result,
    }
}

/// The ranks of the MPI job, with `--mpi`, for a search of `threads` threads in each.
#[cfg(feature = "mpi")]
fn ranks(mpi: bool, threads: usize, round: usize) -> Result<Option<Box<dyn Ranks>>, CliError> {
    if !mpi {
        return Ok(None);
    }
    Ok(Some(Box::new(crate::mpi::Mpi::init(threads, round)?)))
}

/// With `--mpi`, the error that says how to build with MPI.
#[cfg(not(feature = "mpi"))]
fn ranks(mpi: bool, _threads: usize, _round: usize) -> Result<Option<Box<dyn Ranks>>, CliError> {
    if mpi { Err(CliError::NoMpi) } else { Ok(None) }
}
