//! `kmap replay`: one execution, from the string `kmap check` or `kmap prove` printed, with its
//! timeline.

use std::path::PathBuf;

use clap::Parser;
use kmap_check::ReplayId;
use kmap_check::timeline::Timeline;
use kmap_sim::{Bounds, Changes, Verdict};

use crate::check::prepare;
use crate::error::CliError;
use crate::report::{Checked, check_json, write_svg};

#[derive(Parser, Clone, Debug)]
pub struct Args {
    /// What `kmap check` printed after `replay:`, e.g. 'restore-race@switch=rfc-v1#41:irq'.
    pub id: String,
    /// Write the run as a swimlane picture.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Print a machine-readable result.
    #[arg(long)]
    pub json: bool,
}

/// Replay; whether the run was clean.
pub fn main(args: &Args) -> Result<bool, CliError> {
    let id: ReplayId = args.id.parse()?;
    let scenario = prepare(&id.scenario, &id.changes, &Changes::<Bounds>::default())?;
    let exploration = kmap_check::search::replay::exploration(&scenario.config, id.schedule);
    let checked = Checked {
        scenario,
        changes: id.changes,
        exploration,
    };
    let ce = checked
        .exploration
        .counterexample
        .as_ref()
        .expect("a replay is its own counterexample");
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&check_json(&checked)).expect("JSON")
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
    if let Some(path) = &args.svg {
        write_svg(path, &checked, ce)?;
    }
    Ok(ce.outcome.verdict() == Verdict::Pass)
}
