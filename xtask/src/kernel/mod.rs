//! Build the demo kernel and boot it under QEMU (software emulation), reading its serial log.
//!
//! Every correctness boot runs with one guest instruction per translation block, so that an
//! interrupt or NMI can arrive between any two instructions (under TCG QEMU takes them only
//! between blocks). Each build has an expected outcome, and only that outcome passes:
//!
//! | build | expected |
//! |---|---|
//! | `split` | `RESULT: PASS` |
//! | `rfc-v1` | caught as `occupied-slot`, or not caught by its deadline (an NMI must land in a window of a few instructions: the catch rate is measured, not promised) |
//! | `rfc-v1-sti` | caught as `occupied-slot` |
//! | `rfc-v1-sti-no-bug-on` | caught as `slot-fault` or `wrong-word` |
//! | `no-migrate-disable` | caught as `migrated-holding` (the check in finish-switch runs before the moved task touches a slot) |
//!
//! Anything else (a panic, another exception, another failure kind, QEMU ending without a
//! verdict as after a triple fault, a hang) is a failure of the test.
//!
//! The kernel says how it ended in a `RESULT` record over the serial port (`serial`); QEMU runs
//! in `qemu`; `--coverage` resolves the addresses NMIs interrupted (`coverage`); `--json`
//! prints the boots' outcomes as one JSON document (`Report`), for `cargo xtask mutants`.

mod coverage;
#[cfg(test)]
mod modules;
mod qemu;
pub mod serial;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::process::{self, CommandError, FileError, ToolError};
use crate::say;
use coverage::Windows;
use serial::{NmiRips, RecordError};

/// How long one boot may take (the slowest, a broken build uncaught by its deadline, runs about
/// 3 minutes under one instruction per translation block).
const TIMEOUT: Duration = Duration::from_secs(400);

/// A build of the demo kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Build {
    /// The crate's hooks: sched_out in prepare-switch, sched_in in finish-switch.
    Split,
    /// The September 2020 RFC's single-step swap while `current` is still prev, with
    /// interrupts off as in Linux (only an NMI can land in it).
    #[value(name = "rfc-v1")]
    RfcV1,
    /// The RFC's swap widened: interrupts enabled around it.
    #[value(name = "rfc-v1-sti")]
    RfcV1Sti,
    /// The widened swap, with the crate's occupied-slot check blinded (no BUG_ON).
    #[value(name = "rfc-v1-sti-no-bug-on")]
    RfcV1StiNoBugOn,
    /// The split hooks, with a platform whose migrate_disable does nothing.
    #[value(name = "no-migrate-disable")]
    NoMigrateDisable,
}

/// What a build must end in.
enum Expect {
    Pass,
    /// Caught as one of these kinds.
    Caught(&'static [&'static str]),
    /// Caught as one of these kinds, or not caught by the deadline.
    MayCatch(&'static [&'static str]),
}

impl Build {
    pub const ALL: [Build; 5] = [
        Build::Split,
        Build::RfcV1,
        Build::RfcV1Sti,
        Build::RfcV1StiNoBugOn,
        Build::NoMigrateDisable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Build::Split => "split",
            Build::RfcV1 => "rfc-v1",
            Build::RfcV1Sti => "rfc-v1-sti",
            Build::RfcV1StiNoBugOn => "rfc-v1-sti-no-bug-on",
            Build::NoMigrateDisable => "no-migrate-disable",
        }
    }

    /// The cargo features of the build.
    pub fn features(self) -> &'static str {
        match self {
            Build::Split => "",
            Build::RfcV1 => "rfc-v1",
            Build::RfcV1Sti => "rfc-v1-sti",
            Build::RfcV1StiNoBugOn => "rfc-v1-sti no-bug-on",
            Build::NoMigrateDisable => "no-migrate-disable",
        }
    }

    fn expect(self) -> Expect {
        match self {
            Build::Split => Expect::Pass,
            Build::RfcV1 => Expect::MayCatch(&["occupied-slot"]),
            Build::RfcV1Sti => Expect::Caught(&["occupied-slot"]),
            Build::RfcV1StiNoBugOn => Expect::Caught(&["slot-fault", "wrong-word"]),
            // The check in finish-switch runs before a moved task touches a slot: any other
            // kind would mean that check failed.
            Build::NoMigrateDisable => Expect::Caught(&["migrated-holding"]),
        }
    }
}

/// How a boot ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// `RESULT {"verdict":"pass"}` with QEMU's exit status 33.
    Passed,
    /// A `RESULT {"verdict":"fail",…}` record, whatever ended QEMU after it.
    Failed(serial::Failure),
    /// QEMU ended without a verdict (a triple fault resets, and `-no-reboot` ends QEMU).
    NoVerdict { status: Option<i32> },
    /// Killed after the timeout.
    Hung,
}

impl Outcome {
    /// The outcome in a table's cell: a failure's kind alone, else as displayed.
    pub fn short(&self) -> String {
        match self {
            Outcome::Failed(failure) => failure.failure.clone(),
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Passed => write!(f, "RESULT: PASS"),
            Outcome::Failed(failure) => write!(f, "caught: {}", failure.failure),
            Outcome::NoVerdict { status } => write!(
                f,
                "QEMU ended without a verdict (exit status {status:?}; a triple fault?)"
            ),
            Outcome::Hung => write!(f, "hung: killed after {} s", TIMEOUT.as_secs()),
        }
    }
}

/// One boot, as `cargo xtask kernel --json` gives it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BootReport {
    pub build: Build,
    pub outcome: Outcome,
    /// The boot's wall-clock time.
    pub seconds: f64,
    /// Whether the outcome is the build's expected one.
    pub expected: bool,
}

impl std::fmt::Display for BootReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} kernel: {} after {:.1} s",
            self.build.name(),
            self.outcome,
            self.seconds
        )
    }
}

/// What `cargo xtask kernel --json` prints: every boot, and the command's exit status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub build: Build,
    pub boots: Vec<BootReport>,
    pub exit_status: u8,
}

/// Why `cargo xtask kernel` failed; its exit status says which.
#[derive(Debug, Error)]
pub enum KernelError {
    /// A broken build's boot passed (exit status 1).
    #[error("{0}: not caught")]
    NotCaught(Box<BootReport>),
    /// A boot ended in a failure its build is not meant to produce (exit status 1).
    #[error("{0}: not a failure this build is meant to produce")]
    WrongFailure(Box<BootReport>),
    /// A boot hung, or QEMU ended without a verdict (exit status 3).
    #[error("{0}")]
    NoVerdict(Box<BootReport>),
    /// The kernel did not build (exit status 4).
    #[error("the kernel did not build")]
    Build(#[source] CommandError),
    /// QEMU, or objdump, is missing and could not be installed (exit status 4).
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// QEMU could not run (exit status 4).
    #[error("QEMU could not run")]
    Qemu(#[source] CommandError),
    /// QEMU's `--version` names no version (exit status 4).
    #[error("no version in `qemu-system-x86_64 --version`: {output}")]
    QemuVersion { output: String },
    /// The built kernel could not be copied aside (exit status 4).
    #[error(transparent)]
    File(#[from] FileError),
    /// objdump could not disassemble the kernel, for `--coverage` (exit status 4).
    #[error("objdump could not disassemble the kernel")]
    Objdump(#[source] CommandError),
    /// The kernel has no line of the crate's sources: no debug info (exit status 4).
    #[error("objdump found no line of crates/kmap/src in {} (no debug info?)", elf.display())]
    NoCrateLines { elf: std::path::PathBuf },
    /// The kernel printed a record xtask cannot read (exit status 3: no verdict to trust).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The benchmark build failed (exit status 1).
    #[error("the benchmark kernel failed: {0}")]
    Benchmark(Box<BootReport>),
}

impl KernelError {
    /// The exit status of `cargo xtask kernel` for this failure.
    pub fn exit_status(&self) -> u8 {
        match self {
            KernelError::NotCaught(_)
            | KernelError::WrongFailure(_)
            | KernelError::Benchmark(_) => 1,
            KernelError::NoVerdict(_) | KernelError::Record(_) => 3,
            KernelError::Build(_)
            | KernelError::Tool(_)
            | KernelError::Qemu(_)
            | KernelError::QemuVersion { .. }
            | KernelError::File(_)
            | KernelError::Objdump(_)
            | KernelError::NoCrateLines { .. } => 4,
        }
    }
}

/// One boot.
pub struct Boot {
    pub build: Build,
    pub outcome: Outcome,
    /// Every line the kernel printed.
    pub log: Vec<String>,
    pub elapsed: Duration,
}

impl Boot {
    fn report(&self) -> BootReport {
        BootReport {
            build: self.build,
            outcome: self.outcome.clone(),
            seconds: self.elapsed.as_secs_f64(),
            expected: self.judge().is_ok(),
        }
    }

    /// Whether the outcome is the build's expected one, and in words.
    fn judge(&self) -> Result<&'static str, KernelError> {
        let report = || {
            Box::new(BootReport {
                build: self.build,
                outcome: self.outcome.clone(),
                seconds: self.elapsed.as_secs_f64(),
                expected: false,
            })
        };
        match (&self.outcome, self.build.expect()) {
            (Outcome::Passed, Expect::Pass) => Ok("passed, as it must"),
            (Outcome::Passed, Expect::MayCatch(_)) => Ok("not caught before its deadline"),
            (Outcome::Failed(failure), Expect::Caught(kinds) | Expect::MayCatch(kinds))
                if kinds.contains(&failure.failure.as_str()) =>
            {
                Ok("caught with an expected consequence")
            }
            (Outcome::Hung | Outcome::NoVerdict { .. }, _) => Err(KernelError::NoVerdict(report())),
            (Outcome::Passed, Expect::Caught(_)) => Err(KernelError::NotCaught(report())),
            (Outcome::Failed(_), _) => Err(KernelError::WrongFailure(report())),
        }
    }

    /// The boot must have ended as its build is meant to.
    pub fn require_expected(&self) -> Result<(), KernelError> {
        let verdict = self.judge()?;
        say!("{}: {verdict}", self.report());
        Ok(())
    }

    /// The instruction addresses NMIs interrupted, from the `NMI-RIPS` records.
    fn nmi_rips(&self) -> Result<BTreeSet<u64>, RecordError> {
        let mut rips = BTreeSet::new();
        for record in serial::records::<NmiRips>(&self.log, "NMI-RIPS") {
            rips.extend(record?.rips);
        }
        Ok(rips)
    }
}

/// How `cargo xtask kernel` boots.
pub struct Options {
    pub build: Build,
    pub boots: u32,
    /// Let QEMU take interrupts only between translation blocks.
    pub multi_insn_tb: bool,
    /// Count the NMI arrival windows in the crate's code that the boots hit.
    pub coverage: bool,
    /// Run every boot and count the outcomes, instead of stopping at the first unexpected.
    pub tally: bool,
    /// Print the boots' outcomes as JSON on standard output (xtask's own lines go to standard
    /// error).
    pub json: bool,
}

/// Boot `options.build` `options.boots` times, each with its expected outcome required unless
/// `tally` (then every boot runs, and the outcomes are counted). With `coverage`, the NMI arrival
/// windows in the crate's paths are counted over all boots.
pub fn run(options: &Options) -> Result<(), KernelError> {
    if options.json {
        process::stdout_for_json();
    }
    let mut reports = Vec::new();
    let result = boots(options, &mut reports);
    if options.json {
        let report = Report {
            build: options.build,
            boots: reports,
            exit_status: result.as_ref().map_or_else(KernelError::exit_status, |_| 0),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report is JSON")
        );
    }
    result
}

fn boots(options: &Options, reports: &mut Vec<BootReport>) -> Result<(), KernelError> {
    let Options {
        build,
        boots,
        multi_insn_tb,
        coverage,
        tally,
        ..
    } = *options;
    // A copy of its own: a later build of another variant does not change what these boots run.
    let built = qemu::build(build.features())?;
    let elf = built.with_file_name(format!("kdemo-{}", build.name()));
    std::fs::copy(&built, &elf).map_err(|e| FileError::new("copy", &built, e))?;
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    let mut rips = BTreeSet::new();
    let mut per_boot = Vec::new();
    let mut seconds = Vec::new();
    let mut first_error = None;
    for n in 1..=boots {
        say!("boot {n} of {boots}");
        let boot = qemu::boot(build, &elf, multi_insn_tb, TIMEOUT)?;
        reports.push(boot.report());
        *outcomes.entry(boot.outcome.to_string()).or_default() += 1;
        seconds.push(boot.elapsed.as_secs_f64());
        if coverage {
            let these = boot.nmi_rips()?;
            rips.extend(these.iter().copied());
            per_boot.push(these);
        }
        if let Err(e) = boot.require_expected() {
            if !tally {
                return Err(e);
            }
            say!("{e}");
            // The exit status names the worst: a boot without a verdict over a wrong verdict.
            if first_error
                .as_ref()
                .is_none_or(|f: &KernelError| e.exit_status() > f.exit_status())
            {
                first_error = Some(e);
            }
        }
    }
    seconds.sort_by(f64::total_cmp);
    say!(
        "{} kernel, {boots} boots, {}: {}; boot time median {:.1} s, max {:.1} s",
        build.name(),
        if multi_insn_tb {
            "interrupts at translation-block boundaries"
        } else {
            "one instruction per translation block"
        },
        outcomes
            .iter()
            .map(|(o, n)| format!("{n} × {o}"))
            .collect::<Vec<_>>()
            .join(", "),
        seconds[seconds.len() / 2],
        seconds[seconds.len() - 1],
    );
    if coverage {
        let windows = Windows::of(&elf)?;
        let hit: BTreeSet<u64> = rips.intersection(&windows.all).copied().collect();
        let mean = per_boot
            .iter()
            .map(|b| b.intersection(&windows.all).count())
            .sum::<usize>() as f64
            / per_boot.len().max(1) as f64;
        say!(
            "NMI arrival windows in the crate's code (instruction addresses whose line is in \
             crates/kmap/src, formatting code left out): {} of {} hit over {boots} boots (mean \
             {mean:.1} a boot); {} distinct addresses interrupted in all",
            hit.len(),
            windows.all.len(),
            rips.len()
        );
        for (function, addresses) in &windows.by_function {
            let n = addresses.intersection(&hit).count();
            say!("  {n:>4} of {:>4}  {function}", addresses.len());
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Build and boot `build` once.
pub fn boot(build: Build) -> Result<Boot, KernelError> {
    let elf = qemu::build(build.features())?;
    qemu::boot(build, &elf, false, TIMEOUT)
}

/// Boot the benchmark build `runs` times; the log of each.
pub fn bench(runs: u32) -> Result<Vec<Vec<String>>, KernelError> {
    let elf = qemu::build("bench")?;
    let mut logs = Vec::new();
    for _ in 0..runs {
        // Figures, not a correctness check: blocks of many instructions, as QEMU runs by default.
        let boot = qemu::boot(Build::Split, &elf, true, TIMEOUT)?;
        if boot.outcome != Outcome::Passed {
            return Err(KernelError::Benchmark(Box::new(boot.report())));
        }
        logs.push(boot.log);
    }
    Ok(logs)
}
