//! `kmap prove`: every execution of a scope, with no bound on preemption.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use kmap_check::prove::{Proof, ProveOptions, Scope, Shard, prove};
use kmap_check::timeline::Timeline;
use kmap_check::{Overrides, ReplayId, Scenario};
use kmap_sim::{Mutation, Protocol, Release, Verdict};

use crate::check::{BAD_INPUT, finish, parse_mutation, parse_part, parse_release};
use crate::stress::parse_protocol;

#[derive(Parser, Clone, Debug)]
pub struct Args {
    /// Scenario files or built-in names (tasks with `any = true` run endless nondeterministic
    /// programs); without any, the scope given by --cpus, --tasks and --depth.
    pub scenarios: Vec<String>,
    /// CPUs of the scope.
    #[arg(long, default_value_t = 1)]
    pub cpus: usize,
    /// Tasks of the scope, each an endless mix of map, check, unmap and yield.
    #[arg(long, default_value_t = 2)]
    pub tasks: usize,
    /// How many pages each task maps at most.
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// No interrupt handler that maps.
    #[arg(long)]
    pub no_irq: bool,
    /// No NMI handler that maps.
    #[arg(long)]
    pub no_nmi: bool,
    /// Switch protocol: split, rfc-v1 or swap-after-current.
    #[arg(long = "switch", value_parser = parse_protocol)]
    pub switch: Option<Protocol>,
    /// Release order: lifo (Linux's rule) or any (the tasks may also release any mapping below
    /// the top, leaving a hole).
    #[arg(long, value_parser = parse_release)]
    pub release: Option<Release>,
    /// A machine mutation: drop-invalidations, no-bug-on or no-sched-out.
    #[arg(long, value_parser = parse_mutation)]
    pub mutation: Option<Mutation>,
    /// Strict checking: a hazard is a violation.
    #[arg(long)]
    pub strict: bool,
    /// Switch the executing CPU anywhere, not only before a program's step (no reduction).
    #[arg(long)]
    pub no_reduce: bool,
    /// Stop after remembering this many states (the verdict is then incomplete).
    #[arg(long)]
    pub max_states: Option<u64>,
    /// Stop when resident memory passes this much (e.g. `8G`, `512M`): the verdict is then
    /// incomplete, with the figures so far, never an out-of-memory kill.
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Explore only part I of N (from 0), e.g. `--shard 2/8`; `kmap merge` combines the parts.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// With --json: list the key of every state remembered, for `kmap merge` to count distinct
    /// states over shards.
    #[arg(long)]
    pub keys: bool,
    /// Write the counterexample as a swimlane picture.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Print a machine-readable result.
    #[arg(long)]
    pub json: bool,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (such as 8G, 512M or 1000000)"))?;
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return Err(format!("`{text}`: the unit is K, M or G")),
    };
    Ok(number << shift)
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    parse_part(text).map(|(index, count)| Shard { index, count })
}

pub fn main(args: &Args) -> ExitCode {
    let names = if args.scenarios.is_empty() {
        let scope = Scope {
            cpus: args.cpus,
            tasks: args.tasks,
            depth: args.depth,
            irq: !args.no_irq,
            nmi: !args.no_nmi,
            protocol: Protocol::Split,
        };
        if let Err(e) = scope.check() {
            eprintln!("kmap prove: {e}");
            return ExitCode::from(BAD_INPUT);
        }
        vec![scope.to_string()]
    } else {
        args.scenarios.clone()
    };
    let overrides = Overrides {
        switch: args.switch,
        release: args.release,
        mutation: args.mutation,
        strict: args.strict.then_some(true),
        ..Overrides::default()
    };
    let options = ProveOptions {
        reduce: !args.no_reduce,
        max_states: args.max_states,
        stop_at_violation: true,
        collect_quiescent: false,
        collect_keys: args.keys,
        max_memory: args.max_memory,
        shard: args.shard,
    };
    if let Some(limit) = args.max_memory {
        let needed = kmap_check::prove::resident_bytes() + (16 << 20);
        if limit < needed {
            eprintln!(
                "kmap prove: --max-memory {} MiB cannot fit: the checker needs {} MiB before the \
                 first state",
                limit >> 20,
                needed >> 20
            );
            return ExitCode::from(BAD_INPUT);
        }
    }
    let mut all_ok = true;
    let mut results = Vec::new();
    for name in names {
        let mut scenario = match kmap_check::resolve(&name) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(BAD_INPUT);
            }
        };
        overrides.apply(&mut scenario.config);
        if let Err(e) = scenario.config.validate() {
            eprintln!("error: {}: {e}", scenario.source);
            return ExitCode::from(BAD_INPUT);
        }
        if let Some(limit) = args.max_memory {
            let needed = kmap_check::prove::memory_lower_bound(&scenario.config);
            if needed > limit as f64 {
                eprintln!(
                    "kmap prove: {} cannot fit in --max-memory {} MiB: it has at least {:.3e} \
                     states (every combination of its tasks' stack depths), and remembering \
                     each takes at least 16 bytes: {:.3e} MiB at the very least",
                    scenario.name,
                    limit >> 20,
                    kmap_check::prove::states_lower_bound(&scenario.config),
                    needed / (1u64 << 20) as f64
                );
                return ExitCode::from(BAD_INPUT);
            }
        }
        let proof = run_with_progress(&scenario, options);
        let id = proof.counterexample.as_ref().map(|ce| ReplayId {
            scenario: name.clone(),
            overrides: overrides.clone(),
            schedule: ce.schedule.clone(),
        });
        all_ok &= proof.verdict == scenario.expect && (proof.complete || args.shard.is_some());
        if args.json {
            let mut value = json(&scenario, &proof, id.as_ref());
            value["shard"] = args
                .shard
                .map(|s| serde_json::json!({ "index": s.index, "count": s.count }))
                .unwrap_or(serde_json::Value::Null);
            if args.keys {
                value["state_keys"] = proof
                    .state_keys
                    .iter()
                    .map(|k| serde_json::Value::String(format!("{k:032x}")))
                    .collect();
            }
            results.push(value);
        } else {
            print(&scenario, &proof, id.as_ref());
        }
        if let (Some(path), Some(ce), Some(id)) = (&args.svg, &proof.counterexample, &id) {
            let title = format!(
                "{} under {}: kmap replay '{id}'",
                scenario.name,
                protocol(&scenario)
            );
            let footer = ce
                .outcome
                .violations
                .first()
                .map(|v| format!("consequence: {v}"))
                .unwrap_or_default();
            if let Err(e) = std::fs::write(
                path,
                kmap_check::svg::render(&Timeline::of(&ce.outcome), &title, &footer),
            ) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::from(BAD_INPUT);
            }
        }
    }
    finish(args.json, results, all_ok)
}

fn protocol(scenario: &Scenario) -> &'static str {
    scenario.config.machine.protocol.name()
}

/// Prove with a progress line on a terminal once it takes longer than a second.
fn run_with_progress(scenario: &Scenario, options: ProveOptions) -> Proof {
    let terminal = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let proof = prove(&scenario.config, options, |states, transitions, depth| {
        if !terminal || !transitions.is_multiple_of(256) {
            return;
        }
        if bar.is_none() && start.elapsed().as_secs() >= 1 {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
            bar = Some(b);
        }
        if let Some(b) = &bar {
            let rate = states as f64 / start.elapsed().as_secs_f64();
            b.set_message(format!(
                "{}: {states} states ({rate:.0}/s), {transitions} transitions, depth {depth}, {} MiB",
                scenario.name,
                memory_kib().0 / 1024
            ));
            b.tick();
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    proof
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

fn print(scenario: &Scenario, proof: &Proof, id: Option<&ReplayId>) {
    let mark = if proof.verdict == scenario.expect && proof.complete {
        "ok  "
    } else if proof.verdict == scenario.expect {
        "STOP"
    } else {
        "FAIL"
    };
    println!(
        "{mark} {:<24} {:<19} {:<9} {} states, {} transitions ({} to a state seen before), depth {}, {:.2} s{}",
        scenario.name,
        protocol(scenario),
        verdict_name(proof),
        proof.states,
        proof.transitions,
        proof.matched,
        proof.depth,
        proof.elapsed.as_secs_f64(),
        if proof.complete { " (complete)" } else { "" }
    );
    println!(
        "     states kept as {}: probability that two were confused at most {:.1e}; peak memory {} MiB",
        Proof::HASH_SCHEME,
        proof.collision_bound(),
        memory_kib().1 / 1024
    );
    if let Some(why) = &proof.stopped {
        println!("     stopped early: {why}");
    }
    let (Some(ce), Some(id)) = (&proof.counterexample, id) else {
        return;
    };
    println!("     replay: kmap replay '{id}'");
    if let Some(v) = ce.outcome.violations.first() {
        println!("     counterexample: {v}");
        for hazard in &ce.outcome.hazards {
            println!("     led there: hazard {hazard}");
        }
        println!();
        print!("{}", Timeline::of(&ce.outcome).render(48));
        println!("\n     consequence: {v}\n");
    } else if let Some(r) = ce.outcome.refusals.first() {
        println!(
            "     refused: {} (in {} on CPU {})",
            r.message, r.context, r.cpu
        );
    }
}

/// The verdict in words: `incomplete` when nothing went wrong but not every state was explored.
fn verdict_name(proof: &Proof) -> &'static str {
    if proof.verdict == Verdict::Pass && !proof.complete {
        "incomplete"
    } else {
        proof.verdict.name()
    }
}

fn json(scenario: &Scenario, proof: &Proof, id: Option<&ReplayId>) -> serde_json::Value {
    let ce = proof.counterexample.as_ref();
    serde_json::json!({
        "scope": scenario.name,
        "switch": protocol(scenario),
        "verdict": verdict_name(proof),
        "stopped": proof.stopped,
        "ok": proof.verdict == scenario.expect,
        "states": proof.states,
        "matched": proof.matched,
        "transitions": proof.transitions,
        "depth": proof.depth,
        "complete": proof.complete,
        "elapsed_ms": proof.elapsed.as_millis() as u64,
        "peak_memory_kib": memory_kib().1,
        "hash_scheme": Proof::HASH_SCHEME,
        "collision_probability_bound": proof.collision_bound(),
        "replay": id.map(|id| id.to_string()),
        "violation": ce.and_then(|c| c.outcome.violations.first()).map(|v| serde_json::json!({
            "kind": v.kind.name(),
            "cpu": v.cpu,
            "context": v.context.to_string(),
            "after": v.label,
            "message": v.message,
        })),
    })
}
