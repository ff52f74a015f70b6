//! What the trace promises: the timeline's rows follow it exactly, and the crate never makes two
//! platform calls in a row without an arrival point between them, except where its code argues
//! why none is needed.

use kmap::CpuId;
use kmap_check::search::{check, counterexample};
use kmap_check::timeline::Timeline;
use kmap_check::{builtin, resolve};
use kmap_sim::settings::ValueEnum;
use kmap_sim::{Context, Protocol, Schedule, What};

/// Traced executions of every built-in under every protocol: the run with no event, and the
/// counterexample where there is one.
fn traces() -> Vec<(String, kmap_sim::Outcome)> {
    let mut all = Vec::new();
    for (name, _) in builtin::BUILTINS {
        for &protocol in Protocol::value_variants() {
            let mut config = resolve(name).unwrap().config;
            config.machine.switch = protocol;
            all.push((
                format!("{name}/{protocol}"),
                counterexample(&config, Schedule::default()).outcome,
            ));
            if let Some(ce) = check(&config).counterexample {
                all.push((format!("{name}/{protocol}#{}", ce.schedule), ce.outcome));
            }
        }
    }
    all
}

#[test]
fn timeline_rows_follow_the_trace_in_order() {
    for (name, outcome) in traces() {
        let timeline = Timeline::of(&outcome);
        let mut end = 0;
        for row in &timeline.rows {
            assert!(
                row.events.start >= end && row.events.end > row.events.start,
                "{name}: row `{}` ({:?}) comes before event {end}",
                row.text,
                row.events
            );
            // Every event a row shows belongs to the row's column.
            for event in &outcome.trace[row.events.clone()] {
                if !matches!(event.what, What::Call(_)) {
                    assert_eq!(event.cpu, row.column.0, "{name}: {}", row.text);
                }
            }
            end = row.events.end;
        }
        // Every event that is shown is in some row.
        let shown = |what: &What| !matches!(what, What::Call(_) | What::Point(_));
        let covered: usize = timeline.rows.iter().map(|r| r.events.len()).sum();
        assert!(
            covered >= outcome.trace.iter().filter(|e| shown(&e.what)).count(),
            "{name}: some events are in no row"
        );
    }
}

/// Pairs of platform calls with no point between them, and the argument for each (written in
/// `crates/kmap/src/mechanism.rs`): after an identity read, an event is equivalent to one
/// before the read; the refusal's undo comes after its deciding read.
fn argued(first: &str, second: &str) -> bool {
    matches!(
        first,
        "current_cpu" | "current_stack" | "in_hardirq" | "irqs_disabled"
    ) || (first, second) == ("read_pte", "preempt_enable")
}

#[test]
fn no_two_platform_calls_are_adjacent_without_a_point_or_an_argument() {
    let mut checked = 0;
    for (name, outcome) in traces() {
        // The last call of each context since its last arrival point.
        let mut last: Vec<((CpuId, Context), Option<&'static str>)> = Vec::new();
        for event in &outcome.trace {
            let key = (event.cpu, event.context.clone());
            let slot = match last.iter().position(|(k, _)| *k == key) {
                Some(i) => &mut last[i].1,
                None => {
                    last.push((key, None));
                    &mut last.last_mut().unwrap().1
                }
            };
            match &event.what {
                What::Point(_) => *slot = None,
                What::Call(call) => {
                    if let Some(previous) = *slot {
                        assert!(
                            argued(previous, call),
                            "{name}: `{previous}` then `{call}` in {} with no arrival point",
                            event.context
                        );
                        checked += 1;
                    }
                    *slot = Some(call);
                }
                _ => {}
            }
        }
    }
    assert!(checked > 100, "only {checked} adjacent pairs seen");
}
