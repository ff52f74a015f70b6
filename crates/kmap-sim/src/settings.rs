//! The machine's settings, each defined once.
//!
//! A setting is read in three places and written in two: a scenario file's `[machine]` table
//! (serde), the `@key=value,…` part of a replay string and the command line's `--key value`
//! flags (both clap, through [`Changes`]); replay strings and JSON write it back. All of them
//! go through the one field of [`Settings`] below: its name (the same in a file, a replay
//! string and JSON; with dashes as a flag), its type and the list of its valid values (derived
//! from the enum), its default (the clap attribute, which `--help` shows and
//! [`Settings::default`] reads), and its validation ([`Settings::validate`], called once, by
//! [`Config::validate`](crate::Config::validate)).
//!
//! Old names are still read: `slots` (now `cells`), `debug_guards` (now `guard_cells`) and
//! `bug_on = false` (now `mutation = "no-bug-on"`); see [`OLD_NAMES`].

use std::error::Error as _;
use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

/// The trait of the settings' enums: `Protocol::value_variants()` lists every protocol.
pub use clap::ValueEnum;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::platform::SUPPORTED_CELLS;

/// How the scheduler moves kmap slots at a context switch.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// The crate's hooks as a kernel must call them: `sched_out` in prepare-switch with
    /// `current` = prev, `sched_in` in finish-switch with `current` = next.
    Split,
    /// The September 2020 RFC: prev's slots cleared and next's installed in one step while
    /// `current` is still prev, before switching.
    RfcV1,
    /// The same single step, done after `current` has become next.
    SwapAfterCurrent,
}

/// Which releases the programs may make.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Release {
    /// Linux's rule: only the top mapping (`unmap F` of another is refused, rule U-3).
    #[default]
    Lifo,
    /// The platform releases in any order (`Platform::RELEASE_ANY_ORDER`): `unmap F` of a live
    /// frame below the top leaves a hole (`raw::unmap_any_order`).
    Any,
}

/// A deliberate fault in the machine, for showing that the oracle catches what it claims to,
/// and what a kernel would suffer from it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mutation {
    /// The platform drops every TLB invalidation the crate asks for.
    DropInvalidations,
    /// The kernel has no `BUG_ON(!pte_none)`: the platform's `read_pte` answers "empty" to the
    /// crate's slot check, and the switch installs over live slots without complaint (old
    /// spelling: `bug_on = false`).
    NoBugOn,
    /// The scheduler forgets `sched_out` (under `split`): prev's slots stay mapped while next
    /// runs.
    NoSchedOut,
}

/// The name of a value of a settings enum, as files, flags and replay strings spell it.
pub fn name<T: ValueEnum>(value: &T) -> String {
    value
        .to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_string()
}

/// Every name of a settings enum, for messages.
pub fn names<T: ValueEnum>() -> Vec<String> {
    T::value_variants().iter().map(name).collect()
}

macro_rules! display_by_name {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&name(self))
            }
        }
    )*};
}
/// The implementation of kmap_local under test.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Implementation {
    /// The `kmap` crate.
    #[default]
    Crate,
    /// Linux's own `mm/highmem.c`, compiled with an arrival point before every memory access
    /// (the `kmap-linux` crate; built into the `kmap` binary from an installed kernel source).
    Linux,
}

display_by_name!(Protocol, Release, Mutation, Implementation);

/// The machine, and how its oracle judges: every setting of a run besides its bounds and its
/// programs. Scenario files read it from `[machine]` (a setting left out takes its default),
/// the command line and replay strings change it through [`Changes`].
#[derive(Clone, PartialEq, Eq, Debug, Hash, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The implementation under test: the crate, or Linux's mm/highmem.c.
    #[arg(id = "impl", long = "impl", value_enum, default_value_t = Implementation::Crate)]
    #[serde(rename = "impl")]
    pub implementation: Implementation,
    /// CPUs (1 to 8).
    #[arg(long, default_value_t = 1)]
    pub cpus: usize,
    /// Physical frames (1 to 2^20).
    #[arg(long, default_value_t = 64)]
    pub frames: u64,
    /// Frames below this are direct-mapped (lowmem); at most `frames`.
    #[arg(long, default_value_t = 16)]
    pub lowmem: u64,
    /// Cells of every task's kmap stack (one of 1 to 8, 16, 32, 33). Old name: slots.
    #[arg(long, alias = "slots", default_value_t = 16)]
    pub cells: usize,
    /// The switch protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Split)]
    pub switch: Protocol,
    /// Debug guard cells: the crate maps odd cells only. Old name: debug_guards.
    #[arg(long, alias = "debug-guards", action = ArgAction::Set, default_value_t = false)]
    pub guard_cells: bool,
    /// Lowmem frames are mapped through slots too.
    #[arg(long, action = ArgAction::Set, default_value_t = false)]
    pub force_map: bool,
    /// Release order: lifo (Linux's rule) or any (a release below the top leaves a hole).
    #[arg(long, value_enum, default_value_t = Release::Lifo)]
    pub release: Release,
    /// Model a TLB that keeps a stale translation until it is invalidated.
    #[arg(long, action = ArgAction::Set, default_value_t = true)]
    pub tlb: bool,
    /// A deliberate fault of the machine.
    #[arg(long, value_enum)]
    pub mutation: Option<Mutation>,
    /// A scripted edit of Linux's code (impl = "linux"), by name: what history did differently
    /// (pop-before-clear, push-after-install, sched-out-without-flush) or a proposal
    /// (any-order). `kmap check --list` lists those this build made.
    #[arg(long)]
    pub edit: Option<String>,
    /// Strict checking: a hazard (a rule broken with no consequence yet) is a violation. A
    /// scenario file says it as `strict` in its `[expect]` table.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          default_value_t = false)]
    #[serde(skip_deserializing)]
    pub strict: bool,
}

impl Default for Settings {
    /// Every setting at its default (the `default_value_t` above).
    fn default() -> Self {
        static DEFAULT: OnceLock<Settings> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                let matches = Settings::augment_args(Command::new("settings"))
                    .no_binary_name(true)
                    .try_get_matches_from(std::iter::empty::<&str>())
                    .expect("every setting has a default");
                Settings::from_arg_matches(&matches).expect("every setting has a default")
            })
            .clone()
    }
}

/// Why settings cannot run, naming the setting.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum SettingsError {
    /// `cpus` outside 1 to 8.
    #[error("cpus must be 1 to 8, not {given}")]
    Cpus {
        /// What was given.
        given: usize,
    },
    /// `cells` is not a stack size the simulator is built for.
    #[error("cells must be one of {SUPPORTED_CELLS:?}, not {given}")]
    Cells {
        /// What was given.
        given: usize,
    },
    /// `frames` outside 1 to 2^20.
    #[error("frames must be 1 to 1048576, not {given}")]
    Frames {
        /// What was given.
        given: u64,
    },
    /// `lowmem` above `frames`.
    #[error("lowmem ({lowmem}) is more than frames ({frames})")]
    Lowmem {
        /// What was given.
        lowmem: u64,
        /// The frames of the machine.
        frames: u64,
    },
    /// A `key=value` change names no setting.
    #[error("`{key}` is not a setting (the settings: {})", Settings::keys().join(", "))]
    Unknown {
        /// The key.
        key: String,
    },
    /// A change's value is not one of the setting's.
    #[error("`{key}={value}`: {reason}")]
    Value {
        /// The setting.
        key: String,
        /// What was given.
        value: String,
        /// Why it is not a value of the setting.
        reason: String,
    },
    /// Text that is not `key=value`.
    #[error("`{text}` is not key=value")]
    NotAPair {
        /// The text.
        text: String,
    },
}

impl SettingsError {
    /// The setting at fault, as a file names it (`None` for a change that names no setting).
    pub fn key(&self) -> Option<&str> {
        match self {
            SettingsError::Cpus { .. } => Some("cpus"),
            SettingsError::Cells { .. } => Some("cells"),
            SettingsError::Frames { .. } => Some("frames"),
            SettingsError::Lowmem { .. } => Some("lowmem"),
            SettingsError::Value { key, .. } => Some(key),
            SettingsError::Unknown { .. } | SettingsError::NotAPair { .. } => None,
        }
    }
}

impl Settings {
    /// Whether the kernel crashes on a map or a switch into an occupied slot (Linux's
    /// `BUG_ON(!pte_none)`), as it does unless [`Mutation::NoBugOn`].
    pub fn bug_on(&self) -> bool {
        self.mutation != Some(Mutation::NoBugOn)
    }

    /// Whether the programs may release in any order.
    pub fn any_order(&self) -> bool {
        self.release == Release::Any
    }

    /// Check every setting, naming the first that cannot run.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(1..=8).contains(&self.cpus) {
            return Err(SettingsError::Cpus { given: self.cpus });
        }
        if !SUPPORTED_CELLS.contains(&self.cells) {
            return Err(SettingsError::Cells { given: self.cells });
        }
        if self.frames == 0 || self.frames > 1 << 20 {
            return Err(SettingsError::Frames { given: self.frames });
        }
        if self.lowmem > self.frames {
            return Err(SettingsError::Lowmem {
                lowmem: self.lowmem,
                frames: self.frames,
            });
        }
        Ok(())
    }

    /// The name of every setting.
    pub fn keys() -> Vec<String> {
        Settings::augment_args(Command::new("settings"))
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .collect()
    }
}

/// Old names of settings, `(old, new)`; an old `bug_on = false` is `mutation = "no-bug-on"`
/// and `bug_on = true` changes nothing (see [`renamed`]).
pub const OLD_NAMES: &[(&str, &str)] = &[
    ("slots", "cells"),
    ("debug_guards", "guard_cells"),
    ("bug_on", "mutation"),
];

/// The change an old `key=value` means, if `key` is an old name: `None` when it changes nothing
/// (`bug_on = true`, the default).
pub fn renamed(key: &str, value: &str) -> Option<Option<(String, String)>> {
    match key {
        "bug_on" => Some((value == "false").then(|| ("mutation".into(), "no-bug-on".into()))),
        _ => OLD_NAMES
            .iter()
            .find(|(old, _)| *old == key)
            .map(|(_, new)| Some((new.to_string(), value.to_string()))),
    }
}

/// Settings of `T` changed on top of a scenario's, as `key=value` pairs in a stable order: what
/// a command line's flags and a replay string's `@key=value,…` say. Each is checked against the
/// setting's own parser when it is read, and applied with it ([`apply`](Self::apply)).
pub struct Changes<T> {
    pairs: Vec<(String, String)>,
    of: PhantomData<fn() -> T>,
}

impl<T> Clone for Changes<T> {
    fn clone(&self) -> Self {
        Changes {
            pairs: self.pairs.clone(),
            of: PhantomData,
        }
    }
}

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Changes {
            pairs: Vec::new(),
            of: PhantomData,
        }
    }
}

impl<T> PartialEq for Changes<T> {
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs
    }
}

impl<T> Eq for Changes<T> {}

impl<T> fmt::Debug for Changes<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.pairs).finish()
    }
}

impl<T> fmt::Display for Changes<T> {
    /// `key=value,key=value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

impl<T: Args + FromArgMatches> Changes<T> {
    /// The command whose flags are the settings of `T`, with no defaults (so that parsing a
    /// change sets nothing else).
    fn command() -> Command {
        T::augment_args(Command::new("settings"))
            .no_binary_name(true)
            .mut_args(|arg| arg.default_value(None::<&str>))
    }

    /// The changes `key=value,…` (old names read as their new ones, see [`OLD_NAMES`]).
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        let mut changes = Changes::default();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| SettingsError::NotAPair { text: pair.into() })?;
            match renamed(key, value) {
                Some(Some((key, value))) => changes.set(&key, &value)?,
                Some(None) => {}
                None => changes.set(key, value)?,
            }
        }
        Ok(changes)
    }

    /// Change `key` to `value` (checked by the setting's parser), after any earlier change.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingsError> {
        let command = Self::command();
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_id() == key)
            .ok_or_else(|| SettingsError::Unknown { key: key.into() })?;
        let long = format!("--{}", arg.get_long().expect("every setting is a flag"));
        if let Err(e) = command.clone().try_get_matches_from([long.as_str(), value]) {
            let reason = match arg.get_possible_values() {
                values if !values.is_empty() => {
                    let names: Vec<&str> = values.iter().map(|v| v.get_name()).collect();
                    format!("the values are {}", names.join(", "))
                }
                _ => e
                    .source()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "not a value of this setting".into()),
            };
            return Err(SettingsError::Value {
                key: key.into(),
                value: value.into(),
                reason,
            });
        }
        self.pairs.retain(|(k, _)| k != key);
        self.pairs.push((key.into(), value.into()));
        Ok(())
    }

    /// The value given to `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Take the change of `key` out, if there is one.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(at).1)
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Apply the changes to `target` (each value was checked when it was set).
    pub fn apply(&self, target: &mut T) {
        let args: Vec<String> = self
            .pairs
            .iter()
            .flat_map(|(key, value)| [format!("--{}", key.replace('_', "-")), value.clone()])
            .collect();
        let matches = Self::command()
            .try_get_matches_from(args)
            .expect("every change was checked when it was set");
        target
            .update_from_arg_matches(&matches)
            .expect("every change was checked when it was set");
    }
}

impl<T: Args + FromArgMatches> FromArgMatches for Changes<T> {
    /// The settings of `T` given on the command line, in the order of `T`'s fields.
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut changes = Changes::default();
        for arg in T::augment_args(Command::new("settings")).get_arguments() {
            let id = arg.get_id().as_str();
            if matches.value_source(id) != Some(ValueSource::CommandLine) {
                continue;
            }
            let value = matches
                .get_raw(id)
                .and_then(|mut values| values.next())
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_else(|| "true".into());
            changes.pairs.push((id.to_string(), value));
        }
        Ok(changes)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let given = Self::from_arg_matches(matches)?;
        for (key, value) in given.pairs {
            self.pairs.retain(|(k, _)| *k != key);
            self.pairs.push((key, value));
        }
        Ok(())
    }
}

impl<T: Args + FromArgMatches> Args for Changes<T> {
    fn augment_args(command: Command) -> Command {
        T::augment_args(command)
    }

    fn augment_args_for_update(command: Command) -> Command {
        T::augment_args_for_update(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_clap_spell_every_value_alike() {
        fn same<T: ValueEnum + Serialize>() {
            for value in T::value_variants() {
                let serde = serde_json::to_value(value).unwrap();
                assert_eq!(serde.as_str(), Some(name(value).as_str()));
            }
        }
        same::<Protocol>();
        same::<Release>();
        same::<Mutation>();
        same::<Implementation>();
        assert_eq!(
            names::<Protocol>(),
            ["split", "rfc-v1", "swap-after-current"]
        );
    }

    #[test]
    fn the_defaults_are_those_of_the_flags() {
        let settings = Settings::default();
        assert_eq!(
            (
                settings.cpus,
                settings.frames,
                settings.lowmem,
                settings.cells
            ),
            (1, 64, 16, 16)
        );
        assert_eq!(settings.switch, Protocol::Split);
        assert!(settings.tlb && !settings.guard_cells && !settings.strict);
        assert_eq!(settings.mutation, None);
    }

    #[test]
    fn changes_apply_only_what_they_name_and_read_old_names() {
        let changes = Changes::<Settings>::parse("switch=rfc-v1,slots=33,bug_on=false").unwrap();
        assert_eq!(
            changes.to_string(),
            "switch=rfc-v1,cells=33,mutation=no-bug-on"
        );
        let mut settings = Settings {
            frames: 128,
            ..Settings::default()
        };
        changes.apply(&mut settings);
        assert_eq!(settings.switch, Protocol::RfcV1);
        assert_eq!(settings.cells, 33);
        assert_eq!(settings.mutation, Some(Mutation::NoBugOn));
        assert_eq!(settings.frames, 128, "untouched");
        assert!(
            Changes::<Settings>::parse("bug_on=true")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_bad_change_names_the_setting_and_its_values() {
        let e = Changes::<Settings>::parse("switch=rfc-v2").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`switch=rfc-v2`: the values are split, rfc-v1, swap-after-current"
        );
        let e = Changes::<Settings>::parse("cells=many").unwrap_err();
        assert!(
            e.to_string().starts_with("`cells=many`: invalid digit"),
            "{e}"
        );
        let e = Changes::<Settings>::parse("switches=split").unwrap_err();
        assert!(
            e.to_string().starts_with("`switches` is not a setting"),
            "{e}"
        );
        let e = Changes::<Settings>::parse("split").unwrap_err();
        assert_eq!(
            e,
            SettingsError::NotAPair {
                text: "split".into()
            }
        );
    }
}
