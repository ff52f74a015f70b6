//! `kmap check` and `kmap replay`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use kmap_check::explore::{Counterexample, counterexample};
use kmap_check::timeline::Timeline;
use kmap_check::{
    Exploration, Overrides, ReplayId, Scenario, Search, Shard, Strategy, builtin, explore,
};
use kmap_sim::{Mutation, Protocol, Release, Verdict};

use crate::stress::parse_protocol;

/// Exit status for bad input or usage.
pub const BAD_INPUT: u8 = 2;

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
    /// Switch protocol: split, rfc-v1 or swap-after-current.
    #[arg(long = "switch", value_parser = parse_protocol)]
    pub switch: Option<Protocol>,
    /// Cells per task stack.
    #[arg(long)]
    pub slots: Option<usize>,
    /// Model a TLB (true) or not (false).
    #[arg(long)]
    pub tlb: Option<bool>,
    /// Debug guard cells.
    #[arg(long)]
    pub debug_guards: Option<bool>,
    /// Force-map lowmem frames.
    #[arg(long)]
    pub force_map: Option<bool>,
    /// Release order: lifo (Linux's rule) or any (a release below the top leaves a hole).
    #[arg(long, value_parser = parse_release)]
    pub release: Option<Release>,
    /// A machine mutation: drop-invalidations, no-bug-on or no-sched-out.
    #[arg(long, value_parser = parse_mutation)]
    pub mutation: Option<Mutation>,
    /// Strict checking: a hazard (a rule broken with no consequence yet) is a violation.
    #[arg(long)]
    pub strict: bool,
    /// Bound on preemptions per execution.
    #[arg(long)]
    pub preemptions: Option<u32>,
    /// How deep interrupts nest, 0 or 1 (they are probed at every point; old name: --irqs).
    #[arg(long, alias = "irqs")]
    pub irq_depth: Option<u32>,
    /// How deep NMIs nest, 0 or 1 (old name: --nmis).
    #[arg(long, alias = "nmis")]
    pub nmi_depth: Option<u32>,
    /// Bound on switches of the executing CPU per execution.
    #[arg(long)]
    pub cpu_switches: Option<u32>,
    /// Bound on lasting handlers (handlers that leave a trace, run as real events) per execution.
    #[arg(long)]
    pub lasting_handlers: Option<u32>,
    /// Explore every branch, even those provably equivalent to explored ones.
    #[arg(long)]
    pub no_prune: bool,
    /// exhaustive (default), random or pct.
    #[arg(long, default_value = "exhaustive")]
    pub strategy: String,
    /// Seed of the random and pct strategies.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Executions of the random and pct strategies.
    #[arg(long, default_value_t = 1000)]
    pub executions: u64,
    /// Branching events per execution of the pct strategy.
    #[arg(long, default_value_t = 2)]
    pub depth: u32,
    /// Explore only part I of N of the search (from 0), e.g. `--shard 2/8`.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Write the counterexample as a swimlane picture.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Print a machine-readable result.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_release(text: &str) -> Result<Release, String> {
    Release::from_name(text).ok_or_else(|| format!("`{text}` is not a release order (lifo, any)"))
}

pub fn parse_mutation(text: &str) -> Result<Mutation, String> {
    Mutation::from_name(text).ok_or_else(|| {
        format!("`{text}` is not a machine mutation (drop-invalidations, no-bug-on, no-sched-out)")
    })
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    parse_part(text).map(|(index, count)| Shard { index, count })
}

/// `I/N`: part I (from 0) of N, for `--shard`.
pub fn parse_part(text: &str) -> Result<(u32, u32), String> {
    let (index, count) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not I/N"))?;
    let index: u32 = index
        .parse()
        .map_err(|_| format!("`{index}` is not a shard number"))?;
    let count: u32 = count
        .parse()
        .map_err(|_| format!("`{count}` is not a shard count"))?;
    if count == 0 || index >= count {
        return Err(format!("shard {index}/{count}: I must be below N"));
    }
    Ok((index, count))
}

impl Args {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            switch: self.switch,
            slots: self.slots,
            tlb: self.tlb,
            debug_guards: self.debug_guards,
            force_map: self.force_map,
            release: self.release,
            mutation: self.mutation,
            strict: self.strict.then_some(true),
            preemptions: self.preemptions,
            irq_depth: self.irq_depth,
            nmi_depth: self.nmi_depth,
            cpu_switches: self.cpu_switches,
            lasting_handlers: self.lasting_handlers,
        }
    }

    fn search(&self) -> Result<Search, String> {
        let strategy = match self.strategy.as_str() {
            "exhaustive" => Strategy::Exhaustive,
            "random" => Strategy::Random {
                seed: self.seed,
                executions: self.executions,
            },
            "pct" => Strategy::Pct {
                seed: self.seed,
                executions: self.executions,
                depth: self.depth,
            },
            other => {
                return Err(format!(
                    "`{other}` is not a strategy (exhaustive, random, pct)"
                ));
            }
        };
        Ok(Search {
            strategy,
            shard: self.shard.unwrap_or(Shard::WHOLE),
            prune: !self.no_prune,
            ..Search::default()
        })
    }
}

/// A scenario explored, with what is needed to report it.
pub struct Checked {
    pub scenario: Scenario,
    pub overrides: Overrides,
    pub exploration: Exploration,
}

impl Checked {
    pub fn replay_id(&self, counterexample: &Counterexample) -> ReplayId {
        ReplayId {
            scenario: self.scenario_name(),
            overrides: self.overrides.clone(),
            schedule: counterexample.schedule.clone(),
        }
    }

    fn scenario_name(&self) -> String {
        if self.scenario.source.starts_with("built-in ") {
            self.scenario.name.clone()
        } else {
            self.scenario.source.clone()
        }
    }

    pub fn ok(&self) -> bool {
        self.exploration.verdict == self.scenario.expect
    }
}

pub fn main(args: &Args) -> ExitCode {
    if args.list {
        for (name, text) in builtin::BUILTINS {
            println!("{name:<24} {}", builtin::summary(text));
        }
        return ExitCode::SUCCESS;
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
        eprintln!("kmap check: name scenario files or built-ins (see --list), or --all");
        return ExitCode::from(BAD_INPUT);
    }
    let search = match args.search() {
        Ok(search) => search,
        Err(e) => {
            eprintln!("kmap check: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let mut scenarios = Vec::new();
    for name in &names {
        match kmap_check::resolve(name) {
            Ok(scenario) => scenarios.push(scenario),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(BAD_INPUT);
            }
        }
    }
    let overrides = args.overrides();
    let mut all_ok = true;
    let mut results = Vec::new();
    for mut scenario in scenarios {
        if scenario.config.program.tasks.iter().any(|t| t.is_any()) {
            eprintln!(
                "error: {}: its tasks with `any = true` run endless programs, which only a \
                 stateful search ends: use `kmap prove`",
                scenario.source
            );
            return ExitCode::from(BAD_INPUT);
        }
        for note in &scenario.notes {
            eprintln!("note: {}: {note}", scenario.source);
        }
        overrides.apply(&mut scenario.config);
        if let Err(e) = scenario.config.validate() {
            eprintln!("error: {}: {e}", scenario.source);
            return ExitCode::from(BAD_INPUT);
        }
        let exploration = run_with_progress(&scenario, search);
        let checked = Checked {
            scenario,
            overrides: overrides.clone(),
            exploration,
        };
        all_ok &= checked.ok();
        if args.json {
            results.push(json(&checked));
        } else {
            print_checked(&checked, true);
        }
        if let (Some(path), Some(ce)) = (&args.svg, &checked.exploration.counterexample) {
            if let Err(e) = write_svg(path, &checked, ce) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::from(BAD_INPUT);
            }
            if !args.json {
                println!("  picture written to {}", path.display());
            }
        }
    }
    finish(args.json, results, all_ok)
}

/// Print the JSON results (one object, or an array of several) when asked, and the exit status:
/// 0 when every verdict was the expected one, 1 when not.
pub fn finish(json: bool, mut results: Vec<serde_json::Value>, all_ok: bool) -> ExitCode {
    if json {
        let value = if results.len() == 1 {
            results.remove(0)
        } else {
            serde_json::Value::Array(results)
        };
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON"));
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Explore with a progress bar on a terminal once a run takes longer than a second.
pub fn run_with_progress(scenario: &Scenario, search: Search) -> Exploration {
    let terminal = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let exploration = explore(&scenario.config, search, |executions| {
        if !terminal || executions % 16 != 0 {
            return;
        }
        if bar.is_none() && start.elapsed() > Duration::from_secs(1) {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
            bar = Some(b);
        }
        if let Some(b) = &bar {
            let rate = executions as f64 / start.elapsed().as_secs_f64();
            b.set_message(format!(
                "{}: {executions} executions, {rate:.0} executions/s",
                scenario.name
            ));
            b.tick();
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    exploration
}

fn bounds_text(scenario: &Scenario) -> String {
    let b = &scenario.config.bounds;
    let n = |v: Option<u32>| v.map_or("any".to_string(), |v| v.to_string());
    let mut text = format!(
        "{} preemptions, {} lasting handlers; interrupts nest {} deep, NMIs {} deep",
        n(b.preemptions),
        n(b.lasting_handlers),
        n(b.irq_depth),
        n(b.nmi_depth)
    );
    if scenario.config.machine.cpus > 1 {
        text.push_str(&format!(", {} CPU switches", n(b.cpu_switches)));
    }
    let m = &scenario.config.machine;
    if let Some(mutation) = m.mutation {
        text.push_str(&format!("; machine mutation {mutation}"));
    }
    if scenario.config.strict {
        text.push_str("; strict (hazards are violations)");
    }
    text
}

pub fn print_checked(checked: &Checked, with_timeline: bool) {
    let e = &checked.exploration;
    let s = &checked.scenario;
    let mark = if checked.ok() { "ok  " } else { "FAIL" };
    println!(
        "{mark} {:<24} {:<19} {:<9} (expected {}) {} executions, {} pruned, {} probes, {:.2} s{}",
        s.name,
        s.config.machine.protocol.name(),
        e.verdict.name(),
        s.expect.name(),
        e.executions,
        e.pruned,
        e.stats.probes,
        e.elapsed.as_secs_f64(),
        if e.complete { " (complete)" } else { "" }
    );
    println!("     bounds: {}", bounds_text(s));
    let Some(ce) = &e.counterexample else {
        if !e.hazards.is_empty() {
            println!(
                "     {} hazard(s) survived with no consequence, first: {}",
                e.hazards.len(),
                e.hazards[0]
            );
        }
        return;
    };
    println!("     replay: kmap replay '{}'", checked.replay_id(ce));
    match ce.outcome.verdict() {
        Verdict::Violation => {
            println!(
                "     counterexample with {} injected event(s): {}",
                ce.events(),
                ce.outcome.violations[0]
            );
            for hazard in &ce.outcome.hazards {
                println!("     led there: hazard {hazard}");
            }
            if with_timeline {
                println!();
                print!("{}", Timeline::of(&ce.outcome).render(48));
                println!("\n     consequence: {}\n", ce.outcome.violations[0]);
            }
        }
        _ => {
            if let Some(refusal) = ce.outcome.refusals.first() {
                println!(
                    "     refused: {} (in {} on CPU {})",
                    refusal.message, refusal.context, refusal.cpu
                );
            }
        }
    }
}

pub fn write_svg(path: &PathBuf, checked: &Checked, ce: &Counterexample) -> std::io::Result<()> {
    let title = format!(
        "{} under {}: {} injected event(s) — kmap replay '{}'",
        checked.scenario.name,
        checked.scenario.config.machine.protocol.name(),
        ce.events(),
        checked.replay_id(ce)
    );
    let footer = ce
        .outcome
        .violations
        .first()
        .map(|v| format!("consequence: {v}"))
        .or_else(|| {
            ce.outcome
                .refusals
                .first()
                .map(|r| format!("refused: {}", r.message))
        })
        .unwrap_or_default();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        path,
        kmap_check::svg::render(&Timeline::of(&ce.outcome), &title, &footer),
    )
}

pub fn json(checked: &Checked) -> serde_json::Value {
    let e = &checked.exploration;
    let ce = e.counterexample.as_ref();
    serde_json::json!({
        "scenario": checked.scenario.name,
        "switch": checked.scenario.config.machine.protocol.name(),
        "verdict": e.verdict.name(),
        "expected": checked.scenario.expect.name(),
        "ok": checked.ok(),
        "executions": e.executions,
        "pruned": e.pruned,
        "probes": e.stats.probes,
        "complete": e.complete,
        "elapsed_ms": e.elapsed.as_millis() as u64,
        "schedule": ce.map(|c| c.schedule.to_string()),
        "replay": ce.map(|c| checked.replay_id(c).to_string()),
        "violation": ce.and_then(|c| c.outcome.violations.first()).map(|v| serde_json::json!({
            "kind": v.kind.name(),
            "cpu": v.cpu,
            "context": v.context.to_string(),
            "after": v.label,
            "message": v.message,
        })),
        "hazards": ce.map_or(&e.hazards, |c| &c.outcome.hazards).iter().map(|h| serde_json::json!({
            "rule": h.rule.to_string(),
            "cpu": h.cpu,
            "context": h.context.to_string(),
            "after": h.label,
            "message": h.message,
        })).collect::<Vec<_>>(),
        "refusal": ce.and_then(|c| c.outcome.refusals.first()).map(|r| r.message.clone()),
        "trace": ce.map(|c| c.outcome.trace.iter().map(|event| event.to_string()).collect::<Vec<_>>()),
    })
}

#[derive(Parser, Clone, Debug)]
pub struct ReplayArgs {
    /// What `kmap check` printed after `replay:`, e.g. 'restore-race@switch=rfc-v1#41:irq'.
    pub id: String,
    /// Write the run as a swimlane picture.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Print a machine-readable result.
    #[arg(long)]
    pub json: bool,
}

pub fn replay_main(args: &ReplayArgs) -> ExitCode {
    let id: ReplayId = match args.id.parse() {
        Ok(id) => id,
        Err(e) => {
            eprintln!("kmap replay: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let mut scenario = match kmap_check::resolve(&id.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    id.overrides.apply(&mut scenario.config);
    if let Err(e) = scenario.config.validate() {
        eprintln!("error: {}: {e}", scenario.source);
        return ExitCode::from(BAD_INPUT);
    }
    let start = Instant::now();
    let ce = counterexample(&scenario.config, id.schedule.clone());
    let exploration = Exploration {
        verdict: ce.outcome.verdict(),
        executions: 1,
        pruned: 0,
        stats: ce.outcome.stats,
        elapsed: start.elapsed(),
        counterexample: Some(ce),
        complete: false,
        hazards: Vec::new(),
        final_states: Default::default(),
    };
    let checked = Checked {
        scenario,
        overrides: id.overrides.clone(),
        exploration,
    };
    let ce = checked
        .exploration
        .counterexample
        .as_ref()
        .expect("set above");
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json(&checked)).expect("JSON")
        );
    } else {
        print!("{}", Timeline::of(&ce.outcome).render(48));
        println!("verdict: {}", ce.outcome.verdict());
        for hazard in &ce.outcome.hazards {
            println!("hazard: {hazard}");
        }
        for violation in &ce.outcome.violations {
            println!("consequence: {violation}");
        }
        for refusal in &ce.outcome.refusals {
            println!("refused: {}", refusal.message);
        }
    }
    if let Some(path) = &args.svg
        && let Err(e) = write_svg(path, &checked, ce)
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        return ExitCode::from(BAD_INPUT);
    }
    match ce.outcome.verdict() {
        Verdict::Pass => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
