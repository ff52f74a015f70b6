//! What each addition to the tasks' alphabet costs `kmap prove` on 1/3/2 (the scope by which
//! the issue sets the defaults): the CPU time of one thread, best of three runs, against the
//! base alphabet (the SPIN model's), and the default (`kmap prove` without `--alphabet`).

use std::fmt::Write as _;
use std::path::Path;

use super::prove::ProveBenchError;
use super::timed::{BEST_OF, ScopeProof, best_proof};

/// The alphabets measured, by their `--alphabet` argument (`None`: the default).
const ALPHABETS: &[Option<&str>] = &[
    Some("base"),
    Some("atomic"),
    Some("write"),
    Some("irq-off"),
    Some("sleep"),
    Some("lowmem"),
    None,
    Some("atomic,write,irq-off,sleep,lowmem"),
];

/// The section of BENCHMARKS.md.
pub fn section(kmap: &Path) -> Result<String, ProveBenchError> {
    let mut out = String::from(
        "\n### What the alphabet costs\n\n\
         `kmap prove --cpus 1 --tasks 3 --depth 2 --threads 1 [--alphabet A] --json`, the CPU \
         time (user + system) of the best of three runs, in this run one after the other; the \
         ratio is to the base alphabet (map, check, unmap, yield: the SPIN model's). The issue \
         puts an addition in the default where it costs under twice the base.\n\n\
         | alphabet | scope | verdict | states | CPU time | ratio to base | in the default |\n\
         |---|---|---|---:|---:|---:|---|\n",
    );
    let mut base = None;
    let mut rows = Vec::new();
    for alphabet in ALPHABETS {
        let mut args = vec!["--cpus", "1", "--tasks", "3", "--depth", "2"];
        if let Some(a) = alphabet {
            args.extend(["--alphabet", a]);
        }
        let (cpu, proof): (f64, ScopeProof) = best_proof(kmap, &args, BEST_OF)?;
        let base_cpu = *base.get_or_insert(cpu);
        rows.push((alphabet, proof, cpu, cpu / base_cpu));
    }
    // The default's additions, read from the scope it proved (`scope:1/3/2:write:…`).
    let default: Vec<String> = rows
        .iter()
        .find(|(alphabet, ..)| alphabet.is_none())
        .map(|(_, proof, ..)| proof.scope.split(':').skip(2).map(String::from).collect())
        .unwrap_or_default();
    for (alphabet, proof, cpu, ratio) in rows {
        let single = alphabet.filter(|a| !a.contains(',') && *a != "base");
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {cpu:.2} s | {ratio:.2}× | {} |",
            alphabet.map_or("default".to_string(), |a| format!("`{a}`")),
            proof.scope,
            proof.verdict,
            proof.states,
            match single {
                Some(a) if default.iter().any(|d| d == a) => "yes",
                Some(_) => "no",
                None => "",
            },
        );
    }
    Ok(out)
}
