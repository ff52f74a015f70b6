//! `kmap linux`: Linux's own mm/highmem.c beside the crate. Every built-in scenario on both
//! implementations, and each scripted edit of Linux's code from its history (and the 2020 RFC,
//! and the 2023 proposal to release in any order) with its verdict and its consequence at
//! Linux's own check. It prints Markdown (the README's tables are its output) and exits 1 when
//! a verdict is not the one expected.

use clap::Parser;
use kmap_check::scope::Scope;
use kmap_check::search::{self, Exploration};
use kmap_check::{ReplayId, builtin, resolve};
use kmap_sim::{Changes, Config, ConfigError, Implementation, Settings, Verdict};

use crate::error::CliError;

#[derive(Parser, Clone, Debug, Default)]
pub struct Args {}

/// A case of Linux's history, run on its edited code.
struct Case {
    /// The edit (`--edit`), or none for the RFC's switch (`kmap_switch_temporary`).
    edit: Option<&'static str>,
    /// What it is.
    what: &'static str,
    /// The built-in scenario `kmap check` runs.
    scenario: &'static str,
    /// Settings beside the edit (the scenario's switch, release).
    settings: &'static [(&'static str, &'static str)],
}

/// History: each case must be caught by `kmap check` and by `kmap prove` on 1/2/2.
const HISTORY: &[Case] = &[
    Case {
        edit: None,
        what: "Sept 2020 RFC: `kmap_switch_temporary(prev, next)` in prepare-switch, current still prev",
        scenario: "restore-race",
        settings: &[("switch", "rfc-v1")],
    },
    Case {
        edit: Some("pop-before-clear"),
        what: "2010: kunmap pops the index before it clears the PTE",
        scenario: "restore-race-split",
        settings: &[],
    },
    Case {
        edit: Some("push-after-install"),
        what: "not history: map installs the PTE before it pushes the index",
        scenario: "restore-race-split",
        settings: &[],
    },
    Case {
        edit: Some("sched-out-without-flush"),
        what: "not history: sched_out clears prev's PTEs without their TLB flush",
        scenario: "restore-race-split",
        settings: &[],
    },
    Case {
        edit: Some("any-order"),
        what: "Oct 2023 proposal: unmap the second-from-top cell too, pop lazily over empty cells",
        scenario: "hole-across-switch",
        settings: &[("release", "any")],
    },
];

/// The settings of a Linux run with `edit` and `extra`.
fn changes(edit: Option<&str>, extra: &[(&str, &str)]) -> Changes<Settings> {
    let mut changes = Changes::default();
    changes.set("impl", "linux").expect("a setting");
    if let Some(edit) = edit {
        changes.set("edit", edit).expect("a setting");
    }
    for (key, value) in extra {
        changes.set(key, value).expect("a setting");
    }
    changes
}

/// What a run found, in a table cell: the verdict, and the first consequence.
fn found(exploration: &Exploration) -> (Verdict, String) {
    let consequence = exploration
        .counterexample
        .as_ref()
        .and_then(|c| c.outcome.violations.first())
        .map(|v| format!("{}: {}", v.kind, v.message))
        .unwrap_or_default();
    (exploration.verdict, consequence)
}

/// A table cell: `|` escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Print the tables; whether every verdict is the expected one.
pub fn main(_: &Args) -> Result<bool, CliError> {
    if let Some(why) = kmap_linux::unavailable() {
        return Err(CliError::Linux(why.to_string()));
    }
    let mut ok = true;
    println!("| built-in | crate | Linux | where they differ |");
    println!("|---|---|---|---|");
    for (name, _) in builtin::BUILTINS {
        let scenario = resolve(name).map_err(CliError::from)?;
        let crate_found = search::check(&scenario.config);
        ok &= crate_found.verdict == scenario.expect;
        let mut linux = scenario.clone();
        linux.config.machine.implementation = Implementation::Linux;
        let (verdict, why) = match linux.config.validate() {
            Err(ConfigError::Implementation { reason, .. }) => {
                ("not run".to_string(), format!("not run on Linux: {reason}"))
            }
            Err(e) => return Err(CliError::Linux(format!("{name}: {e}"))),
            Ok(()) => {
                let exploration = search::check(&linux.config);
                let (verdict, consequence) = found(&exploration);
                ok &= verdict == linux.expected();
                let why = if verdict == crate_found.verdict {
                    String::new()
                } else {
                    let warned = exploration
                        .counterexample
                        .iter()
                        .flat_map(|c| &c.outcome.hazards)
                        .find(|h| h.rule == kmap_sim::Rule::Warn)
                        .map(|h| format!("{}, then ", h.message))
                        .unwrap_or_default();
                    format!("the crate refuses it; Linux: {warned}{consequence}")
                };
                (verdict.to_string(), why)
            }
        };
        println!(
            "| {name} | {} | {verdict} | {} |",
            crate_found.verdict,
            cell(&why)
        );
    }
    println!();
    println!("| edit | what | `kmap check` | `kmap prove` 1/2/2 | consequence |");
    println!("|---|---|---|---|---|");
    for case in HISTORY {
        let changes = changes(case.edit, case.settings);
        let mut scenario = resolve(case.scenario).map_err(CliError::from)?;
        changes.apply(&mut scenario.config.machine);
        let exploration = search::check(&scenario.config);
        let (checked, consequence) = found(&exploration);
        let scope = Scope::new(1, 2, 2);
        let mut config: Config = scope.config();
        changes.apply(&mut config.machine);
        config.machine.cells = scope.cells_on(&config.machine);
        let proof = search::prove(&config);
        ok &= checked == Verdict::Violation && proof.verdict == Verdict::Violation;
        let replay = exploration.counterexample.map(|c| {
            ReplayId {
                scenario: case.scenario.into(),
                changes: changes.clone(),
                schedule: c.schedule,
            }
            .to_string()
        });
        println!(
            "| {} | {} | {checked} (`kmap replay '{}'`) | {} | {} |",
            case.edit.unwrap_or("(the RFC's switch, `--switch rfc-v1`)"),
            cell(case.what),
            replay.unwrap_or_default(),
            proof.verdict,
            cell(&consequence)
        );
    }
    Ok(ok)
}
