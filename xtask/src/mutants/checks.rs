//! The checks a mutant is put through, in order: the explorer's (`explorer`: `kmap check`,
//! `kmap prove`, `kmap stress`), the crate's tests (`cargo test -p kmap`) and a boot of the
//! kernel built from the copy (`cargo xtask kernel --json` inside it, read as JSON); cargo
//! test's text is parsed for the names of the failed tests (an external tool's output). And
//! what they made of a mutant (`MutantResult`), for the table.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::catalog::{self, CatalogError, Mutant};
use super::explorer::{self, Counterexample};
pub use super::explorer::{PROVE_SCOPES, STRESS_OPS, STRESS_SECONDS};
use crate::kernel;
use crate::process::{self, CommandError, Ran, run_limited, tail};
use crate::say;

/// Wall-clock limits, far above what each takes on the crate as it is: a mutant that makes a
/// check loop is reported as such instead of hanging the command.
pub const BUILD_LIMIT: Duration = Duration::from_secs(1800);
const TESTS_LIMIT: Duration = Duration::from_secs(1800);
const KERNEL_LIMIT: Duration = Duration::from_secs(3600);

/// Why a mutant could not be put through its checks (a check that runs and catches nothing, or
/// cannot say, is a verdict, not an error).
#[derive(Debug, Error)]
pub enum CheckError {
    /// The mutant's copy could not be made.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A program could not be run.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The mutant does not compile: it tests nothing.
    #[error("the mutant `{name}` does not compile: fix its patch in xtask/mutants.toml\n{errors}")]
    DoesNotCompile { name: String, errors: String },
}

/// One of the checks a mutant is put through, in the order they run.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Check {
    /// `kmap check --all`.
    #[value(name = "check")]
    Explore,
    /// `kmap prove` on the scopes 1/2/2, 2/2/2 (each with release lifo and any) and 2/2/3
    /// (CPUs/tasks/depth).
    Prove,
    /// `kmap stress` (5,000,000 kmap operations or 20 s).
    Stress,
    /// `cargo test -p kmap`.
    Tests,
    /// `cargo xtask kernel` inside the copy.
    Kernel,
}

impl Check {
    pub const ALL: [Check; 5] = [
        Check::Explore,
        Check::Prove,
        Check::Stress,
        Check::Tests,
        Check::Kernel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Explore => "check",
            Check::Prove => "prove",
            Check::Stress => "stress",
            Check::Tests => "tests",
            Check::Kernel => "kernel",
        }
    }

    /// Whether it is the explorer's (which must catch every mechanism mutant alone).
    pub fn explorer(self) -> bool {
        matches!(self, Check::Explore | Check::Prove)
    }
}

/// What one check made of one mutant.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Caught, with what caught it.
    Caught(String),
    /// It passed: not caught.
    Missed,
    /// The check could not say (it timed out, did not build, could not run).
    Error(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Caught(what) => write!(f, "caught: {what}"),
            Verdict::Missed => write!(f, "not caught"),
            Verdict::Error(why) => write!(f, "no verdict: {why}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CheckRun {
    pub check: Check,
    pub verdict: Verdict,
    pub elapsed: Duration,
}

/// Every check one mutant went through.
pub struct MutantResult {
    pub mutant: Mutant,
    pub runs: Vec<CheckRun>,
    pub shortest: Option<Counterexample>,
    /// The copy's release build.
    pub build: Duration,
}

impl MutantResult {
    pub fn run(&self, check: Check) -> Option<&CheckRun> {
        self.runs.iter().find(|r| r.check == check)
    }

    pub fn caught_by(&self, check: Check) -> bool {
        self.run(check)
            .is_some_and(|r| matches!(r.verdict, Verdict::Caught(_)))
    }

    /// The time of the checks, in the order they ran, up to the first that caught the mutant.
    pub fn first_catch(&self) -> Option<(Duration, Check)> {
        let mut total = Duration::ZERO;
        for run in &self.runs {
            total += run.elapsed;
            if matches!(run.verdict, Verdict::Caught(_)) {
                return Some((total, run.check));
            }
        }
        None
    }
}

/// The target folder every mutant's copy builds into.
pub fn mutant_target(root: &Path) -> PathBuf {
    root.join("target/mutant-target")
}

/// `cargo ARGS` on the copy's workspace, with the target folder all mutants share.
pub fn cargo_in(
    root: &Path,
    copy: &Path,
    args: &[&str],
    limit: Duration,
) -> Result<Ran, CommandError> {
    let mut command = Command::new(process::cargo_program());
    command
        .args(args)
        .arg("--manifest-path")
        .arg(copy.join("Cargo.toml"))
        .current_dir(copy)
        // One target folder for every mutant: cargo names the artifacts of workspace crates by
        // their path inside the workspace, so each mutant rebuilds only the workspace's crates,
        // and never overwrites the real tree's artifacts in target/.
        .env("CARGO_TARGET_DIR", mutant_target(root));
    run_limited(command, limit)
}

/// A build of a mutant's copy must have succeeded: a mutant that does not compile tests nothing.
pub fn compiled(mutant: &Mutant, build: &Ran) -> Result<(), CheckError> {
    if build.code == Some(0) {
        return Ok(());
    }
    Err(CheckError::DoesNotCompile {
        name: mutant.name.clone(),
        errors: tail(&build.stderr, 40),
    })
}

/// Put `mutant` through `checks`, on a fresh copy of the workspace.
pub fn run_mutant(
    root: &Path,
    mutant: &Mutant,
    checks: &BTreeSet<Check>,
) -> Result<MutantResult, CheckError> {
    say!("mutant {} ({})", mutant.name, mutant.rule);
    let copy = catalog::prepare(root, mutant, checks.contains(&Check::Kernel))?;
    let mut build_time = Duration::ZERO;
    if checks
        .iter()
        .any(|c| matches!(c, Check::Explore | Check::Prove | Check::Stress))
    {
        let build = cargo_in(
            root,
            &copy,
            &["build", "--release", "--package", "kmap-cli"],
            BUILD_LIMIT,
        )?;
        compiled(mutant, &build)?;
        build_time = build.elapsed;
        say!("  built kmap in {:.0} s", build_time.as_secs_f64());
    }
    let kmap = mutant_target(root).join("release/kmap");
    let mut runs = Vec::new();
    let mut counterexamples = Vec::new();
    for &check in checks {
        let (verdict, elapsed) = match check {
            Check::Explore => explorer::check_all(&kmap, &mut counterexamples)?,
            Check::Prove => explorer::prove(&kmap, &mut counterexamples)?,
            Check::Stress => explorer::stress(&kmap)?,
            Check::Tests => tests(root, &copy)?,
            Check::Kernel => kernel(root, &copy)?,
        };
        say!(
            "  {:<6} {:.1} s: {verdict}",
            check.name(),
            elapsed.as_secs_f64()
        );
        runs.push(CheckRun {
            check,
            verdict,
            elapsed,
        });
    }
    let shortest = counterexamples.into_iter().min_by_key(|c| c.steps);
    Ok(MutantResult {
        mutant: mutant.clone(),
        runs,
        shortest,
        build: build_time,
    })
}

fn tests(root: &Path, copy: &Path) -> Result<(Verdict, Duration), CheckError> {
    let ran = cargo_in(
        root,
        copy,
        &["test", "--package", "kmap", "--no-fail-fast"],
        TESTS_LIMIT,
    )?;
    let output = format!("{}\n{}", ran.stdout, ran.stderr);
    let failed: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
        .collect();
    let verdict = match ran.code {
        Some(0) => Verdict::Missed,
        _ if ran.timed_out => Verdict::Error(format!(
            "timed out after {:.0} s",
            ran.elapsed.as_secs_f64()
        )),
        _ if !failed.is_empty() => {
            let shown = failed.len().min(2);
            let mut text = failed[..shown].join(", ");
            if failed.len() > shown {
                let _ = write!(text, " and {} more", failed.len() - shown);
            }
            Verdict::Caught(text)
        }
        _ if output.contains("could not compile") => {
            Verdict::Error("the tests did not compile".into())
        }
        code => Verdict::Error(format!("exit status {code:?}: {}", tail(&ran.stderr, 3))),
    };
    Ok((verdict, ran.elapsed))
}

/// What a boot of the copy's kernel says, from `cargo xtask kernel --json`: the boot that did
/// not end as the split build must, in words (`split kernel: occupied-slot after 3.4 s`).
fn kernel_summary(stdout: &str) -> Option<String> {
    let report: kernel::Report = serde_json::from_str(stdout).ok()?;
    let boot = report
        .boots
        .iter()
        .find(|b| !b.expected)
        .or(report.boots.last())?;
    Some(format!(
        "{} kernel: {} after {:.1} s",
        boot.build.name(),
        boot.outcome.short(),
        boot.seconds
    ))
}

/// `cargo xtask kernel --json` inside the copy: its xtask, built from the copy (so that its
/// kernel is the copy's, with the mutant), run there. The kernel builds into the copy's
/// kernel/target.
fn kernel(root: &Path, copy: &Path) -> Result<(Verdict, Duration), CheckError> {
    let start = Instant::now();
    let build = cargo_in(root, copy, &["build", "--package", "xtask"], BUILD_LIMIT)?;
    if build.code != Some(0) {
        return Ok((
            Verdict::Error(format!(
                "the copy's xtask did not build: {}",
                tail(&build.stderr, 3)
            )),
            start.elapsed(),
        ));
    }
    let mut command = Command::new(mutant_target(root).join("debug/xtask"));
    command
        .args(["kernel", "--json"])
        .current_dir(copy)
        .env_remove("CARGO_TARGET_DIR");
    let ran = run_limited(command, KERNEL_LIMIT)?;
    let summary = || kernel_summary(&ran.stdout).unwrap_or_else(|| tail(&ran.stderr, 1));
    // Exit statuses of `cargo xtask kernel` (see its help): 0 the boot ended as the split
    // build is meant to (RESULT: PASS), 1 it ended otherwise, 3 it hung or QEMU ended without
    // a verdict, 4 the kernel did not build or QEMU could not run.
    let verdict = match ran.code {
        Some(0) => Verdict::Missed,
        Some(1) | Some(3) => Verdict::Caught(summary()),
        _ if ran.timed_out => Verdict::Error(format!(
            "timed out after {:.0} s",
            ran.elapsed.as_secs_f64()
        )),
        code => Verdict::Error(format!("exit status {code:?}: {}", summary())),
    };
    Ok((verdict, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_catch_is_named_from_the_copys_json() {
        let json = serde_json::json!({
            "build": "split",
            "boots": [{
                "build": "split",
                "outcome": { "outcome": "failed", "failure": "occupied-slot", "cpu": 1,
                             "message": "mapping refused", "context": "task", "task": 3,
                             "depth": 1 },
                "seconds": 3.42,
                "expected": false,
            }],
            "exit_status": 1,
        });
        assert_eq!(
            kernel_summary(&json.to_string()).as_deref(),
            Some("split kernel: occupied-slot after 3.4 s")
        );
        let hung = serde_json::json!({
            "build": "split",
            "boots": [{ "build": "split", "outcome": { "outcome": "hung" }, "seconds": 400.0,
                        "expected": false }],
            "exit_status": 3,
        });
        assert_eq!(
            kernel_summary(&hung.to_string()).as_deref(),
            Some("split kernel: hung: killed after 400 s after 400.0 s")
        );
    }
}
