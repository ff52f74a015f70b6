//! The explorer: drive the simulated machine through every moment an interrupt, an NMI or a
//! preemption can arrive in the real kmap code, within bounds, and explain what it finds.
//!
//! - [`scenario`]: scenario files (TOML) and the built-in ones;
//! - [`explore`](mod@explore): the search (exhaustive with iterative deepening, random, PCT; shards);
//! - [`prove`](mod@prove): every execution of a scope, with unbounded preemption (stateful);
//! - [`timeline`] and [`svg`]: a counterexample as text and as a swimlane picture;
//! - [`ReplayId`]: the string that names one execution of one scenario, for `kmap replay`.

pub mod builtin;
pub mod explore;
pub mod prove;
pub mod scenario;
pub mod svg;
pub mod timeline;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use kmap_sim::{Config, Mutation, Protocol, Release, Schedule};

pub use explore::{Exploration, Search, Shard, Strategy, explore};
pub use scenario::{Scenario, ScenarioError};

/// Find a scenario: a built-in name, or a file.
pub fn resolve(name: &str) -> Result<Scenario, ScenarioError> {
    if let Some((builtin, text)) = builtin::BUILTINS.iter().find(|(n, _)| *n == name) {
        return scenario::parse(&format!("built-in {builtin}"), builtin, text);
    }
    if name.starts_with("scope:") {
        let scope: prove::Scope = name.parse().map_err(|message| ScenarioError {
            file: name.into(),
            line: None,
            field: None,
            message,
        })?;
        return Ok(Scenario {
            name: name.into(),
            source: "built-in scope".into(),
            config: scope.config(),
            expect: kmap_sim::Verdict::Pass,
            notes: Vec::new(),
        });
    }
    let path = Path::new(name);
    if !path.exists() && !name.contains('/') && !name.ends_with(".toml") {
        return Err(ScenarioError {
            file: name.into(),
            line: None,
            field: None,
            message: "no such built-in scenario or file (`kmap check --list` lists the built-ins)"
                .into(),
        });
    }
    scenario::load(path)
}

/// Changes to a scenario's machine and bounds, from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The switch protocol.
    pub switch: Option<Protocol>,
    /// Cells per stack.
    pub slots: Option<usize>,
    /// The TLB model.
    pub tlb: Option<bool>,
    /// Guard cells.
    pub debug_guards: Option<bool>,
    /// Force-map.
    pub force_map: Option<bool>,
    /// Which releases the programs may make (`lifo` or `any`).
    pub release: Option<Release>,
    /// A machine mutation.
    pub mutation: Option<Mutation>,
    /// Strict checking: hazards are violations.
    pub strict: Option<bool>,
    /// Preemption bound.
    pub preemptions: Option<u32>,
    /// How deep interrupts nest (0 or 1).
    pub irq_depth: Option<u32>,
    /// How deep NMIs nest (0 or 1).
    pub nmi_depth: Option<u32>,
    /// CPU-switch bound.
    pub cpu_switches: Option<u32>,
    /// Lasting-handler bound.
    pub lasting_handlers: Option<u32>,
}

impl Overrides {
    /// Apply to a configuration.
    pub fn apply(&self, config: &mut Config) {
        let m = &mut config.machine;
        m.protocol = self.switch.unwrap_or(m.protocol);
        m.cells = self.slots.unwrap_or(m.cells);
        m.tlb = self.tlb.unwrap_or(m.tlb);
        m.guard_cells = self.debug_guards.unwrap_or(m.guard_cells);
        m.force_map = self.force_map.unwrap_or(m.force_map);
        m.release = self.release.unwrap_or(m.release);
        m.mutation = self.mutation.or(m.mutation);
        config.strict = self.strict.unwrap_or(config.strict);
        let b = &mut config.bounds;
        b.preemptions = self.preemptions.or(b.preemptions);
        b.irq_depth = self.irq_depth.or(b.irq_depth);
        b.nmi_depth = self.nmi_depth.or(b.nmi_depth);
        b.cpu_switches = self.cpu_switches.or(b.cpu_switches);
        b.lasting_handlers = self.lasting_handlers.or(b.lasting_handlers);
    }

    /// The machine changes as `key=value` pairs (the bounds do not change what a schedule
    /// replays, so they are left out).
    pub fn machine_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if let Some(p) = self.switch {
            pairs.push(("switch".into(), p.name().into()));
        }
        if let Some(v) = self.slots {
            pairs.push(("slots".into(), v.to_string()));
        }
        if let Some(v) = self.tlb {
            pairs.push(("tlb".into(), v.to_string()));
        }
        if let Some(v) = self.debug_guards {
            pairs.push(("debug_guards".into(), v.to_string()));
        }
        if let Some(v) = self.force_map {
            pairs.push(("force_map".into(), v.to_string()));
        }
        if let Some(v) = self.release {
            pairs.push(("release".into(), v.name().into()));
        }
        if let Some(v) = self.mutation {
            pairs.push(("mutation".into(), v.name().into()));
        }
        if let Some(v) = self.strict {
            pairs.push(("strict".into(), v.to_string()));
        }
        pairs
    }

    /// Set a machine change from a `key=value` pair.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let flag = |v: &str| {
            v.parse::<bool>()
                .map_err(|_| format!("`{key}={v}`: expected true or false"))
        };
        match key {
            "switch" => {
                self.switch =
                    Some(Protocol::from_name(value).ok_or(format!("`{value}` is not a protocol"))?)
            }
            "slots" => {
                self.slots = Some(
                    value
                        .parse()
                        .map_err(|_| format!("`slots={value}`: expected a number"))?,
                )
            }
            "tlb" => self.tlb = Some(flag(value)?),
            "debug_guards" => self.debug_guards = Some(flag(value)?),
            "force_map" => self.force_map = Some(flag(value)?),
            "release" => {
                self.release = Some(
                    Release::from_name(value)
                        .ok_or(format!("`{value}` is not a release order (lifo, any)"))?,
                )
            }
            "mutation" => {
                self.mutation = Some(
                    Mutation::from_name(value)
                        .ok_or(format!("`{value}` is not a machine mutation"))?,
                )
            }
            "bug_on" => {
                if !flag(value)? {
                    self.mutation = Some(Mutation::NoBugOn);
                }
            }
            "strict" => self.strict = Some(flag(value)?),
            _ => {
                return Err(format!(
                    "`{key}` is not a machine setting of a replay string"
                ));
            }
        }
        Ok(())
    }
}

/// One execution of one scenario, as a string: `SCENARIO[@key=value,…]#SCHEDULE`, for
/// example `restore-race@switch=rfc-v1#41:irq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayId {
    /// A built-in name or a file.
    pub scenario: String,
    /// Machine changes.
    pub overrides: Overrides,
    /// The decisions.
    pub schedule: Schedule,
}

impl fmt::Display for ReplayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scenario)?;
        let pairs = self.overrides.machine_pairs();
        if !pairs.is_empty() {
            let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "@{}", joined.join(","))?;
        }
        write!(f, "#{}", self.schedule)
    }
}

impl FromStr for ReplayId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (head, schedule) = s
            .rsplit_once('#')
            .ok_or_else(|| format!("`{s}` is not SCENARIO[@key=value,…]#SCHEDULE"))?;
        let (scenario, pairs) = head.split_once('@').unwrap_or((head, ""));
        let mut overrides = Overrides::default();
        for pair in pairs.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not key=value"))?;
            overrides.set(key, value)?;
        }
        if scenario.is_empty() {
            return Err("the replay string names no scenario".into());
        }
        Ok(ReplayId {
            scenario: scenario.into(),
            overrides,
            schedule: schedule.parse()?,
        })
    }
}
