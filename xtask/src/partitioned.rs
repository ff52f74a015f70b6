//! `cargo xtask test`'s proofs partitioned over the ranks of an MPI job: `kmap prove --mpi`
//! under `mpirun -np 2` and `-np 4` must give the verdict, the states and the counterexample of
//! the one-process proof, each rank owning at most 1/N + 10% of the states (checked where there
//! are a thousand or more: a refuted scope stops after a few dozen). Each job runs under a
//! time limit, so that a rank waiting for ever fails the test instead of hanging it; one job
//! sends its exchanges in rounds of 64 bytes, and one is refused on every rank alike.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use thiserror::Error;

use crate::process::{self, CommandError, ToolError, cargo};
use crate::say;

/// Why a partitioned proof failed its test.
#[derive(Debug, Error)]
pub enum PartitionError {
    /// OpenMPI or libclang is missing and cannot be installed here.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// A command failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A proof printed no JSON that reads.
    #[error("`{command}` printed no proof:\n{output}")]
    Json { command: String, output: String },
    /// A job did not end in its time.
    #[error("`{command}` did not end within {JOB_LIMIT} s")]
    Hung { command: String },
    /// A job that should be refused was not.
    #[error("`{command}` should be refused (exit 2): {output}")]
    NotRefused { command: String, output: String },
    /// The job's proof is not the one process's.
    #[error("{scope} over {ranks} ranks: {what}")]
    Differs {
        scope: String,
        ranks: usize,
        what: String,
    },
}

/// The seconds an MPI job of the test may take.
const JOB_LIMIT: u32 = 300;

/// What `kmap prove --json` says of a proof (the fields read here).
#[derive(Deserialize, Debug, PartialEq)]
struct Proof {
    verdict: String,
    complete: bool,
    states: u64,
    transitions: u64,
    matched: u64,
    depth: u64,
    replay: Option<String>,
    hazards: serde_json::Value,
    #[serde(default)]
    rank_states: Option<Vec<u64>>,
}

/// The proof `command` printed (whatever its exit status: a refuted proof exits with 1).
fn proof(mut command: Command) -> Result<Proof, PartitionError> {
    let shown = process::shown(&command);
    let output = command.output().map_err(|source| CommandError::Spawn {
        command: shown.clone(),
        source,
    })?;
    // `timeout` exits with 124 when it ended the job.
    if output.status.code() == Some(124) {
        return Err(PartitionError::Hung { command: shown });
    }
    serde_json::from_slice(&output.stdout).map_err(|_| PartitionError::Json {
        command: shown,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// Build `kmap` with MPI (installing OpenMPI and libclang when this runs as root), then prove a
/// passing scope and a refuted one over 2 and 4 ranks and compare each with one process.
pub fn run(root: &Path) -> Result<(), PartitionError> {
    process::ensure_tool("mpirun", "openmpi-bin")?;
    process::ensure_tool("mpicc", "libopenmpi-dev")?;
    // bindgen, under the `mpi` crate, loads libclang.
    process::ensure(
        "ldconfig -p | grep -q 'libclang.*\\.so'",
        "libclang",
        "libclang-dev",
    )?;
    cargo(
        root,
        &[
            "clippy",
            "-p",
            "kmap-cli",
            "--features",
            "mpi",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(root, &["build", "-p", "kmap-cli", "--features", "mpi"], &[])?;
    let kmap = root.join("target/debug/kmap");
    let scopes: [&[&str]; 2] = [
        &["--cpus", "1", "--tasks", "3", "--depth", "2"],
        &[
            "--cpus", "2", "--tasks", "3", "--depth", "1", "--switch", "rfc-v1",
        ],
    ];
    for scope in scopes {
        let name = scope.join(" ");
        let mut alone = Command::new(&kmap);
        alone.arg("prove").args(scope).arg("--json");
        let alone = proof(alone)?;
        for (ranks, round) in [(2, None), (4, None), (2, Some("64"))] {
            let mut job = mpirun(&kmap, ranks);
            job.arg("prove").args(scope).args(["--mpi", "--json"]);
            if let Some(bytes) = round {
                job.args(["--mpi-round-bytes", bytes]);
            }
            let mut spread = proof(job)?;
            let differs = |what: String| PartitionError::Differs {
                scope: name.clone(),
                ranks,
                what,
            };
            let shares = spread.rank_states.take().unwrap_or_default();
            if spread != alone {
                return Err(differs(format!("{spread:?}, one process: {alone:?}")));
            }
            let most = shares.iter().copied().max().unwrap_or(0);
            if shares.len() != ranks
                || shares.iter().sum::<u64>() != alone.states
                || (alone.states >= 1000 && most as f64 > 1.1 * alone.states as f64 / ranks as f64)
            {
                return Err(differs(format!(
                    "states owned by the ranks {shares:?} of {}",
                    alone.states
                )));
            }
            if let Some(replay) = &spread.replay {
                let status = Command::new(&kmap)
                    .args(["replay", replay])
                    .stdout(std::process::Stdio::null())
                    .status()
                    .map_err(|source| CommandError::Spawn {
                        command: format!("kmap replay {replay}"),
                        source,
                    })?;
                // A replay that reproduces a violation exits with 1.
                if status.code() != Some(1) {
                    return Err(differs(format!("`kmap replay {replay}` gave {status}")));
                }
            }
            say!(
                "prove {name} over {ranks} MPI ranks{}: {} with {} states (owned {shares:?}), \
                 as one process{}",
                round.map_or(String::new(), |b| format!(" in rounds of {b} bytes")),
                spread.verdict,
                spread.states,
                if spread.replay.is_some() {
                    ", and its counterexample replays"
                } else {
                    ""
                }
            );
        }
    }
    // A scope that cannot fit in --max-memory is refused by every rank, and the job ends.
    let mut job = mpirun(&kmap, 2);
    job.args([
        "prove", "--mpi", "--cpus", "1", "--tasks", "9", "--depth", "9",
    ]);
    job.args(["--max-memory", "64M"]);
    let shown = process::shown(&job);
    let output = job.output().map_err(|source| CommandError::Spawn {
        command: shown.clone(),
        source,
    })?;
    match output.status.code() {
        Some(2) => {
            say!("a scope too big for --max-memory over 2 MPI ranks: refused, and the job ended")
        }
        Some(124) => return Err(PartitionError::Hung { command: shown }),
        _ => {
            return Err(PartitionError::NotRefused {
                command: shown,
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
    }
    Ok(())
}

/// `mpirun -np RANKS KMAP` under the test's time limit (`timeout`: an external tool, so that
/// the limit holds whatever the job does).
fn mpirun(kmap: &Path, ranks: usize) -> Command {
    let mut job = Command::new("timeout");
    job.arg(JOB_LIMIT.to_string())
        .args(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(ranks.to_string())
        .arg(kmap);
    job
}
