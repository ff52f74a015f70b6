//! `kmap prove` side by side with the SPIN model of `shared/reference/spin/`: the same scopes,
//! on the same machine, in the same run, one after the other (never both at once).
//!
//! The SPIN runs are built as `run.sh` there builds them (`spin -a`, `gcc -O2 -DSAFETY`, `pan`),
//! each capped at 8 GB of memory and a time limit; `kmap prove` runs from the release binary.
//! Time and peak memory are measured the same way for both: the wall time by this process's
//! clock around the command (to the microsecond: `/usr/bin/time` gives hundredths, and a small
//! scope takes a few milliseconds), the peak memory and the CPU time by `/usr/bin/time`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use thiserror::Error;

use super::timed::{Timed, from_json, timed};
use crate::process::{self, CommandError};
use crate::say;

/// Why the table could not be made.
#[derive(Debug, Error)]
pub enum ProveBenchError {
    /// The `kmap` binary did not build.
    #[error(transparent)]
    Build(#[from] CommandError),
    /// `/usr/bin/time` could not run.
    #[error("could not run /usr/bin/time (apt-get install -y time)")]
    Time(#[source] std::io::Error),
    /// `kmap prove --json` printed no JSON xtask reads.
    #[error("kmap prove printed no JSON xtask reads: {output}")]
    NoJson {
        output: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What `kmap prove --json` prints (the fields read here).
#[derive(Deserialize)]
struct Proof {
    verdict: String,
    complete: bool,
    states: u64,
    violation: Option<Violation>,
}

#[derive(Deserialize)]
struct Violation {
    kind: String,
}

/// One row: a scope, its protocol, and how SPIN checks it (`None`: SPIN has no model of it).
struct Row {
    cpus: usize,
    tasks: usize,
    depth: usize,
    nmi: bool,
    protocol: &'static str,
    /// `kmap prove --release`: `lifo`, or `any` (the tasks may also release below the top).
    release: &'static str,
    spin: Option<SpinRun>,
}

struct SpinRun {
    model: &'static str,
    defines: &'static str,
    gcc: &'static str,
    pan: &'static str,
    seconds: u64,
}

/// A row as written: `(cpus, tasks, depth, nmi, protocol, SPIN model, defines, gcc flags, pan
/// flags, seconds)`, the model empty where SPIN has none.
type RowText = (
    usize,
    usize,
    usize,
    bool,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u64,
);

/// The rows.
#[rustfmt::skip]
const ROWS: &[RowText] = &[
    (1, 2, 1, true, "split", "kmap_split.pml", "", "", "", 300),
    (1, 3, 2, true, "split", "kmap_split.pml", "-DNT=3 -DD=2", "-DCOLLAPSE", "", 600),
    (1, 3, 3, true, "split", "kmap_split.pml", "-DNT=3 -DD=3", "-DCOLLAPSE", "-w27", 900),
    (2, 3, 1, false, "split", "kmap_split.pml", "-DNCPU=2 -DNT=3 -DNONMI", "-DCOLLAPSE", "-m20000000 -w26", 900),
    (2, 3, 1, true, "split", "kmap_split.pml", "-DNCPU=2 -DNT=3", "-DCOLLAPSE", "-m60000000 -w28", 600),
    (2, 3, 2, true, "split", "", "", "", "", 0),
    (1, 2, 1, true, "rfc-v1", "kmap_naive.pml", "", "-DBFS", "", 300),
    (1, 3, 2, true, "rfc-v1", "kmap_naive.pml", "-DNT=3 -DD=2", "-DBFS", "", 300),
    (1, 3, 3, true, "rfc-v1", "kmap_naive.pml", "-DNT=3 -DD=3", "-DBFS", "", 300),
    (2, 3, 1, true, "rfc-v1", "kmap_naive.pml", "-DNCPU=2 -DNT=3", "-DBFS", "", 300),
    (1, 3, 2, true, "swap-after-current", "", "", "", "", 0),
    (2, 3, 1, true, "swap-after-current", "", "", "", "", 0),
];

/// The scopes proved with release in any order (CPUs, tasks, depth; IRQ and NMI), under the
/// split protocol. SPIN has no model of it.
const ANY_ORDER_ROWS: &[(usize, usize, usize)] = &[(1, 3, 3), (2, 3, 2)];

/// The commit whose throughput the table compares with (issue 20's "today"): its `kmap prove` is
/// built from a git worktree and run on [`BASELINE_SCOPE`] in the same run.
const BASELINE: &str = "001b93f";

/// The scope of the throughput comparison (CPUs, tasks, depth): IRQ and NMI, split, release LIFO.
const BASELINE_SCOPE: (usize, usize, usize) = (1, 3, 2);

fn rows() -> Vec<Row> {
    ROWS.iter()
        .map(
            |&(cpus, tasks, depth, nmi, protocol, model, defines, gcc, pan, seconds)| Row {
                cpus,
                tasks,
                depth,
                nmi,
                protocol,
                release: "lifo",
                spin: (!model.is_empty()).then_some(SpinRun {
                    model,
                    defines,
                    gcc,
                    pan,
                    seconds,
                }),
            },
        )
        .chain(ANY_ORDER_ROWS.iter().map(|&(cpus, tasks, depth)| Row {
            cpus,
            tasks,
            depth,
            nmi: true,
            protocol: "split",
            release: "any",
            spin: None,
        }))
        .collect()
}

/// What one checker said about one row.
#[derive(Default)]
struct Measured {
    verdict: String,
    states: String,
    seconds: Option<f64>,
    /// User and system time, all threads together.
    cpu_seconds: Option<f64>,
    peak_mib: Option<f64>,
}

impl Measured {
    /// States per second of CPU time: the throughput of one core.
    fn per_core(&self) -> Option<f64> {
        let states: f64 = self.states.parse().ok()?;
        self.cpu_seconds
            .filter(|&c| c > 0.0)
            .map(|cpu| states / cpu)
    }
}

/// The section of BENCHMARKS.md, or why it could not be made.
pub fn section(root: &Path) -> Result<String, ProveBenchError> {
    process::cargo(root, &["build", "--release", "--package", "kmap-cli"], &[])?;
    let kmap = root.join("target/release/kmap");
    let models = root.parent().map(|p| p.join("shared/reference/spin"));
    let spin_ready = Command::new("spin").arg("-V").output().is_ok()
        && models.as_ref().is_some_and(|m| m.join("kmap.pml").exists());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## `kmap prove` side by side with SPIN\n\n\
         Each row is one scope: CPUs / tasks / depth, an interrupt that maps everywhere, and an NMI \
         that maps anywhere (\"IRQ\" alone: no NMI), under one switch protocol. SPIN checks the \
         model of `reference/spin/` (built as its `run.sh` builds it, capped at 8 GB and a time \
         limit); `kmap prove` checks the crate's real code. Both ran one after the other in this \
         run, on this machine; for both, the wall time by the bench's clock around the process \
         (start-up included, a few milliseconds: most of the smallest rows' time; shown to the \
         millisecond under a second), the peak memory by `/usr/bin/time`. The two count \
         states at different grains (SPIN: every statement of the model; kmap: every choice point \
         of the real code, with interrupts probed at every arrival point instead of interleaved), \
         so the state counts are not comparable; the verdicts and the costs are.\n"
    );
    if !spin_ready {
        let _ = writeln!(
            out,
            "SPIN was not run: `spin` is not installed (`apt-get install -y spin`) or the models are \
             not at `../shared/reference/spin`.\n"
        );
    }
    let _ = writeln!(
        out,
        "| scope | protocol | kmap verdict | kmap states | kmap time | kmap states/s per core | kmap memory | SPIN verdict | SPIN states | SPIN time | SPIN memory | time ratio (SPIN / kmap) |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"
    );
    let mut baseline_row = None;
    for row in rows() {
        let kmap_run = run_kmap(&kmap, &row, true, None)?;
        let spin_run = match (&row.spin, spin_ready, &models) {
            (Some(spin), true, Some(models)) => run_spin(models, spin),
            (Some(_), _, _) => Measured {
                verdict: "not run".into(),
                ..Measured::default()
            },
            (None, _, _) => Measured {
                verdict: "no model".into(),
                ..Measured::default()
            },
        };
        let ratio = match (spin_run.seconds, kmap_run.seconds) {
            (Some(s), Some(k)) if k > 0.0 && !spin_run.verdict.starts_with("incomplete") => {
                format!("{:.1}×", s / k)
            }
            _ => "—".into(),
        };
        let show = |m: &Measured| {
            (
                m.seconds.map_or("—".into(), seconds_text),
                m.peak_mib.map_or("—".into(), |p| format!("{p:.0} MiB")),
            )
        };
        let ((kt, km), (st, sm)) = (show(&kmap_run), show(&spin_run));
        let kc = per_core_text(&kmap_run);
        let _ = writeln!(
            out,
            "| {}/{}/{} {} | {} | {} | {} | {kt} | {kc} | {km} | {} | {} | {st} | {sm} | {ratio} |",
            row.cpus,
            row.tasks,
            row.depth,
            if row.nmi { "IRQ+NMI" } else { "IRQ" },
            match row.release {
                "lifo" => row.protocol.to_string(),
                release => format!("{}, release {release}", row.protocol),
            },
            kmap_run.verdict,
            kmap_run.states,
            spin_run.verdict,
            spin_run.states,
        );
        say!(
            "prove {}/{}/{} {}: kmap {} in {:?} s, SPIN {} in {:?} s",
            row.cpus,
            row.tasks,
            row.depth,
            row.protocol,
            kmap_run.verdict,
            kmap_run.seconds,
            spin_run.verdict,
            spin_run.seconds
        );
        if (row.cpus, row.tasks, row.depth) == BASELINE_SCOPE
            && row.nmi
            && row.protocol == "split"
            && row.release == "lifo"
        {
            baseline_row = Some(row);
        }
    }
    if let Some(row) = baseline_row {
        let _ = writeln!(out, "\n{}", baseline(root, &kmap, &row)?);
    }
    let _ = writeln!(
        out,
        "\nCommands: `kmap prove --cpus C --tasks T --depth D [--no-nmi] --switch P --release R \
         --alphabet base --json` (R is `lifo` unless the row says `release any`: the tasks may then also release \
         any mapping below the top, leaving a hole); SPIN: \
         `spin DEFINES -a MODEL && gcc -O2 -DSAFETY GCC -o pan pan.c && ./pan -m3000000 PAN` with \
         the defines of each row in `xtask/src/bench/prove.rs`.\n"
    );
    out.push_str(&super::alphabet::section(&kmap)?);
    out.push_str(&super::scale::section(root, &kmap)?);
    Ok(out)
}

/// "N" states per second of CPU, or a dash.
fn per_core_text(m: &Measured) -> String {
    m.per_core().map_or("—".into(), |r| format!("{r:.0}"))
}

/// "N.NN s" of CPU, or a dash.
fn cpu_text(m: &Measured) -> String {
    m.cpu_seconds.map_or("—".into(), |c| format!("{c:.2} s"))
}

/// The throughput of [`BASELINE`]'s `kmap prove` on `row`, beside this commit's (`kmap`, on one
/// thread: the baseline has one), both from this run: the least CPU time of three runs each,
/// interleaved (`/usr/bin/time` counts hundredths, and the machine is shared). The
/// baseline is built from a git worktree under `target/` (its own target folder, so this
/// build is untouched). A line saying why when it cannot be built.
fn baseline(root: &Path, kmap: &Path, row: &Row) -> Result<String, ProveBenchError> {
    let scope = format!("{}/{}/{}", row.cpus, row.tasks, row.depth);
    let tree = root.join("target/bench-baseline/src");
    let target = root.join("target/bench-baseline/target");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ready = tree.join("Cargo.toml").exists()
        || (git(&["cat-file", "-e", &format!("{BASELINE}^{{commit}}")])
            && git(&[
                "worktree",
                "add",
                "--force",
                "--detach",
                &tree.to_string_lossy(),
                BASELINE,
            ]));
    if !ready {
        return Ok(format!(
            "Throughput against commit {BASELINE} not measured: that commit is not in this \
             clone's history."
        ));
    }
    let target_dir = target.to_string_lossy().into_owned();
    process::cargo(
        &tree,
        &["build", "--release", "--package", "kmap-cli"],
        &[("CARGO_TARGET_DIR", target_dir.as_str())],
    )?;
    let cpu = |m: &Measured| m.cpu_seconds.unwrap_or(f64::INFINITY);
    let mut old = run_kmap(&target.join("release/kmap"), row, false, None)?;
    let mut now = run_kmap(kmap, row, true, Some(1))?;
    for _ in 0..2 {
        let again = run_kmap(kmap, row, true, Some(1))?;
        if cpu(&again) < cpu(&now) {
            now = again;
        }
        let again = run_kmap(&target.join("release/kmap"), row, false, None)?;
        if cpu(&again) < cpu(&old) {
            old = again;
        }
    }
    let ratio = match (now.per_core(), old.per_core()) {
        (Some(n), Some(o)) if o > 0.0 => format!("{:.1}×", n / o),
        _ => "—".into(),
    };
    Ok(format!(
        "Throughput on {scope} against commit {BASELINE} (built from a worktree and run in this \
         run, same command, this commit with `--threads 1`, the least CPU time of three runs each, interleaved): {BASELINE} found {} states in {} of CPU ({} states/s per core); this \
         commit {} states in {} of CPU ({} states/s per core): {ratio} the states per second per \
         core. This commit counts states up to task and CPU symmetry (`--no-symmetry` counts every \
         permutation, as {BASELINE} did).",
        old.states,
        cpu_text(&old),
        per_core_text(&old),
        now.states,
        cpu_text(&now),
        per_core_text(&now),
    ))
}

/// A wall time: to the millisecond under a second, else to the hundredth.
pub(super) fn seconds_text(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{seconds:.3} s")
    } else {
        format!("{seconds:.2} s")
    }
}

/// `kmap prove` of `row`; with `base`, told the SPIN model's alphabet (`--alphabet base`: the
/// baseline commit knows no other, and takes no such flag).
fn run_kmap(
    kmap: &Path,
    row: &Row,
    base: bool,
    threads: Option<u32>,
) -> Result<Measured, ProveBenchError> {
    let mut command = Command::new(kmap);
    command.args([
        "prove",
        "--cpus",
        &row.cpus.to_string(),
        "--tasks",
        &row.tasks.to_string(),
        "--depth",
        &row.depth.to_string(),
        "--switch",
        row.protocol,
        "--release",
        row.release,
        "--json",
    ]);
    if !row.nmi {
        command.arg("--no-nmi");
    }
    if base {
        command.args(["--alphabet", "base"]);
    }
    if let Some(threads) = threads {
        command.args(["--threads", &threads.to_string()]);
    }
    let Timed {
        stdout,
        stderr,
        seconds,
        cpu_seconds,
        peak_mib,
    } = timed(command)?;
    // Standard output is the JSON document; /usr/bin/time's report goes to its file.
    let proof: Proof = from_json(&stdout, &stderr)?;
    let verdict = match (proof.verdict.as_str(), proof.complete) {
        ("pass", true) => "pass (complete)".to_string(),
        ("violation", _) => format!(
            "violation ({})",
            proof.violation.map(|v| v.kind).unwrap_or_default()
        ),
        (other, _) => format!("{other} (incomplete)"),
    };
    Ok(Measured {
        verdict,
        states: proof.states.to_string(),
        seconds,
        cpu_seconds,
        peak_mib,
    })
}

fn run_spin(models: &Path, run: &SpinRun) -> Measured {
    let dir: PathBuf = std::env::temp_dir().join(format!("kmap-spin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let failed = |why: String| Measured {
        verdict: format!("not run ({why})"),
        ..Measured::default()
    };
    if std::fs::create_dir_all(&dir).is_err() {
        return failed("no temporary folder".into());
    }
    for entry in std::fs::read_dir(models).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "pml") {
            let _ = std::fs::copy(entry.path(), dir.join(entry.file_name()));
        }
    }
    let sh = |script: String| {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&dir)
            .output()
    };
    let build = format!(
        "spin {} -a {} >/dev/null && gcc -O2 -DSAFETY {} -o pan pan.c",
        run.defines, run.model, run.gcc
    );
    match sh(build) {
        Ok(o) if o.status.success() => {}
        Ok(o) => return failed(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => return failed(e.to_string()),
    }
    let mut command = Command::new("sh");
    command.current_dir(&dir).arg("-c").arg(format!(
        "ulimit -v 8388608; exec timeout {} ./pan -m3000000 {}",
        run.seconds, run.pan
    ));
    let Ok(Timed {
        stdout,
        stderr,
        seconds,
        cpu_seconds,
        peak_mib,
    }) = timed(command)
    else {
        return failed("/usr/bin/time is missing".into());
    };
    // pan's report is text: an external tool's output.
    let text = stdout + &stderr;
    let _ = std::fs::remove_dir_all(&dir);
    let number = |suffix: &str| {
        text.lines()
            .find(|l| l.trim_end().ends_with(suffix))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("—")
            .to_string()
    };
    let errors = text
        .lines()
        .find_map(|l| l.split("errors: ").nth(1))
        .and_then(|e| e.trim().parse::<u64>().ok());
    let verdict = if text.contains("assertion violated") || errors.is_some_and(|e| e > 0) {
        "violation".to_string()
    } else if errors == Some(0) && !text.contains("too small") && !text.contains("out of memory") {
        "pass (complete)".to_string()
    } else {
        format!("incomplete (limit of {} s or 8 GB reached)", run.seconds)
    };
    Measured {
        verdict,
        states: number("states, stored"),
        seconds,
        cpu_seconds,
        peak_mib,
    }
}
