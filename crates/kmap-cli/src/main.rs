//! `kmap`: run the real kmap crate code on a simulated machine.
//!
//! With no arguments it runs the demonstration (the main job of `cargo run --release`).

mod demo;
mod stress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Random runs with many tasks on several CPUs, and interrupts and NMIs that map.
    Stress(stress::Args),
    /// The demonstration (what `kmap` with no command runs).
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Demo(demo::Args::default())) {
        Command::Stress(args) => stress::main(&args),
        Command::Demo(args) => demo::main(&args),
    }
}
