//! Linux's own mm/highmem.c (`--impl linux`) against the crate under `kmap prove`: the split
//! switch proved on the same scopes by both implementations, one after the other in this run,
//! each the best of three single-threaded runs by CPU time.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::prove::ProveBenchError;
use super::timed::{BEST_OF, ScopeProof, best_proof};
use crate::process;

/// The scopes (CPUs, tasks, depth), each with an interrupt and an NMI that map.
const SCOPES: &[(u32, u32, u32)] = &[(1, 2, 2), (1, 3, 2), (2, 3, 1)];

/// One implementation's proof of one scope: the best of [`BEST_OF`].
fn best(
    kmap: &Path,
    (cpus, tasks, depth): (u32, u32, u32),
    implementation: &str,
) -> Result<(f64, ScopeProof), ProveBenchError> {
    let (cpus, tasks, depth) = (cpus.to_string(), tasks.to_string(), depth.to_string());
    let args = [
        "--cpus",
        &cpus,
        "--tasks",
        &tasks,
        "--depth",
        &depth,
        "--impl",
        implementation,
    ];
    best_proof(kmap, &args, BEST_OF)
}

/// The section of BENCHMARKS.md.
pub fn section(root: &Path) -> Result<String, ProveBenchError> {
    process::cargo(root, &["build", "--release", "--package", "kmap-cli"], &[])?;
    let kmap = root.join("target/release/kmap");
    let version = Command::new(&kmap)
        .args(["check", "--list"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                l.strip_prefix("edits of Linux ")
                    .map(|v| v.split('\'').next().unwrap_or("").to_string())
            })
        })
        .unwrap_or_else(|| "(no Linux code in this build)".into());
    let mut out = format!(
        "## Linux's own code against the crate under `kmap prove`\n\n\
         `kmap prove --cpus C --tasks T --depth D --threads 1 --json --impl I`, an interrupt \
         and an NMI that map, the split switch; Linux {version}'s mm/highmem.c compiled with an \
         arrival point before every memory access (`--impl linux`) against the crate \
         (`--impl crate`). CPU time (user + system) of the best of three runs, in this run one \
         after the other. Linux's code has more states: its stack has one cell more (its push \
         comes before its overflow check), and a point before every access where the crate has \
         one per step.\n\n\
         | scope | crate: verdict | states | CPU time | Linux: verdict | states | CPU time | Linux / crate |\n\
         |---|---|---:|---:|---|---:|---:|---:|\n"
    );
    for &scope in SCOPES {
        let (crate_cpu, crate_proof) = best(&kmap, scope, "crate")?;
        let (linux_cpu, linux_proof) = best(&kmap, scope, "linux")?;
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {crate_cpu:.2} s | {} | {} | {linux_cpu:.2} s | {} |",
            linux_proof
                .scope
                .split(':')
                .take(2)
                .collect::<Vec<_>>()
                .join(":"),
            crate_proof.verdict,
            crate_proof.states,
            linux_proof.verdict,
            linux_proof.states,
            // Below the timer's 0.01 s there is no ratio to print.
            if crate_cpu >= 0.01 {
                format!("{:.1}×", linux_cpu / crate_cpu)
            } else {
                "—".into()
            },
        );
    }
    Ok(out)
}
