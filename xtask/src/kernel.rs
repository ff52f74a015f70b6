//! Build the demo kernel and boot it under QEMU (software emulation), reading its serial log.
//!
//! Success is QEMU's exit status 33 (the kernel wrote 0x10 to `isa-debug-exit`) *and* a
//! `RESULT: PASS` line: a triple fault makes QEMU exit with 0, so 0 is never success.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one boot may take.
const TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_PASS: i32 = 33;
const EXIT_FAIL: i32 = 35;

/// The switch protocol a kernel is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// The crate's hooks: sched_out in prepare-switch, sched_in in finish-switch.
    Split,
    /// The September 2020 RFC's single-step swap while `current` is still prev.
    #[value(name = "rfc-v1")]
    RfcV1,
}

/// How a boot ended.
pub struct Boot {
    switch: Switch,
    status: Option<i32>,
    log: Vec<String>,
    elapsed: Duration,
}

impl Boot {
    fn passed(&self) -> bool {
        self.status == Some(EXIT_PASS) && self.log.iter().any(|l| l.trim() == "RESULT: PASS")
    }

    fn caught(&self) -> bool {
        self.status == Some(EXIT_FAIL)
            && self.log.iter().any(|l| l.trim() == "RESULT: FAIL")
            && self.log.iter().any(|l| l.starts_with("FAIL on CPU"))
    }

    fn describe(&self) -> String {
        let status = self
            .status
            .map_or("killed after the timeout".to_string(), |s| {
                format!("exit status {s}")
            });
        format!(
            "{:?} kernel: {status} after {:.1} s",
            self.switch,
            self.elapsed.as_secs_f64()
        )
    }

    /// The boot must have reached RESULT: PASS.
    pub fn require_pass(self) -> Result<(), String> {
        if self.passed() {
            println!("xtask: {}: RESULT: PASS", self.describe());
            Ok(())
        } else {
            Err(format!("{}: no RESULT: PASS", self.describe()))
        }
    }

    /// The boot must have been stopped by the workload catching the corruption.
    pub fn require_caught(self) -> Result<(), String> {
        if self.caught() {
            println!(
                "xtask: {}: the corruption was caught, as it must be",
                self.describe()
            );
            Ok(())
        } else {
            Err(format!(
                "{}: the rfc-v1 kernel was not caught corrupting within {} s",
                self.describe(),
                TIMEOUT.as_secs()
            ))
        }
    }
}

fn qemu() -> Result<&'static str, String> {
    let qemu = "qemu-system-x86_64";
    crate::ensure_tool(qemu, "qemu-system-x86")?;
    Ok(qemu)
}

/// Build the kernel with `switch` and boot it once, echoing its serial log.
pub fn boot(switch: Switch) -> Result<Boot, String> {
    let features: &[&str] = match switch {
        Switch::Split => &[],
        Switch::RfcV1 => &["--features", "rfc-v1"],
    };
    boot_with(switch, features, TIMEOUT)
}

/// Boot the benchmark build `runs` times; the `BENCH` lines of each, as Markdown.
pub fn bench(runs: u32) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for run in 1..=runs {
        let boot = boot_with(Switch::Split, &["--features", "bench"], 2 * TIMEOUT)?;
        if !boot.passed() {
            return Err(format!("the benchmark kernel failed: {}", boot.describe()));
        }
        lines.push(format!(
            "Boot {run} of {runs} (`cargo build --release --features bench` in `kernel/`):\n"
        ));
        lines.push("```".into());
        lines.extend(boot.log.iter().filter(|l| l.starts_with("BENCH")).cloned());
        lines.push("```".into());
    }
    Ok(lines)
}

fn boot_with(switch: Switch, features: &[&str], timeout: Duration) -> Result<Boot, String> {
    let qemu = qemu()?;
    let dir = crate::workspace_root().join("kernel");
    let mut args = vec!["build", "--release"];
    args.extend(features);
    crate::cargo(&dir, &args, &[])?;
    let elf = dir.join("target/x86_64-unknown-linux-gnu/release/kdemo");
    println!(
        "xtask: booting the {switch:?} kernel under QEMU (TCG, 2 CPUs), at most {} s",
        TIMEOUT.as_secs()
    );
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-accel", "tcg", "-m", "128M", "-smp", "2", "-kernel"])
        .arg(&elf)
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
        .map_err(|e| format!("could not start {qemu}: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("  | {line}");
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    Ok(Boot {
        switch,
        status,
        log: received.try_iter().collect(),
        elapsed: start.elapsed(),
    })
}
