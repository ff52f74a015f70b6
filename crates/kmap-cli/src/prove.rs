//! `kmap prove`: every execution of a scope, with no bound on preemption.

use std::path::PathBuf;

use clap::Parser;
use kmap_check::scope::Scope;
use kmap_check::search::bfs::{self, Bfs};
use kmap_check::{Options, Shard};
use kmap_sim::{Bounds, Changes, Settings};
use serde_json::Value;

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
    /// The tasks of the scope may also map through kmap_atomic (preemption and page faults off
    /// until that mapping's unmap; no yield meanwhile).
    #[arg(long)]
    pub map_atomic: bool,
    /// The machine's settings (for a scope, `--cpus` is its CPUs), changed from each
    /// scenario's.
    #[command(flatten, next_help_heading = "Machine")]
    pub settings: Changes<Settings>,
    /// Switch the executing CPU anywhere, not only before a program's step (no reduction).
    #[arg(long)]
    pub no_reduce: bool,
    /// Remember every state as it is, not by its canonical form under task symmetry (tasks
    /// that run the same nondeterministic program over pages of their own are
    /// interchangeable: of states that differ only in which is which, one is explored).
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
    /// Explore only part I of N (from 0), e.g. `--shard 2/8`; `kmap merge` combines the parts.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// With --json: list the key of every state remembered, for `kmap merge` to count distinct
    /// states over shards.
    #[arg(long)]
    pub keys: bool,
    /// Write the counterexample as a swimlane picture.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Print a machine-readable result.
    #[arg(long)]
    pub json: bool,
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
            atomic: args.map_atomic,
        };
        scope.check()?;
        vec![scope.to_string()]
    } else {
        args.scenarios.clone()
    };
    if let Some(limit) = args.max_memory {
        let needed = bfs::resident_bytes() + (16 << 20);
        if limit < needed {
            return Err(CliError::MemoryTooSmall {
                limit_mib: limit >> 20,
                needed_mib: needed >> 20,
            });
        }
    }
    let mut all_ok = true;
    let mut results = Vec::new();
    for name in names {
        let scenario = prepare(&name, &changes, &Changes::<Bounds>::default())?;
        if let Some(limit) = args.max_memory {
            let needed = bfs::memory_lower_bound(&scenario.config);
            if needed > limit as f64 {
                return Err(CliError::CannotFit {
                    name: scenario.name,
                    limit_mib: limit >> 20,
                    states: bfs::states_lower_bound(&scenario.config),
                    needed_mib: needed / (1u64 << 20) as f64,
                });
            }
        }
        let mut strategy = Bfs {
            reduce: !args.no_reduce,
            symmetry: !args.no_symmetry,
            threads: args.threads.map(|n| n as usize),
            max_states: args.max_states,
            max_memory: args.max_memory,
            collect_keys: args.keys,
            shard: args.shard,
            ..Bfs::default()
        };
        let exploration = search(&scenario, &mut strategy, Options::default());
        let checked = Checked {
            scenario,
            changes: changes.clone(),
            exploration,
        };
        all_ok &= checked.ok() && (checked.exploration.complete || args.shard.is_some());
        if args.json {
            let mut value = proof_json(&checked);
            value["shard"] = args
                .shard
                .map(|s| serde_json::json!({ "index": s.index, "count": s.count }))
                .unwrap_or(Value::Null);
            if args.keys {
                value["state_keys"] = checked
                    .exploration
                    .states
                    .iter()
                    .flat_map(|s| s.keys.iter())
                    .map(|k| Value::String(format!("{k:032x}")))
                    .collect();
            }
            results.push(value);
        } else {
            print_proof(&checked);
        }
        if let (Some(path), Some(ce)) = (&args.svg, &checked.exploration.counterexample) {
            write_svg(path, &checked, ce)?;
        }
    }
    finish(args.json, results, all_ok)
}
