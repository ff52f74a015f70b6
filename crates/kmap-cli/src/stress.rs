//! `kmap stress`.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use kmap_check::search::random::Rates;
use kmap_check::stress::{self, Options, Report};
use kmap_sim::{Implementation, Protocol, RunOptions, Verdict};

use crate::error::CliError;

#[derive(Parser, Clone, Debug)]
pub struct Args {
    /// The seed every execution's program and choices follow from.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The switch protocol.
    #[arg(long = "switch", value_enum, default_value_t = Protocol::Split)]
    pub protocol: Protocol,
    /// CPUs of the machine.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=8))]
    pub cpus: u64,
    /// Stop after this many calls of the crate's map and unmap.
    #[arg(long, default_value_t = 10_000_000)]
    pub ops: u64,
    /// Stop after this many seconds, if that comes first.
    #[arg(long)]
    pub time: Option<f64>,
    /// Replay one execution, by the seed a violation report printed, with its full trace.
    #[arg(long, value_parser = parse_seed)]
    pub replay: Option<u64>,
    /// The code under test: the crate, or Linux's mm/highmem.c.
    #[arg(id = "impl", long = "impl", value_enum, default_value_t = Implementation::Crate)]
    pub implementation: Implementation,
    /// Print a machine-readable result (the figures, and a violation with the seed and the
    /// schedule that replay it).
    #[arg(long)]
    pub json: bool,
}

fn parse_seed(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("`{text}` is not a seed (decimal, or hex with 0x)"))
}

impl Args {
    pub fn options(&self) -> Options {
        Options {
            seed: self.seed,
            protocol: self.protocol,
            cpus: self.cpus as usize,
            kmap_ops: self.ops,
            time: self.time.map(Duration::from_secs_f64),
            rates: Rates::default(),
            implementation: self.implementation,
        }
    }
}

/// Stress; whether no violation was found.
pub fn main(args: &Args) -> Result<bool, CliError> {
    let options = args.options();
    if let Some(seed) = args.replay {
        return Ok(replay(seed, &options));
    }
    if args.json {
        let report = run(&options);
        println!(
            "{}",
            serde_json::to_string_pretty(&json(&report, &options)).expect("JSON")
        );
        return Ok(report.found.is_none());
    }
    println!(
        "kmap stress: impl {}, switch {}, {} CPU(s), seed {}, up to {} kmap operations{}",
        options.implementation,
        options.protocol,
        options.cpus,
        options.seed,
        options.kmap_ops,
        options
            .time
            .map(|t| format!(" or {:.0} s", t.as_secs_f64()))
            .unwrap_or_default()
    );
    let report = run(&options);
    print_report(&report);
    if let Some(found) = &report.found {
        print_found(found, &options);
    }
    Ok(report.found.is_none())
}

/// Run with a progress bar on a terminal, and nothing extra otherwise.
pub fn run(options: &Options) -> Report {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(options.kmap_ops);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} kmap ops, {per_sec}, {msg}")
                .expect("a valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let report = stress::stress(options, |executions, stats| {
        if executions % 64 == 0 {
            bar.set_position(stats.kmap_ops);
            bar.set_message(format!("{executions} executions"));
        }
    });
    bar.finish_and_clear();
    report
}

/// The figures of a stress run, and what it found, as JSON.
pub fn json(report: &Report, options: &Options) -> serde_json::Value {
    let s = &report.stats;
    let found = report.found.as_ref().map(|found| {
        let outcome = &found.outcome;
        serde_json::json!({
            "execution_seed": format!("{:#x}", found.execution_seed),
            "verdict": outcome.verdict().name(),
            "violation": outcome.violations.first().map(|v| serde_json::json!({
                "kind": v.kind.name(),
                "cpu": v.cpu.0,
                "context": v.context.to_string(),
                "after": v.label,
                "message": v.message,
            })),
            "refusal": outcome.refusals.first().map(|r| r.message.clone()),
            "schedule": outcome.schedule.to_string(),
            "replay": format!(
                "kmap stress --impl {} --switch {} --cpus {} --replay {:#x}",
                options.implementation, options.protocol, options.cpus, found.execution_seed
            ),
        })
    });
    serde_json::json!({
        "seed": options.seed,
        "impl": options.implementation.to_string(),
        "switch": options.protocol.to_string(),
        "cpus": options.cpus,
        "executions": report.executions,
        "kmap_ops": s.kmap_ops,
        "switches": s.switches,
        "preemptions": s.preemptions,
        "irqs": s.irqs,
        "nmis": s.nmis,
        "elapsed_ms": report.elapsed.as_millis() as u64,
        "found": found,
    })
}

pub fn print_report(report: &Report) {
    let s = &report.stats;
    let seconds = report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{:>11} {:>12} {:>10} {:>12} {:>10} {:>10} {:>11} {:>12}",
        "executions",
        "kmap ops",
        "switches",
        "preemptions",
        "irqs",
        "nmis",
        "violations",
        "kmap ops/s"
    );
    println!(
        "{:>11} {:>12} {:>10} {:>12} {:>10} {:>10} {:>11} {:>12.0}",
        report.executions,
        s.kmap_ops,
        s.switches,
        s.preemptions,
        s.irqs,
        s.nmis,
        report.found.is_some() as u32,
        s.kmap_ops as f64 / seconds
    );
    println!("elapsed {:.2} s", report.elapsed.as_secs_f64());
}

pub fn print_found(found: &stress::Found, options: &Options) {
    let outcome = &found.outcome;
    println!();
    match outcome.verdict() {
        Verdict::Violation => println!("VIOLATION: {}", outcome.violations[0]),
        _ => println!("REFUSED: {}", outcome.refusals[0].message),
    }
    println!(
        "execution seed {:#x}; its schedule: {}",
        found.execution_seed, outcome.schedule
    );
    println!(
        "replay it with its trace: kmap stress --impl {} --switch {} --cpus {} --replay {:#x}",
        options.implementation, options.protocol, options.cpus, found.execution_seed
    );
    let traced = stress::run_one(
        found.execution_seed,
        options,
        RunOptions {
            trace: true,
            ..RunOptions::default()
        },
    );
    let tail = traced.trace.len().saturating_sub(40);
    println!("the last {} steps:", traced.trace.len() - tail);
    for event in &traced.trace[tail..] {
        println!("  {event}");
    }
}

/// Replay one execution of a stress run; whether it was clean.
fn replay(seed: u64, options: &Options) -> bool {
    let outcome = stress::run_one(
        seed,
        options,
        RunOptions {
            trace: true,
            ..RunOptions::default()
        },
    );
    for event in &outcome.trace {
        println!("{event}");
    }
    println!("verdict: {}", outcome.verdict());
    for violation in &outcome.violations {
        println!("  {violation}");
    }
    println!("schedule: {}", outcome.schedule);
    outcome.verdict() == Verdict::Pass
}
