//! Finding the kernel source, reading its files, and cutting Linux's kmap_local code out of
//! them by markers, with `#line` directives.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

use crate::{FILES, INLINE};

/// `KMAP_LINUX_SRC`, or the newest `/usr/src/linux-source-*.tar.xz`.
pub(crate) fn find_source() -> Result<PathBuf, String> {
    if let Some(given) = env::var_os("KMAP_LINUX_SRC") {
        let given = PathBuf::from(given);
        if given.is_relative() {
            return Err(format!(
                "KMAP_LINUX_SRC={} is relative: give an absolute path (cargo runs this build \
                 script in another folder than yours)",
                given.display()
            ));
        }
        if !given.exists() {
            return Err(format!("KMAP_LINUX_SRC={} does not exist", given.display()));
        }
        return Ok(given);
    }
    let mut found: Vec<(Vec<u64>, PathBuf)> = fs::read_dir("/usr/src")
        .map_err(|_| missing())?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .strip_prefix("linux-source-")?
                .strip_suffix(".tar.xz")?;
            let key = version.split('.').map(|n| n.parse().unwrap_or(0)).collect();
            Some((key, entry.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path).ok_or_else(missing)
}

pub(crate) fn missing() -> String {
    "no kernel source: install Debian's linux-source-6.12 (apt-get install linux-source-6.12) \
     or set KMAP_LINUX_SRC to a kernel tree or a linux-source-*.tar.xz, then rebuild"
        .into()
}

/// The tree read, and the files of [`FILES`] in it: a tree given, or one extracted from a
/// tarball into `tree` (once per tarball: the extraction is cached under a stamp of its path,
/// size and time).
pub(crate) fn read_files(
    source: &Path,
    tree: &Path,
) -> Result<(PathBuf, BTreeMap<&'static str, String>), String> {
    // A developer's tree is read again when one of its files changes (an edited patch).
    let root = if source.is_dir() {
        for file in FILES {
            println!("cargo:rerun-if-changed={}", source.join(file).display());
        }
        source.to_path_buf()
    } else {
        println!("cargo:rerun-if-changed={}", source.display());
        let meta = fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
        let stamp = format!(
            "{} {} {:?}",
            source.display(),
            meta.len(),
            meta.modified().ok()
        );
        let stamp_file = tree.join("stamp");
        if fs::read_to_string(&stamp_file).ok().as_deref() != Some(stamp.as_str()) {
            extract(source, tree)?;
            fs::write(&stamp_file, &stamp).map_err(|e| e.to_string())?;
        }
        tree.to_path_buf()
    };
    let mut files = BTreeMap::new();
    for &file in FILES {
        let path = root.join(file);
        let text = fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (is {} a kernel tree?)",
                path.display(),
                source.display()
            )
        })?;
        files.insert(file, text);
    }
    Ok((root, files))
}

/// Extract [`FILES`] from a kernel tarball into `tree`.
pub(crate) fn extract(tarball: &Path, tree: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(tree);
    fs::create_dir_all(tree).map_err(|e| e.to_string())?;
    // The tarball's top directory (`linux-source-6.12/`), from its first entry.
    let list = Command::new("sh")
        .arg("-c")
        .arg(format!("tar -tJf '{}' | head -n 1", tarball.display()))
        .output()
        .map_err(|e| format!("tar: {e}"))?;
    let first = String::from_utf8_lossy(&list.stdout);
    let top = first.trim().split('/').next().unwrap_or("").to_string();
    if top.is_empty() {
        return Err(format!("{}: not a tar.xz archive", tarball.display()));
    }
    let status = Command::new("tar")
        .arg("-xJf")
        .arg(tarball)
        .arg("-C")
        .arg(tree)
        .arg("--strip-components=1")
        .args(FILES.iter().map(|f| format!("{top}/{f}")))
        .status()
        .map_err(|e| format!("tar: {e}"))?;
    if !status.success() {
        return Err(format!(
            "tar could not extract {FILES:?} from {}",
            tarball.display()
        ));
    }
    Ok(())
}

/// `6.12.118` from the top Makefile.
pub(crate) fn version(makefile: &str) -> Result<String, String> {
    let field = |name: &str| {
        makefile
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim_start()
                    .strip_prefix('=')
                    .map(str::trim)
            })
            .ok_or_else(|| format!("Makefile: no {name}"))
    };
    Ok(format!(
        "{}.{}.{}",
        field("VERSION")?,
        field("PATCHLEVEL")?,
        field("SUBLEVEL")?
    ))
}

/// The translation unit: Linux's text cut out by markers, with `#line` directives.
pub(crate) fn cut(files: &BTreeMap<&'static str, String>) -> Result<String, String> {
    let mut unit = String::new();
    // x86's arch hooks (arch/x86/include/asm/highmem.h).
    let arch = "arch/x86/include/asm/highmem.h";
    for name in ["arch_kmap_local_post_map", "arch_kmap_local_post_unmap"] {
        let (line, text) =
            define(&files[arch], name).ok_or_else(|| format!("{arch}: no {name}"))?;
        writeln!(unit, "#line {line} \"{arch}\"\n{text}").unwrap();
    }
    let highmem = "mm/highmem.c";
    let blocks = kmap_local_blocks(&files[highmem]);
    if blocks.len() != 2 {
        return Err(format!(
            "{highmem}: {} `#ifdef CONFIG_KMAP_LOCAL` blocks, not the 2 these markers know",
            blocks.len()
        ));
    }
    for (line, text) in blocks {
        writeln!(unit, "#line {line} \"{highmem}\"\n{text}").unwrap();
    }
    let internal = "include/linux/highmem-internal.h";
    for name in INLINE {
        let (line, text) =
            function(&files[internal], name).ok_or_else(|| format!("{internal}: no {name}"))?;
        writeln!(unit, "#line {line} \"{internal}\"\n{text}").unwrap();
    }
    // Linux 6.1 reads a slot's PTE as `*kmap_pte`; later kernels as `ptep_get(kmap_pte)` (on
    // x86 the same load). Through `ptep_get` the simulator's page table answers it: the C's
    // own copy of the page table is never read (glue.rs refuses a direct access).
    let unit = unit.replace("(*kmap_pte)", "(ptep_get(kmap_pte))");
    for name in [
        "__kmap_local_pfn_prot",
        "kunmap_local_indexed",
        "__kmap_local_sched_out",
    ] {
        if !unit.contains(&format!("{name}(")) {
            return Err(format!("{highmem}: no {name}"));
        }
    }
    Ok(unit)
}

/// The top-level `#ifdef CONFIG_KMAP_LOCAL` … `#endif` blocks (first line number, text; their
/// `#include`s blanked: the shim stands for them).
pub(crate) fn kmap_local_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String, usize)> = None;
    for (n, line) in text.lines().enumerate() {
        let directive = line.trim_start();
        match &mut current {
            None => {
                if directive.starts_with("#ifdef CONFIG_KMAP_LOCAL")
                    && directive.split_whitespace().nth(1) == Some("CONFIG_KMAP_LOCAL")
                {
                    current = Some((n + 1, format!("{line}\n"), 1));
                }
            }
            Some((start, block, depth)) => {
                if directive.starts_with("#if") {
                    *depth += 1;
                } else if directive.starts_with("#endif") {
                    *depth -= 1;
                }
                if directive.starts_with("#include") {
                    block.push('\n');
                } else {
                    block.push_str(line);
                    block.push('\n');
                }
                if *depth == 0 {
                    blocks.push((*start, std::mem::take(block)));
                    current = None;
                }
            }
        }
    }
    blocks
}

/// The first definition of the function `name` at the start of a line, to its closing `}`.
pub(crate) fn function(text: &str, name: &str) -> Option<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| {
        l.starts_with("static inline") && l.contains(&format!(" {name}("))
            || l.contains(&format!("*{name}(")) && l.starts_with("static inline")
    })?;
    let end = start + lines[start..].iter().position(|l| *l == "}")?;
    Some((start + 1, lines[start..=end].join("\n")))
}

/// The `#define name` with its continuation lines.
pub(crate) fn define(text: &str, name: &str) -> Option<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some("#define")
            && words
                .next()
                .is_some_and(|w| w.starts_with(&format!("{name}(")))
    })?;
    let mut end = start;
    while lines[end].trim_end().ends_with('\\') {
        end += 1;
    }
    Some((start + 1, lines[start..=end].join("\n")))
}
