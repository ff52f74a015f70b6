//! `cargo xtask …`: the project's tasks, so that CI and a developer run exactly the same thing.

mod bench;
mod kernel;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

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
    /// tests and compile-fail tests, the docs, and both kernel builds booted under QEMU.
    Test,
    /// Every benchmark (instruction counts under callgrind, the kernel under QEMU, the explorer),
    /// written to BENCHMARKS.md with the machine, the command and the date.
    Bench,
    /// Build the demo kernel and boot it under QEMU; exit 0 only for a run that reached
    /// `RESULT: PASS` (QEMU exit status 33).
    Kernel {
        /// The switch protocol the kernel is built with: split or rfc-v1.
        #[arg(long = "switch", default_value = "split")]
        switch: kernel::Switch,
        /// Boot this many times (each must pass).
        #[arg(long, default_value_t = 1)]
        boots: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test => test(),
        Task::Bench => bench::run(),
        Task::Kernel { switch, boots } => {
            (0..boots).try_for_each(|_| kernel::boot(switch)?.require_pass())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("xtask: {failure}");
            ExitCode::FAILURE
        }
    }
}

fn test() -> Result<(), String> {
    let root = workspace_root();
    let kernel = root.join("kernel");
    cargo(&root, &["fmt", "--all", "--", "--check"], &[])?;
    cargo(&kernel, &["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    // Each build of the kernel: the workload (split and rfc-v1) and the benchmarks.
    for features in [&[][..], &["--features", "rfc-v1"], &["--features", "bench"]] {
        let mut args = vec!["clippy", "--release"];
        args.extend(features);
        args.extend(["--", "-D", "warnings"]);
        cargo(&kernel, &args, &[])?;
    }
    // The product crate alone, as a kernel builds it: no_std, no default features.
    cargo(
        &root,
        &["build", "--package", "kmap", "--no-default-features"],
        &[],
    )?;
    cargo(&root, &["test", "--workspace"], &[])?;
    // The crate docs are its book: a broken link is a broken chapter.
    cargo(
        &root,
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    kernel::boot(kernel::Switch::Split)?.require_pass()?;
    kernel::boot(kernel::Switch::RfcV1)?.require_caught()?;
    println!("xtask: every check passed");
    Ok(())
}

/// Run `cargo ARGS` in `dir` with the extra environment `env`, failing on a non-zero exit.
fn cargo(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    println!(
        "xtask: ({}) {}cargo {}",
        dir.display(),
        shown.concat(),
        args.join(" ")
    );
    let status = Command::new(cargo)
        .envs(env.iter().copied())
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}
