//! The kernel's benchmarks in BENCHMARKS.md: boot the benchmark build `BOOTS` times, read its
//! `BENCH` records, draw the ratio curves as SVG (`benchmarks/`), and say in words where
//! kmap_local wins, by how much, and where it does not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use thiserror::Error;

use crate::kernel::serial::{self, Bench, MapKind, RecordError, SectionKind};
use crate::kernel::{self, KernelError};
use crate::plot::{self, Chart, PlotError, Point, Series};
use crate::process::{self, FileError};

/// Why the kernel's benchmarks gave no section.
#[derive(Debug, Error)]
pub enum KernelBenchError {
    /// The benchmark build did not build or boot, or did not pass.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A `BENCH` record is not what xtask reads.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A boot printed no figures.
    #[error("the benchmark kernel printed no BENCH figures")]
    NoFigures,
    /// A boot printed a point for one of its two kinds only.
    #[error("the benchmark kernel printed {what} at {at} for one kind only")]
    OneKind { what: String, at: u64 },
    /// The boots measured different points.
    #[error("the benchmark boots measured different points")]
    Different,
    /// A chart could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// A chart could not be written.
    #[error(transparent)]
    File(#[from] FileError),
}

/// Boots whose figures are combined (median, min and max of each point).
pub const BOOTS: u32 = 3;
/// The pool's size (`LAST_PKMAP` with PAE), as the kernel builds it.
const POOL_SLOTS: u64 = 512;

/// One boot's figures.
#[derive(Default)]
struct Figures {
    /// passes → (atomic p50, atomic p99, local p50, local p99), in TSC cycles.
    latency: BTreeMap<u64, [f64; 4]>,
    /// frames → (kmap_local operations, kmap() operations, kmap() wraps).
    throughput: BTreeMap<u64, [f64; 3]>,
}

/// One boot's figures, from its `BENCH` records.
fn parse(log: &[String]) -> Result<Figures, KernelBenchError> {
    let mut figures = Figures::default();
    // Each point needs both of its kinds: a missing record must not read as a zero.
    let mut kinds: BTreeMap<(&str, u64), u32> = BTreeMap::new();
    for record in serial::records::<Bench>(log, "BENCH") {
        match record? {
            Bench::Latency {
                passes,
                kind,
                p50,
                p99,
                ..
            } => {
                *kinds.entry(("latency", passes)).or_default() += 1;
                let entry = figures.latency.entry(passes).or_default();
                let at = if kind == SectionKind::Atomic { 0 } else { 2 };
                entry[at] = p50 as f64;
                entry[at + 1] = p99 as f64;
            }
            Bench::Throughput {
                frames,
                kind,
                ops,
                wraps,
                ..
            } => {
                *kinds.entry(("throughput", frames)).or_default() += 1;
                let entry = figures.throughput.entry(frames).or_default();
                if kind == MapKind::Pool {
                    entry[1] = ops as f64;
                    entry[2] = wraps as f64;
                } else {
                    entry[0] = ops as f64;
                }
            }
        }
    }
    if figures.latency.is_empty() || figures.throughput.is_empty() {
        return Err(KernelBenchError::NoFigures);
    }
    if let Some(((what, at), _)) = kinds.iter().find(|(_, n)| **n != 2) {
        return Err(KernelBenchError::OneKind {
            what: what.to_string(),
            at: *at,
        });
    }
    Ok(figures)
}

/// Median, min and max of `values` at `x`.
fn point(x: f64, mut values: Vec<f64>) -> Point {
    values.sort_by(f64::total_cmp);
    Point {
        x,
        mid: values[values.len() / 2],
        min: values[0],
        max: values[values.len() - 1],
    }
}

fn range(p: &Point) -> String {
    format!("{:.2} ({:.2}–{:.2})", p.mid, p.min, p.max)
}

/// The Markdown section, with the charts written under `root/benchmarks/`.
pub fn section(root: &Path) -> Result<String, KernelBenchError> {
    let boots: Vec<Figures> = kernel::bench(BOOTS)?
        .iter()
        .map(|log| parse(log))
        .collect::<Result<_, _>>()?;
    let first = &boots[0];
    if boots.iter().any(|b| {
        !b.latency.keys().eq(first.latency.keys())
            || !b.throughput.keys().eq(first.throughput.keys())
    }) {
        return Err(KernelBenchError::Different);
    }

    // Throughput: kmap_local / kmap() against the working set.
    let throughput: Vec<(u64, Point, f64)> = first
        .throughput
        .keys()
        .map(|&frames| {
            let ratios = boots
                .iter()
                .map(|b| {
                    let [local, pool, _] = b.throughput[&frames];
                    local / pool.max(1.0)
                })
                .collect();
            let wraps = boots.iter().map(|b| b.throughput[&frames][2]).sum::<f64>() / BOOTS as f64;
            (frames, point(frames as f64, ratios), wraps)
        })
        .collect();
    // Latency: kmap_atomic sections / kmap_local sections, p50 and p99, against the length.
    let latency: Vec<(u64, Point, Point)> = first
        .latency
        .keys()
        .map(|&passes| {
            let ratio = |i: usize| {
                boots
                    .iter()
                    .map(|b| b.latency[&passes][i] / b.latency[&passes][i + 2].max(1.0))
                    .collect()
            };
            (
                passes,
                point(passes as f64, ratio(0)),
                point(passes as f64, ratio(1)),
            )
        })
        .collect();

    let dir = root.join("benchmarks");
    std::fs::create_dir_all(&dir).map_err(|e| FileError::new("create", &dir, e))?;
    let throughput_series = [Series {
        label: "kmap_local / kmap() operations".into(),
        points: throughput.iter().map(|(_, p, _)| *p).collect(),
    }];
    let svg = plot::svg(
        &Chart {
            title: "Throughput ratio against the working set (kmap() pool: 512 slots)",
            x_label: "frames cycled through by the 6 workers",
            y_label: "kmap_local / kmap()",
            log_x: true,
            log_y: true,
            series: &throughput_series,
        },
        Some(1.0),
    )?;
    process::write(&dir.join("kernel-throughput.svg"), &svg)?;
    let latency_series = [
        Series {
            label: "p50: kmap_atomic sections / kmap_local sections".into(),
            points: latency.iter().map(|(_, p, _)| *p).collect(),
        },
        Series {
            label: "p99: kmap_atomic sections / kmap_local sections".into(),
            points: latency.iter().map(|(_, _, p)| *p).collect(),
        },
    ];
    let svg = plot::svg(
        &Chart {
            title: "Wake-up latency ratio against the mapped section's length",
            x_label: "passes over the page in one mapped section",
            y_label: "kmap_atomic / kmap_local latency",
            log_x: true,
            log_y: true,
            series: &latency_series,
        },
        Some(1.0),
    )?;
    process::write(&dir.join("kernel-latency.svg"), &svg)?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## The kernel under QEMU (2 CPUs, software emulation)\n\n\
         `cargo xtask bench` (or `cargo xtask bench --kernel-only` for this section alone) boots \
         `kernel/` built with `--features bench` {BOOTS} times, under QEMU's default translation \
         (blocks of many instructions: these are figures, not correctness checks). Absolute times \
         under emulation mean little; each ratio compares two measurements made in the same boot, \
         and each point below is the median of the {BOOTS} boots' ratios with the lowest and \
         highest in brackets (the bars of the charts).\n\n\
         **Throughput.** The six workers (three a CPU) map a frame, write and read 16 words, and \
         unmap, as fast as they can for 3000 ticks, each cycling in order through its share of a \
         working set, with kmap_local (`kmap::raw::map`/`unmap`) and then with a global-pool \
         `kmap()` built in the benchmark as Linux's `kmap_high` is: `LAST_PKMAP` = {POOL_SLOTS} \
         slots, one lock, `page_address()` through a hash of 128 buckets, reference counts, and on \
         every wrap `flush_all_zero_pkmaps` with a full TLB flush on both CPUs (an IPI).\n\n\
         ![throughput ratio](benchmarks/kernel-throughput.svg)\n\n\
         | frames in the working set | kmap_local / kmap() | kmap() wraps a boot (mean) |\n\
         |---:|---:|---:|"
    );
    for (frames, p, wraps) in &throughput {
        let _ = writeln!(out, "| {frames} | {} | {wraps:.0} |", range(p));
    }
    let below: Vec<&Point> = throughput
        .iter()
        .filter(|(f, _, _)| *f < POOL_SLOTS)
        .map(|(_, p, _)| p)
        .collect();
    let above: Vec<&Point> = throughput
        .iter()
        .filter(|(f, _, _)| *f > POOL_SLOTS)
        .map(|(_, p, _)| p)
        .collect();
    let span = |ps: &[&Point]| {
        let lo = ps.iter().map(|p| p.mid).fold(f64::INFINITY, f64::min);
        let hi = ps.iter().map(|p| p.mid).fold(0.0, f64::max);
        (lo, hi)
    };
    let (below_lo, below_hi) = span(&below);
    let (above_lo, above_hi) = span(&above);
    let verdict = |lo: f64, hi: f64| {
        if lo > hi {
            "not measured".to_string()
        } else if lo > 1.0 {
            format!("kmap_local wins, {lo:.2}–{hi:.2}×")
        } else if hi < 1.0 {
            format!(
                "kmap_local loses: the pool does {:.2}–{:.2}× its work",
                1.0 / hi,
                1.0 / lo
            )
        } else {
            format!("neither wins throughout (ratios {lo:.2}–{hi:.2})")
        }
    };
    // The smallest working set from which kmap_local wins at every larger one too.
    let crossover = throughput
        .iter()
        .position(|(_, p, _)| p.mid > 1.0)
        .filter(|&i| throughput[i..].iter().all(|(_, p, _)| p.mid > 1.0))
        .map_or_else(
            || "kmap_local does not win at the largest working set measured".to_string(),
            |i| {
                format!(
                    "kmap_local wins from {} frames on ({:.2}× there, {:.2}× at {} frames)",
                    throughput[i].0,
                    throughput[i].1.mid,
                    throughput[throughput.len() - 1].1.mid,
                    throughput[throughput.len() - 1].0
                )
            },
        );
    let _ = writeln!(
        out,
        "\nIn words: with a working set smaller than the pool ({} of the points), {}. Every \
         `kmap()` then finds its frame through the hash and needs no TLB operation, while every \
         kmap_local unmap invalidates its slot (`invlpg`). With a working \
         set larger than the pool ({} of the points), {}: each `kmap()` misses, and every {POOL_SLOTS} \
         misses flush both CPUs' TLBs; {crossover}. kmap_local keeps no pool: the working set \
         changes nothing in its path.\n",
        below.len(),
        verdict(below_lo, below_hi),
        above.len(),
        verdict(above_lo, above_hi),
    );

    let _ = writeln!(
        out,
        "**Latency.** On each CPU a high-priority task is woken by every timer tick (0.5 ms) while \
         three workers run mapped sections of a given length (passes writing and reading the whole \
         page); the latency is the TSC from the wake-up in the timer interrupt to the task running. \
         With `kmap_atomic`-style sections (preemption off while mapped) the wake-up waits for the \
         section to end; with `kmap_local` sections the timer preempts the worker.\n\n\
         ![latency ratio](benchmarks/kernel-latency.svg)\n\n\
         | passes a section | p50 atomic / local | p99 atomic / local | p50 atomic, local (TSC, boot 1) |\n\
         |---:|---:|---:|---:|"
    );
    for (passes, p50, p99) in &latency {
        let [a50, _, l50, _] = first.latency[passes];
        let _ = writeln!(
            out,
            "| {passes} | {} | {} | {a50:.0}, {l50:.0} |",
            range(p50),
            range(p99)
        );
    }
    let (shortest, longest) = (&latency[0], &latency[latency.len() - 1]);
    let _ = writeln!(
        out,
        "\nIn words: the p50 ratio {} with the section's length, from {:.2} at {} pass(es) to \
         {:.2} at {} passes: a kmap_atomic section holds off the wake-up for as long as it runs, a \
         kmap_local section does not. {} The p99 column is at the mercy of the host scheduling \
         QEMU's two vCPU threads on this 2-core machine, and its bars are wide.\n",
        if longest.1.mid > shortest.1.mid {
            "grows"
        } else {
            "does not grow"
        },
        shortest.1.mid,
        shortest.0,
        longest.1.mid,
        longest.0,
        match latency
            .iter()
            .filter(|(_, p, _)| p.mid <= 1.2)
            .map(|(n, _, _)| *n)
            .max()
        {
            Some(n) => format!(
                "Up to {n} passes the p50 ratio is at most 1.2: there kmap_local gains little or \
                 nothing on latency."
            ),
            None => "At every length measured kmap_local's p50 is more than 1.2× shorter.".into(),
        },
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn a_boots_records_give_both_kinds_of_each_point() {
        let figures = parse(&log(&[
            "kdemo: running",
            r#"BENCH {"bench":"latency","passes":1,"kind":"atomic","samples":2048,"p50":12064,"p99":37282,"worst":224214}"#,
            r#"BENCH {"bench":"latency","passes":1,"kind":"local","samples":2048,"p50":14662,"p99":42272,"worst":262506}"#,
            r#"BENCH {"bench":"throughput","frames":768,"kind":"local","ops":1960643,"ticks":3000,"misses":0,"wraps":0}"#,
            r#"BENCH {"bench":"throughput","frames":768,"kind":"pool","ops":1614527,"ticks":3000,"misses":561754,"wraps":1103}"#,
            r#"RESULT {"verdict":"pass"}"#,
        ]))
        .unwrap();
        assert_eq!(figures.latency[&1], [12064.0, 37282.0, 14662.0, 42272.0]);
        assert_eq!(figures.throughput[&768], [1960643.0, 1614527.0, 1103.0]);
    }

    #[test]
    fn a_point_of_one_kind_or_no_point_is_an_error() {
        let one = parse(&log(&[
            r#"BENCH {"bench":"latency","passes":1,"kind":"atomic","samples":1,"p50":1,"p99":1,"worst":1}"#,
            r#"BENCH {"bench":"throughput","frames":48,"kind":"local","ops":1,"ticks":3000,"misses":0,"wraps":0}"#,
            r#"BENCH {"bench":"throughput","frames":48,"kind":"pool","ops":1,"ticks":3000,"misses":0,"wraps":0}"#,
        ]));
        assert!(matches!(one, Err(KernelBenchError::OneKind { at: 1, .. })));
        assert!(matches!(
            parse(&log(&["RESULT: PASS"])),
            Err(KernelBenchError::NoFigures)
        ));
    }
}
