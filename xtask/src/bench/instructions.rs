//! Instruction counts of the crate's paths on a minimal platform (`crates/kmap-bench`), by
//! callgrind (exact and repeatable on a noisy machine), and the switch hooks as compiled (objdump
//! of `path_switch`). valgrind's and objdump's text is parsed here: external tools' output.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use thiserror::Error;

use crate::process::{self, CommandError, FileError};

/// Why the instruction counts could not be measured.
#[derive(Debug, Error)]
pub enum InstructionsError {
    /// valgrind is not installed.
    #[error("valgrind is not installed; install it with: apt-get install -y valgrind")]
    NoValgrind,
    /// The benchmark binary did not build, or a tool could not run.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// callgrind's output could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// callgrind's output has no totals line.
    #[error("no totals in {}", path.display())]
    NoTotals { path: std::path::PathBuf },
    /// objdump found no `path_switch` in the benchmark binary.
    #[error("objdump found no path_switch")]
    NoSwitch,
}

/// Calls of each path under callgrind (the count is divided by this).
const CALLS: u64 = 1000;

struct Measured {
    name: String,
    what: String,
    instructions: u64,
    target: Option<u64>,
}

/// The instruction counts of the crate's paths under callgrind, and the switch hooks as
/// compiled.
pub fn section(root: &Path) -> Result<String, InstructionsError> {
    let mut section = String::new();
    let paths = instruction_counts(root)?;
    let _ = writeln!(section, "## Instruction counts of the crate's paths\n");
    let _ = writeln!(
        section,
        "`valgrind --tool=callgrind --toggle-collect=FUNCTION` around `crates/kmap-bench` (a platform whose \
         hooks are plain loads and stores of statics), {CALLS} calls each, instructions per call. Each \
         measured function includes its own frame (a `ret`, sometimes a `push`/`pop`) and, for map + \
         unmap, a `black_box` store and reload of the address between the two calls. The paths \
         whose names say `any-order`, `release` or `holes` run on the same platform with \
         `RELEASE_ANY_ORDER` on (the others with it off, the default); for the release paths the \
         maps that set the scene are not counted.\n"
    );
    let _ = writeln!(section, "| path | instructions | target | |");
    let _ = writeln!(section, "|---|---:|---:|---|");
    for p in &paths {
        let (target, verdict) = match p.target {
            Some(t) if p.instructions <= t => (format!("≤ {t}"), "met"),
            Some(t) => (format!("≤ {t}"), "MISSED"),
            None => (String::new(), ""),
        };
        let _ = writeln!(
            section,
            "| {} ({}) | {} | {target} | {verdict} |",
            p.what, p.name, p.instructions
        );
    }
    let (listing, hooks) = switch_disassembly(root)?;
    let _ = writeln!(
        section,
        "\nThe switch hooks with no mapping, as compiled (`objdump -d` of `path_switch`, up to its \
         `ret`): {hooks} instructions besides the measured function's own `push`/`pop`/`ret` \
         (target ≤ 6: one load of `idx`, a test and a not-taken branch per hook: {}). The loops for \
         tasks that hold mappings are out of line (`#[cold]`).\n\n```\n{listing}```\n",
        if hooks <= 6 { "met" } else { "MISSED" }
    );

    Ok(section)
}

fn instruction_counts(root: &Path) -> Result<Vec<Measured>, InstructionsError> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Err(InstructionsError::NoValgrind);
    }
    process::cargo(
        root,
        &["build", "--release", "--package", "kmap-bench"],
        &[],
    )?;
    let binary = root.join("target/release/kmap-bench");
    let mut list = Command::new(&binary);
    list.arg("--list");
    let list = process::output_of(list)?;
    let targets = [("map-unmap-highmem", 60), ("map-unmap-lowmem", 10)];
    let mut paths = Vec::new();
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(name), Some(function), Some(what)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let out = std::env::temp_dir().join(format!("kmap-callgrind-{name}.out"));
        let mut callgrind = Command::new("valgrind");
        callgrind
            .args(["--tool=callgrind", &format!("--toggle-collect={function}")])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(&binary)
            .args([name, &CALLS.to_string()]);
        process::output_of(callgrind)?;
        let text = process::read(&out)?;
        let total: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("totals: "))
            .and_then(|t| t.trim().parse().ok())
            .ok_or(InstructionsError::NoTotals { path: out.clone() })?;
        paths.push(Measured {
            name: name.into(),
            what: what.into(),
            instructions: total / CALLS,
            target: targets.iter().find(|(n, _)| *n == name).map(|(_, t)| *t),
        });
    }
    Ok(paths)
}

/// The instructions of `path_switch` up to its first `ret`, and how many of them are not the
/// function's frame (`push`, `pop`, `ret`).
fn switch_disassembly(root: &Path) -> Result<(String, usize), InstructionsError> {
    let binary = root.join("target/release/kmap-bench");
    let mut objdump = Command::new("objdump");
    objdump
        .args([
            "-d",
            "--no-show-raw-insn",
            "-M",
            "intel",
            "--disassemble=path_switch",
        ])
        .arg(&binary);
    let output = process::output_of(objdump)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut listing = String::new();
    let mut hooks = 0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(':'))
    {
        let instruction = line
            .split_once(':')
            .map(|(_, i)| i.trim())
            .unwrap_or_default();
        let _ = writeln!(listing, "{instruction}");
        let mnemonic = instruction.split_whitespace().next().unwrap_or_default();
        if !matches!(mnemonic, "push" | "pop" | "ret") {
            hooks += 1;
        }
        if mnemonic == "ret" {
            break;
        }
    }
    if listing.is_empty() {
        return Err(InstructionsError::NoSwitch);
    }
    Ok((listing, hooks))
}
