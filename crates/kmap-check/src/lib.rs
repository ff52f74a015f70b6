//! The explorer: drive the simulated machine through every moment an interrupt, an NMI or a
//! preemption can arrive in the real kmap code, and explain what it finds.
//!
//! - [`scenario`]: scenario files (TOML) and the [`builtin`] ones; [`scope`]: the scopes of
//!   `kmap prove`;
//! - [`search`]: the search strategies, one module each behind one trait (stateless
//!   depth-first, stateful breadth-first, random, PCT, replay), and what they found;
//! - [`stress`]: random runs of random workloads;
//! - [`timeline`] and [`svg`]: a counterexample as text and as a swimlane picture;
//! - [`ReplayId`]: the string that names one execution of one scenario, for `kmap replay`.

pub mod builtin;
pub mod scenario;
pub mod scope;
pub mod search;
pub mod stress;
pub mod svg;
pub mod timeline;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use kmap_sim::{Changes, Schedule, ScheduleError, Settings, SettingsError};

pub use scenario::{Problem, Scenario, ScenarioError};
pub use search::{Exploration, Options, Shard, Strategy, explore};

/// Find a scenario: a built-in name, a scope (`scope:C/T/D`), or a file.
pub fn resolve(name: &str) -> Result<Scenario, ScenarioError> {
    if let Some((builtin, text)) = builtin::BUILTINS.iter().find(|(n, _)| *n == name) {
        return scenario::parse(&format!("built-in {builtin}"), builtin, text);
    }
    if name.starts_with("scope:") {
        let scope: scope::Scope = name
            .parse()
            .map_err(|e: scope::ScopeError| ScenarioError::in_file(name, e.into()))?;
        return Ok(Scenario {
            name: name.into(),
            source: "built-in scope".into(),
            config: scope.config(),
            expect: kmap_sim::Verdict::Pass,
            expect_linux: kmap_sim::Verdict::Pass,
            notes: Vec::new(),
        });
    }
    let path = Path::new(name);
    if !path.exists() && !name.contains('/') && !name.ends_with(".toml") {
        return Err(ScenarioError::in_file(name, Problem::NotFound));
    }
    scenario::load(path)
}

/// Why a replay string cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayIdError {
    /// Not `SCENARIO[@key=value,…]#SCHEDULE`.
    #[error("`{text}` is not SCENARIO[@key=value,…]#SCHEDULE")]
    Syntax {
        /// The text.
        text: String,
    },
    /// It names no scenario.
    #[error("the replay string names no scenario")]
    NoScenario,
    /// A setting cannot be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The schedule cannot be read.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// One execution of one scenario, as a string: `SCENARIO[@key=value,…]#SCHEDULE`, for
/// example `restore-race@switch=rfc-v1#41:irq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayId {
    /// A built-in name, a scope or a file.
    pub scenario: String,
    /// The settings changed from the scenario's.
    pub changes: Changes<Settings>,
    /// The decisions.
    pub schedule: Schedule,
}

impl fmt::Display for ReplayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scenario)?;
        if !self.changes.is_empty() {
            write!(f, "@{}", self.changes)?;
        }
        write!(f, "#{}", self.schedule)
    }
}

impl FromStr for ReplayId {
    type Err = ReplayIdError;
    fn from_str(s: &str) -> Result<Self, ReplayIdError> {
        let (head, schedule) = s
            .rsplit_once('#')
            .ok_or_else(|| ReplayIdError::Syntax { text: s.into() })?;
        let (scenario, pairs) = head.split_once('@').unwrap_or((head, ""));
        if scenario.is_empty() {
            return Err(ReplayIdError::NoScenario);
        }
        Ok(ReplayId {
            scenario: scenario.into(),
            changes: Changes::parse(pairs)?,
            schedule: schedule.parse()?,
        })
    }
}
