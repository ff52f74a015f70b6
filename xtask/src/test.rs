//! `cargo xtask test`: every check CI runs, in order, stopping at the first that fails:
//! formatting, clippy (the workspace, and the kernel in each of its builds), the MSRV, the crate
//! packaged and built as a kernel builds it, the workspace's tests, the CPU-read mutant, proofs
//! partitioned over 2 and 4 MPI ranks, the mutants of release in any order through the
//! explorer, the docs, Linux's code from 6.1 and from a tree of one's own, and every kernel
//! build booted under QEMU.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use thiserror::Error;

use crate::kernel::{self, KernelError};
use crate::mutants::{self, MutantsError};
use crate::partitioned::{self, PartitionError};
use crate::process::{self, CommandError, FileError, ToolError, cargo};
use crate::say;

/// Why `cargo xtask test` failed: the first check that did.
#[derive(Debug, Error)]
pub enum TestError {
    /// A cargo command (fmt, clippy, test, doc, publish) failed.
    #[error(transparent)]
    Cargo(#[from] CommandError),
    /// A tool is missing.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// A proof partitioned over MPI ranks is not the one process's.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// A file could not be read, written or copied.
    #[error(transparent)]
    File(#[from] FileError),
    /// The workspace's Cargo.toml is not TOML.
    #[error("{} is not TOML", path.display())]
    Manifest {
        path: std::path::PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// The workspace declares no `rust-version`.
    #[error("Cargo.toml declares no rust-version under [workspace.package]")]
    NoRustVersion,
    /// `rustc --version` says no version.
    #[error("cannot read `rustc --version`: {0}")]
    RustcVersion(String),
    /// The declared MSRV is not this toolchain.
    #[error(
        "the declared MSRV is {declared}, but this toolchain is {toolchain}: test the MSRV with \
         that toolchain, or declare this one"
    )]
    Msrv { declared: String, toolchain: String },
    /// The CPU-read mutant's patch no longer applies to mechanism.rs.
    #[error("the CPU-read mutant no longer applies to mechanism.rs: update xtask")]
    CpuReadMutantStale,
    /// The explorer did not catch the CPU-read mutant as it must.
    #[error("the CPU-read mutant was not caught ({status}):\n{output}")]
    CpuReadMutantMissed { status: String, output: String },
    /// A named mutant was not caught by the explorer.
    #[error(transparent)]
    Mutants(#[from] MutantsError),
    /// A kernel build did not boot as it must.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The README's own-tree example did not catch its edit.
    #[error("crates/kmap-linux/own-tree.sh did not end in Linux's BUG_ON ({status}):\n{output}")]
    OwnTreeMissed { status: String, output: String },
}

pub fn run() -> Result<(), TestError> {
    let root = process::workspace_root();
    let kernel = root.join("kernel");
    // Linux's mm/highmem.c, which `--impl linux` runs, comes from an installed kernel source;
    // before the first build, whose build script extracts it.
    process::ensure(
        "test -n \"$KMAP_LINUX_SRC\" || ls /usr/src/linux-source-6.12.tar.xz",
        "a Linux kernel source (for --impl linux)",
        "linux-source-6.12",
    )?;
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
    cpu_read_mutant(&root)?;
    // After the workspace's tests: it leaves target/debug/kmap built with MPI.
    partitioned::run(&root)?;
    // A refusal that must change nothing, and the mutants of release in any order: each the
    // explorer alone must catch.
    mutants::run(&mutants::explorer_only(&[
        "atomic-begun-before-overflow",
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
    // Linux's code from the other sources the README promises: Debian's 6.1 (the markers are
    // tested on 6.12 by the workspace's tests above, and on 6.1 here), and a tree of one's own
    // with a real edit. Each builds kmap-linux again from its source; nothing after this step
    // builds the workspace.
    process::ensure(
        "ls /usr/src/linux-source-6.1.tar.xz",
        "Linux 6.1's source",
        "linux-source-6.1",
    )?;
    cargo(
        &root,
        &["test", "--package", "kmap-linux"],
        &[("KMAP_LINUX_SRC", "/usr/src/linux-source-6.1.tar.xz")],
    )?;
    own_tree(&root)?;
    // Every build of the kernel, booted with one instruction per translation block: each must
    // end as it is meant to (see xtask/src/kernel/mod.rs). All but two, whose outcome depends
    // on where interrupts land, until the nesting of NMIs on the NMI's IST stack is found and
    // the arrivals are made deterministic (README, "The kernel"): `rfc-v1-sti-no-bug-on`, and
    // `rfc-v1`, whose boots sometimes end in an exception or a garbage report from an NMI
    // whose stack a nested NMI overwrote. They are booted by `cargo xtask kernel --build NAME
    // --boots 10 --tally`, not here.
    for build in kernel::Build::ALL {
        if matches!(build, kernel::Build::RfcV1 | kernel::Build::RfcV1StiNoBugOn) {
            say!(
                "not booted here: {} (its outcome depends on chance: cargo xtask kernel --build \
                 {} --boots 10 --tally measures it)",
                build.name(),
                build.name()
            );
            continue;
        }
        kernel::boot(build)?.require_expected()?;
    }
    say!("every check passed");
    Ok(())
}

/// The declared MSRV (`rust-version` of the workspace) must be the toolchain that builds and
/// tests it here: a declared version nothing checks is a claim nobody tested.
fn msrv_is_this_toolchain(root: &Path) -> Result<(), TestError> {
    let path = root.join("Cargo.toml");
    let manifest: toml::Table =
        toml::from_str(&process::read(&path)?).map_err(|source| TestError::Manifest {
            path: path.clone(),
            source,
        })?;
    let declared = manifest
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("rust-version"))
        .and_then(|v| v.as_str())
        .ok_or(TestError::NoRustVersion)?
        .to_string();
    let mut rustc = Command::new("rustc");
    rustc.arg("--version");
    let output = process::output_of(rustc)?;
    let version = String::from_utf8_lossy(&output.stdout);
    let toolchain = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| {
            v.rsplit_once('.')
                .map(|(major_minor, _)| major_minor.to_string())
        })
        .ok_or_else(|| TestError::RustcVersion(version.to_string()))?;
    if toolchain != declared {
        return Err(TestError::Msrv {
            declared,
            toolchain,
        });
    }
    say!("the declared MSRV {declared} is this toolchain's version");
    Ok(())
}

/// What `kmap check --json` says of one scenario (the fields read here).
#[derive(Deserialize)]
pub(crate) struct Checked {
    pub verdict: String,
    pub violation: Option<CheckedViolation>,
    #[serde(default)]
    pub hazards: Vec<CheckedHazard>,
}

#[derive(Deserialize)]
pub(crate) struct CheckedViolation {
    pub kind: String,
    pub cpu: u64,
    pub context: String,
    pub after: String,
}

#[derive(Deserialize)]
pub(crate) struct CheckedHazard {
    pub rule: String,
}

impl Checked {
    /// Whether the explorer caught the CPU-read mutant as it must: a crash, with the CPU read
    /// reported as `CONFIG_DEBUG_PREEMPT` would.
    pub(crate) fn caught_cpu_read(&self) -> bool {
        self.verdict == "violation"
            && self.violation.as_ref().is_some_and(|v| v.kind == "crash")
            && self
                .hazards
                .iter()
                .any(|h| h.rule.contains("DEBUG_PREEMPT"))
    }
}

/// The README's worked example, run as written: a tree with the 2010 bug as a real edit of
/// mm/highmem.c, checked through `KMAP_LINUX_SRC`; the explorer must catch it at Linux's own
/// `BUG_ON`.
fn own_tree(root: &Path) -> Result<(), TestError> {
    let tree = root.join("target/linux-own-tree");
    let _ = std::fs::remove_dir_all(&tree);
    say!("crates/kmap-linux/own-tree.sh: a tree of one's own, with the 2010 bug as a real edit");
    let output = Command::new("sh")
        .current_dir(root)
        .arg("crates/kmap-linux/own-tree.sh")
        .arg(&tree)
        .output()
        .map_err(|source| CommandError::Spawn {
            command: "sh crates/kmap-linux/own-tree.sh".into(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.code() == Some(1)
        && stdout.contains("BUG_ON(!pte_none(ptep_get(kmap_pte))) at mm/highmem.c:")
    {
        say!("caught at Linux's BUG_ON(!pte_none(ptep_get(kmap_pte)))");
        Ok(())
    } else {
        Err(TestError::OwnTreeMissed {
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                process::tail(&stdout, 20),
                process::tail(&String::from_utf8_lossy(&output.stderr), 20)
            ),
        })
    }
}

/// The crate with its CPU read moved before `migrate_disable` (so a task preempted and migrated
/// right after the read would write another CPU's slot), built from a copy of the workspace: the
/// explorer must catch it by its consequence. Every check the project had before passed with
/// this mutant; the simulated platform reports the read as `CONFIG_DEBUG_PREEMPT` would (a
/// hazard) and lets a preemption and a migration come right after it, and `migrate-on-preempt`
/// then ends in a crash on the CPU whose slot the migrated task wrote.
fn cpu_read_mutant(root: &Path) -> Result<(), TestError> {
    let copy = root.join("target/mutants/cpu-read-before-migrate-disable");
    let _ = std::fs::remove_dir_all(&copy);
    for part in ["Cargo.toml", "Cargo.lock", "crates", "xtask"] {
        process::copy_tree(&root.join(part), &copy.join(part))?;
    }
    let file = copy.join("crates/kmap/src/mechanism.rs");
    let text = process::read(&file)?;
    let read = "    let cpu = platform.current_cpu();\n";
    let disable =
        "    platform.migrate_disable();\n    step(platform, Point::MapMigrationDisabled);\n";
    if text.matches(read).count() != 1 || text.matches(disable).count() != 1 {
        return Err(TestError::CpuReadMutantStale);
    }
    let mutant = text
        .replacen(read, "", 1)
        .replacen(disable, &format!("{read}{disable}"), 1);
    process::write(&file, &mutant)?;
    let manifest = copy.join("Cargo.toml");
    // A target folder of its own: cargo names the artifacts of workspace crates by their path
    // inside the workspace, so the mutant's would overwrite the real crate's in `target/`.
    let target = root.join("target/mutant-target");
    say!("the CPU-read mutant of the crate, checked by the explorer");
    let mut check = Command::new(process::cargo_program());
    check
        .env("CARGO_TARGET_DIR", &target)
        .args(["run", "--quiet", "--package", "kmap-cli", "--manifest-path"])
        .arg(&manifest)
        .args(["--", "check", "migrate-on-preempt", "--json"]);
    let shown = process::shown(&check);
    let output = check.output().map_err(|source| CommandError::Spawn {
        command: shown,
        source,
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let checked: Option<Checked> = serde_json::from_str(&stdout).ok();
    match checked {
        Some(checked) if output.status.code() == Some(1) && checked.caught_cpu_read() => {
            let v = checked.violation.as_ref().expect("a crash");
            say!(
                "caught: {} on CPU {} in {} after \"{}\"",
                v.kind,
                v.cpu,
                v.context,
                v.after
            );
            Ok(())
        }
        _ => Err(TestError::CpuReadMutantMissed {
            status: output.status.to_string(),
            output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_read_mutant_is_caught_only_with_a_crash_and_the_hazard() {
        let checked = |kind: &str, rule: &str| -> Checked {
            serde_json::from_value(serde_json::json!({
                "scenario": "migrate-on-preempt", "verdict": "violation", "ok": false,
                "violation": { "kind": kind, "cpu": 1, "context": "task T0",
                               "after": "map: installed", "message": "slot occupied" },
                "hazards": [{ "rule": rule, "cpu": 0, "context": "task T0",
                              "after": "map: cpu read", "message": "…" }],
            }))
            .unwrap()
        };
        assert!(checked("crash", "DEBUG_PREEMPT (CPU read while migratable)").caught_cpu_read());
        assert!(
            !checked("corruption", "DEBUG_PREEMPT (CPU read while migratable)").caught_cpu_read()
        );
        assert!(!checked("crash", "INV-1").caught_cpu_read());
    }
}
