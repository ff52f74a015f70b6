//! The fixed scenarios at scale (`crates/kmap-check/scale/`): `kmap prove`, `kmap check` on
//! the engine it chooses (stateful on two CPUs) and `kmap check --engine stateless`, each
//! timed in this run, one after the other.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use super::prove::ProveBenchError;
use super::timed::{Timed, timed};

/// The stateless engine's runs are cut off after this long (it is the slow one).
const STATELESS_LIMIT: &str = "120";

/// What `kmap check --json` and `kmap prove --json` print of one scenario (the fields read).
#[derive(Deserialize)]
struct Found {
    verdict: String,
    complete: bool,
    #[serde(default)]
    states: Option<u64>,
    #[serde(default)]
    executions: Option<u64>,
    #[serde(default)]
    engine: Option<String>,
}

/// One run's cell: verdict, what it counted, and its time.
fn cell(kmap: &Path, args: &[&str], limit: Option<&str>) -> Result<String, ProveBenchError> {
    let mut command = match limit {
        Some(seconds) => {
            let mut c = Command::new("timeout");
            c.arg(seconds).arg(kmap);
            c
        }
        None => Command::new(kmap),
    };
    command.args(args).arg("--json");
    let Timed {
        stdout, seconds, ..
    } = timed(command)?;
    let text = stdout.trim();
    let parsed: Option<Found> = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .map(|v| v.as_array().and_then(|a| a.first().cloned()).unwrap_or(v))
        .and_then(|v| serde_json::from_value(v).ok());
    let time = seconds.map_or("—".into(), |s| format!("{s:.2} s"));
    Ok(match parsed {
        None => match limit {
            Some(limit) => format!("not finished in {limit} s"),
            None => format!("no result ({time})"),
        },
        Some(r) => {
            let counted = match (r.engine.as_deref(), r.states, r.executions) {
                (Some("stateless"), _, Some(e)) => format!("{e} executions"),
                (_, Some(s), _) => format!("{s} states"),
                (_, None, Some(e)) => format!("{e} executions"),
                _ => String::new(),
            };
            let done = if r.complete || r.verdict != "pass" {
                ""
            } else {
                ", incomplete"
            };
            let engine = r.engine.map_or(String::new(), |e| format!(" ({e})"));
            format!("{}{done}, {counted}, {time}{engine}", r.verdict)
        }
    })
}

/// The subsection: one row per scale scenario.
pub fn section(root: &Path, kmap: &Path) -> Result<String, ProveBenchError> {
    let folder = root.join("crates/kmap-check/scale");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Fixed scenarios at scale\n\n\
         The scenarios of `crates/kmap-check/scale/` (two CPUs, pinned tasks, an interrupt and an \
         NMI mapping everywhere), under the split switch: `kmap prove FILE` (no bound on \
         preemption), `kmap check FILE` (within the file's bounds; the engine it chose) and \
         `kmap check FILE --engine stateless` (cut off after {STATELESS_LIMIT} s), wall time by \
         the bench's clock around each process, one after the other in this run.\n"
    );
    let _ = writeln!(
        out,
        "| scenario | kmap prove | kmap check (engine) | kmap check --engine stateless |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for file in files {
        let name = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let path = file.to_string_lossy().into_owned();
        let prove = cell(kmap, &["prove", &path], None)?;
        let check = cell(kmap, &["check", &path], None)?;
        let stateless = cell(
            kmap,
            &["check", &path, "--engine", "stateless"],
            Some(STATELESS_LIMIT),
        )?;
        crate::say!("scale {name}: prove {prove}; check {check}; stateless {stateless}");
        let _ = writeln!(out, "| {name} | {prove} | {check} | {stateless} |");
    }
    Ok(out)
}
