//! `kmap check`: explore scenarios within bounds.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use kmap_check::search::{Bfs, Dfs, Pct, Random};
use kmap_check::{Options, Scenario, Shard, Strategy, builtin};
use kmap_sim::{Bounds, Changes, ConfigError, Settings};

use crate::error::{CliError, note};
use crate::report::{Checked, check_json, finish, print_checked, search, write_svg};

/// How `kmap check` chooses the executions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum StrategyName {
    /// Every execution within the bounds, fewest injected events first.
    #[default]
    Exhaustive,
    /// Executions with every decision drawn from the seed (interrupts too, unprobed).
    Random,
    /// Probabilistic concurrency testing: `--depth` branching events per execution at random
    /// choice points, interrupts probed everywhere.
    Pct,
}

/// How the exhaustive strategy remembers what it explored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// Stateful where the scenario has more than one CPU (and no `--shard` is given),
    /// stateless otherwise. `--shard` splits only the stateless engine's executions (the
    /// stateful search is spread with `kmap prove --mpi`).
    #[default]
    Auto,
    /// Every execution, remembering none (depth first, pruning provably equivalent branches).
    Stateless,
    /// Every state within the bounds, each explored once (breadth first, as `kmap prove` but
    /// under the bounds, with the reduction across CPUs, on one thread).
    Stateful,
}

#[derive(Parser, Clone, Debug, Default)]
pub struct Args {
    /// Scenario files, or names of built-in scenarios.
    pub scenarios: Vec<String>,
    /// List the built-in scenarios.
    #[arg(long)]
    pub list: bool,
    /// Every built-in scenario.
    #[arg(long, conflicts_with = "scenarios")]
    pub all: bool,
    /// The machine's settings, changed from each scenario's.
    #[command(flatten, next_help_heading = "Machine")]
    pub settings: Changes<Settings>,
    /// The bounds, changed from each scenario's.
    #[command(flatten, next_help_heading = "Bounds")]
    pub bounds: Changes<Bounds>,
    /// Explore every branch, even those provably equivalent to explored ones.
    #[arg(long)]
    pub no_prune: bool,
    /// How to choose the executions.
    #[arg(long, value_enum, default_value_t = StrategyName::Exhaustive)]
    pub strategy: StrategyName,
    /// The exhaustive strategy's engine.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    pub engine: Engine,
    /// Seed of the random and pct strategies.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Executions of the random and pct strategies.
    #[arg(long, default_value_t = 1000)]
    pub executions: u64,
    /// Branching events per execution of the pct strategy.
    #[arg(long, default_value_t = 2)]
    pub depth: u32,
    /// Explore only part I of N of the exhaustive search (from 0), e.g. `--shard 2/8`.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Write the counterexample as a swimlane picture.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Print a machine-readable result.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The engine the exhaustive strategy runs on `scenario`.
    fn engine(&self, scenario: &Scenario) -> Engine {
        match self.engine {
            Engine::Auto if self.shard.is_none() && scenario.config.machine.cpus > 1 => {
                Engine::Stateful
            }
            Engine::Auto => Engine::Stateless,
            engine => engine,
        }
    }

    fn strategy(&self, scenario: &Scenario) -> Box<dyn Strategy> {
        match self.strategy {
            StrategyName::Exhaustive if self.engine(scenario) == Engine::Stateful => {
                // One thread: the probe memo is shared between threads, so with more the
                // count of handlers probed (which `check` prints) would depend on timing.
                Box::new(Bfs {
                    bounded: true,
                    threads: Some(1),
                    ..Bfs::default()
                })
            }
            StrategyName::Exhaustive => Box::new(Dfs {
                shard: self.shard.unwrap_or(Shard::WHOLE),
            }),
            StrategyName::Random => Box::new(Random {
                seed: self.seed,
                executions: self.executions,
            }),
            StrategyName::Pct => Box::new(Pct {
                seed: self.seed,
                executions: self.executions,
                depth: self.depth,
            }),
        }
    }
}

/// A scenario by name, with the settings and bounds changed as given, validated.
pub fn prepare(
    name: &str,
    settings: &Changes<Settings>,
    bounds: &Changes<Bounds>,
) -> Result<Scenario, CliError> {
    let mut scenario = kmap_check::resolve(name)?;
    for text in &scenario.notes {
        note(&format!("{}: {text}", scenario.source));
    }
    settings.apply(&mut scenario.config.machine);
    bounds.apply(&mut scenario.config.bounds);
    // A scope sizes its stacks for its depth: with guard cells every mapping takes two cells,
    // so the stacks grow with them unless the cells are given too.
    if let Ok(scope) = name.parse::<kmap_check::scope::Scope>()
        && settings.get("cells").is_none()
    {
        let machine = &mut scenario.config.machine;
        machine.cells = scope.cells_on(machine);
    }
    scenario
        .config
        .validate()
        .map_err(|error| CliError::Config {
            scenario: scenario.source.clone(),
            error,
        })?;
    Ok(scenario)
}

pub fn main(args: &Args) -> Result<bool, CliError> {
    if args.shard.is_some() && args.engine == Engine::Stateful {
        return Err(CliError::ShardStateful);
    }
    if args.list {
        for (name, text) in builtin::BUILTINS {
            println!("{name:<24} {}", builtin::summary(text));
        }
        // The scripted edits of Linux's code this build made (`--impl linux --edit NAME`).
        let (made, failed) = kmap_linux::edits();
        match kmap_linux::version() {
            Some(version) => {
                println!("\nedits of Linux {version}'s code (--impl linux --edit NAME):")
            }
            None => println!(
                "\nno Linux code in this build: {}",
                kmap_linux::unavailable().unwrap_or("")
            ),
        }
        for (name, what) in made {
            println!("{name:<24} {what}");
        }
        for (name, why) in failed {
            println!("{name:<24} does not apply to this kernel: {why}");
        }
        return Ok(true);
    }
    let names: Vec<String> = if args.all {
        builtin::BUILTINS
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    } else {
        args.scenarios.clone()
    };
    if names.is_empty() {
        return Err(CliError::NoScenario);
    }
    let mut scenarios = Vec::new();
    for name in &names {
        let scenario = match prepare(name, &args.settings, &args.bounds) {
            // `--all` on another implementation runs what it can, and says what it cannot.
            Err(CliError::Config {
                scenario,
                error: error @ ConfigError::Implementation { .. },
            }) if args.all => {
                println!("skip {scenario:<24} {error}");
                continue;
            }
            prepared => prepared?,
        };
        if scenario.config.program.tasks.iter().any(|t| t.is_any()) {
            return Err(CliError::Endless {
                scenario: scenario.source,
            });
        }
        scenarios.push(scenario);
    }
    let options = Options {
        prune: !args.no_prune,
        ..Options::default()
    };
    let mut all_ok = true;
    let mut results = Vec::new();
    for scenario in scenarios {
        let exploration = search(&scenario, &mut *args.strategy(&scenario), options);
        let checked = Checked {
            scenario,
            changes: args.settings.clone(),
            exploration,
        };
        all_ok &= checked.ok();
        if args.json {
            results.push(check_json(&checked));
        } else {
            print_checked(&checked, true);
        }
        if let (Some(path), Some(ce)) = (&args.svg, &checked.exploration.counterexample) {
            write_svg(path, &checked, ce)?;
            if !args.json {
                println!("  picture written to {}", path.display());
            }
        }
    }
    finish(args.json, results, all_ok)
}
