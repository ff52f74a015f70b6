//! The demonstration (`cargo run --release`): the 2020 race found by the explorer and drawn as
//! a timeline, the split design proved on the same bounds, every built-in scenario, a short
//! stress run, and a summary table.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kmap_check::builtin;
use kmap_check::search::Dfs;
use kmap_check::search::random::Rates;
use kmap_check::stress::Options;
use kmap_sim::{Changes, Protocol, Settings};

use crate::error::CliError;
use crate::report::{Checked, print_checked, search, write_svg};
use crate::stress::{print_report, run};

#[derive(Parser, Clone, Debug)]
pub struct Args {
    /// Where to write the picture of the race.
    #[arg(long, default_value = "target/kmap-demo/restore-race.svg")]
    pub svg: PathBuf,
    /// kmap operations of the stress runs.
    #[arg(long, default_value_t = 300_000)]
    pub ops: u64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            svg: PathBuf::from("target/kmap-demo/restore-race.svg"),
            ops: 300_000,
        }
    }
}

struct Line {
    what: String,
    result: String,
    expected: String,
    detail: String,
}

/// The demonstration; whether every result is the expected one.
pub fn main(args: &Args) -> Result<bool, CliError> {
    println!(
        "kmap — the kmap_local mechanism in Rust, checked on a simulated machine that runs the crate's"
    );
    println!(
        "real code, with an interrupt, an NMI or a preemption arriving at every point where one can.\n"
    );
    let mut lines = Vec::new();

    println!(
        "== 1. The September 2020 RFC (rfc-v1): the slot swap while `current` is still prev\n"
    );
    let race = check("restore-race", Changes::default());
    print_checked(&race, true);
    if let Some(ce) = &race.exploration.counterexample {
        match write_svg(&args.svg, &race, ce) {
            Ok(()) => println!(
                "     the same timeline as a picture: {}\n",
                args.svg.display()
            ),
            Err(e) => println!("     (could not write {}: {e})\n", args.svg.display()),
        }
    }
    lines.push(line(&race, "restore race under rfc-v1"));

    println!("== 1b. The same race on a kernel without the BUG_ON check (mutation `no-bug-on`)\n");
    let silent = check("restore-race-silent", Changes::default());
    print_checked(&silent, true);
    if let Some(ce) = &silent.exploration.counterexample {
        let path = args.svg.with_file_name("restore-race-silent.svg");
        match write_svg(&path, &silent, ce) {
            Ok(()) => println!("     the same timeline as a picture: {}\n", path.display()),
            Err(e) => println!("     (could not write {}: {e})\n", path.display()),
        }
    }
    lines.push(line(&silent, "restore race without BUG_ON"));

    println!("== 2. The same situation and bounds under the split design (sched_out / sched_in)\n");
    let split = check(
        "restore-race",
        Changes::parse("switch=split").expect("a setting"),
    );
    print_checked(&split, false);
    let (executions, complete) = (split.exploration.executions, split.exploration.complete);
    println!(
        "     {} of the bounded executions explored{}, every interrupt and NMI probed at every point: clean.\n",
        executions,
        if complete { ", that is all" } else { "" }
    );
    lines.push(line(&split, "restore race under split"));

    println!("== 3. Every built-in scenario\n");
    for (name, _) in builtin::BUILTINS
        .iter()
        .filter(|(n, _)| !["restore-race", "restore-race-silent"].contains(n))
    {
        let checked = check(name, Changes::default());
        print_checked(&checked, false);
        lines.push(line(&checked, name));
    }

    println!("\n== 4. Random stress: many tasks on several CPUs, interrupts and NMIs that map\n");
    for (protocol, cpus) in [(Protocol::Split, 2), (Protocol::RfcV1, 1)] {
        let options = Options {
            seed: 1,
            protocol,
            cpus,
            kmap_ops: args.ops,
            time: Some(Duration::from_secs(60)),
            rates: Rates::default(),
            implementation: kmap_sim::Implementation::Crate,
        };
        println!("-- {protocol} on {cpus} CPU(s)");
        let report = run(&options);
        print_report(&report);
        let expected = if protocol == Protocol::Split {
            "clean"
        } else {
            "violation"
        };
        let result = match &report.found {
            None => "clean".to_string(),
            Some(found) => {
                println!(
                    "   found: {}",
                    found
                        .outcome
                        .violations
                        .first()
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                );
                "violation".to_string()
            }
        };
        lines.push(Line {
            what: format!("stress, {protocol}, {cpus} CPU(s)"),
            result,
            expected: expected.into(),
            detail: format!(
                "{} kmap ops in {} executions, {:.2} s",
                report.stats.kmap_ops,
                report.executions,
                report.elapsed.as_secs_f64()
            ),
        });
        println!();
    }

    println!("== Summary\n");
    println!("{:<34} {:<10} {:<10} detail", "what", "result", "expected");
    let mut ok = true;
    for l in &lines {
        let mark = if l.result == l.expected {
            ""
        } else {
            "  <-- UNEXPECTED"
        };
        ok &= mark.is_empty();
        println!(
            "{:<34} {:<10} {:<10} {}{mark}",
            l.what, l.result, l.expected, l.detail
        );
    }
    Ok(ok)
}

fn check(name: &str, changes: Changes<Settings>) -> Checked {
    let mut scenario = kmap_check::resolve(name).expect("built-in scenarios parse");
    changes.apply(&mut scenario.config.machine);
    if changes.get("switch") == Some("split") {
        scenario.expect = kmap_sim::Verdict::Pass;
        scenario.expect_linux = kmap_sim::Verdict::Pass;
    }
    let exploration = search(&scenario, &mut Dfs::default(), Default::default());
    Checked {
        scenario,
        changes,
        exploration,
    }
}

fn line(checked: &Checked, what: &str) -> Line {
    let e = &checked.exploration;
    let mut detail = format!(
        "{} executions, {:.3} s",
        e.executions,
        e.elapsed.as_secs_f64()
    );
    if let Some(ce) = &e.counterexample {
        detail.push_str(&format!(
            ", {} event(s): kmap replay '{}'",
            ce.events(),
            checked.replay_id(ce)
        ));
    }
    Line {
        what: what.into(),
        result: e.verdict.name().into(),
        expected: checked.scenario.expected().name().into(),
        detail,
    }
}
