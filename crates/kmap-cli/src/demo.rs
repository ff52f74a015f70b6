//! The demonstration: the 2020 race found on the simulated machine, the split design clean on
//! the same workloads, and a summary.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kmap_sim::stress::Options;
use kmap_sim::{Protocol, Rates};

use crate::stress::{print_found, print_report, run};

#[derive(Parser, Clone, Debug)]
pub struct Args {
    /// The stress seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// kmap operations for each protocol that holds (split).
    #[arg(long, default_value_t = 1_000_000)]
    pub ops: u64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            seed: 1,
            ops: 1_000_000,
        }
    }
}

pub fn main(args: &Args) -> ExitCode {
    println!(
        "kmap: the same compiled crate code, on a simulated machine, under three switch protocols."
    );
    println!(
        "Interrupts, NMIs and preemptions arrive at random arrival points of the real code.\n"
    );
    let mut rows = Vec::new();
    let mut ok = true;
    for (protocol, cpus, expect_clean) in [
        (Protocol::RfcV1, 1, false),
        (Protocol::SwapAfterCurrent, 1, false),
        (Protocol::Split, 2, true),
    ] {
        let options = Options {
            seed: args.seed,
            protocol,
            cpus,
            kmap_ops: args.ops,
            time: Some(Duration::from_secs(120)),
            rates: Rates::default(),
        };
        println!("== {protocol} on {cpus} CPU(s)");
        let report = run(&options);
        print_report(&report);
        if let Some(found) = &report.found {
            print_found(found, &options);
        }
        println!();
        let clean = report.found.is_none();
        ok &= clean == expect_clean;
        rows.push((protocol, cpus, report, expect_clean));
    }
    println!("== summary");
    println!(
        "{:<20} {:>5} {:>11} {:>12} {:>10}  {:<10} {:<8}",
        "protocol", "CPUs", "executions", "kmap ops", "time (s)", "result", "expected"
    );
    for (protocol, cpus, report, expect_clean) in &rows {
        let result = if report.found.is_some() {
            "violation"
        } else {
            "clean"
        };
        let expected = if *expect_clean { "clean" } else { "violation" };
        println!(
            "{:<20} {:>5} {:>11} {:>12} {:>10.2}  {:<10} {:<8}",
            protocol.name(),
            cpus,
            report.executions,
            report.stats.kmap_ops,
            report.elapsed.as_secs_f64(),
            result,
            expected
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        println!("\nan outcome differs from what is expected");
        ExitCode::from(1)
    }
}
