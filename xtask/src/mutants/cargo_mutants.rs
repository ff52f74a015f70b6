//! cargo-mutants over `crates/kmap`: every mutant it generates, with the tests of the crate and
//! of the explorer as the test command (cargo-mutants runs no other command than `cargo test` or
//! nextest), and a ledger of each mutant's last outcome across runs, so that `--iterate` goes on
//! from a run that stopped. Its survivors must each be killed by a test or be listed as
//! equivalent in xtask/mutants.toml, with the reason; the paragraph for BENCHMARKS.md says so.
//! Its `outcomes.json` is read as JSON; `cargo mutants --list` prints one name a line.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use thiserror::Error;

use super::catalog::{self, CatalogError};
use crate::benchmarks_md::CARGO_MUTANTS_PREFIX;
use crate::process::{self, CommandError, FileError};
use crate::say;

/// Why the run of cargo-mutants gave no paragraph.
#[derive(Debug, Error)]
pub enum CargoMutantsError {
    /// cargo-mutants is missing and `cargo install` failed.
    #[error("cargo-mutants could not be installed")]
    Install(#[source] CommandError),
    /// cargo-mutants failed (its tests fail on the unmutated tree, or a usage error).
    #[error("cargo mutants failed")]
    Run(#[source] CommandError),
    /// Its outcomes or the ledger could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// Its outcomes or the ledger are not the JSON xtask reads.
    #[error("{} is not the JSON xtask reads", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The equivalent mutants could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Some mutants of the tree as it is have no outcome yet.
    #[error(
        "cargo-mutants has no outcome for {count} mutant(s) of the tree as it is (the first: \
         `{first}`): `{command}` again, or without `--iterate` to test every mutant anew"
    )]
    Untested {
        count: usize,
        first: String,
        command: String,
    },
}

/// cargo-mutants' name of a mutant without its line and column (`FILE:LINE:COL: WHAT` becomes
/// `FILE: WHAT`), which stays the same when lines move.
fn without_position(name: &str) -> String {
    let mut parts = name.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(file), Some(line), Some(column), Some(what))
            if line.chars().all(|c| c.is_ascii_digit())
                && column.chars().all(|c| c.is_ascii_digit()) =>
        {
            format!("{file}:{what}")
        }
        _ => name.to_string(),
    }
}

/// `cargo mutants` over crates/kmap, with the tests of the whole workspace (the explorer's
/// among them); returns the paragraph for BENCHMARKS.md and the survivors that
/// xtask/mutants.toml does not explain as equivalent. With `iterate`, it goes on from the last
/// run (cargo-mutants' `--iterate`) and reports the outcomes of every run since the last one
/// without it, kept in the ledger (`target/cargo-mutants/ledger.json`).
pub fn run(
    root: &Path,
    iterate: bool,
    command: &str,
) -> Result<(String, Vec<String>), CargoMutantsError> {
    let cargo = process::cargo_program();
    let installed = Command::new(&cargo)
        .args(["mutants", "--version"])
        .output()
        .map(|o| {
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).trim().to_string(),
            )
        });
    let version = match installed {
        Ok((true, version)) => version,
        _ => {
            say!("cargo-mutants is missing: cargo install cargo-mutants --locked");
            process::cargo(root, &["install", "cargo-mutants", "--locked"], &[])
                .map_err(CargoMutantsError::Install)?;
            Command::new(&cargo)
                .args(["mutants", "--version"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        }
    };
    let output = root.join("target/cargo-mutants");
    let outcomes = output.join("mutants.out/outcomes.json");
    let ledger_path = output.join("ledger.json");
    // The outcomes so far: with --iterate, the ledger and then the last run (which may have been
    // stopped before it wrote its end, or before xtask could fold it in).
    let mut ledger = Ledger::default();
    if iterate {
        if let Ok(text) = std::fs::read_to_string(&ledger_path) {
            ledger = serde_json::from_str(&text).map_err(|source| CargoMutantsError::Json {
                path: ledger_path.clone(),
                source,
            })?;
        }
        if outcomes.exists() {
            ledger.fold(&read_json(&outcomes)?);
        }
    }
    // Saved before cargo-mutants moves the last run aside, so that a run stopped now loses
    // nothing; a run without --iterate starts a new ledger.
    ledger.save(&ledger_path)?;
    // The tests of the crate and of the explorer: every package whose tests run the crate
    // (not xtask's, kmap-host's or the benchmarks').
    // A timeout far above the tests' time (under a minute here): cargo-mutants' default is five
    // times the baseline's, which tests kmap's tests alone, far shorter than the explorer's.
    let selection = ["--package", "kmap"];
    let args = [
        "--test-package",
        "kmap,kmap-sim,kmap-check,kmap-cli",
        "--timeout",
        "300",
        "--gitignore=true",
        "--no-shuffle",
    ];
    let shown = format!(
        "mutants {} {}{}",
        selection.join(" "),
        args.join(" "),
        if iterate { " --iterate" } else { "" }
    );
    say!(
        "cargo {shown} --dir {} --output {} (half an hour here)",
        root.display(),
        output.display()
    );
    let status = Command::new(&cargo)
        .arg("mutants")
        .args(selection)
        .args(args)
        .args(iterate.then_some("--iterate"))
        .arg("--dir")
        .arg(root)
        .arg("--output")
        .arg(&output)
        .current_dir(root)
        .status()
        .map_err(|source| {
            CargoMutantsError::Run(CommandError::Spawn {
                command: format!("cargo {shown}"),
                source,
            })
        })?;
    // cargo-mutants: 0 every mutant caught, 2 some missed, 3 some timed out; 4 the tests fail
    // on the unmutated tree, anything else a usage or internal error.
    if !matches!(status.code(), Some(0 | 2 | 3)) {
        return Err(CargoMutantsError::Run(CommandError::Failed {
            command: format!("cargo {shown}"),
            status,
            stderr: String::new(),
        }));
    }
    ledger.fold(&read_json(&outcomes)?);
    ledger.save(&ledger_path)?;

    // Every mutant of the tree as it is must have an outcome (lines that moved make new names).
    let mut list = Command::new(&cargo);
    list.arg("mutants")
        .args(["--list", "--colors=never"])
        .args(selection)
        .arg("--dir")
        .arg(root)
        .current_dir(root);
    let listed = process::output_of(list).map_err(CargoMutantsError::Run)?;
    let listed: BTreeSet<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let (counts, untested) = ledger.count(&listed);
    if !untested.is_empty() {
        return Err(CargoMutantsError::Untested {
            count: untested.len(),
            first: untested[0].clone(),
            command: command.to_string(),
        });
    }
    let names = |summary: &str| -> Vec<String> {
        ledger
            .with(&listed, summary)
            .map(|name| without_position(name))
            .collect()
    };
    let missed = names("MissedMutant");
    if !missed.is_empty() {
        say!("the mutants cargo-mutants missed:\n{}", missed.join("\n"));
    }
    let timed_out: Vec<String> = names("Timeout")
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect();
    let equivalents = catalog::equivalents(root)?;
    let mut explained = Vec::new();
    let mut unexplained = Vec::new();
    for name in missed {
        match equivalents.iter().find(|e| e.mutant == name) {
            Some(e) => explained.push(format!("`{name}`: {}", e.reason)),
            None => unexplained.push(name),
        }
    }
    let runs = ledger.runs.len();
    let mut paragraph = format!(
        "{CARGO_MUTANTS_PREFIX} ({version}, `cargo {shown}`, run by `{command}` on {}{}; \
         {:.1} h of builds and tests): {} mutants of crates/kmap, \
         {} caught, {} missed, {} unviable, {} timed out (a test that no longer ends: caught). \
         The test command is `cargo test` of kmap, kmap-sim, kmap-check and kmap-cli: the \
         crate's tests and the explorer's (every built-in scenario, small proofs, the `kmap` \
         binary's checks).{}",
        crate::bench::today(),
        if runs == 1 {
            String::new()
        } else {
            format!(
                ", the last of {runs} runs, each after the first going on from the one before; \
                 a mutant's outcome is that of the last run that tested it"
            )
        },
        ledger.seconds() / 3600.0,
        counts.total,
        counts.caught,
        counts.missed,
        counts.unviable,
        counts.timeout,
        if timed_out.is_empty() {
            String::new()
        } else {
            format!(" Timed out: {}.", timed_out.join(", "))
        }
    );
    if !explained.is_empty() {
        let _ = writeln!(
            paragraph,
            " {} (`[[equivalent]]` in xtask/mutants.toml):",
            if explained.len() == 1 {
                "The survivor is an equivalent mutant (it changes nothing the crate does)"
            } else {
                "The survivors are equivalent mutants (they change nothing the crate does)"
            }
        );
        for line in &explained {
            let _ = write!(paragraph, "\n- {line}");
        }
    }
    if !unexplained.is_empty() {
        let _ = writeln!(
            paragraph,
            "\n\nSurvivors not explained (a test must kill them, or xtask/mutants.toml must say \
             why they are equivalent):"
        );
        for name in &unexplained {
            let _ = write!(paragraph, "\n- `{name}`");
        }
    }
    say!("{paragraph}");
    Ok((paragraph, unexplained))
}

fn read_json(path: &Path) -> Result<serde_json::Value, CargoMutantsError> {
    let text = process::read(path)?;
    serde_json::from_str(&text).map_err(|source| CargoMutantsError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The outcomes of cargo-mutants' runs since the last one without `--iterate`: for each mutant
/// (cargo-mutants' name, with its position) the outcome of the last run that tested it. A run
/// with `--iterate` lumps the mutants it skips, caught and unviable alike, into one list; the
/// ledger keeps them apart.
#[derive(Default, Debug, PartialEq, serde::Serialize, Deserialize)]
struct Ledger {
    /// When each run folded in began (cargo-mutants' `start_time`), and the seconds of all its
    /// builds and tests, the baseline's included.
    runs: Vec<(String, f64)>,
    outcomes: std::collections::BTreeMap<String, Outcome>,
}

#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
struct Outcome {
    /// cargo-mutants' summary: CaughtMutant, MissedMutant, Unviable or Timeout.
    summary: String,
    /// The build and test time it took in that run.
    seconds: f64,
}

impl Ledger {
    /// Fold in one run's `outcomes.json` (a run folded in before, perhaps stopped part-way then,
    /// replaces what it gave then).
    fn fold(&mut self, value: &serde_json::Value) {
        let start = value["start_time"].as_str().unwrap_or_default().to_string();
        let mut total = 0.0;
        let mut mutants = 0;
        for outcome in value["outcomes"].as_array().into_iter().flatten() {
            let seconds: f64 = outcome["phase_results"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["duration"].as_f64())
                .sum();
            total += seconds;
            if outcome["scenario"] == "Baseline" {
                continue;
            }
            let (Some(name), Some(summary)) = (
                outcome["scenario"]["Mutant"]["name"].as_str(),
                outcome["summary"].as_str(),
            ) else {
                continue;
            };
            mutants += 1;
            self.outcomes.insert(
                name.to_string(),
                Outcome {
                    summary: summary.to_string(),
                    seconds,
                },
            );
        }
        // A run that tested no mutant (its baseline failed, or it was stopped first) is none.
        self.runs.retain(|(s, _)| *s != start);
        if mutants > 0 {
            self.runs.push((start, total));
        }
    }

    fn save(&self, path: &Path) -> Result<(), CargoMutantsError> {
        let text = serde_json::to_string_pretty(self).expect("a ledger is JSON");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| FileError::new("create", parent, e))?;
        }
        Ok(process::write(path, &text)?)
    }

    /// The build and test time of every run folded in.
    fn seconds(&self) -> f64 {
        self.runs.iter().map(|(_, s)| s).sum()
    }

    /// The outcomes of the mutants `listed` (the tree's, as `cargo mutants --list` names them),
    /// and those of them that have none.
    fn count(&self, listed: &BTreeSet<String>) -> (Counts, Vec<String>) {
        let counts = Counts {
            total: listed.len(),
            caught: self.with(listed, "CaughtMutant").count(),
            missed: self.with(listed, "MissedMutant").count(),
            unviable: self.with(listed, "Unviable").count(),
            timeout: self.with(listed, "Timeout").count(),
        };
        let untested = listed
            .iter()
            .filter(|name| {
                self.outcomes
                    .get(*name)
                    .is_none_or(|o| !SUMMARIES.contains(&o.summary.as_str()))
            })
            .cloned()
            .collect();
        (counts, untested)
    }

    /// The mutants of `listed` whose last outcome is `summary`.
    fn with<'a>(
        &'a self,
        listed: &'a BTreeSet<String>,
        summary: &'a str,
    ) -> impl Iterator<Item = &'a String> {
        listed.iter().filter(move |name| {
            self.outcomes
                .get(*name)
                .is_some_and(|o| o.summary == summary)
        })
    }
}

/// The outcomes of cargo-mutants that the ledger counts.
const SUMMARIES: [&str; 4] = ["CaughtMutant", "MissedMutant", "Unviable", "Timeout"];

#[derive(Default, Debug, PartialEq, Eq)]
struct Counts {
    total: usize,
    caught: usize,
    missed: usize,
    unviable: usize,
    timeout: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutant_is_named_without_its_position() {
        assert_eq!(
            super::without_position(
                "crates/kmap/src/platform.rs:127:9: replace Platform::point with ()"
            ),
            "crates/kmap/src/platform.rs: replace Platform::point with ()"
        );
        assert_eq!(super::without_position("no position"), "no position");
    }

    fn run(start: &str, outcomes: &[(&str, &str, f64)]) -> serde_json::Value {
        let mut list = vec![serde_json::json!({
            "scenario": "Baseline",
            "summary": "Success",
            "phase_results": [
                { "phase": "Build", "duration": 10.0 },
                { "phase": "Test", "duration": 5.0 },
            ],
        })];
        for (name, summary, seconds) in outcomes {
            list.push(serde_json::json!({
                "scenario": { "Mutant": { "name": name } },
                "summary": summary,
                "phase_results": [{ "phase": "Build", "duration": seconds }],
            }));
        }
        serde_json::json!({ "start_time": start, "outcomes": list })
    }

    #[test]
    fn the_ledger_keeps_each_mutants_last_outcome_across_runs() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let first = run(
            "t1",
            &[
                ("a", "CaughtMutant", 1.0),
                ("b", "Unviable", 2.0),
                ("c", "MissedMutant", 3.0),
            ],
        );
        let mut ledger = Ledger::default();
        // A first run, stopped before it reached `d`.
        ledger.fold(&first);
        let listed = set(&["a", "b", "c", "d"]);
        let (counts, untested) = ledger.count(&listed);
        assert_eq!(untested, vec!["d".to_string()]);
        assert_eq!((counts.caught, counts.unviable, counts.missed), (1, 1, 1));
        // Folding the same run again (xtask folds the last run before it goes on) changes nothing.
        let before = serde_json::to_string(&ledger).unwrap();
        ledger.fold(&first);
        assert_eq!(serde_json::to_string(&ledger).unwrap(), before);
        // The run with --iterate tests again only the missed one and the one not reached.
        ledger.fold(&run(
            "t2",
            &[("c", "CaughtMutant", 4.0), ("d", "Timeout", 5.0)],
        ));
        let (counts, untested) = ledger.count(&listed);
        assert!(untested.is_empty());
        assert_eq!(
            counts,
            Counts {
                total: 4,
                caught: 2,
                missed: 0,
                unviable: 1,
                timeout: 1
            }
        );
        // A run stopped before its first mutant is not a run.
        ledger.fold(&run("t3", &[]));
        assert_eq!(ledger.runs.len(), 2);
        // Every build and test of both runs: two baselines of 15 s, then 1 + 2 + 3 and 4 + 5.
        assert_eq!(ledger.seconds(), 30.0 + 6.0 + 9.0);
        // A mutant no longer in the tree (its line moved) is not counted.
        let (counts, _) = ledger.count(&set(&["a", "b"]));
        assert_eq!(counts.total, 2);
    }
}
