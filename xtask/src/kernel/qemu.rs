//! Building the kernel and booting it under QEMU: TCG software emulation, two CPUs, the serial
//! port on QEMU's standard output (each line shown as it comes, and kept), QEMU's
//! `isa-debug-exit` device for the kernel's exit status, and a time limit after which the boot
//! counts as hung. The outcome is read from the kernel's `RESULT` record and QEMU's exit
//! status; QEMU's own `--version` text is parsed here (an external tool's output).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::serial::{self, Verdict};
use super::{Boot, Build, KernelError, Outcome};
use crate::process::{self, echo};
use crate::say;

/// QEMU's exit status when the kernel writes its pass code to `isa-debug-exit`.
const EXIT_PASS: i32 = 33;
const QEMU: &str = "qemu-system-x86_64";

/// QEMU's accelerator arguments: TCG, with one instruction per translation block unless
/// `multi_insn_tb` (spelt `-singlestep` before QEMU 8.1, `one-insn-per-tb=on` from 8.1).
fn accel(multi_insn_tb: bool) -> Result<Vec<String>, KernelError> {
    if multi_insn_tb {
        return Ok(vec!["-accel".into(), "tcg".into()]);
    }
    let mut version = Command::new(QEMU);
    version.arg("--version");
    let output = process::output_of(version).map_err(KernelError::Qemu)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .ok_or_else(|| KernelError::QemuVersion {
            output: text.to_string(),
        })?;
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
pub fn build(features: &str) -> Result<PathBuf, KernelError> {
    let dir = process::workspace_root().join("kernel");
    let mut args = vec!["build", "--release"];
    if !features.is_empty() {
        args.extend(["--features", features]);
    }
    process::cargo(&dir, &args, &[]).map_err(KernelError::Build)?;
    Ok(dir.join("target/x86_64-unknown-linux-gnu/release/kdemo"))
}

/// Boot `elf` (of `build`) once, for at most `timeout`.
pub fn boot(
    build: Build,
    elf: &Path,
    multi_insn_tb: bool,
    timeout: Duration,
) -> Result<Boot, KernelError> {
    process::ensure_tool(QEMU, "qemu-system-x86")?;
    let accel = accel(multi_insn_tb)?;
    say!(
        "booting the {} kernel under QEMU ({}, 2 CPUs), at most {} s",
        build.name(),
        accel.join(" "),
        timeout.as_secs()
    );
    let start = Instant::now();
    let mut qemu = Command::new(QEMU);
    qemu.args(&accel)
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
        .stdout(Stdio::piped());
    let shown = process::shown(&qemu);
    let mut child = qemu.spawn().map_err(|source| {
        KernelError::Qemu(process::CommandError::Spawn {
            command: shown.clone(),
            source,
        })
    })?;
    let stdout = child.stdout.take().expect("piped");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !serial::is_record(&line, "NMI-RIPS") {
                echo(&line);
            }
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let lost = |source| {
        KernelError::Qemu(process::CommandError::Wait {
            command: shown.clone(),
            source,
        })
    };
    let status = loop {
        if let Some(status) = child.try_wait().map_err(lost)? {
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
    // A failure the kernel reported counts, whatever ended QEMU after it.
    let verdicts: Vec<Verdict> = serial::records(&log, "RESULT").collect::<Result<_, _>>()?;
    let failure = verdicts.iter().find_map(|v| match v {
        Verdict::Fail(failure) => Some(failure.clone()),
        Verdict::Pass => None,
    });
    let passed = verdicts.contains(&Verdict::Pass);
    let outcome = match (status, failure) {
        (_, Some(failure)) => Outcome::Failed(failure),
        (None, None) => Outcome::Hung,
        (Some(Some(EXIT_PASS)), None) if passed => Outcome::Passed,
        (Some(status), None) => Outcome::NoVerdict { status },
    };
    Ok(Boot {
        build,
        outcome,
        log,
        elapsed: start.elapsed(),
    })
}
