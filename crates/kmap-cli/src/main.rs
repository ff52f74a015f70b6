//! `kmap`: run the real kmap crate code on a simulated machine.
//!
//! With no arguments it runs the demonstration (the main job of `cargo run --release`).

mod bench;
mod check;
mod demo;
mod error;
mod linux;
#[cfg(feature = "mpi")]
mod mpi;
mod prove;
mod replay;
mod report;
mod stress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The explorer allocates and frees small blocks at every point of every execution (the views
/// of the crate's calls, the places of handlers); mimalloc's thread-local free lists serve them
/// in a fraction of the system allocator's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kmap",
    version,
    about = "Temporary kernel mappings, checked on a simulated machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Explore scenarios: every moment an interrupt, an NMI or a preemption can arrive, within
    /// bounds. Exit status 0 when every verdict is the expected one, 1 when not, 2 for bad input.
    Check(check::Args),
    /// Prove a scope: every program of every task up to a depth, with preemption anywhere the
    /// kernel allows it and no bound, interrupts and NMIs probed at every point. Exit status 0
    /// when no execution goes wrong, 1 when one does, 2 for bad input.
    Prove(prove::Args),
    /// Replay one execution from the string `kmap check` printed, with its timeline.
    Replay(replay::Args),
    /// Random runs with many tasks on several CPUs, and interrupts and NMIs that map.
    Stress(stress::Args),
    /// Linux's own mm/highmem.c beside the crate: every built-in scenario on both, and each
    /// scripted edit of Linux's history with its verdict (Markdown tables; exit status 1 when a
    /// verdict is not the expected one).
    Linux(linux::Args),
    /// Figures: the explorer on every built-in scenario, and the stress runner.
    Bench(bench::Args),
    /// The demonstration (what `kmap` with no command runs).
    Demo(demo::Args),
}

fn main() -> ExitCode {
    // Like any Unix filter, end quietly when the reader of our output goes away (`kmap … | head`)
    // instead of panicking on the broken pipe: Rust ignores SIGPIPE by default.
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // `--impl linux`: Linux's own mm/highmem.c, if this build found a kernel source.
    kmap_linux::register();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Demo(demo::Args::default())) {
        Command::Check(args) => check::main(&args),
        Command::Prove(args) => prove::main(&args),
        Command::Replay(args) => replay::main(&args),
        Command::Stress(args) => stress::main(&args),
        Command::Linux(args) => linux::main(&args),
        Command::Bench(args) => bench::main(&args),
        Command::Demo(args) => demo::main(&args),
    };
    error::exit(result)
}
