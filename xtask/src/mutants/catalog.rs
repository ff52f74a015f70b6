//! The named mutants of `xtask/mutants.toml`: what each breaks and how (find strings and their
//! replacements in one file of `crates/kmap`), the equivalent mutants of cargo-mutants with the
//! reason no test can kill them, and applying a mutant to a fresh copy of the workspace under
//! `target/mutants/NAME/` (never to the tree itself).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::process::{self, FileError};

/// Why the catalog could not be read, or a mutant not applied.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// mutants.toml, a patched file or the copy could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// mutants.toml is not what xtask reads.
    #[error("{} is not a catalog of mutants", path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// Two mutants have the same name.
    #[error("xtask/mutants.toml names `{0}` twice")]
    Duplicate(String),
    /// A mutant's name is not one of letters, digits and dashes.
    #[error("xtask/mutants.toml: `{0}` is not a name of letters, digits and dashes")]
    BadName(String),
    /// No mutant has this name.
    #[error("no mutant is named `{0}` (see `cargo xtask mutants --list`)")]
    Unknown(String),
    /// A mutant's lists of find strings and replacements differ in length.
    #[error(
        "the mutant `{name}` has {finds} find strings and {replaces} replacements: \
         xtask/mutants.toml must give as many of each"
    )]
    Uneven {
        name: String,
        finds: usize,
        replaces: usize,
    },
    /// A find string does not occur exactly once in the mutant's file.
    #[error(
        "the mutant `{name}` no longer applies: its find string #{index} occurs {count} times \
         in {file} (it must occur exactly once); update xtask/mutants.toml:\n{find}"
    )]
    NoLongerApplies {
        name: String,
        index: usize,
        count: usize,
        file: String,
        find: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MutantsFile {
    mutant: Vec<Mutant>,
    #[serde(default)]
    equivalent: Vec<Equivalent>,
}

/// A mutant of cargo-mutants that no test can catch because it does not change what the crate
/// does, and why.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Equivalent {
    /// cargo-mutants' name of it without the line and column, e.g.
    /// `crates/kmap/src/platform.rs: replace Platform::point with ()`.
    pub mutant: String,
    /// Why it changes nothing.
    pub reason: String,
}

/// One named mutant, as `xtask/mutants.toml` gives it.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Mutant {
    pub name: String,
    /// The reference's rule id, a colon, and the rule in one line.
    pub rule: String,
    /// What the patch changes, in one line.
    pub change: String,
    pub kind: Kind,
    /// The file patched, from the workspace root.
    pub file: String,
    pub find: Patterns,
    pub replace: Patterns,
}

/// Which checks must catch a mutant.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Map, unmap, the switch hooks: the explorer alone must catch it.
    Mechanism,
    /// The safe API of guard.rs, which the explorer does not use: the crate's tests must.
    GuardApi,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mechanism => "mechanism",
            Kind::GuardApi => "guard API",
        }
    }
}

/// One string, or a list of them (a patch in several places).
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum Patterns {
    One(String),
    Many(Vec<String>),
}

impl Patterns {
    pub fn list(&self) -> Vec<&str> {
        match self {
            Patterns::One(one) => vec![one.as_str()],
            Patterns::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

impl Mutant {
    /// The rule's id: what comes before the first colon.
    pub fn rule_id(&self) -> &str {
        self.rule.split_once(':').map_or(&self.rule, |(id, _)| id)
    }

    /// `text` (the contents of `self.file`) with the patch applied; an error when a find string
    /// does not occur exactly once.
    pub fn apply(&self, text: &str) -> Result<String, CatalogError> {
        let (finds, replaces) = (self.find.list(), self.replace.list());
        if finds.len() != replaces.len() {
            return Err(CatalogError::Uneven {
                name: self.name.clone(),
                finds: finds.len(),
                replaces: replaces.len(),
            });
        }
        let mut text = text.to_string();
        for (i, (find, replace)) in finds.into_iter().zip(replaces).enumerate() {
            let count = if find.is_empty() {
                0
            } else {
                text.matches(find).count()
            };
            if count != 1 {
                return Err(CatalogError::NoLongerApplies {
                    name: self.name.clone(),
                    index: i + 1,
                    count,
                    file: self.file.clone(),
                    find: find.to_string(),
                });
            }
            text = text.replacen(find, replace, 1);
        }
        Ok(text)
    }
}

fn load_file(root: &Path) -> Result<MutantsFile, CatalogError> {
    let path = root.join("xtask/mutants.toml");
    let text = process::read(&path)?;
    toml::from_str(&text).map_err(|source| CatalogError::Toml { path, source })
}

/// The named mutants, each name once and well formed.
pub fn load(root: &Path) -> Result<Vec<Mutant>, CatalogError> {
    let file = load_file(root)?;
    let mut names = BTreeSet::new();
    for mutant in &file.mutant {
        if !names.insert(mutant.name.as_str()) {
            return Err(CatalogError::Duplicate(mutant.name.clone()));
        }
        if mutant.name.is_empty()
            || !mutant
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(CatalogError::BadName(mutant.name.clone()));
        }
    }
    Ok(file.mutant)
}

/// The mutants of cargo-mutants that xtask/mutants.toml explains as equivalent.
pub fn equivalents(root: &Path) -> Result<Vec<Equivalent>, CatalogError> {
    Ok(load_file(root)?.equivalent)
}

/// The mutants named in `only` (all of them when it is empty), each of which must still apply
/// to the tree as it is.
pub fn select(root: &Path, all: Vec<Mutant>, only: &[String]) -> Result<Vec<Mutant>, CatalogError> {
    for name in only {
        if !all.iter().any(|m| &m.name == name) {
            return Err(CatalogError::Unknown(name.clone()));
        }
    }
    let selected: Vec<Mutant> = all
        .into_iter()
        .filter(|m| only.is_empty() || only.contains(&m.name))
        .collect();
    for mutant in &selected {
        mutant.apply(&process::read(&root.join(&mutant.file))?)?;
    }
    Ok(selected)
}

/// A fresh copy of the workspace under target/mutants/NAME with the mutant applied: what
/// builds the `kmap` binary and runs the crate's tests, and with `kernel` the demo kernel
/// (without its build folder).
pub fn prepare(root: &Path, mutant: &Mutant, kernel: bool) -> Result<PathBuf, CatalogError> {
    let copy = root.join("target/mutants").join(&mutant.name);
    if copy.exists() {
        std::fs::remove_dir_all(&copy).map_err(|e| FileError::new("remove", &copy, e))?;
    }
    for part in ["Cargo.toml", "Cargo.lock", ".cargo", "crates", "xtask"] {
        if root.join(part).exists() {
            process::copy_tree(&root.join(part), &copy.join(part))?;
        }
    }
    if kernel {
        let dir = root.join("kernel");
        let entries = std::fs::read_dir(&dir).map_err(|e| FileError::new("read", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FileError::new("read", &dir, e))?;
            if entry.file_name() == "target" {
                continue;
            }
            process::copy_tree(&entry.path(), &copy.join("kernel").join(entry.file_name()))?;
        }
    }
    let file = copy.join(&mutant.file);
    let text = process::read(&file)?;
    process::write(&file, &mutant.apply(&text)?)?;
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_mutants_parse() {
        let mutants = load(&process::workspace_root()).unwrap();
        assert!(mutants.len() >= 12);
        for kind in [Kind::Mechanism, Kind::GuardApi] {
            assert!(mutants.iter().any(|m| m.kind == kind));
        }
        for m in &mutants {
            assert_eq!(m.find.list().len(), m.replace.list().len(), "{}", m.name);
        }
    }

    #[test]
    fn a_find_string_must_occur_exactly_once() {
        let mutant = Mutant {
            name: "m".into(),
            rule: "X-1: a rule".into(),
            change: "a change".into(),
            kind: Kind::Mechanism,
            file: "f.rs".into(),
            find: Patterns::One("a".into()),
            replace: Patterns::One("b".into()),
        };
        assert_eq!(mutant.apply("xay").unwrap(), "xby");
        assert!(
            mutant
                .apply("aa")
                .unwrap_err()
                .to_string()
                .contains("no longer applies")
        );
        assert!(matches!(
            mutant.apply("xyz").unwrap_err(),
            CatalogError::NoLongerApplies { count: 0, .. }
        ));
        assert_eq!(mutant.rule_id(), "X-1");
    }
}
