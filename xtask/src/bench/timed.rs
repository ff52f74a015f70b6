//! Timed runs of `kmap prove` for the benchmark sections: `/usr/bin/time` around a command,
//! the cheapest of several runs, and the JSON a proof prints.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::prove::ProveBenchError;

/// What `kmap prove --json` prints of a scope's proof (the fields the sections read).
#[derive(Deserialize)]
pub(super) struct ScopeProof {
    pub(super) scope: String,
    pub(super) verdict: String,
    pub(super) states: u64,
}

/// Runs of each timed proof; the cheapest counts (the machine is shared).
pub(super) const BEST_OF: usize = 3;

/// The cheapest of `runs` runs of `kmap prove ARGS --threads 1 --json` by CPU time (the machine
/// is shared): that CPU time, and what the proof printed.
pub(super) fn best_proof<P: DeserializeOwned>(
    kmap: &Path,
    args: &[&str],
    runs: usize,
) -> Result<(f64, P), ProveBenchError> {
    let mut best: Option<(f64, P)> = None;
    for _ in 0..runs {
        let mut command = Command::new(kmap);
        command
            .arg("prove")
            .args(args)
            .args(["--threads", "1", "--json"]);
        let Timed {
            stdout,
            stderr,
            cpu_seconds,
            ..
        } = timed(command)?;
        let proof: P = from_json(&stdout, &stderr)?;
        let cpu = cpu_seconds.unwrap_or(f64::NAN);
        if best.as_ref().is_none_or(|(b, _)| cpu < *b) {
            best = Some((cpu, proof));
        }
    }
    Ok(best.expect("at least one run"))
}

/// What a command timed by `/usr/bin/time` printed, and what it cost.
pub(super) struct Timed {
    pub(super) stdout: String,
    pub(super) stderr: String,
    pub(super) seconds: Option<f64>,
    pub(super) cpu_seconds: Option<f64>,
    pub(super) peak_mib: Option<f64>,
}

/// `/usr/bin/time -f "%e %M %U %S"` around `command`: its output, the wall time (by this
/// process's clock around it), and the peak memory and the CPU time (`/usr/bin/time`'s report,
/// read from its file: an external tool's output).
pub(super) fn timed(command: Command) -> Result<Timed, ProveBenchError> {
    let times = std::env::temp_dir().join(format!("kmap-time-{}", std::process::id()));
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .args(["-f", "%e %M %U %S", "-o"])
        .arg(&times)
        .arg(program)
        .args(args);
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let start = std::time::Instant::now();
    let output = wrapped.output().map_err(ProveBenchError::Time)?;
    let wall = start.elapsed().as_secs_f64();
    let measured = std::fs::read_to_string(&times).unwrap_or_default();
    let last = measured.lines().last().unwrap_or("");
    let mut fields = last.split_whitespace();
    // `/usr/bin/time`'s own wall time (hundredths) is passed over for the clock's.
    let seconds = fields
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .map(|_| wall);
    let peak_mib = fields
        .next()
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0);
    let user: Option<f64> = fields.next().and_then(|s| s.parse().ok());
    let system: Option<f64> = fields.next().and_then(|s| s.parse().ok());
    Ok(Timed {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        seconds,
        cpu_seconds: user.zip(system).map(|(u, s)| u + s),
        peak_mib,
    })
}

/// The JSON document `kmap` printed on standard output (`stderr` goes into the error, to say
/// why there is none).
pub(super) fn from_json<P: DeserializeOwned>(
    stdout: &str,
    stderr: &str,
) -> Result<P, ProveBenchError> {
    serde_json::from_str(stdout).map_err(|source| ProveBenchError::NoJson {
        output: format!("{stdout}{stderr}"),
        source,
    })
}
