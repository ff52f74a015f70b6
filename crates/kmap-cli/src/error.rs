//! What the `kmap` command refuses to run, in one style: `error: …` on standard error (as clap
//! and cargo write theirs), `note: …` for things worth knowing, and exit status 2.

use std::path::PathBuf;
use std::process::ExitCode;

use kmap_check::scope::ScopeError;
use kmap_check::{ReplayIdError, ScenarioError};
use kmap_sim::ConfigError;

/// Exit status for bad input or usage.
pub const BAD_INPUT: u8 = 2;

/// Why a command cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `kmap check` was given nothing to check.
    #[error("name scenario files or built-ins (see `kmap check --list`), or --all")]
    NoScenario,
    /// A scenario cannot be read.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A scenario runs endless programs, which only `kmap prove` ends.
    #[error(
        "{scenario}: its tasks with `any = true` run endless programs, which only a stateful \
         search ends: use `kmap prove`"
    )]
    Endless {
        /// The scenario.
        scenario: String,
    },
    /// A scenario, with the changes given, cannot run.
    #[error("{scenario}: {error}")]
    Config {
        /// The scenario.
        scenario: String,
        /// Why.
        error: ConfigError,
    },
    /// This build has no Linux code, or Linux's code cannot run what was asked.
    #[error("impl = \"linux\": {0}")]
    Linux(String),
    /// A scope cannot be proved.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// A replay string cannot be read.
    #[error(transparent)]
    ReplayId(#[from] ReplayIdError),
    /// `--mpi` in a build without MPI.
    #[cfg_attr(feature = "mpi", allow(dead_code))]
    #[error(
        "--mpi: this kmap was built without MPI; build it with `cargo build --release -p kmap-cli \
         --features mpi` (Debian: apt-get install libopenmpi-dev openmpi-bin libclang-dev) and \
         run it under `mpirun -np N` or `srun`"
    )]
    NoMpi,
    /// MPI cannot start (or was started already).
    #[cfg(feature = "mpi")]
    #[error("--mpi: MPI did not initialise (run under `mpirun -np N` or `srun`)")]
    MpiInit,
    /// The MPI library cannot give the threads of a search what they need.
    #[cfg(feature = "mpi")]
    #[error(
        "--mpi --threads {threads}: this MPI library supports single-threaded processes only; \
         run more ranks with --threads 1 instead"
    )]
    MpiThreads {
        /// The threads asked for.
        threads: usize,
    },
    /// Another rank of the MPI job cannot run (its own message says why), so neither can
    /// this one.
    #[error("another rank of the MPI job cannot run this; its message says why")]
    OtherRank,
    /// `--max-memory` is below what the checker needs before its first state.
    #[error(
        "--max-memory {limit_mib} MiB cannot fit: the checker needs {needed_mib} MiB before the \
         first state"
    )]
    MemoryTooSmall {
        /// The limit.
        limit_mib: u64,
        /// What is needed.
        needed_mib: u64,
    },
    /// A scenario cannot fit in `--max-memory`.
    #[error(
        "{name} cannot fit in --max-memory {limit_mib} MiB: it has at least {states:.3e} states \
         (every combination of its tasks' stack depths), and remembering each takes at least \
         16 bytes: {needed_mib:.3e} MiB at the very least"
    )]
    CannotFit {
        /// The scenario.
        name: String,
        /// The limit.
        limit_mib: u64,
        /// The fewest states it has.
        states: f64,
        /// The least memory they need.
        needed_mib: f64,
    },
    /// A file cannot be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// `--shard` with the stateful engine, which it does not split.
    #[error(
        "--shard splits the stateless engine's executions only: with --engine stateful, spread \
         the search over MPI ranks with `kmap prove --mpi` instead"
    )]
    ShardStateful,
}

/// Print `error` in the one style, and the exit status for bad input.
pub fn fail(error: CliError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(BAD_INPUT)
}

/// Print a note in the one style.
pub fn note(text: &str) {
    eprintln!("note: {text}");
}

/// The exit status of a command that ran: 0 when every verdict is the expected one, 1 when not,
/// 2 when it could not run.
pub fn exit(result: Result<bool, CliError>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => fail(error),
    }
}
