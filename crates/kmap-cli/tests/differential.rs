//! The differential record: what the explorer, the prover and the stress runner answer, over
//! every built-in scenario under every protocol and search, the proof scopes that `cargo xtask
//! test` runs, and twenty seeds of stress, as one text file (`tests/differential.txt`).
//!
//! A change of structure must not change behaviour: this test runs the same commands and
//! compares their answers with the record, line by line. After an intended change of behaviour,
//! write the record anew and explain every changed line in the commit:
//!
//! ```sh
//! KMAP_RECORD=1 cargo test -p kmap-cli --test differential
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The searches every built-in scenario is checked under.
const CHECKS: &[&[&str]] = &[
    &[],
    &["--switch", "split"],
    &["--switch", "rfc-v1"],
    &["--switch", "swap-after-current"],
    &["--release", "any"],
    &["--debug-guards", "true", "--slots", "33"],
    &["--force-map", "true"],
    &["--tlb", "false"],
    &["--strict"],
    &["--no-prune"],
    &["--mutation", "drop-invalidations"],
    &["--mutation", "no-bug-on"],
    &["--mutation", "no-sched-out"],
    &["--preemptions", "3", "--lasting-handlers", "2"],
    &["--irq-depth", "0"],
    &["--nmi-depth", "0"],
    &["--cpu-switches", "1"],
    &["--strategy", "random", "--seed", "7", "--executions", "60"],
    &["--strategy", "pct", "--seed", "7", "--executions", "60"],
    &[
        "--strategy",
        "pct",
        "--seed",
        "3",
        "--executions",
        "40",
        "--depth",
        "3",
    ],
    &["--shard", "0/3"],
    &["--shard", "1/3"],
    &["--shard", "2/3"],
];

/// The proofs: the scopes of `cargo xtask test`, a few more,
/// and scenario files.
const PROOFS: &[&[&str]] = &[
    &["--cpus", "1", "--tasks", "2", "--depth", "1"],
    &[
        "--cpus", "1", "--tasks", "2", "--depth", "1", "--switch", "rfc-v1",
    ],
    &[
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "1",
        "--switch",
        "swap-after-current",
    ],
    &["--cpus", "1", "--tasks", "2", "--depth", "2"],
    &[
        "--cpus", "1", "--tasks", "2", "--depth", "2", "--switch", "rfc-v1",
    ],
    &[
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "2",
        "--switch",
        "swap-after-current",
    ],
    &["--cpus", "2", "--tasks", "2", "--depth", "1"],
    &[
        "--cpus", "2", "--tasks", "2", "--depth", "1", "--switch", "rfc-v1",
    ],
    &[
        "--cpus",
        "2",
        "--tasks",
        "2",
        "--depth",
        "1",
        "--switch",
        "swap-after-current",
    ],
    &[
        "--cpus", "2", "--tasks", "2", "--depth", "1", "--no-irq", "--no-nmi",
    ],
    &[
        "--cpus",
        "2",
        "--tasks",
        "2",
        "--depth",
        "1",
        "--no-irq",
        "--no-nmi",
        "--no-reduce",
    ],
    &[
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "2",
        "--release",
        "any",
    ],
    &[
        "--cpus",
        "2",
        "--tasks",
        "2",
        "--depth",
        "2",
        "--release",
        "any",
    ],
    &[
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "2",
        "--release",
        "any",
        "--api",
        "scope",
    ],
    &[
        "--cpus",
        "2",
        "--tasks",
        "2",
        "--depth",
        "1",
        "--release",
        "any",
        "--api",
        "scope",
        "--switch",
        "rfc-v1",
    ],
    &["--cpus", "1", "--tasks", "3", "--depth", "1"],
    &["--cpus", "1", "--tasks", "2", "--depth", "2", "--no-nmi"],
    &["--cpus", "1", "--tasks", "2", "--depth", "2", "--no-irq"],
    &[
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "2",
        "--mutation",
        "no-bug-on",
    ],
    &[
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "2",
        "--mutation",
        "drop-invalidations",
    ],
    &[
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "2",
        "--mutation",
        "no-sched-out",
    ],
    &["--cpus", "1", "--tasks", "2", "--depth", "2", "--strict"],
    &[
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "2",
        "--max-states",
        "100",
    ],
    &[
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "2",
        "--alphabet",
        "write,irq-off,sleep",
    ],
    &[
        "--cpus",
        "1",
        "--tasks",
        "2",
        "--depth",
        "1",
        "--alphabet",
        "atomic,write,irq-off,sleep",
    ],
    &[
        "--cpus",
        "2",
        "--tasks",
        "2",
        "--depth",
        "1",
        "--alphabet",
        "atomic,write,irq-off,sleep",
        "--switch",
        "rfc-v1",
    ],
    &["wider.toml"],
    &["mixed.toml"],
    &["migrate-on-preempt"],
    &["restore-race"],
    &["restore-race-split"],
    &["hole-across-switch"],
];

fn kmap(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kmap"))
        .args(args)
        .output()
        .expect("kmap runs");
    assert!(
        output.stderr.is_empty() || output.status.code() != Some(101),
        "kmap {args:?} panicked: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn json(args: &[&str]) -> (Option<i32>, Value) {
    let (status, stdout) = kmap(args);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("kmap {args:?}: not JSON ({e}): {stdout}"));
    (status, value)
}

/// FNV-1a of a text, to keep a whole trace in one word of the record.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A JSON value in one line: strings bare, absent values as `-`.
fn bare(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn violation(value: &Value) -> String {
    if value.is_null() {
        return "-".into();
    }
    ["kind", "cpu", "context", "after", "message"]
        .map(|field| bare(&value[field]))
        .join(" | ")
}

fn check_lines(record: &mut String) {
    for search in CHECKS {
        let mut args = vec!["check", "--all", "--json"];
        args.extend_from_slice(search);
        let (status, value) = json(&args);
        let name = if search.is_empty() {
            "as written".to_string()
        } else {
            search.join(" ")
        };
        writeln!(record, "## check --all {name}: exit {status:?}").unwrap();
        for result in value.as_array().expect("one result per scenario") {
            let hazards: Vec<String> = result["hazards"]
                .as_array()
                .expect("a list")
                .iter()
                .map(|h| {
                    format!(
                        "{} in {} after {}",
                        bare(&h["rule"]),
                        bare(&h["context"]),
                        bare(&h["after"])
                    )
                })
                .collect();
            let trace = result["trace"].as_array().map(|lines| {
                let text: Vec<&str> = lines.iter().filter_map(Value::as_str).collect();
                format!("{:016x}/{}", fnv(&text.join("\n")), text.len())
            });
            writeln!(
                record,
                "{} {}: {} executions={} pruned={} probes={} complete={}\n  replay={}\n  violation={}\n  refusal={}\n  hazards={}\n  trace={}",
                bare(&result["scenario"]),
                bare(&result["switch"]),
                bare(&result["verdict"]),
                result["executions"],
                result["pruned"],
                result["probes"],
                result["complete"],
                bare(&result["replay"]),
                violation(&result["violation"]),
                bare(&result["refusal"]),
                hazards.join("; "),
                trace.unwrap_or_else(|| "-".into()),
            )
            .unwrap();
        }
    }
}

fn prove_lines(record: &mut String) {
    let proofs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kmap-check/proofs");
    // Each proof twice: remembering every state as it is (the figures recorded before task
    // symmetry), and by its canonical form (the default).
    let plain: Vec<Vec<&str>> = PROOFS
        .iter()
        .map(|proof| [*proof, &["--no-symmetry"]].concat())
        .collect();
    let both = plain
        .iter()
        .map(Vec::as_slice)
        .chain(PROOFS.iter().copied());
    for proof in both {
        let mut args = vec!["prove".to_string(), "--json".to_string()];
        // A scope without `--alphabet` is proved on the base alphabet, so that its record
        // stays the one it was before the alphabet grew (and `kmap prove`'s default with it).
        if !proof.contains(&"--alphabet")
            && !proof[0].ends_with(".toml")
            && proof[0].starts_with("--")
        {
            args.extend(["--alphabet".to_string(), "base".to_string()]);
        }
        for arg in proof {
            args.push(if arg.ends_with(".toml") {
                proofs.join(arg).display().to_string()
            } else {
                arg.to_string()
            });
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, value) = json(&args);
        writeln!(
            record,
            "## prove {}: exit {status:?}\n{} {}: {} states={} transitions={} matched={} depth={} complete={} stopped={}\n  replay={}\n  violation={}",
            proof.join(" "),
            bare(&value["scope"]),
            bare(&value["switch"]),
            bare(&value["verdict"]),
            value["states"],
            value["transitions"],
            value["matched"],
            value["depth"],
            value["complete"],
            bare(&value["stopped"]),
            bare(&value["replay"]),
            violation(&value["violation"]),
        )
        .unwrap();
    }
}

/// The figures of `kmap stress` that follow from its seed (not the time or the rate), and a
/// violation with what replays it.
fn stress_lines(record: &mut String) {
    let runs = (1..=20)
        .map(|seed| (seed, "split", "2", "20000"))
        .chain((1..=4).map(|seed| (seed, "rfc-v1", "1", "200000")))
        .chain((1..=4).map(|seed| (seed, "swap-after-current", "1", "200000")))
        .chain([(5, "split", "1", "20000"), (6, "split", "4", "20000")]);
    let mut replays = Vec::new();
    for (seed, switch, cpus, ops) in runs {
        let seed = seed.to_string();
        let (status, stdout) = kmap(&[
            "stress", "--seed", &seed, "--switch", switch, "--cpus", cpus, "--ops", ops,
        ]);
        let lines: Vec<&str> = stdout.lines().collect();
        let figures: Vec<&str> = lines[2].split_whitespace().collect();
        writeln!(
            record,
            "stress seed {seed} {switch} on {cpus} CPU(s), {ops} ops: exit {status:?} {}",
            figures[..figures.len() - 1].join(" ")
        )
        .unwrap();
        for line in &lines {
            if line.starts_with("VIOLATION") || line.starts_with("REFUSED") {
                writeln!(record, "  {line}").unwrap();
            }
            if let Some(rest) = line.strip_prefix("execution seed ") {
                writeln!(record, "  execution seed {rest}").unwrap();
                let execution = rest.split(';').next().unwrap().to_string();
                replays.push((execution, switch, cpus));
            }
        }
    }
    for (execution, switch, cpus) in replays.into_iter().take(3) {
        let (status, stdout) = kmap(&[
            "stress", "--switch", switch, "--cpus", cpus, "--replay", &execution,
        ]);
        writeln!(
            record,
            "stress --replay {execution} {switch} on {cpus} CPU(s): exit {status:?}, output {:016x}/{}",
            fnv(&stdout),
            stdout.lines().count()
        )
        .unwrap();
    }
}

#[test]
fn the_answers_are_those_of_the_record() {
    let mut record = String::new();
    check_lines(&mut record);
    prove_lines(&mut record);
    stress_lines(&mut record);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/differential.txt");
    if std::env::var_os("KMAP_RECORD").is_some() {
        std::fs::write(&path, &record).expect("the record is written");
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("tests/differential.txt exists");
    let differences: Vec<String> = expected
        .lines()
        .zip(record.lines())
        .enumerate()
        .filter(|(_, (want, got))| want != got)
        .take(20)
        .map(|(n, (want, got))| format!("line {}:\n  record: {want}\n  now:    {got}", n + 1))
        .collect();
    assert!(
        differences.is_empty() && expected.lines().count() == record.lines().count(),
        "the answers differ from tests/differential.txt ({} lines recorded, {} now); the first \
         differences:\n{}\n(after an intended change: KMAP_RECORD=1 cargo test -p kmap-cli \
         --test differential, and explain each change)",
        expected.lines().count(),
        record.lines().count(),
        differences.join("\n")
    );
}
