//! `kmap bench`: how fast the explorer and the stress runner are, on this machine. Figures, not
//! tests: each scenario is explored several times and the median is printed.

use std::time::{Duration, Instant};

use clap::Parser;
use kmap_check::search::Dfs;
use kmap_check::search::random::Rates;
use kmap_check::stress::{Options, stress};
use kmap_check::{builtin, explore};
use kmap_sim::{Protocol, Verdict};

use crate::error::CliError;

#[derive(Parser, Clone, Debug)]
pub struct Args {
    /// Runs of each measurement (the median is printed).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// kmap operations of the stress measurement.
    #[arg(long, default_value_t = 2_000_000)]
    pub stress_ops: u64,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Measure; always true (figures, not a verdict).
pub fn main(args: &Args) -> Result<bool, CliError> {
    let runs = args.runs.max(1);
    println!("kmap bench: the explorer on every built-in scenario (median of {runs} runs)\n");
    println!(
        "{:<24} {:<19} {:<10} {:>11} {:>12} {:>14}  what the time is",
        "scenario", "switch", "verdict", "executions", "time (ms)", "executions/s"
    );
    let mut rows: Vec<(String, Protocol)> = builtin::BUILTINS
        .iter()
        .map(|(name, _)| (name.to_string(), Protocol::Split))
        .collect();
    rows.iter_mut().for_each(|row| {
        row.1 = kmap_check::resolve(&row.0)
            .expect("built-in")
            .config
            .machine
            .switch
    });
    for (name, protocol) in rows {
        let config = kmap_check::resolve(&name).expect("built-in").config;
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..runs {
            let start = Instant::now();
            let found = explore(&config, &mut Dfs::default(), Default::default(), |_| {});
            times.push(start.elapsed());
            last = Some(found);
        }
        let found = last.expect("one run at least");
        let time = median(times);
        let what = match found.verdict {
            Verdict::Violation => "time to the first (shortest) counterexample",
            Verdict::Refused => "time to the refusal",
            Verdict::Pass => "time to exhaust the bounds",
        };
        println!(
            "{:<24} {:<19} {:<10} {:>11} {:>12.2} {:>14.0}  {what}",
            name,
            protocol.to_string(),
            found.verdict.name(),
            found.executions,
            time.as_secs_f64() * 1e3,
            found.executions as f64 / time.as_secs_f64().max(1e-9),
        );
    }
    println!(
        "\nkmap bench: random stress, {} kmap operations under split on 2 CPUs\n",
        args.stress_ops
    );
    let options = Options {
        seed: 1,
        protocol: Protocol::Split,
        cpus: 2,
        kmap_ops: args.stress_ops,
        time: None,
        rates: Rates::default(),
        implementation: kmap_sim::Implementation::Crate,
    };
    let report = stress(&options, |_, _| {});
    let seconds = report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{} kmap ops, {} executions, {} interrupts, {} NMIs, {} preemptions in {:.2} s: {:.0} kmap ops/s, {:.0} executions/s",
        report.stats.kmap_ops,
        report.executions,
        report.stats.irqs,
        report.stats.nmis,
        report.stats.preemptions,
        seconds,
        report.stats.kmap_ops as f64 / seconds,
        report.executions as f64 / seconds
    );
    Ok(true)
}
