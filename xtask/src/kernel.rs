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

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one boot may take (the slowest, a broken build uncaught by its deadline, runs about
/// 3 minutes under one instruction per translation block).
const TIMEOUT: Duration = Duration::from_secs(400);
const EXIT_PASS: i32 = 33;

/// A build of the demo kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `RESULT: PASS` with QEMU's exit status 33.
    Passed,
    /// A `FAILURE: <kind>` (or `RESULT: FAIL`) line, whatever ended QEMU after it.
    Failed(String),
    /// QEMU ended without a verdict (a triple fault resets, and `-no-reboot` ends QEMU).
    NoVerdict(Option<i32>),
    /// Killed after the timeout.
    Hung,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Passed => write!(f, "RESULT: PASS"),
            Outcome::Failed(kind) => write!(f, "caught: {kind}"),
            Outcome::NoVerdict(status) => write!(
                f,
                "QEMU ended without a verdict (exit status {status:?}; a triple fault?)"
            ),
            Outcome::Hung => write!(f, "hung: killed after {} s", TIMEOUT.as_secs()),
        }
    }
}

/// Why `cargo xtask kernel` failed; its exit status says which.
pub enum KernelError {
    /// A boot ended in a verdict its build must not give (exit status 1).
    Unexpected(String),
    /// A boot hung or ended without a verdict (exit status 3).
    NoVerdict(String),
    /// The kernel did not build, or QEMU could not run (exit status 4).
    Setup(String),
}

impl KernelError {
    pub fn exit_status(&self) -> u8 {
        match self {
            KernelError::Unexpected(_) => 1,
            KernelError::NoVerdict(_) => 3,
            KernelError::Setup(_) => 4,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            KernelError::Unexpected(m) | KernelError::NoVerdict(m) | KernelError::Setup(m) => m,
        }
    }
}

impl From<KernelError> for String {
    fn from(e: KernelError) -> String {
        e.message().to_string()
    }
}

/// One boot.
pub struct Boot {
    pub build: Build,
    pub outcome: Outcome,
    pub log: Vec<String>,
    pub elapsed: Duration,
}

impl Boot {
    /// Whether the outcome is the build's expected one, and in words.
    fn judge(&self) -> Result<&'static str, KernelError> {
        let describe = || {
            format!(
                "{} kernel: {} after {:.1} s",
                self.build.name(),
                self.outcome,
                self.elapsed.as_secs_f64()
            )
        };
        match (&self.outcome, self.build.expect()) {
            (Outcome::Passed, Expect::Pass) => Ok("passed, as it must"),
            (Outcome::Passed, Expect::MayCatch(_)) => Ok("not caught before its deadline"),
            (Outcome::Failed(kind), Expect::Caught(kinds) | Expect::MayCatch(kinds))
                if kinds.contains(&kind.as_str()) =>
            {
                Ok("caught with an expected consequence")
            }
            (Outcome::Hung | Outcome::NoVerdict(_), _) => Err(KernelError::NoVerdict(describe())),
            (Outcome::Passed, Expect::Caught(_)) => Err(KernelError::Unexpected(format!(
                "{}: not caught",
                describe()
            ))),
            (Outcome::Failed(_), _) => Err(KernelError::Unexpected(format!(
                "{}: not a failure this build is meant to produce",
                describe()
            ))),
        }
    }

    /// The boot must have ended as its build is meant to.
    pub fn require_expected(&self) -> Result<(), KernelError> {
        let verdict = self.judge()?;
        println!(
            "xtask: {} kernel: {} after {:.1} s: {verdict}",
            self.build.name(),
            self.outcome,
            self.elapsed.as_secs_f64()
        );
        Ok(())
    }

    /// The instruction addresses NMIs interrupted, from the `NMI-RIPS` lines.
    fn nmi_rips(&self) -> impl Iterator<Item = u64> + '_ {
        self.log
            .iter()
            .filter_map(|l| l.strip_prefix("NMI-RIPS "))
            .flat_map(|l| l.split_whitespace())
            .filter_map(|a| u64::from_str_radix(a, 16).ok())
    }
}

fn qemu() -> Result<&'static str, KernelError> {
    let qemu = "qemu-system-x86_64";
    crate::ensure_tool(qemu, "qemu-system-x86").map_err(KernelError::Setup)?;
    Ok(qemu)
}

/// QEMU's accelerator arguments: TCG, with one instruction per translation block unless
/// `multi_insn_tb` (spelt `-singlestep` before QEMU 8.1, `one-insn-per-tb=on` from 8.1).
fn accel(qemu: &str, multi_insn_tb: bool) -> Result<Vec<String>, KernelError> {
    if multi_insn_tb {
        return Ok(vec!["-accel".into(), "tcg".into()]);
    }
    let output = Command::new(qemu)
        .arg("--version")
        .output()
        .map_err(|e| KernelError::Setup(format!("could not run {qemu} --version: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .ok_or_else(|| KernelError::Setup(format!("no version in `{qemu} --version`: {text}")))?;
    let mut parts = version
        .split(['.', '-', '('])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Ok(if (major, minor) >= (8, 1) {
        vec!["-accel".into(), "tcg,one-insn-per-tb=on".into()]
    } else {
        vec!["-accel".into(), "tcg".into(), "-singlestep".into()]
    })
}

/// Build the kernel with `features` (release), returning the ELF's path.
fn build(features: &str) -> Result<PathBuf, KernelError> {
    let dir = crate::workspace_root().join("kernel");
    let mut args = vec!["build", "--release"];
    if !features.is_empty() {
        args.extend(["--features", features]);
    }
    crate::cargo(&dir, &args, &[]).map_err(KernelError::Setup)?;
    Ok(dir.join("target/x86_64-unknown-linux-gnu/release/kdemo"))
}

/// Boot `build` `boots` times, each with its expected outcome required unless `tally` (then
/// every boot runs, and the outcomes are counted). With `coverage`, the NMI arrival windows in
/// the crate's paths are counted over all boots.
pub fn run(
    build: Build,
    boots: u32,
    multi_insn_tb: bool,
    coverage: bool,
    tally: bool,
) -> Result<(), KernelError> {
    // A copy of its own: a later build of another variant does not change what these boots run.
    let built = self::build(build.features())?;
    let elf = built.with_file_name(format!("kdemo-{}", build.name()));
    std::fs::copy(&built, &elf)
        .map_err(|e| KernelError::Setup(format!("cannot copy {}: {e}", built.display())))?;
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    let mut rips = BTreeSet::new();
    let mut per_boot = Vec::new();
    let mut seconds = Vec::new();
    let mut first_error = None;
    for n in 1..=boots {
        println!("xtask: boot {n} of {boots}");
        let boot = boot_elf(build, &elf, multi_insn_tb, TIMEOUT)?;
        *outcomes.entry(boot.outcome.to_string()).or_default() += 1;
        seconds.push(boot.elapsed.as_secs_f64());
        if coverage {
            let these: BTreeSet<u64> = boot.nmi_rips().collect();
            per_boot.push(these.clone());
            rips.extend(these);
        }
        if let Err(e) = boot.require_expected() {
            eprintln!("xtask: {}", e.message());
            if !tally {
                return Err(e);
            }
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
    println!(
        "xtask: {} kernel, {boots} boots, {}: {}; boot time median {:.1} s, max {:.1} s",
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
        println!(
            "xtask: NMI arrival windows in the crate's code (instruction addresses whose line is in \
             crates/kmap/src, formatting code left out): {} of {} hit over {boots} boots (mean {mean:.1} a boot); {} distinct \
             addresses interrupted in all",
            hit.len(),
            windows.all.len(),
            rips.len()
        );
        for (function, addresses) in &windows.by_function {
            let n = addresses.intersection(&hit).count();
            println!("xtask:   {n:>4} of {:>4}  {function}", addresses.len());
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The instruction addresses of the kernel whose line-table entry is in the crate's sources
/// (its map, unmap, guard and switch paths; not the formatting of its types), by the function
/// (symbol) they are compiled into.
struct Windows {
    all: BTreeSet<u64>,
    by_function: BTreeMap<String, BTreeSet<u64>>,
}

impl Windows {
    fn of(elf: &Path) -> Result<Windows, KernelError> {
        crate::ensure_tool("objdump", "binutils").map_err(KernelError::Setup)?;
        let output = Command::new("objdump")
            .args(["-d", "-l", "-C", "--no-show-raw-insn"])
            .arg(elf)
            .output()
            .map_err(|e| KernelError::Setup(format!("could not run objdump: {e}")))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut windows = Windows {
            all: BTreeSet::new(),
            by_function: BTreeMap::new(),
        };
        let (mut function, mut in_crate) = (String::new(), false);
        for line in text.lines() {
            if let Some(name) = line.strip_suffix(">:").and_then(|l| l.split_once(" <")) {
                function = name.1.to_string();
                in_crate = false;
            } else if line.starts_with('/') {
                in_crate = line.contains("/crates/kmap/src/");
            } else if in_crate && !function.ends_with("::fmt") {
                // Formatting code of the crate's types (Debug, Display) is not a path of it.
                let address = line.trim_start().split(':').next().unwrap_or("");
                if let Ok(address) = u64::from_str_radix(address, 16) {
                    windows.all.insert(address);
                    windows
                        .by_function
                        .entry(short(&function))
                        .or_default()
                        .insert(address);
                }
            }
        }
        if windows.all.is_empty() {
            return Err(KernelError::Setup(
                "objdump found no line of crates/kmap/src in the kernel (no debug info?)".into(),
            ));
        }
        Ok(windows)
    }
}

/// A symbol without its generic arguments and hash: `kdemo::workload::task_main`;
/// `<kmap::guard::Mapping<P> as core::ops::drop::Drop>::drop` is `kmap::guard::Mapping::drop`.
fn short(symbol: &str) -> String {
    if let Some((qualified, method)) = symbol
        .strip_prefix('<')
        .and_then(|s| s.split_once(" as "))
        .and_then(|(ty, rest)| Some((ty, rest.rsplit_once(">::")?.1)))
    {
        return short(&format!("{qualified}::{method}"));
    }
    let mut out = String::new();
    let mut depth = 0;
    for c in symbol.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    // A legacy mangled name may keep its hash: `::h` and 16 hex digits.
    match out.rsplit_once("::h") {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => out,
    }
}

/// Build and boot `build` once.
pub fn boot(build: Build) -> Result<Boot, KernelError> {
    let elf = self::build(build.features())?;
    boot_elf(build, &elf, false, TIMEOUT)
}

/// Boot the benchmark build `runs` times; the log of each.
pub fn bench(runs: u32) -> Result<Vec<Vec<String>>, String> {
    let elf = build("bench")?;
    let mut logs = Vec::new();
    for _ in 0..runs {
        // Figures, not a correctness check: blocks of many instructions, as QEMU runs by default.
        let boot = boot_elf(Build::Split, &elf, true, TIMEOUT)?;
        if boot.outcome != Outcome::Passed {
            return Err(format!(
                "the benchmark kernel failed: {} after {:.1} s",
                boot.outcome,
                boot.elapsed.as_secs_f64()
            ));
        }
        logs.push(boot.log);
    }
    Ok(logs)
}

fn boot_elf(
    build: Build,
    elf: &Path,
    multi_insn_tb: bool,
    timeout: Duration,
) -> Result<Boot, KernelError> {
    let qemu = qemu()?;
    let accel = accel(qemu, multi_insn_tb)?;
    println!(
        "xtask: booting the {} kernel under QEMU ({}, 2 CPUs), at most {} s",
        build.name(),
        accel.join(" "),
        timeout.as_secs()
    );
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(&accel)
        .args(["-m", "128M", "-smp", "2", "-kernel"])
        .arg(elf)
        .args([
            "-serial",
            "stdio",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| KernelError::Setup(format!("could not start {qemu}: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !line.starts_with("NMI-RIPS ") {
                println!("  | {line}");
            }
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| KernelError::Setup(e.to_string()))?
        {
            break Some(status.code());
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    let log: Vec<String> = received.try_iter().collect();
    let has = |text: &str| log.iter().any(|l| l.trim() == text);
    // A failure the kernel reported counts, whatever ended QEMU after it.
    let failure = log.iter().find_map(|l| l.strip_prefix("FAILURE: "));
    let outcome = match (status, failure) {
        (_, Some(kind)) => Outcome::Failed(kind.trim().to_string()),
        (_, None) if has("RESULT: FAIL") => Outcome::Failed("unnamed".into()),
        (None, None) => Outcome::Hung,
        (Some(Some(EXIT_PASS)), None) if has("RESULT: PASS") => Outcome::Passed,
        (Some(status), None) => Outcome::NoVerdict(status),
    };
    Ok(Boot {
        build,
        outcome,
        log,
        elapsed: start.elapsed(),
    })
}
