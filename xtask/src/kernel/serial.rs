//! The kernel's serial log, read as data: besides sentences for people, the kernel prints one
//! record a line, `TAG {json}` (see `kernel/src/record.rs`): `REPORT` (the workload's
//! figures), `NMI-RIPS` (addresses NMIs interrupted), `BENCH` (one benchmark figure) and
//! `RESULT` (how the boot ended). Each tag has its type here, read with serde_json.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A record line that is not the JSON its tag promises.
#[derive(Debug, Error)]
#[error("the kernel's `{tag}` record is not what xtask reads: `{line}`")]
pub struct RecordError {
    pub tag: &'static str,
    pub line: String,
    #[source]
    pub source: serde_json::Error,
}

/// How the boot ended, as the kernel says it (`RESULT`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// The workload met its targets (or the benchmarks ran to their end).
    Pass,
    /// A failure stopped the machine.
    Fail(Failure),
}

/// What stopped the machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Its kind: `occupied-slot`, `wrong-word`, `slot-fault`, `migrated-holding`,
    /// `crate-report`, `exception`, `panic`, `deadline`, `no-second-cpu`.
    pub failure: String,
    /// The CPU that reported it.
    pub cpu: u64,
    /// What went wrong, in words.
    pub message: String,
    /// The context and task it happened in, and the task's kmap depth (absent when the report
    /// itself failed).
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub task: Option<u64>,
    #[serde(default)]
    pub depth: Option<u64>,
}

/// One `NMI-RIPS` record: instruction addresses NMIs interrupted; the last says how many did not
/// fit in the kernel's table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct NmiRips {
    pub rips: Vec<u64>,
    #[serde(default)]
    pub lost: Option<u64>,
}

/// One `BENCH` record.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "bench", rename_all = "lowercase")]
pub enum Bench {
    /// Wake-up latency of the high-priority task with sections of `passes` passes, in TSC cycles.
    Latency {
        passes: u64,
        kind: SectionKind,
        samples: u64,
        p50: u64,
        p99: u64,
        worst: u64,
    },
    /// Operations the six workers did in `ticks` ticks over a working set of `frames` frames.
    Throughput {
        frames: u64,
        kind: MapKind,
        ops: u64,
        ticks: u64,
        misses: u64,
        wraps: u64,
    },
}

/// The mapped sections of a latency phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SectionKind {
    /// `kmap_atomic`-style: preemption off while mapped.
    Atomic,
    /// `kmap_local`: preemptible.
    Local,
}

/// The maps of a throughput phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapKind {
    /// kmap_local (`kmap::raw::map`/`unmap`).
    Local,
    /// The global-pool `kmap()` baseline.
    Pool,
}

/// The records of tag `tag` in `log`, in order.
pub fn records<'a, T: DeserializeOwned>(
    log: &'a [String],
    tag: &'static str,
) -> impl Iterator<Item = Result<T, RecordError>> + 'a {
    log.iter().filter_map(move |line| {
        let json = line.strip_prefix(tag)?.strip_prefix(' ')?;
        Some(serde_json::from_str(json).map_err(|source| RecordError {
            tag,
            line: line.clone(),
            source,
        }))
    })
}

/// Whether a line is a record of `tag` (to leave long ones out of what xtask shows).
pub fn is_record(line: &str, tag: &str) -> bool {
    line.strip_prefix(tag)
        .is_some_and(|rest| rest.starts_with(" {"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn records_are_read_by_their_tag() {
        let log = log(&[
            "kdemo: running",
            r#"NMI-RIPS {"rips":[1058673,1068632]}"#,
            r#"NMI-RIPS {"rips":[],"lost":3}"#,
            r#"RESULT {"verdict":"fail","failure":"occupied-slot","cpu":1,"context":"interrupt/NMI","task":5,"depth":2,"message":"mapping \"x\" refused"}"#,
        ]);
        let rips: Vec<NmiRips> = records(&log, "NMI-RIPS").collect::<Result<_, _>>().unwrap();
        assert_eq!(rips[0].rips, vec![1058673, 1068632]);
        assert_eq!(rips[1].lost, Some(3));
        let verdict: Vec<Verdict> = records(&log, "RESULT").collect::<Result<_, _>>().unwrap();
        let Verdict::Fail(failure) = &verdict[0] else {
            panic!("{verdict:?}")
        };
        assert_eq!(failure.failure, "occupied-slot");
        assert_eq!(failure.message, "mapping \"x\" refused");
        assert_eq!(failure.task, Some(5));
        assert!(is_record(&log[1], "NMI-RIPS") && !is_record(&log[0], "NMI-RIPS"));
    }

    #[test]
    fn a_bad_record_is_an_error_naming_its_line() {
        let log = log(&[r#"RESULT {"verdict":"maybe"}"#, "RESULT: PASS"]);
        let read: Vec<Result<Verdict, _>> = records(&log, "RESULT").collect();
        // The old text line is not a record; the record with an unknown verdict is an error.
        assert_eq!(read.len(), 1);
        let error = read[0].as_ref().unwrap_err();
        assert!(error.to_string().contains("maybe"), "{error}");
    }

    #[test]
    fn the_benchmark_figures_of_a_boot_are_read() {
        let log = log(&[
            r#"BENCH {"bench":"latency","passes":4,"kind":"atomic","samples":2048,"p50":17974,"p99":40766,"worst":75938}"#,
            r#"BENCH {"bench":"throughput","frames":768,"kind":"pool","ops":1614527,"ticks":3000,"misses":561754,"wraps":1103}"#,
        ]);
        let figures: Vec<Bench> = records(&log, "BENCH").collect::<Result<_, _>>().unwrap();
        assert_eq!(
            figures[0],
            Bench::Latency {
                passes: 4,
                kind: SectionKind::Atomic,
                samples: 2048,
                p50: 17974,
                p99: 40766,
                worst: 75938
            }
        );
        assert!(matches!(
            figures[1],
            Bench::Throughput {
                kind: MapKind::Pool,
                wraps: 1103,
                ..
            }
        ));
    }
}
