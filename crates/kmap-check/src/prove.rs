//! `kmap prove`: every execution of a scope, with no bound on preemption, made finite by
//! remembering the states already seen.
//!
//! A scope is a machine (CPUs, a switch protocol, a mutation), tasks whose programs are endless
//! nondeterministic mixes of map / check / unmap / yield up to a depth (`Task::any`, the SPIN
//! model's tasks), and an interrupt and an NMI that map, check and unmap a page of their own.
//! Fixed programs (`ops`) can be mixed in.
//!
//! The search is breadth-first over the states at choice points (see `kmap_sim`'s
//! `machine::state` for what a state holds and why that is enough). A state is reached by
//! re-running the real code from the start along the choices that lead to it, up to its first
//! choice point with a new state: no coroutine is ever copied, and the soundness of the search
//! rests only on the state key. Interrupts and NMIs are probed at every arrival point, as in
//! `kmap check`; a handler that leaves a trace is a choice there (a lasting handler). Every
//! preemption and migration the kernel allows is a choice, with no bound. With more than one
//! CPU the executing CPU changes only before a program's next step (the reduction, see
//! [`ProveOptions::reduce`]).
//!
//! Breadth-first, the first violation found is at the fewest choice points from the start; its
//! schedule replays it like any other (`kmap replay`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kmap_sim::{
    ChoicePoint, Chooser, Config, Op, Outcome, ProbeMemo, Program, Protocol, RunOptions, STOP,
    Task, Verdict,
};
use rustc_hash::FxHashSet;

use crate::explore::{Counterexample, shortest};

/// A scope for [`prove`]: the machine and the programs, built by [`Scope::config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    /// CPUs.
    pub cpus: usize,
    /// Tasks with nondeterministic programs.
    pub tasks: usize,
    /// How many pages each task maps at most.
    pub depth: usize,
    /// An interrupt handler that maps.
    pub irq: bool,
    /// An NMI handler that maps.
    pub nmi: bool,
    /// The switch protocol.
    pub protocol: Protocol,
}

impl Scope {
    /// The configuration of this scope: task `t` starts on CPU `t % cpus` and maps the pages
    /// `lowmem + 1 + t * depth + j`; the interrupt maps `lowmem`, the NMI `lowmem - 1 + …`.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        let m = &mut config.machine;
        m.cpus = self.cpus;
        m.protocol = self.protocol;
        // Cells: the deepest task plus an interrupt and an NMI on top (Linux's KM_MAX_IDX).
        m.cells = [self.depth + 2, 4, 8, 16, 32]
            .into_iter()
            .find(|c| kmap_sim::SUPPORTED_CELLS.contains(c))
            .unwrap_or(16);
        let base = m.lowmem;
        m.frames = base + 2 + (self.tasks * self.depth) as u64;
        let page = |t: usize, j: usize| base + 2 + (t * self.depth + j) as u64;
        config.program = Program {
            tasks: (0..self.tasks)
                .map(|t| Task {
                    name: format!("T{t}"),
                    cpu: t % self.cpus,
                    any: (0..self.depth).map(|j| page(t, j)).collect(),
                    ..Task::default()
                })
                .collect(),
            irq: handler(self.irq, base),
            nmi: handler(self.nmi, base + 1),
        };
        config
    }
}

impl std::fmt::Display for Scope {
    /// `scope:C/T/D`, with `:irq`, `:nmi` or `:none` when not both handlers map (the protocol
    /// is a machine setting, given apart).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "scope:{}/{}/{}", self.cpus, self.tasks, self.depth)?;
        match (self.irq, self.nmi) {
            (true, true) => Ok(()),
            (true, false) => f.write_str(":irq"),
            (false, true) => f.write_str(":nmi"),
            (false, false) => f.write_str(":none"),
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Scope, String> {
        let usage = || format!("`{text}` is not a scope (scope:CPUS/TASKS/DEPTH[:irq|:nmi|:none])");
        let rest = text.strip_prefix("scope:").ok_or_else(usage)?;
        let (sizes, handlers) = rest.split_once(':').unwrap_or((rest, "both"));
        let numbers: Vec<usize> = sizes
            .split('/')
            .map(|n| n.parse().map_err(|_| usage()))
            .collect::<Result<_, _>>()?;
        let [cpus, tasks, depth] = numbers[..] else {
            return Err(usage());
        };
        let (irq, nmi) = match handlers {
            "both" => (true, true),
            "irq" => (true, false),
            "nmi" => (false, true),
            "none" => (false, false),
            _ => return Err(usage()),
        };
        let scope = Scope {
            cpus,
            tasks,
            depth,
            irq,
            nmi,
            protocol: Protocol::Split,
        };
        scope.check()?;
        Ok(scope)
    }
}

impl Scope {
    /// Whether the scope can run, naming the first problem.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=8).contains(&self.cpus) {
            return Err(format!("cpus must be 1 to 8, not {}", self.cpus));
        }
        if !(1..=16).contains(&self.tasks) {
            return Err(format!("tasks must be 1 to 16, not {}", self.tasks));
        }
        if !(1..=14).contains(&self.depth) {
            return Err(format!("depth must be 1 to 14, not {}", self.depth));
        }
        Ok(())
    }
}

fn handler(present: bool, frame: u64) -> Vec<Op> {
    if present {
        vec![Op::Map(frame), Op::Check, Op::Unmap]
    } else {
        Vec::new()
    }
}

/// How to search.
#[derive(Clone, Copy, Debug)]
pub struct ProveOptions {
    /// Partial-order reduction across CPUs: the executing CPU changes only before a program's
    /// next step. Steps of different CPUs touch disjoint state (each CPU its own slots and
    /// TLB, each task its own stack; frames are only read by handlers of both) except the run
    /// queues, which only the scheduler touches, at a program's step or at a preemption; so
    /// every interleaving is equivalent to one whose CPU switches come before program steps.
    pub reduce: bool,
    /// Stop when this many states are remembered (`complete` is then false).
    pub max_states: Option<u64>,
    /// Stop at the first violation.
    pub stop_at_violation: bool,
    /// Keep the quiescent states ([`Proof::quiescent_states`]).
    pub collect_quiescent: bool,
    /// Keep the key of every state remembered ([`Proof::state_keys`]), to merge shards.
    pub collect_keys: bool,
    /// Stop when the process's resident memory passes this many bytes (`complete` is then
    /// false): never an out-of-memory kill.
    pub max_memory: Option<u64>,
    /// Explore only part `index` of `count`: see [`Shard`].
    pub shard: Option<Shard>,
}

/// One part of a proof split across machines. Every part explores the states less than
/// [`Shard::SPLIT_DEPTH`] choice points from the start; a state at that depth belongs to one
/// part (by its key), which explores everything below it with a state store of its own. Every
/// reachable state is at that depth, above it, or below one at it, so the parts together cover
/// the whole; a state below two owners is explored by both (`kmap merge` counts it once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This part, from 0.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

impl Shard {
    /// The depth, in choice points, at which states are shared out.
    pub const SPLIT_DEPTH: u32 = 8;

    fn owns(self, key: u128) -> bool {
        (key % self.count as u128) as u32 == self.index
    }
}

impl Default for ProveOptions {
    fn default() -> Self {
        ProveOptions {
            reduce: true,
            max_states: None,
            stop_at_violation: true,
            collect_quiescent: false,
            collect_keys: false,
            max_memory: None,
            shard: None,
        }
    }
}

/// What a proof found.
#[derive(Clone, Debug)]
pub struct Proof {
    /// The verdict over every state reached.
    pub verdict: Verdict,
    /// Distinct states remembered.
    pub states: u64,
    /// Executions run (one per transition explored).
    pub transitions: u64,
    /// Transitions that led to a state seen before.
    pub matched: u64,
    /// The most choice points from the start to a state.
    pub depth: usize,
    /// Every state was explored.
    pub complete: bool,
    /// How long it took.
    pub elapsed: Duration,
    /// The first violation (or refusal), replayed with a trace.
    pub counterexample: Option<Counterexample>,
    /// Fingerprints of the final states of executions that ended (every task exited), for
    /// comparing with a stateless search.
    pub final_states: FxHashSet<u64>,
    /// The quiescent states (every CPU between program steps, see
    /// [`StateKey::quiescent`](kmap_sim::StateKey::quiescent)), when asked for
    /// ([`ProveOptions::collect_quiescent`]): the reduction across CPUs must reach all of them.
    pub quiescent_states: FxHashSet<u128>,
    /// The key of every state remembered, when asked for ([`ProveOptions::collect_keys`]).
    pub state_keys: Vec<u128>,
    /// Why the search stopped before the end, if it did for a limit.
    pub stopped: Option<String>,
}

impl Proof {
    /// The hash scheme of remembered states, in words.
    pub const HASH_SCHEME: &'static str = "XXH3-128 of the whole state";

    /// An upper bound on the probability that two of the remembered states were taken for one
    /// (`n² / 2^129`).
    pub fn collision_bound(&self) -> f64 {
        (self.states as f64).powi(2) / 2f64.powi(129)
    }
}

/// One node of the search: the choice that leads to it from its parent.
struct Node {
    parent: u32,
    choice: u32,
    depth: u32,
}

/// Follows a path of choice positions, then stops at the next choice point and reports it.
struct Expand {
    path: Vec<u32>,
    next: usize,
    reached: Option<(kmap_sim::StateKey, usize)>,
}

impl Chooser for Expand {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> usize {
        if let Some(&choice) = self.path.get(self.next) {
            self.next += 1;
            return choice as usize;
        }
        let state = point.state.expect("a stateful run gives every state");
        self.reached = Some((state, point.options.len()));
        STOP
    }
}

/// Explore every state of `config` breadth-first; `progress` is called after every execution
/// with the states, the transitions and the depth so far.
pub fn prove(
    config: &Config,
    options: ProveOptions,
    mut progress: impl FnMut(u64, u64, usize),
) -> Proof {
    let start = Instant::now();
    let memo = Rc::new(RefCell::new(ProbeMemo::default()));
    let depth = handler_depth(config);
    let run_options = RunOptions {
        record_choices: false,
        prune: false,
        probe: Some(memo),
        probe_depth: depth,
        stateful: true,
        reduce: options.reduce,
        ..RunOptions::default()
    };
    let mut unbounded = config.clone();
    unbounded.bounds = kmap_sim::Bounds {
        irq_depth: config.bounds.irq_depth,
        nmi_depth: config.bounds.nmi_depth,
        ..kmap_sim::Bounds::default()
    };
    let mut nodes = vec![Node {
        parent: u32::MAX,
        choice: 0,
        depth: 0,
    }];
    let mut queue: VecDeque<u32> = VecDeque::from([0]);
    let mut seen: FxHashSet<u128> = FxHashSet::default();
    let mut proof = Proof {
        verdict: Verdict::Pass,
        states: 0,
        transitions: 0,
        matched: 0,
        depth: 0,
        complete: true,
        elapsed: Duration::ZERO,
        counterexample: None,
        final_states: FxHashSet::default(),
        quiescent_states: FxHashSet::default(),
        state_keys: Vec::new(),
        stopped: None,
    };
    let mut found: Option<Outcome> = None;
    while let Some(id) = queue.pop_front() {
        if options.max_states.is_some_and(|m| proof.states >= m) {
            proof.complete = false;
            proof.stopped = Some(format!("{} states remembered (--max-states)", proof.states));
            break;
        }
        if proof.transitions.is_multiple_of(1024)
            && let Some(limit) = options.max_memory
        {
            let resident = resident_bytes();
            if resident > limit {
                proof.complete = false;
                proof.stopped = Some(format!(
                    "{} MiB resident, over the limit of {} MiB (--max-memory)",
                    resident >> 20,
                    limit >> 20
                ));
                break;
            }
        }
        let path = path_to(&nodes, id);
        let chooser = Rc::new(RefCell::new(Expand {
            path,
            next: 0,
            reached: None,
        }));
        let outcome = kmap_sim::run(&unbounded, chooser.clone(), run_options.clone())
            .expect("a validated configuration");
        proof.transitions += 1;
        progress(proof.states, proof.transitions, proof.depth);
        let verdict = outcome.verdict();
        if verdict != Verdict::Pass {
            let worse = verdict == Verdict::Violation || proof.verdict == Verdict::Pass;
            if worse && proof.verdict != Verdict::Violation {
                proof.verdict = verdict;
                found = Some(outcome);
                if verdict == Verdict::Violation && options.stop_at_violation {
                    proof.complete = false;
                    break;
                }
            }
            continue;
        }
        let reached = chooser.borrow().reached;
        match reached {
            None => {
                proof.final_states.insert(outcome.final_state);
            }
            Some((state, choices)) => {
                if !seen.insert(state.key) {
                    proof.matched += 1;
                    continue;
                }
                let depth = nodes[id as usize].depth + 1;
                if let Some(shard) = options.shard
                    && depth == Shard::SPLIT_DEPTH
                    && !shard.owns(state.key)
                {
                    continue;
                }
                if options.collect_keys {
                    proof.state_keys.push(state.key);
                }
                if state.quiescent && options.collect_quiescent {
                    proof.quiescent_states.insert(state.key);
                }
                proof.states += 1;
                proof.depth = proof.depth.max(depth as usize);
                for choice in 0..choices as u32 {
                    queue.push_back(nodes.len() as u32);
                    nodes.push(Node {
                        parent: id,
                        choice,
                        depth,
                    });
                }
            }
        }
    }
    if proof.verdict == Verdict::Violation && !options.stop_at_violation {
        proof.complete = queue.is_empty();
    }
    proof.counterexample = found.map(|outcome| shortest(config, outcome.schedule));
    proof.elapsed = start.elapsed();
    proof
}

/// A lower bound on the states of `config`'s search: every combination of the stack depths of its
/// nondeterministic tasks is reachable (each maps, unmaps and yields on its own), and the key of
/// a state holds every stack, so each combination is a state of its own.
pub fn states_lower_bound(config: &Config) -> f64 {
    config
        .program
        .tasks
        .iter()
        .filter(|t| t.is_any())
        .map(|t| (t.any.len() + 1) as f64)
        .product()
}

/// A lower bound on the memory a search of `config` needs, in bytes: 16 bytes for the key of each
/// of [`states_lower_bound`] states, on top of what this process holds already. A scope over a
/// `--max-memory` by this bound cannot fit, whatever the search does.
pub fn memory_lower_bound(config: &Config) -> f64 {
    resident_bytes() as f64 + 16.0 * states_lower_bound(config)
}

/// The resident memory of this process, in bytes (0 where unknown).
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The choice positions from the start to node `id`.
fn path_to(nodes: &[Node], mut id: u32) -> Vec<u32> {
    let mut path = Vec::new();
    while id != 0 {
        let node = &nodes[id as usize];
        path.push(node.choice);
        id = node.parent;
    }
    path.reverse();
    path
}

/// The deepest nesting of handlers (an NMI inside an interrupt at most).
fn handler_depth(config: &Config) -> u32 {
    u32::from(!config.program.irq.is_empty()) + u32::from(!config.program.nmi.is_empty())
}
