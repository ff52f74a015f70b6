//! What `kmap check`, `kmap prove` and `kmap replay` print about a search: a line per
//! scenario, the counterexample's timeline and replay string, a picture, JSON; and the search
//! itself, with a progress line on a terminal.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use kmap_check::search::bfs;
use kmap_check::search::{Counterexample, HAZARDS_KEPT, Progress};
use kmap_check::timeline::Timeline;
use kmap_check::{Exploration, Options, ReplayId, Scenario, Strategy, explore};
use kmap_sim::{Changes, Settings, Verdict};
use serde_json::{Value, json};

use crate::error::CliError;

/// A scenario searched, with what is needed to report it.
pub struct Checked {
    /// The scenario, with the changes applied.
    pub scenario: Scenario,
    /// The settings changed from the scenario's (for its replay string).
    pub changes: Changes<Settings>,
    /// What the search found.
    pub exploration: Exploration,
}

impl Checked {
    /// The string that replays a counterexample.
    pub fn replay_id(&self, counterexample: &Counterexample) -> ReplayId {
        ReplayId {
            scenario: self.scenario_name(),
            changes: self.changes.clone(),
            schedule: counterexample.schedule.clone(),
        }
    }

    fn scenario_name(&self) -> String {
        if self.scenario.source.starts_with("built-in") {
            self.scenario.name.clone()
        } else {
            self.scenario.source.clone()
        }
    }

    /// Whether the verdict is the expected one.
    pub fn ok(&self) -> bool {
        self.exploration.verdict == self.scenario.expected()
    }

    fn switch(&self) -> String {
        self.scenario.config.machine.switch.to_string()
    }
}

/// Search `scenario` with `strategy`, with a progress line on a terminal once it takes longer
/// than a second.
pub fn search(scenario: &Scenario, strategy: &mut dyn Strategy, options: Options) -> Exploration {
    let terminal = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let exploration = explore(&scenario.config, strategy, options, |p: Progress| {
        if !terminal || !p.executions.is_multiple_of(16) {
            return;
        }
        if bar.is_none() && start.elapsed() > Duration::from_secs(1) {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
            bar = Some(b);
        }
        if let Some(b) = &bar {
            let seconds = start.elapsed().as_secs_f64();
            b.set_message(if p.states > 0 {
                format!(
                    "{}: {} states ({:.0}/s), {} transitions, depth {}, {} MiB",
                    scenario.name,
                    p.states,
                    p.states as f64 / seconds,
                    p.executions,
                    p.depth,
                    memory_kib().0 / 1024
                )
            } else {
                format!(
                    "{}: {} executions, {:.0} executions/s",
                    scenario.name,
                    p.executions,
                    p.executions as f64 / seconds
                )
            });
            b.tick();
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    exploration
}

/// The resident and the peak resident memory of this process, in KiB (0 where unknown).
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Print the JSON results (one object, or an array of several) when asked; whether every
/// verdict was the expected one.
pub fn finish(json: bool, mut results: Vec<Value>, all_ok: bool) -> Result<bool, CliError> {
    if json {
        let value = if results.len() == 1 {
            results.remove(0)
        } else {
            Value::Array(results)
        };
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON"));
    }
    Ok(all_ok)
}

fn bounds_text(scenario: &Scenario) -> String {
    let b = &scenario.config.bounds;
    let n = |v: Option<u32>| v.map_or("any".to_string(), |v| v.to_string());
    let mut text = format!(
        "{} preemptions, {} lasting handlers; interrupts nest {} deep, NMIs {} deep",
        n(b.preemptions),
        n(b.lasting_handlers),
        n(b.irq_depth),
        n(b.nmi_depth)
    );
    let m = &scenario.config.machine;
    if m.cpus > 1 {
        text.push_str(&format!(", {} CPU switches", n(b.cpu_switches)));
    }
    if let Some(mutation) = m.mutation {
        text.push_str(&format!("; machine mutation {mutation}"));
    }
    if m.strict {
        text.push_str("; strict (hazards are violations)");
    }
    text
}

/// The line of `kmap check` for a scenario, and its counterexample (with its timeline when
/// `with_timeline`).
pub fn print_checked(checked: &Checked, with_timeline: bool) {
    let e = &checked.exploration;
    let s = &checked.scenario;
    let mark = if checked.ok() { "ok  " } else { "FAIL" };
    println!(
        "{mark} {:<24} {:<19} {:<9} (expected {}) {} executions, {} pruned, {} probes, {:.2} s{}",
        s.name,
        checked.switch(),
        e.verdict.name(),
        s.expected().name(),
        e.executions,
        e.stats.pruned,
        e.stats.probes,
        e.elapsed.as_secs_f64(),
        if e.complete { " (complete)" } else { "" }
    );
    println!("     bounds: {}", bounds_text(s));
    println!("     engine: {}", engine_text(e));
    let Some(ce) = &e.counterexample else {
        if !e.hazards.is_empty() {
            println!(
                "     {} hazard(s) survived with no consequence, first: {}",
                e.hazards.len(),
                e.hazards[0]
            );
        }
        return;
    };
    println!("     replay: kmap replay '{}'", checked.replay_id(ce));
    print_counterexample(ce, with_timeline, "counterexample with ");
}

/// Which engine a check ran: stateful (with the states it remembered) or stateless.
fn engine_text(e: &Exploration) -> String {
    match &e.states {
        Some(states) => format!(
            "stateful, {} states remembered within the bounds",
            states.states
        ),
        None => "stateless".into(),
    }
}

/// The hazards a search met, as JSON: those that led to its counterexample, or, with none,
/// every one its executions survived.
fn hazards_json(e: &Exploration) -> Value {
    let ce = e.counterexample.as_ref();
    json!(
        ce.map_or(&e.hazards, |c| &c.outcome.hazards)
            .iter()
            .map(|h| json!({
                "rule": h.rule.to_string(),
                "cpu": h.cpu.0,
                "context": h.context.to_string(),
                "after": h.label,
                "message": h.message,
            }))
            .collect::<Vec<_>>()
    )
}

/// A counterexample's violation (with the hazards that led there and, when asked, its
/// timeline), or its refusal.
fn print_counterexample(ce: &Counterexample, with_timeline: bool, lead: &str) {
    match ce.outcome.verdict() {
        Verdict::Violation => {
            let v = &ce.outcome.violations[0];
            if lead.is_empty() {
                println!("     counterexample: {v}");
            } else {
                println!("     {lead}{} injected event(s): {v}", ce.events());
            }
            for hazard in &ce.outcome.hazards {
                println!("     led there: hazard {hazard}");
            }
            if with_timeline {
                println!();
                print!("{}", Timeline::of(&ce.outcome).render(48));
                println!("\n     consequence: {v}\n");
            }
        }
        _ => {
            if let Some(refusal) = ce.outcome.refusals.first() {
                println!(
                    "     refused: {} (in {} on CPU {})",
                    refusal.message, refusal.context, refusal.cpu.0
                );
            }
        }
    }
}

/// The verdict of a proof in words: `incomplete` when nothing went wrong but not every state
/// was explored.
fn proof_verdict(e: &Exploration) -> &'static str {
    if e.verdict == Verdict::Pass && !e.complete {
        "incomplete"
    } else {
        e.verdict.name()
    }
}

/// The lines of `kmap prove` for a scenario.
pub fn print_proof(checked: &Checked) {
    let e = &checked.exploration;
    let s = &checked.scenario;
    let states = e.states.clone().unwrap_or_default();
    let mark = if checked.ok() && e.complete {
        "ok  "
    } else if checked.ok() {
        "STOP"
    } else {
        "FAIL"
    };
    println!(
        "{mark} {:<24} {:<19} {:<9} {} states, {} transitions ({} to a state seen before), depth {}, {:.2} s{}",
        s.name,
        checked.switch(),
        proof_verdict(e),
        states.states,
        e.executions,
        states.matched,
        states.depth,
        e.elapsed.as_secs_f64(),
        if e.complete { " (complete)" } else { "" }
    );
    println!(
        "     states kept as {}: probability that two were confused at most {:.1e}; peak memory {} MiB",
        states.hash_scheme(),
        bfs::collision_bound(states.states),
        memory_kib().1 / 1024
    );
    if !states.ranks.is_empty() {
        println!(
            "     partitioned over {} ranks by state key; states owned by each: {}",
            states.ranks.len(),
            states
                .ranks
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(why) = &e.stopped {
        println!("     stopped early: {why}");
    }
    let Some(ce) = &e.counterexample else {
        // A proof lists every hazard it met (each rule, point and context once): a pass with
        // hazards is a pass only until the consequence comes.
        if !e.hazards.is_empty() {
            println!(
                "     {} hazard(s) survived with no consequence{}:",
                e.hazards.len(),
                if e.hazards.len() == HAZARDS_KEPT {
                    " (the first ones)"
                } else {
                    ""
                }
            );
            for hazard in &e.hazards {
                println!("       hazard {hazard}");
            }
        }
        return;
    };
    println!("     replay: kmap replay '{}'", checked.replay_id(ce));
    print_counterexample(ce, true, "");
}

/// A violation as JSON.
fn violation_json(ce: Option<&Counterexample>) -> Value {
    json!(
        ce.and_then(|c| c.outcome.violations.first())
            .map(|v| json!({
                "kind": v.kind.name(),
                "cpu": v.cpu.0,
                "context": v.context.to_string(),
                "after": v.label,
                "message": v.message,
            }))
    )
}

/// The result of `kmap check` for a scenario, as JSON.
pub fn check_json(checked: &Checked) -> Value {
    let e = &checked.exploration;
    let ce = e.counterexample.as_ref();
    json!({
        "scenario": checked.scenario.name,
        "switch": checked.switch(),
        "machine": checked.scenario.config.machine,
        "bounds": checked.scenario.config.bounds,
        "verdict": e.verdict.name(),
        "expected": checked.scenario.expected().name(),
        "ok": checked.ok(),
        "executions": e.executions,
        "engine": if e.states.is_some() { "stateful" } else { "stateless" },
        "states": e.states.as_ref().map(|states| states.states),
        "pruned": e.stats.pruned,
        "probes": e.stats.probes,
        "complete": e.complete,
        "elapsed_ms": e.elapsed.as_millis() as u64,
        "schedule": ce.map(|c| c.schedule.to_string()),
        "replay": ce.map(|c| checked.replay_id(c).to_string()),
        "violation": violation_json(ce),
        "hazards": hazards_json(e),
        "refusal": ce.and_then(|c| c.outcome.refusals.first()).map(|r| r.message.clone()),
        "trace": ce.map(|c| c.outcome.trace.iter().map(|event| event.to_string()).collect::<Vec<_>>()),
    })
}

/// The result of `kmap prove` for a scenario, as JSON.
pub fn proof_json(checked: &Checked) -> Value {
    let e = &checked.exploration;
    let states = e.states.clone().unwrap_or_default();
    let ce = e.counterexample.as_ref();
    json!({
        "scope": checked.scenario.name,
        "switch": checked.switch(),
        "machine": checked.scenario.config.machine,
        "verdict": proof_verdict(e),
        "stopped": e.stopped,
        "ok": checked.ok(),
        "states": states.states,
        "matched": states.matched,
        "transitions": e.executions,
        "depth": states.depth,
        "complete": e.complete,
        "elapsed_ms": e.elapsed.as_millis() as u64,
        "peak_memory_kib": memory_kib().1,
        "hash_scheme": states.hash_scheme(),
        "symmetry": states.symmetric,
        "rank_states": (!states.ranks.is_empty()).then_some(&states.ranks),
        "collision_probability_bound": bfs::collision_bound(states.states),
        "replay": ce.map(|c| checked.replay_id(c).to_string()),
        "violation": violation_json(ce),
        "hazards": hazards_json(e),
    })
}

/// Draw a counterexample as a swimlane picture.
pub fn write_svg(path: &Path, checked: &Checked, ce: &Counterexample) -> Result<(), CliError> {
    let title = format!(
        "{} under {}: {} injected event(s) — kmap replay '{}'",
        checked.scenario.name,
        checked.switch(),
        ce.events(),
        checked.replay_id(ce)
    );
    let footer = ce
        .outcome
        .violations
        .first()
        .map(|v| format!("consequence: {v}"))
        .or_else(|| {
            ce.outcome
                .refusals
                .first()
                .map(|r| format!("refused: {}", r.message))
        })
        .unwrap_or_default();
    let write = || -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(
            path,
            kmap_check::svg::render(&Timeline::of(&ce.outcome), &title, &footer),
        )
    };
    write().map_err(|error| CliError::Write {
        path: path.to_path_buf(),
        error,
    })
}
