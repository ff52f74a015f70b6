//! `cargo xtask …`: the project's tasks, so that CI and a developer run exactly the same thing.

mod bench;
mod kernel;
mod kernel_bench;
mod mutants;
mod plot;
mod prove_bench;

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
    /// tests and compile-fail tests, the docs, the crate packaged for crates.io, and every kernel
    /// build booted under QEMU.
    Test,
    /// Every benchmark (instruction counts under callgrind, the kernel under QEMU, the explorer),
    /// written to BENCHMARKS.md with the machine, the command and the date.
    Bench {
        /// Only `kmap prove` side by side with SPIN, written into its section of BENCHMARKS.md.
        #[arg(long)]
        prove_only: bool,
        /// Only the kernel's benchmarks under QEMU (and their charts), written into their section
        /// of BENCHMARKS.md.
        #[arg(long)]
        kernel_only: bool,
        /// Only the instruction counts under callgrind, written into their section of
        /// BENCHMARKS.md.
        #[arg(long)]
        instructions_only: bool,
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
        Task::Test => test(),
        Task::Bench {
            prove_only,
            kernel_only,
            instructions_only,
        } => bench::run(prove_only, kernel_only, instructions_only),
        Task::Mutants { options } => mutants::run(&options),
        Task::Kernel {
            build,
            boots,
            tally,
            coverage,
            multi_insn_tb,
        } => {
            return match kernel::run(build, boots, multi_insn_tb, coverage, tally) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("xtask: {}", e.message());
                    ExitCode::from(e.exit_status())
                }
            };
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
    // Each build of the kernel: the workload's and the benchmarks'.
    for features in kernel::Build::ALL
        .map(kernel::Build::features)
        .into_iter()
        .chain(["bench"])
    {
        let mut args = vec!["clippy", "--release"];
        if !features.is_empty() {
            args.extend(["--features", features]);
        }
        args.extend(["--", "-D", "warnings"]);
        cargo(&kernel, &args, &[])?;
    }
    msrv_is_this_toolchain(&root)?;
    // The product crate as crates.io would receive it: packaged, then built from the package.
    cargo(
        &root,
        &["publish", "--dry-run", "--allow-dirty", "--package", "kmap"],
        &[],
    )?;
    // The product crate alone, as a kernel builds it: no_std, no default features.
    cargo(
        &root,
        &["build", "--package", "kmap", "--no-default-features"],
        &[],
    )?;
    cargo(&root, &["test", "--workspace"], &[])?;
    sharded_proof(&root)?;
    cpu_read_mutant(&root)?;
    // The mutants of release in any order, each of which the explorer alone must catch.
    mutants::run(&mutants::Options::explorer_only(&[
        "hole-marked-before-cleared",
        "switch-does-not-skip-holes",
        "lazy-pop-one-short",
        "holes-are-zero",
    ]))?;
    // The crate docs are its book: a broken link is a broken chapter.
    cargo(
        &root,
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    // Every build of the kernel, booted with one instruction per translation block: each must
    // end as it is meant to (see xtask/src/kernel.rs).
    for build in kernel::Build::ALL {
        kernel::boot(build)?.require_expected()?;
    }
    println!("xtask: every check passed");
    Ok(())
}

/// The declared MSRV (`rust-version` of the workspace) must be the toolchain that builds and
/// tests it here: a declared version nothing checks is a claim nobody tested.
fn msrv_is_this_toolchain(root: &Path) -> Result<(), String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))
        .map_err(|e| format!("cannot read Cargo.toml: {e}"))?;
    let declared = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .ok_or("Cargo.toml declares no rust-version")?;
    let output = Command::new("rustc")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let version = String::from_utf8_lossy(&output.stdout);
    let toolchain = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| {
            v.rsplit_once('.')
                .map(|(major_minor, _)| major_minor.to_string())
        })
        .ok_or_else(|| format!("cannot read `rustc --version`: {version}"))?;
    if toolchain != declared {
        return Err(format!(
            "the declared MSRV is {declared}, but this toolchain is {toolchain}: test the MSRV \
             with that toolchain, or declare this one"
        ));
    }
    println!("xtask: the declared MSRV {declared} is this toolchain's version");
    Ok(())
}

/// Make sure `tool` is on the PATH: install Debian's `package` when it is missing and this runs
/// as root with apt-get, else fail with the exact command to run.
pub fn ensure_tool(tool: &str, package: &str) -> Result<(), String> {
    let present = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if present(tool) {
        return Ok(());
    }
    let command = format!("apt-get install -y --no-install-recommends {package}");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root && present("apt-get") {
        println!("xtask: {tool} is missing: {command}");
        let install = |cmd: &str| {
            Command::new("sh")
                .args(["-c", cmd])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install(&command) {
            install("apt-get update");
            install(&command);
        }
        if present(tool) {
            return Ok(());
        }
    }
    Err(format!(
        "{tool} is not installed; install it with: {command}"
    ))
}

/// A small proof split into four shards run by GNU parallel, merged by `kmap merge`: it must
/// give the verdict and the distinct states of the same proof run whole.
fn sharded_proof(root: &Path) -> Result<(), String> {
    ensure_tool("parallel", "parallel")?;
    let kmap = root.join("target/debug/kmap");
    let dir = root.join("target/sharded-proof");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let scope = ["--cpus", "1", "--tasks", "2", "--depth", "2"];
    println!("xtask: a proof in 4 shards through GNU parallel, merged");
    let status = Command::new("parallel")
        .arg("--will-cite")
        .arg(format!(
            "{} prove {} --shard {{}}/4 --json --keys > {}/shard-{{}}.json",
            kmap.display(),
            scope.join(" "),
            dir.display()
        ))
        .args([":::", "0", "1", "2", "3"])
        .status()
        .map_err(|e| format!("could not run parallel: {e}"))?;
    if !status.success() {
        return Err(format!("the sharded proof failed ({status})"));
    }
    let json = |output: std::process::Output| -> Result<serde_json::Value, String> {
        serde_json::from_slice(&output.stdout).map_err(|e| {
            format!(
                "not JSON ({e}): {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    };
    let shards: Vec<_> = (0..4)
        .map(|i| dir.join(format!("shard-{i}.json")))
        .collect();
    let merged = json(
        Command::new(&kmap)
            .arg("merge")
            .args(&shards)
            .arg("--json")
            .output()
            .map_err(|e| e.to_string())?,
    )?;
    let whole = json(
        Command::new(&kmap)
            .arg("prove")
            .args(scope)
            .arg("--json")
            .output()
            .map_err(|e| e.to_string())?,
    )?;
    if merged["verdict"] != whole["verdict"] || merged["distinct_states"] != whole["states"] {
        return Err(format!(
            "the merged shards ({} with {} distinct states) differ from the whole proof ({} with \
             {} states)",
            merged["verdict"], merged["distinct_states"], whole["verdict"], whole["states"]
        ));
    }
    println!(
        "xtask: merged shards: {} with {} distinct states, as the whole proof",
        merged["verdict"], merged["distinct_states"]
    );
    Ok(())
}

/// The crate with its CPU read moved before `migrate_disable` (so a task preempted and migrated
/// right after the read would write another CPU's slot), built from a copy of the workspace: the
/// explorer must catch it by its consequence. Every check the project had before passed with
/// this mutant; the simulated platform reports the read as `CONFIG_DEBUG_PREEMPT` would (a
/// hazard) and lets a preemption and a migration come right after it, and `migrate-on-preempt`
/// then ends in a crash on the CPU whose slot the migrated task wrote.
fn cpu_read_mutant(root: &Path) -> Result<(), String> {
    let copy = root.join("target/mutants/cpu-read-before-migrate-disable");
    let _ = std::fs::remove_dir_all(&copy);
    for part in ["Cargo.toml", "Cargo.lock", "crates", "xtask"] {
        copy_tree(&root.join(part), &copy.join(part))
            .map_err(|e| format!("cannot copy {part} for the mutant: {e}"))?;
    }
    let file = copy.join("crates/kmap/src/mechanism.rs");
    let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
    let read = "    let cpu = platform.current_cpu();\n";
    let disable =
        "    platform.migrate_disable();\n    step(platform, Point::MapMigrationDisabled);\n";
    if text.matches(read).count() != 1 || text.matches(disable).count() != 1 {
        return Err("the CPU-read mutant no longer applies to mechanism.rs: update xtask".into());
    }
    let mutant = text
        .replacen(read, "", 1)
        .replacen(disable, &format!("{read}{disable}"), 1);
    std::fs::write(&file, mutant).map_err(|e| e.to_string())?;
    let manifest = copy.join("Cargo.toml");
    // A target folder of its own: cargo names the artifacts of workspace crates by their path
    // inside the workspace, so the mutant's would overwrite the real crate's in `target/`.
    let target = root.join("target/mutant-target");
    println!("xtask: the CPU-read mutant of the crate, checked by the explorer");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .env("CARGO_TARGET_DIR", &target)
        .args(["run", "--quiet", "--package", "kmap-cli", "--manifest-path"])
        .arg(&manifest)
        .args(["--", "check", "migrate-on-preempt"])
        .output()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.code() == Some(1)
        && stdout.contains("consequence: crash")
        && stdout.contains("DEBUG_PREEMPT")
    {
        println!(
            "xtask: caught: {}",
            stdout.lines().nth(3).unwrap_or("").trim()
        );
        Ok(())
    } else {
        Err(format!(
            "the CPU-read mutant was not caught ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, to).map(|_| ())
    }
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
