//! `cargo xtask kernel --coverage`: which instructions of the crate's code the NMIs interrupted.
//! The kernel reports every distinct address an NMI interrupted (`NMI-RIPS` records); objdump's
//! line table says which of the kernel's instructions come from `crates/kmap/src`, and in which
//! function. Text from objdump is parsed here: it is an external tool's output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use super::KernelError;
use crate::process;

/// The instruction addresses of the kernel whose line-table entry is in the crate's sources
/// (its map, unmap, guard and switch paths; not the formatting of its types), by the function
/// (symbol) they are compiled into.
pub struct Windows {
    pub all: BTreeSet<u64>,
    pub by_function: BTreeMap<String, BTreeSet<u64>>,
}

impl Windows {
    pub fn of(elf: &Path) -> Result<Windows, KernelError> {
        process::ensure_tool("objdump", "binutils")?;
        let mut objdump = Command::new("objdump");
        objdump
            .args(["-d", "-l", "-C", "--no-show-raw-insn"])
            .arg(elf);
        let output = process::output_of(objdump).map_err(KernelError::Objdump)?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut windows = Windows {
            all: BTreeSet::new(),
            by_function: BTreeMap::new(),
        };
        let (mut function, mut in_crate) = (String::new(), false);
        for line in text.lines() {
            if let Some(name) = line.strip_suffix(">:").and_then(|l| l.split_once(" <")) {
                function = name.1.to_string();
                in_crate = false;
            } else if line.starts_with('/') {
                in_crate = line.contains("/crates/kmap/src/");
            } else if in_crate && !function.ends_with("::fmt") {
                // Formatting code of the crate's types (Debug, Display) is not a path of it.
                let address = line.trim_start().split(':').next().unwrap_or("");
                if let Ok(address) = u64::from_str_radix(address, 16) {
                    windows.all.insert(address);
                    windows
                        .by_function
                        .entry(short(&function))
                        .or_default()
                        .insert(address);
                }
            }
        }
        if windows.all.is_empty() {
            return Err(KernelError::NoCrateLines {
                elf: elf.to_path_buf(),
            });
        }
        Ok(windows)
    }
}

/// A symbol without its generic arguments and hash: `kdemo::workload::task_main`;
/// `<kmap::guard::Mapping<P> as core::ops::drop::Drop>::drop` is `kmap::guard::Mapping::drop`.
fn short(symbol: &str) -> String {
    if let Some((qualified, method)) = symbol
        .strip_prefix('<')
        .and_then(|s| s.split_once(" as "))
        .and_then(|(ty, rest)| Some((ty, rest.rsplit_once(">::")?.1)))
    {
        return short(&format!("{qualified}::{method}"));
    }
    let mut out = String::new();
    let mut depth = 0;
    for c in symbol.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    // A legacy mangled name may keep its hash: `::h` and 16 hex digits.
    match out.rsplit_once("::h") {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn symbols_are_shortened_to_their_path() {
        assert_eq!(
            short("kdemo::workload::tasks::task_main"),
            "kdemo::workload::tasks::task_main"
        );
        assert_eq!(
            short("<kmap::guard::Mapping<P> as core::ops::drop::Drop>::drop"),
            "kmap::guard::Mapping::drop"
        );
        assert_eq!(
            short("kmap::mechanism::map::h0123456789abcdef"),
            "kmap::mechanism::map"
        );
    }
}
