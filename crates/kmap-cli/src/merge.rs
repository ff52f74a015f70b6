//! `kmap merge`: the JSON results of the shards of one proof, combined into one verdict.

use std::path::PathBuf;

use clap::Parser;
use serde_json::Value;

use crate::error::CliError;

/// Why the shards' results cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file is not JSON.
    #[error("{file}: not the JSON of `kmap prove --json`: {reason}")]
    NotJson {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The first file is not a shard's result.
    #[error("{file}: not a shard (run `kmap prove --shard I/N --json`)")]
    NotAShard {
        /// The file.
        file: String,
    },
    /// A file is of another proof than the first.
    #[error("{file}: another {what} than {first}")]
    Differs {
        /// The file.
        file: String,
        /// What differs: scope, switch, shard count.
        what: &'static str,
        /// The first file.
        first: String,
    },
    /// A shard's index is not below the count.
    #[error("{file}: shard {index} of {count}?")]
    Index {
        /// The file.
        file: String,
        /// Its index.
        index: u64,
        /// The count.
        count: u64,
    },
    /// A shard is given twice.
    #[error("{file}: shard {index} given twice")]
    Twice {
        /// The file.
        file: String,
        /// Its index.
        index: u64,
    },
    /// Shards are missing and no part found a violation.
    #[error("shards {missing:?} of {count} are missing")]
    Missing {
        /// Their indices.
        missing: Vec<usize>,
        /// The count.
        count: u64,
    },
}

#[derive(Parser, Clone, Debug)]
pub struct Args {
    /// The JSON files `kmap prove --shard I/N --json` wrote, one per shard.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print a machine-readable result.
    #[arg(long)]
    pub json: bool,
}

/// Merge; whether the merged result is a complete proof.
pub fn main(args: &Args) -> Result<bool, CliError> {
    let (value, ok) = merge(args)?;
    {
        {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&value).expect("JSON"));
            } else {
                println!(
                    "{} {} {}: {} over {} shards, {} distinct states ({} summed), {} transitions{}",
                    if ok { "ok  " } else { "FAIL" },
                    value["scope"].as_str().unwrap_or(""),
                    value["switch"].as_str().unwrap_or(""),
                    value["verdict"].as_str().unwrap_or(""),
                    value["shards"],
                    value["distinct_states"],
                    value["states"],
                    value["transitions"],
                    if value["complete"] == true {
                        " (complete)"
                    } else {
                        ""
                    }
                );
                if let Some(replay) = value["replay"].as_str() {
                    println!("     replay: kmap replay '{replay}'");
                }
            }
        }
    }
    Ok(ok)
}

/// The merged result, and whether it is a complete proof.
fn merge(args: &Args) -> Result<(Value, bool), CliError> {
    let mut parts = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file).map_err(|error| CliError::Read {
            path: file.clone(),
            error,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| MergeError::NotJson {
            file: file.display().to_string(),
            reason: e.to_string(),
        })?;
        parts.push((file.display().to_string(), value));
    }
    let (first_file, first) = &parts[0];
    let count = first["shard"]["count"]
        .as_u64()
        .ok_or_else(|| MergeError::NotAShard {
            file: first_file.clone(),
        })?;
    let differs = |file: &str, what: &'static str| MergeError::Differs {
        file: file.into(),
        what,
        first: first_file.clone(),
    };
    let mut seen = vec![false; count as usize];
    let mut keys = std::collections::HashSet::new();
    let mut with_keys = true;
    let (mut states, mut transitions) = (0u64, 0u64);
    let mut complete = true;
    let mut violation: Option<Value> = None;
    for (file, part) in &parts {
        for field in ["scope", "switch"] {
            if part[field] != first[field] {
                return Err(differs(file, field).into());
            }
        }
        if part["shard"]["count"].as_u64() != Some(count) {
            return Err(differs(file, "shard count").into());
        }
        let index = part["shard"]["index"].as_u64().unwrap_or(u64::MAX);
        let slot = seen
            .get_mut(index as usize)
            .ok_or_else(|| MergeError::Index {
                file: file.clone(),
                index,
                count,
            })?;
        if std::mem::replace(slot, true) {
            return Err(MergeError::Twice {
                file: file.clone(),
                index,
            }
            .into());
        }
        states += part["states"].as_u64().unwrap_or(0);
        transitions += part["transitions"].as_u64().unwrap_or(0);
        complete &= part["complete"] == true;
        match part["state_keys"].as_array() {
            Some(list) => keys.extend(list.iter().filter_map(|k| k.as_str().map(str::to_owned))),
            None => with_keys = false,
        }
        if part["verdict"] == "violation" && violation.is_none() {
            violation = Some(part.clone());
        }
    }
    let missing: Vec<usize> = (0..count as usize).filter(|&i| !seen[i]).collect();
    if !missing.is_empty() && violation.is_none() {
        return Err(MergeError::Missing { missing, count }.into());
    }
    let verdict = match (&violation, complete) {
        (Some(_), _) => "violation",
        (None, true) => "pass",
        (None, false) => "incomplete",
    };
    let value = serde_json::json!({
        "scope": first["scope"],
        "switch": first["switch"],
        "shards": count,
        "verdict": verdict,
        "complete": complete && violation.is_none(),
        "states": states,
        "distinct_states": if with_keys { Value::from(keys.len()) } else { Value::Null },
        "transitions": transitions,
        "replay": violation.as_ref().map(|v| v["replay"].clone()),
        "violation": violation.as_ref().map(|v| v["violation"].clone()),
    });
    Ok((value, verdict == "pass"))
}
