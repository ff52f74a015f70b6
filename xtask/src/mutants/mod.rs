//! `cargo xtask mutants`: which checks catch which bug.
//!
//! Each named mutant of `xtask/mutants.toml` (`catalog`) breaks one rule of the reference in
//! `crates/kmap`. It is applied to a copy of the workspace under `target/mutants/NAME/` (never
//! to the tree itself), built with one target folder shared by every mutant
//! (`target/mutant-target`, so that only the workspace's crates rebuild), and put through the
//! checks in order (`checks`): the explorer on every built-in scenario (`kmap check --all`),
//! `kmap prove` on small scopes, random stress (`kmap stress`), the crate's tests (`cargo test -p
//! kmap`) and, with `--kernel`, a boot of the demo kernel built from the copy (`cargo xtask
//! kernel` inside it). The table (`report`) says which checks caught each mutant, the size of
//! the shortest counterexample the explorer printed and the time to the first catch; a full run
//! writes it into BENCHMARKS.md between its markers (`crate::benchmarks_md`).
//!
//! Every mechanism mutant must be caught by the explorer alone (`check` or `prove`), every
//! guard-API mutant by the crate's tests: the command fails when one is not.
//!
//! With `--cargo-mutants` it also runs `cargo mutants` over `crates/kmap` (`cargo_mutants`),
//! with the tests of the crate and of the explorer as the test command.

mod cargo_mutants;
mod catalog;
mod checks;
mod explorer;
mod report;

use std::collections::BTreeSet;

use thiserror::Error;

use crate::benchmarks_md::{self, BenchmarksMdError};
use crate::process::{self, CommandError};
use crate::say;
use cargo_mutants::CargoMutantsError;
use catalog::{CatalogError, Mutant};
pub use checks::Check;
use checks::{BUILD_LIMIT, CheckError, cargo_in, compiled};

/// Why `cargo xtask mutants` failed.
#[derive(Debug, Error)]
pub enum MutantsError {
    /// The catalog could not be read, or a mutant no longer applies.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A mutant could not be put through its checks.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// `cargo check` of a mutant's copy could not run.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The run of cargo-mutants gave no paragraph.
    #[error(transparent)]
    CargoMutants(#[from] CargoMutantsError),
    /// BENCHMARKS.md could not be written.
    #[error(transparent)]
    BenchmarksMd(#[from] BenchmarksMdError),
    /// Mutants were not caught as their kind requires (or cargo-mutants' survivors are not
    /// explained): each with why.
    #[error("not caught as required: {}", listed(.0))]
    Unmet(Vec<(String, String)>),
}

/// The mutants not caught as required, with why, in one line.
fn listed(unmet: &[(String, String)]) -> String {
    unmet
        .iter()
        .map(|(name, why)| format!("{name} ({why})"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The command line of `cargo xtask mutants`. The modes are told apart by clap (`--list`,
/// `--check-only`, `--cargo-mutants-only`, or a run of the checks, with or without
/// `--cargo-mutants`); `Options::mode` turns them into a `Mode`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Only this mutant (repeat for several). BENCHMARKS.md is then left alone.
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// Only these checks, comma-separated (check, prove, stress, tests, kernel). BENCHMARKS.md
    /// is then left alone.
    #[arg(long, value_enum, value_delimiter = ',')]
    checks: Vec<Check>,
    /// Apply each mutant to its copy and `cargo check` it (does it still apply, does it
    /// compile?), and run no check.
    #[arg(long, conflicts_with_all = ["checks", "kernel", "cargo_mutants", "cargo_mutants_only"])]
    check_only: bool,
    /// Also boot each mutant's kernel: `cargo xtask kernel` inside the copy (QEMU, minutes).
    #[arg(long)]
    kernel: bool,
    /// Also run `cargo mutants` over crates/kmap (half an hour here; installed if missing) with
    /// the tests of the crate and of the explorer, and report its caught, missed and unviable
    /// mutants.
    #[arg(long, group = "cargo")]
    cargo_mutants: bool,
    /// With `--cargo-mutants` or `--cargo-mutants-only`: go on from the last cargo-mutants run
    /// (cargo-mutants' `--iterate`): test again only the mutants it did not catch or find
    /// unviable, and those it had not reached when it was stopped; the report counts the
    /// outcomes of every run since the last one without `--iterate`. For after new tests or a
    /// stopped run: a mutant is known by its file, line, column and change, so a change to
    /// crates/kmap/src in between calls for a run without it.
    #[arg(long, requires = "cargo")]
    iterate: bool,
    /// Run only `cargo mutants` (no named mutant), and write only its paragraph of BENCHMARKS.md,
    /// keeping the table of the named mutants.
    #[arg(long, group = "cargo", conflicts_with_all = ["only", "checks", "kernel"])]
    cargo_mutants_only: bool,
    /// List the named mutants and stop.
    #[arg(
        long,
        conflicts_with_all = ["checks", "check_only", "kernel", "cargo_mutants", "cargo_mutants_only"]
    )]
    list: bool,
}

/// What one run of `cargo xtask mutants` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// List the named mutants.
    List,
    /// Apply each mutant (of `only`, or all) and `cargo check` its copy.
    CheckOnly { only: Vec<String> },
    /// Run only cargo-mutants, and write only its paragraph.
    CargoMutantsOnly { iterate: bool },
    /// Put the mutants (of `only`, or all) through `checks`; with `cargo_mutants` (whether to
    /// iterate), run cargo-mutants first. BENCHMARKS.md is written when every mutant went
    /// through the default checks.
    Run {
        only: Vec<String>,
        checks: BTreeSet<Check>,
        cargo_mutants: Option<bool>,
        write: bool,
    },
}

impl Options {
    /// The mode the flags ask for (clap has refused the combinations that ask for none).
    pub fn mode(&self) -> Mode {
        if self.list {
            Mode::List
        } else if self.check_only {
            Mode::CheckOnly {
                only: self.only.clone(),
            }
        } else if self.cargo_mutants_only {
            Mode::CargoMutantsOnly {
                iterate: self.iterate,
            }
        } else {
            let mut checks: BTreeSet<Check> = if self.checks.is_empty() {
                [Check::Explore, Check::Prove, Check::Stress, Check::Tests].into()
            } else {
                self.checks.iter().copied().collect()
            };
            if self.kernel {
                checks.insert(Check::Kernel);
            }
            Mode::Run {
                only: self.only.clone(),
                checks,
                cargo_mutants: self.cargo_mutants.then_some(self.iterate),
                write: self.only.is_empty() && self.checks.is_empty(),
            }
        }
    }
}

/// The mutants named, through the explorer alone (`kmap check --all` and `kmap prove`): for
/// `cargo xtask test`, which fails if one of them is not caught.
pub fn explorer_only(names: &[&str]) -> Mode {
    Mode::Run {
        only: names.iter().map(|n| n.to_string()).collect(),
        checks: [Check::Explore, Check::Prove].into(),
        cargo_mutants: None,
        write: false,
    }
}

pub fn run(mode: &Mode) -> Result<(), MutantsError> {
    let root = process::workspace_root();
    let all = catalog::load(&root)?;
    match mode {
        Mode::List => {
            for m in &all {
                println!("{:<40} {:<10} {}", m.name, m.kind.name(), m.rule);
                println!("{:<40} {:<10} {}", "", "", m.change);
            }
            Ok(())
        }
        Mode::CheckOnly { only } => {
            let selected = catalog::select(&root, all, only)?;
            say!(
                "{} mutant(s) of crates/kmap apply to the tree",
                selected.len()
            );
            check_only(&root, &selected)
        }
        Mode::CargoMutantsOnly { iterate } => {
            let command = format!(
                "cargo xtask mutants --cargo-mutants-only{}",
                if *iterate { " --iterate" } else { "" }
            );
            let (paragraph, unexplained) = cargo_mutants::run(&root, *iterate, &command)?;
            benchmarks_md::write_cargo_mutants_paragraph(&root, &paragraph)?;
            say!("BENCHMARKS.md: the paragraph on cargo mutants written, the table kept");
            require(survivors(unexplained))
        }
        Mode::Run {
            only,
            checks,
            cargo_mutants,
            write,
        } => {
            let selected = catalog::select(&root, all, only)?;
            say!(
                "{} mutant(s) of crates/kmap apply to the tree",
                selected.len()
            );
            // cargo-mutants first: the longer of the two, and the one whose survivors may need
            // work.
            let (paragraph, unexplained) = match cargo_mutants {
                Some(iterate) => {
                    let command = format!(
                        "cargo xtask mutants --cargo-mutants{}",
                        if *iterate { " --iterate" } else { "" }
                    );
                    let (paragraph, unexplained) = cargo_mutants::run(&root, *iterate, &command)?;
                    (Some(paragraph), unexplained)
                }
                None => (None, Vec::new()),
            };
            let mut results = Vec::new();
            for mutant in &selected {
                results.push(checks::run_mutant(&root, mutant, checks)?);
            }
            // The named mutants' misses go into the section; cargo-mutants' survivors are in
            // its paragraph. Both make the command fail.
            let mut unmet = report::unmet(&results, checks);
            let section = report::section(&root, &results, checks, paragraph.as_deref(), &unmet);
            unmet.extend(survivors(unexplained));
            println!();
            print!("{section}");
            if *write {
                benchmarks_md::MUTANTS.write(&root, &section)?;
            } else {
                say!("BENCHMARKS.md left alone (not every mutant or check ran)");
            }
            require(unmet)
        }
    }
}

/// cargo-mutants' survivors that no test kills and xtask/mutants.toml does not explain.
fn survivors(unexplained: Vec<String>) -> Vec<(String, String)> {
    unexplained
        .into_iter()
        .map(|name| {
            (
                name,
                "a survivor of cargo-mutants that no test kills and xtask/mutants.toml does not \
                 explain as equivalent"
                    .to_string(),
            )
        })
        .collect()
}

fn require(unmet: Vec<(String, String)>) -> Result<(), MutantsError> {
    if unmet.is_empty() {
        Ok(())
    } else {
        Err(MutantsError::Unmet(unmet))
    }
}

/// Apply each mutant to its copy and `cargo check` it.
fn check_only(root: &std::path::Path, selected: &[Mutant]) -> Result<(), MutantsError> {
    for mutant in selected {
        let copy = catalog::prepare(root, mutant, false)?;
        let build = cargo_in(
            root,
            &copy,
            &[
                "check",
                "--package",
                "kmap",
                "--package",
                "kmap-cli",
                "--all-targets",
            ],
            BUILD_LIMIT,
        )?;
        compiled(mutant, &build)?;
        say!(
            "mutant {:<40} applies and compiles ({:.0} s)",
            mutant.name,
            build.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        options: Options,
    }

    fn mode(args: &[&str]) -> Result<Mode, clap::Error> {
        Command::try_parse_from(std::iter::once("mutants").chain(args.iter().copied()))
            .map(|c| c.options.mode())
    }

    #[test]
    fn the_readmes_command_lines_give_their_modes() {
        let default: BTreeSet<Check> =
            [Check::Explore, Check::Prove, Check::Stress, Check::Tests].into();
        assert_eq!(
            mode(&[]).unwrap(),
            Mode::Run {
                only: vec![],
                checks: default.clone(),
                cargo_mutants: None,
                write: true
            }
        );
        let Mode::Run {
            checks,
            cargo_mutants,
            write,
            ..
        } = mode(&["--kernel", "--cargo-mutants", "--iterate"]).unwrap()
        else {
            panic!()
        };
        assert!(checks.contains(&Check::Kernel) && write);
        assert_eq!(cargo_mutants, Some(true));
        assert_eq!(
            mode(&["--cargo-mutants-only", "--iterate"]).unwrap(),
            Mode::CargoMutantsOnly { iterate: true }
        );
        assert_eq!(mode(&["--list"]).unwrap(), Mode::List);
        assert_eq!(
            mode(&["--only", "a", "--only", "b", "--check-only"]).unwrap(),
            Mode::CheckOnly {
                only: vec!["a".into(), "b".into()]
            }
        );
        let Mode::Run {
            only,
            checks,
            write,
            ..
        } = mode(&["--only", "holes-are-zero", "--checks", "check,prove"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(only, vec!["holes-are-zero".to_string()]);
        assert_eq!(checks, [Check::Explore, Check::Prove].into());
        assert!(!write, "a partial run leaves BENCHMARKS.md alone");
    }

    #[test]
    fn clap_refuses_the_combinations_that_make_no_mode() {
        for args in [
            &["--iterate"][..],
            &["--cargo-mutants-only", "--only", "x"],
            &["--cargo-mutants-only", "--cargo-mutants"],
            &["--check-only", "--cargo-mutants"],
            &["--list", "--kernel"],
        ] {
            assert!(mode(args).is_err(), "{args:?} was accepted");
        }
    }
}
