//! `cargo xtask …`: the project's tasks, so that CI and a developer run exactly the same thing.
//!
//! One module per task (`test`, `kernel`, `bench`, `mutants`), each with its own error enum;
//! `benchmarks_md` owns the sections of BENCHMARKS.md the tasks write; `process` runs the
//! programs they drive; `plot` draws the benchmark charts. Every failure ends the same way: one
//! line `xtask: error: …`, then a line `xtask:   because: …` for each cause underneath it.

mod bench;
mod benchmarks_md;
mod kernel;
mod mutants;
mod partitioned;
mod plot;
mod process;
mod test;

use std::error::Error;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "kmap project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Every test: formatting, lints (warnings are errors), the whole workspace's tests, doc
    /// tests and compile-fail tests, the docs, the crate packaged for crates.io, and every kernel
    /// build booted under QEMU.
    Test,
    /// The proofs partitioned over MPI ranks that `test` runs: `kmap prove --mpi` under
    /// `mpirun -np 2` and `-np 4`, compared with one process (installs OpenMPI as root).
    Mpi,
    /// Every benchmark (instruction counts under callgrind, the kernel under QEMU, the explorer),
    /// written to BENCHMARKS.md with the machine, the command and the date.
    Bench {
        #[command(flatten)]
        options: bench::Options,
    },
    /// Build the demo kernel and boot it under QEMU with one instruction per translation block.
    /// Exit status: 0 when every boot ended as the build is meant to (split: RESULT: PASS; a
    /// broken build: caught with its expected consequence), 1 when a boot ended otherwise (not
    /// caught, or a failure of another kind: panic, unexpected exception), 3 when a boot hung or
    /// QEMU ended without a verdict (triple fault), 4 when the kernel did not build or QEMU
    /// could not run.
    Kernel {
        /// The build: split, rfc-v1, rfc-v1-sti, rfc-v1-sti-no-bug-on, no-migrate-disable.
        #[arg(long, alias = "switch", default_value = "split")]
        build: kernel::Build,
        /// Boot this many times.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        boots: u32,
        /// Run every boot and count the outcomes, instead of stopping at the first unexpected.
        #[arg(long)]
        tally: bool,
        /// Count the NMI arrival windows in the crate's code that the boots hit.
        #[arg(long)]
        coverage: bool,
        /// Let QEMU take interrupts only between translation blocks (its default), to measure
        /// what one instruction per block adds.
        #[arg(long)]
        multi_insn_tb: bool,
        /// Print every boot's outcome as one JSON document on standard output (xtask's own
        /// lines go to standard error); the exit status stays the same.
        #[arg(long)]
        json: bool,
    },
    /// Named mutants of crates/kmap (xtask/mutants.toml), each applied to a copy of the
    /// workspace under target/mutants/NAME and put through the explorer, stress, the crate's
    /// tests (and with --kernel a kernel boot): which checks catch which, written to
    /// BENCHMARKS.md. Fails when a mechanism mutant escapes the explorer or a guard-API mutant
    /// the crate's tests, or when a mutant no longer applies.
    Mutants {
        #[command(flatten)]
        options: mutants::Options,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test => test::run().map_err(|e| (Box::new(e) as Box<dyn Error>, 1)),
        Task::Mpi => partitioned::run(&process::workspace_root()).map_err(|e| (e.into(), 1)),
        Task::Bench { options } => bench::run(&options).map_err(|e| (e.into(), 1)),
        Task::Mutants { options } => mutants::run(&options.mode()).map_err(|e| (e.into(), 1)),
        Task::Kernel {
            build,
            boots,
            tally,
            coverage,
            multi_insn_tb,
            json,
        } => kernel::run(&kernel::Options {
            build,
            boots,
            multi_insn_tb,
            coverage,
            tally,
            json,
        })
        .map_err(|e| {
            let status = e.exit_status();
            (e.into(), status)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((error, status)) => {
            report(error.as_ref());
            ExitCode::from(status)
        }
    }
}

/// The one way xtask reports a failure: the error, then each cause beneath it.
fn report(error: &dyn Error) {
    eprintln!("xtask: error: {error}");
    let mut cause = error.source();
    while let Some(e) = cause {
        eprintln!("xtask:   because: {e}");
        cause = e.source();
    }
}
