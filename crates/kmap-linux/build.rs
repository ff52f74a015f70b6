//! Linux's kmap_local code, extracted from an installed kernel source and compiled with GCC's
//! TSAN instrumentation (as Linux's KCSAN builds code): every memory access of the compiled C
//! calls a hook first, and so does every call into the shim. Nothing of Linux is committed:
//!
//! 1. The source is `KMAP_LINUX_SRC` (a kernel tree, or a `linux-source-*.tar.xz`) or else
//!    the newest `/usr/src/linux-source-*.tar.xz` (Debian's `linux-source-6.12`).
//! 2. Cut out by markers, with `#line` directives so that every site keeps Linux's own file
//!    and line: the `#ifdef CONFIG_KMAP_LOCAL` blocks of `mm/highmem.c`, the inline
//!    `kmap_local_page` … `__kunmap_atomic` of `include/linux/highmem-internal.h` (the
//!    `CONFIG_HIGHMEM` ones), and x86's `arch_kmap_local_post_map`/`post_unmap`.
//! 3. One translation unit per layout the simulator runs (cells per stack, debug guard cells,
//!    force-map: `KM_MAX_IDX`, `CONFIG_DEBUG_KMAP_LOCAL`, `CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP`),
//!    compiled to assembly; after every call of a hook or of the shim the assembly gets a
//!    label, listed in a table, so the return address a hook sees names its site.
//!
//! Without a source, or with one whose markers are not found, the crate builds without Linux
//! and says why at run time (`Linux::unavailable`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// The cells per stack the simulator supports (`kmap_sim::SUPPORTED_CELLS`, checked in lib.rs).
const CELLS: &[usize] = &[1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 33];
/// The simulator's most CPUs (`NR_CPUS`).
const NR_CPUS: usize = 8;
/// `kmap_sim::WINDOW`: the lowest address of the fixmap's kmap slots.
const WINDOW: u64 = 0x10_0000_0000;
/// `kmap_sim::DIRECT_MAP`.
const DIRECT_MAP: u64 = 0x1_0000_0000;
/// `__fix_to_virt(FIX_KMAP_BEGIN)`: the fixmap grows down from here to `WINDOW`.
const FIXADDR_TOP: u64 = WINDOW + ((33 * NR_CPUS as u64) - 1) * 4096;

/// The files read from the source, by path in the tree.
const FILES: &[&str] = &[
    "Makefile",
    "mm/highmem.c",
    "include/linux/highmem-internal.h",
    "arch/x86/include/asm/highmem.h",
];

/// The inline functions of `highmem-internal.h` the simulator calls (their first, `CONFIG_HIGHMEM`
/// definition).
const INLINE: &[&str] = &[
    "kmap_local_page",
    "kmap_local_pfn",
    "__kunmap_local",
    "kmap_atomic_prot",
    "kmap_atomic",
    "kmap_atomic_pfn",
    "__kunmap_atomic",
];

/// Linux's global functions, renamed per layout so that the layouts link side by side.
const GLOBAL: &[&str] = &[
    "__kmap_local_pfn_prot",
    "__kmap_local_page_prot",
    "kunmap_local_indexed",
    "__kmap_local_sched_out",
    "__kmap_local_sched_in",
    "kmap_local_fork",
];

/// The shim's calls that are arrival points (hooks.c), besides the TSAN hooks.
const SHIM_CALLS: &[&str] = &[
    "kmap_sim_current",
    "kmap_sim_smp_processor_id",
    "preempt_disable",
    "preempt_enable",
    "migrate_disable",
    "migrate_enable",
    "pagefault_disable",
    "pagefault_enable",
    "in_hardirq",
    "irqs_disabled",
    "ptep_get",
    "kmap_sim_set_pte",
    "kmap_sim_pte_clear",
    "flush_tlb_one_kernel",
    "PageHighMem",
    "page_address",
    "kmap_sim_memset",
    "kmap_sim_warn",
    "kmap_sim_bug",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=c/shim.h");
    println!("cargo:rerun-if-changed=c/hooks.c");
    println!("cargo:rerun-if-env-changed=KMAP_LINUX_SRC");
    // A `linux-source-*` package installed later is picked up by the next build.
    println!("cargo:rerun-if-changed=/usr/src");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let generated = match build(&out) {
        Ok(generated) => generated,
        Err(why) => {
            println!("cargo:warning=kmap-linux: built without Linux's code: {why}");
            format!(
                "/// Why this build has no Linux code.\npub(crate) const UNAVAILABLE: Option<&str> = Some({why:?});\n\
                 /// The source the code came from.\npub(crate) const SOURCE: &str = \"\";\n\
                 /// Linux's version.\npub(crate) const VERSION: &str = \"\";\n\
                 /// The layouts compiled.\npub(crate) static LAYOUTS: &[Layout] = &[];\n"
            )
        }
    };
    fs::write(out.join("linux.rs"), generated).expect("write linux.rs");
}

/// Find, extract, compile; the Rust that names what was built.
fn build(out: &Path) -> Result<String, String> {
    let source = find_source()?;
    let tree = out.join("tree");
    let files = read_files(&source, &tree)?;
    let version = version(&files["Makefile"])?;
    let unit = cut(&files)?;
    let c_dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("c");
    let gcc = env::var("CC").unwrap_or_else(|_| "gcc".into());
    let mut rust = String::new();
    let mut build = cc::Build::new();
    build
        .file(c_dir.join("hooks.c"))
        .include(&c_dir)
        .define("KM_MAX_IDX", "33")
        .flag("-fexceptions")
        .warnings(false);
    for (name, value) in layout_defines() {
        build.define(name, Some(value.as_str()));
    }
    writeln!(
        rust,
        "/// Why this build has no Linux code.\npub(crate) const UNAVAILABLE: Option<&str> = None;\n\
         /// The source the code came from.\npub(crate) const SOURCE: &str = {:?};\n\
         /// Linux's version.\npub(crate) const VERSION: &str = {version:?};",
        source.display().to_string()
    )
    .unwrap();
    let mut layouts =
        String::from("/// The layouts compiled.\npub(crate) static LAYOUTS: &[Layout] = &[\n");
    let mut externs = String::from("unsafe extern \"C-unwind\" {\n");
    for &cells in CELLS {
        for guard in [false, true] {
            for force in [false, true] {
                let prefix = format!("kl_{cells}_{}_{}", guard as u8, force as u8);
                let asm = compile(&gcc, &c_dir, out, &unit, &prefix, cells, guard, force)?;
                let (asm, sites) = label_sites(&asm, &prefix, &files)?;
                let path = out.join(format!("{prefix}.s"));
                fs::write(&path, asm).map_err(|e| format!("{}: {e}", path.display()))?;
                build.file(&path);
                emit_layout(
                    &mut layouts,
                    &mut externs,
                    &prefix,
                    cells,
                    guard,
                    force,
                    &sites,
                );
            }
        }
    }
    build.compile("kmap_linux_c");
    externs.push_str("}\n");
    layouts.push_str("];\n");
    rust.push_str(&externs);
    rust.push_str(&layouts);
    Ok(rust)
}

/// `KMAP_LINUX_SRC`, or the newest `/usr/src/linux-source-*.tar.xz`.
fn find_source() -> Result<PathBuf, String> {
    if let Some(given) = env::var_os("KMAP_LINUX_SRC") {
        let given = PathBuf::from(given);
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

fn missing() -> String {
    "no kernel source: install Debian's linux-source-6.12 (apt-get install linux-source-6.12) \
     or set KMAP_LINUX_SRC to a kernel tree or a linux-source-*.tar.xz, then rebuild"
        .into()
}

/// The files of [`FILES`], from a tree or extracted from a tarball into `tree` (once per
/// tarball: the extraction is cached under a stamp of its path, size and time).
fn read_files(source: &Path, tree: &Path) -> Result<BTreeMap<&'static str, String>, String> {
    let root = if source.is_dir() {
        source.to_path_buf()
    } else {
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
    Ok(files)
}

/// Extract [`FILES`] from a kernel tarball into `tree`.
fn extract(tarball: &Path, tree: &Path) -> Result<(), String> {
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
fn version(makefile: &str) -> Result<String, String> {
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
fn cut(files: &BTreeMap<&'static str, String>) -> Result<String, String> {
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
fn kmap_local_blocks(text: &str) -> Vec<(usize, String)> {
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
fn function(text: &str, name: &str) -> Option<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| {
        l.starts_with("static inline") && l.contains(&format!(" {name}("))
            || l.contains(&format!("*{name}(")) && l.starts_with("static inline")
    })?;
    let end = start + lines[start..].iter().position(|l| *l == "}")?;
    Some((start + 1, lines[start..=end].join("\n")))
}

/// The `#define name` with its continuation lines.
fn define(text: &str, name: &str) -> Option<(usize, String)> {
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

/// The `-D` of the simulator's address space, for the shim.
fn layout_defines() -> Vec<(&'static str, String)> {
    vec![
        ("NR_CPUS", NR_CPUS.to_string()),
        ("KMAP_FIXADDR_TOP", format!("{FIXADDR_TOP:#x}UL")),
        ("KMAP_WINDOW_BASE", format!("{WINDOW:#x}UL")),
        ("KMAP_DIRECT_MAP", format!("{DIRECT_MAP:#x}UL")),
    ]
}

/// The entry points the simulator calls, appended to each unit (Linux's inline API, made
/// callable), and the boot-time set-up.
const ENTRIES: &str = r#"
void *ENTRY(map_page)(unsigned long pfn) { return kmap_local_page(&kmap_sim_mem_map[pfn]); }
void *ENTRY(map_pfn)(unsigned long pfn) { return kmap_local_pfn(pfn); }
void *ENTRY(map_atomic)(unsigned long pfn) { return kmap_atomic(&kmap_sim_mem_map[pfn]); }
void ENTRY(unmap)(const void *addr) { __kunmap_local(addr); }
void ENTRY(unmap_atomic)(const void *addr) { __kunmap_atomic(addr); }
void ENTRY(sched_out)(void) { __kmap_local_sched_out(); }
void ENTRY(sched_in)(void) { __kmap_local_sched_in(); }
void ENTRY(fork)(struct task_struct *child) { kmap_local_fork(child); }
/* Boot: the first kmap_local of a kernel's life sets __kmap_pte long before anything runs. */
__attribute__((no_sanitize_thread)) void ENTRY(boot)(void)
{
	__kmap_pte = virt_to_kpte(__fix_to_virt(FIX_KMAP_BEGIN));
}
const void *ENTRY(kmap_pte_variable)(void) { return &__kmap_pte; }
"#;

/// The entry points' names, as in [`ENTRIES`].
const ENTRY_NAMES: &[&str] = &[
    "map_page",
    "map_pfn",
    "map_atomic",
    "unmap",
    "unmap_atomic",
    "sched_out",
    "sched_in",
    "fork",
    "boot",
    "kmap_pte_variable",
];

/// Compile one layout's unit to assembly.
#[allow(clippy::too_many_arguments)]
fn compile(
    gcc: &str,
    c_dir: &Path,
    out: &Path,
    unit: &str,
    prefix: &str,
    cells: usize,
    guard: bool,
    force: bool,
) -> Result<String, String> {
    let source = out.join(format!("{prefix}.c"));
    let mut text = format!("#define ENTRY(name) {prefix}_##name\n");
    text.push_str(unit);
    text.push_str("#line 1 \"<kmap entries>\"\n");
    text.push_str(ENTRIES);
    fs::write(&source, text).map_err(|e| e.to_string())?;
    let asm = out.join(format!("{prefix}.raw.s"));
    let mut cmd = Command::new(gcc);
    cmd.args([
        "-S",
        "-O2",
        "-g1",
        "-std=gnu11",
        "-fPIC",
        // KCSAN's instrumentation (scripts/Makefile.kcsan): a hook before every access,
        // volatile ones told apart, no function entry/exit hooks.
        "-fsanitize=thread",
        "--param=tsan-distinguish-volatile=1",
        "--param=tsan-instrument-func-entry-exit=0",
        // As the kernel builds: no type-based aliasing, null checks kept.
        "-fno-strict-aliasing",
        "-fno-delete-null-pointer-checks",
        // No builtin may become code the hooks cannot see (a memset into `rep stos`), and no
        // call a tail jump (a site is named by its return address); a BUG unwinds through C.
        "-fno-builtin",
        "-fno-optimize-sibling-calls",
        "-fexceptions",
        "-Wall",
        "-Wno-unused-function",
    ]);
    cmd.arg(format!("-DKM_MAX_IDX={cells}"));
    if guard {
        cmd.arg("-DCONFIG_DEBUG_KMAP_LOCAL=1");
    }
    if force {
        cmd.arg("-DCONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP=1");
    }
    cmd.arg("-DCONFIG_KMAP_LOCAL=1").arg("-DCONFIG_HIGHMEM=1");
    for (name, value) in layout_defines() {
        cmd.arg(format!("-D{name}={value}"));
    }
    for global in GLOBAL {
        cmd.arg(format!("-D{global}={prefix}_{global}"));
    }
    cmd.arg("-include").arg(c_dir.join("shim.h"));
    cmd.arg("-o").arg(&asm).arg(&source);
    let output = cmd.output().map_err(|e| format!("{gcc}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{gcc} failed on {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    fs::read_to_string(&asm).map_err(|e| e.to_string())
}

/// A site: a call of a hook or of the shim in the compiled code.
struct Site {
    file: String,
    line: usize,
    function: String,
    text: String,
}

/// Label the return address of every call of a hook or of the shim (`.Lkmap_site_N`), and
/// list them in a table `PREFIX_sites`. Refuses what the hooks would not see: inline
/// assembly, string instructions, and a tail jump out of the unit.
fn label_sites(
    asm: &str,
    prefix: &str,
    files: &BTreeMap<&'static str, String>,
) -> Result<(String, Vec<Site>), String> {
    let mut out = String::with_capacity(asm.len() * 2);
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut loc: (String, usize) = (String::new(), 0);
    let mut function = String::new();
    let mut sites = Vec::new();
    let mut others = Vec::new();
    let mut defined = std::collections::BTreeSet::new();
    for line in asm.lines() {
        out.push_str(line);
        out.push('\n');
        let trimmed = line.trim();
        let mut words = trimmed.split_whitespace();
        let first = words.next().unwrap_or("");
        if first == ".file" {
            let rest: Vec<&str> = words.collect();
            if let Some(n) = rest.first().and_then(|n| n.parse::<u32>().ok()) {
                let name = rest.last().unwrap_or(&"").trim_matches('"').to_string();
                names.insert(n.to_string(), name);
            }
        } else if first == ".loc" {
            let file = words.next().unwrap_or("");
            let number = words.next().and_then(|l| l.parse().ok()).unwrap_or(0);
            loc = (names.get(file).cloned().unwrap_or_default(), number);
        } else if !line.starts_with(['\t', ' ', '.']) && trimmed.ends_with(':') {
            function = trimmed.trim_end_matches(':').to_string();
            defined.insert(function.clone());
        } else if first == "#APP" {
            return Err(format!(
                "{prefix}: inline assembly in {function}: its accesses would go unseen"
            ));
        } else if first.starts_with("rep")
            || ["movs", "stos", "cmps", "scas", "lods"]
                .iter()
                .any(|s| first.starts_with(s) && first.len() <= 5)
        {
            return Err(format!(
                "{prefix}: a string instruction `{trimmed}` in {function}: its accesses would go unseen"
            ));
        } else if first == "jmp" {
            let target = words.next().unwrap_or("");
            if !target.starts_with(".L") {
                return Err(format!("{prefix}: a tail jump `{trimmed}` in {function}"));
            }
        } else if first == "call" {
            let target = words.next().unwrap_or("").trim_end_matches("@PLT");
            let target = target.strip_prefix('*').unwrap_or(target);
            if target.starts_with("__tsan_") && target != "__tsan_init"
                || SHIM_CALLS.contains(&target)
            {
                writeln!(out, ".Lkmap_site_{}:", sites.len()).unwrap();
                let text = files
                    .iter()
                    .find(|(name, _)| loc.0.ends_with(*name))
                    .and_then(|(_, text)| text.lines().nth(loc.1.saturating_sub(1)))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                sites.push(Site {
                    file: loc.0.clone(),
                    line: loc.1,
                    function: function
                        .trim_start_matches(&format!("{prefix}_"))
                        .to_string(),
                    text,
                });
            } else if target != "__tsan_init" {
                others.push((target.to_string(), function.clone()));
            }
        }
    }
    // Any other call must be of the unit's own code (a function GCC did not inline).
    if let Some((target, function)) = others.iter().find(|(t, _)| !defined.contains(t)) {
        return Err(format!(
            "{prefix}: a call of `{target}` in {function}, which neither the unit nor the shim defines"
        ));
    }
    writeln!(out, "\t.section .data.rel.ro.{prefix}_sites,\"aw\"\n\t.balign 8\n\t.globl {prefix}_sites\n{prefix}_sites:").unwrap();
    for n in 0..sites.len() {
        writeln!(out, "\t.quad .Lkmap_site_{n}").unwrap();
    }
    Ok((out, sites))
}

/// The Rust for one layout: its entry points and its sites.
fn emit_layout(
    layouts: &mut String,
    externs: &mut String,
    prefix: &str,
    cells: usize,
    guard: bool,
    force: bool,
    sites: &[Site],
) {
    let signatures = [
        (
            "map_page",
            "(pfn: core::ffi::c_ulong) -> *mut core::ffi::c_void",
        ),
        (
            "map_pfn",
            "(pfn: core::ffi::c_ulong) -> *mut core::ffi::c_void",
        ),
        (
            "map_atomic",
            "(pfn: core::ffi::c_ulong) -> *mut core::ffi::c_void",
        ),
        ("unmap", "(addr: *const core::ffi::c_void)"),
        ("unmap_atomic", "(addr: *const core::ffi::c_void)"),
        ("sched_out", "()"),
        ("sched_in", "()"),
        ("fork", "(child: *mut core::ffi::c_void)"),
        ("boot", "()"),
        ("kmap_pte_variable", "() -> *const core::ffi::c_void"),
    ];
    debug_assert_eq!(signatures.len(), ENTRY_NAMES.len());
    for (name, signature) in signatures {
        writeln!(externs, "    fn {prefix}_{name}{signature};").unwrap();
    }
    writeln!(
        externs,
        "    static {prefix}_sites: [usize; {}];",
        sites.len()
    )
    .unwrap();
    writeln!(
        layouts,
        "    Layout {{ cells: {cells}, guard: {guard}, force: {force}, \
         entries: Entries {{ map_page: {prefix}_map_page, map_pfn: {prefix}_map_pfn, \
         map_atomic: {prefix}_map_atomic, unmap: {prefix}_unmap, unmap_atomic: {prefix}_unmap_atomic, \
         sched_out: {prefix}_sched_out, sched_in: {prefix}_sched_in, fork: {prefix}_fork, \
         boot: {prefix}_boot, kmap_pte_variable: {prefix}_kmap_pte_variable }}, \
         addresses: &raw const {prefix}_sites as *const usize, sites: &["
    )
    .unwrap();
    for site in sites {
        writeln!(
            layouts,
            "        Site {{ file: {:?}, line: {}, function: {:?}, text: {:?} }},",
            site.file, site.line, site.function, site.text
        )
        .unwrap();
    }
    layouts.push_str("    ] },\n");
}
