//! The explorer's checks of a mutant, through the `kmap` binary built from its copy, each read
//! as JSON: `kmap check --all --json` (every built-in scenario must get its expected verdict),
//! `kmap prove --json` on small scopes, smallest first (the proof prints no trace: its
//! counterexample is replayed with `kmap replay --json` for one), and `kmap stress --json`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use super::checks::{CheckError, Verdict};
use crate::process::{Ran, run_limited, tail};

/// The scopes of `kmap prove` (CPUs, tasks, depth, release order, API), smallest first; on the
/// crate as it is each is proved in under a few seconds. The first that fails stops the series.
/// The scopes in the safe API (`guard`) also map through kmap_atomic ([`GUARD_ALPHABET`]).
pub const PROVE_SCOPES: [(usize, usize, usize, &str, &str); 7] = [
    (1, 2, 2, "lifo", "raw"),
    (1, 2, 2, "lifo", "guard"),
    (1, 2, 2, "any", "raw"),
    (2, 2, 2, "lifo", "raw"),
    (2, 2, 2, "lifo", "guard"),
    (2, 2, 2, "any", "raw"),
    (2, 2, 3, "lifo", "raw"),
];

/// The alphabet of the proofs in the safe API: the default's additions and kmap_atomic.
pub const GUARD_ALPHABET: &str = "atomic,write,irq-off,sleep";
/// Random stress: at most this many kmap operations (about 10 s here) or this many seconds.
pub const STRESS_OPS: u64 = 5_000_000;
pub const STRESS_SECONDS: u64 = 20;

/// How long one run of the explorer may take: far above what each takes on the crate as it is,
/// so that a mutant that makes it loop is reported as such.
const EXPLORER_LIMIT: Duration = Duration::from_secs(300);

/// A counterexample the explorer printed: the steps of its trace, its injected events, and
/// where it came from.
#[derive(Clone, Debug)]
pub struct Counterexample {
    pub steps: usize,
    pub events: usize,
    pub source: String,
}

/// The verdict of a run of the explorer whose exit status says 0 for "as expected", 1 for
/// "something went wrong", 2 for bad input; `caught` describes a catch from the output.
fn explorer_verdict(ran: &Ran, caught: impl FnOnce(&Ran) -> String) -> Verdict {
    match ran.code {
        Some(0) => Verdict::Missed,
        Some(1) => Verdict::Caught(caught(ran)),
        Some(101) => Verdict::Caught(format!(
            "the explorer panicked: {}",
            ran.stderr
                .lines()
                .find(|l| l.contains("panicked"))
                .unwrap_or("(no message)")
                .trim()
        )),
        _ if ran.timed_out => Verdict::Error(format!(
            "timed out after {:.0} s",
            ran.elapsed.as_secs_f64()
        )),
        code => Verdict::Error(format!("exit status {code:?}: {}", tail(&ran.stderr, 3))),
    }
}

/// The injected events of a printed schedule (`ARRIVAL:CHOICE,...`).
pub fn events(schedule: &str) -> usize {
    schedule
        .split(',')
        .filter_map(|entry| entry.split_once(':').map(|(_, choice)| choice))
        .filter(|choice| {
            matches!(*choice, "irq" | "nmi" | "preempt")
                || ["preempt-to", "migrate", "cpu"]
                    .iter()
                    .any(|p| choice.starts_with(p))
        })
        .count()
}

/// A counterexample from a result of `kmap check --json` or `kmap replay --json`.
fn counterexample(value: &serde_json::Value, source: String) -> Option<Counterexample> {
    let trace = value["trace"].as_array()?;
    Some(Counterexample {
        steps: trace.len(),
        events: value["schedule"].as_str().map_or(0, events),
        source,
    })
}

pub fn check_all(
    kmap: &Path,
    counterexamples: &mut Vec<Counterexample>,
) -> Result<(Verdict, Duration), CheckError> {
    let mut command = Command::new(kmap);
    command.args(["check", "--all", "--json"]);
    let ran = run_limited(command, EXPLORER_LIMIT)?;
    let verdict = explorer_verdict(&ran, |ran| {
        let value: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap_or_default();
        let results = match value {
            serde_json::Value::Array(results) => results,
            one => vec![one],
        };
        let failed: Vec<&serde_json::Value> = results.iter().filter(|r| r["ok"] == false).collect();
        let mut names = Vec::new();
        for result in &failed {
            let name = result["scenario"].as_str().unwrap_or("?").to_string();
            if let Some(ce) = counterexample(result, format!("check {name}")) {
                counterexamples.push(ce);
            }
            names.push(name);
        }
        if names.is_empty() {
            return "no failing scenario in the output".into();
        }
        let shown = names.len().min(2);
        format!(
            "{} of {} scenarios ({}{})",
            names.len(),
            results.len(),
            names[..shown].join(", "),
            if names.len() > shown { ", …" } else { "" }
        )
    });
    Ok((verdict, ran.elapsed))
}

pub fn prove(
    kmap: &Path,
    counterexamples: &mut Vec<Counterexample>,
) -> Result<(Verdict, Duration), CheckError> {
    let mut total = Duration::ZERO;
    for (cpus, tasks, depth, release, api) in PROVE_SCOPES {
        let scope = match (release, api) {
            ("lifo", "raw") => format!("{cpus}/{tasks}/{depth}"),
            (_, "raw") => format!("{cpus}/{tasks}/{depth} --release {release}"),
            _ => format!("{cpus}/{tasks}/{depth} --api {api} --alphabet {GUARD_ALPHABET}"),
        };
        let mut command = Command::new(kmap);
        command.arg("prove");
        for (flag, value) in [("--cpus", cpus), ("--tasks", tasks), ("--depth", depth)] {
            command.arg(flag).arg(value.to_string());
        }
        command.args(["--release", release]);
        if api != "raw" {
            command.args(["--api", api, "--alphabet", GUARD_ALPHABET]);
        }
        command.arg("--json");
        let ran = run_limited(command, EXPLORER_LIMIT)?;
        total += ran.elapsed;
        let mut replay_id = None;
        let verdict = explorer_verdict(&ran, |ran| {
            let value: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap_or_default();
            replay_id = value["replay"].as_str().map(str::to_string);
            let what = value["violation"]["kind"]
                .as_str()
                .or(value["verdict"].as_str())
                .unwrap_or("?");
            format!("scope {scope} ({what})")
        });
        if let Some(id) = replay_id {
            // The proof prints no trace: replay its counterexample for one.
            let mut command = Command::new(kmap);
            command.args(["replay", &id, "--json"]);
            let replayed = run_limited(command, EXPLORER_LIMIT)?;
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&replayed.stdout)
                && let Some(ce) = counterexample(&value, format!("prove {scope}"))
            {
                counterexamples.push(ce);
            }
        }
        if !matches!(verdict, Verdict::Missed) {
            return Ok((verdict, total));
        }
    }
    Ok((Verdict::Missed, total))
}

/// What `kmap stress --json` prints (the fields read here).
#[derive(Deserialize)]
pub struct StressReport {
    /// What the run found, if anything.
    pub found: Option<StressFound>,
}

#[derive(Deserialize)]
pub struct StressFound {
    pub violation: Option<StressViolation>,
    pub refusal: Option<String>,
}

#[derive(Deserialize)]
pub struct StressViolation {
    pub kind: String,
    pub cpu: u64,
    pub context: String,
}

impl StressReport {
    /// What a stress run that ended in a violation found, in a few words: `crash on CPU 1 in
    /// IRQ`, or a refusal's first words.
    pub fn caught(&self) -> String {
        let Some(found) = &self.found else {
            return "a violation".into();
        };
        match (&found.violation, &found.refusal) {
            (Some(v), _) => format!("{} on CPU {} in {}", v.kind, v.cpu, v.context),
            (None, Some(refusal)) => {
                let words = refusal.split(" after ").next().unwrap_or(refusal);
                words.split(": ").next().unwrap_or(words).to_string()
            }
            (None, None) => "a violation".into(),
        }
    }
}

pub fn stress(kmap: &Path) -> Result<(Verdict, Duration), CheckError> {
    let mut command = Command::new(kmap);
    command.args([
        "stress",
        "--ops",
        &STRESS_OPS.to_string(),
        "--time",
        &STRESS_SECONDS.to_string(),
        "--json",
    ]);
    let ran = run_limited(
        command,
        Duration::from_secs(STRESS_SECONDS) + EXPLORER_LIMIT,
    )?;
    let verdict = explorer_verdict(&ran, |ran| {
        match serde_json::from_str::<StressReport>(&ran.stdout) {
            Ok(report) => report.caught(),
            Err(e) => format!("a violation (its JSON unreadable: {e})"),
        }
    });
    Ok((verdict, ran.elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_count_injected_events_only() {
        assert_eq!(events("25:irq"), 1);
        assert_eq!(events("3:map,7:preempt-to1,9:continue,12:nmi,14:cpu1"), 3);
        assert_eq!(events("-"), 0);
    }

    #[test]
    fn a_stress_catch_is_named_from_its_json() {
        let caught = |json: serde_json::Value| {
            serde_json::from_value::<StressReport>(json)
                .unwrap()
                .caught()
        };
        let found = serde_json::json!({
            "seed": 1, "switch": "split", "cpus": 2, "executions": 9, "kmap_ops": 100,
            "switches": 3, "preemptions": 2, "irqs": 1, "nmis": 0, "elapsed_ms": 5,
            "found": {
                "execution_seed": "0x2a", "verdict": "violation",
                "violation": { "kind": "crash", "cpu": 1, "context": "IRQ",
                               "after": "map: pushed", "message": "slot occupied" },
                "refusal": null, "schedule": "3:irq", "replay": "kmap stress --replay 0x2a",
            },
        });
        assert_eq!(caught(found), "crash on CPU 1 in IRQ");
        let refused = serde_json::json!({
            "found": { "violation": null, "refusal": "unmap 3: not the top cell" },
        });
        assert_eq!(caught(refused), "unmap 3");
    }
}
