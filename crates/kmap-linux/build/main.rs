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

mod asm;
mod edits;
mod source;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

use asm::{emit_layout, label_sites};
use source::{cut, find_source, read_files, version};

/// The cells per stack the simulator supports (`kmap_sim::SUPPORTED_CELLS`: lib.rs checks that
/// they are the same, from the `CELLS` this writes into linux.rs).
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
    "kmap_switch_temporary",
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
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=c");
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
                 /// The layouts compiled.\npub(crate) static LAYOUTS: &[Layout] = &[];\n\
                 /// The cells per stack the build knows.\npub(crate) const CELLS: &[usize] = &{CELLS:?};\n\
                 /// The tree the files were read from.\npub(crate) const TREE: &str = \"\";\n\
                 /// The edits that did not apply.\npub(crate) static EDIT_FAILURES: &[(&str, &str)] = &[];\n\
                 /// The edits made.\npub(crate) static EDITS: &[(&str, &str)] = &[];\n"
            )
        }
    };
    fs::write(out.join("linux.rs"), generated).expect("write linux.rs");
}

/// Find, extract, compile; the Rust that names what was built.
fn build(out: &Path) -> Result<String, String> {
    let source = find_source()?;
    let tree = out.join("tree");
    let (root, mut files) = read_files(&source, &tree)?;
    let version = version(&files["Makefile"])?;
    let unit = cut(&files)?;
    files.insert("c/switch_temporary.c", SWITCH_TEMPORARY.to_string());
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
         /// Linux's version.\npub(crate) const VERSION: &str = {version:?};\n\
         /// The cells per stack the build knows.\npub(crate) const CELLS: &[usize] = &{CELLS:?};\n\
         /// The tree the files were read from.\npub(crate) const TREE: &str = {:?};",
        source.display().to_string(),
        root.display().to_string()
    )
    .unwrap();
    let mut layouts =
        String::from("/// The layouts compiled.\npub(crate) static LAYOUTS: &[Layout] = &[\n");
    let mut externs = String::from("unsafe extern \"C-unwind\" {\n");
    let mut made = String::from(
        "/// The edits made (name, what).\npub(crate) static EDITS: &[(&str, &str)] = &[\n",
    );
    let mut failures = String::from(
        "/// The edits that did not apply.\npub(crate) static EDIT_FAILURES: &[(&str, &str)] = &[\n",
    );
    // Every layout unedited; each edit for the layouts without guard cells or force-map.
    let mut units = Vec::new();
    for &cells in CELLS {
        for guard in [false, true] {
            for force in [false, true] {
                units.push((cells, guard, force, None, unit.clone()));
            }
        }
    }
    for (n, edit) in edits::EDITS.iter().enumerate() {
        match edits::apply(&unit, edit) {
            Ok(edited) => {
                writeln!(made, "    ({:?}, {:?}),", edit.name, edit.what).unwrap();
                for &cells in CELLS {
                    units.push((cells, false, false, Some((n, edit)), edited.clone()));
                }
            }
            Err(why) => {
                println!(
                    "cargo:warning=kmap-linux: the edit {} does not apply: {why}",
                    edit.name
                );
                writeln!(failures, "    ({:?}, {why:?}),", edit.name).unwrap();
            }
        }
    }
    // Compiled on every core: each unit is its own gcc.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut compiled: Vec<Option<Compiled>> = (0..units.len()).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut compiled);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((cells, guard, force, edit, text)) = units.get(i) else {
                        break;
                    };
                    let prefix = prefix(*cells, *guard, *force, edit.map(|(n, _)| n));
                    let result = compile(&gcc, &c_dir, out, text, &prefix, *cells, *guard, *force)
                        .and_then(|asm| label_sites(&asm, &prefix, &files));
                    results.lock().unwrap()[i] = Some(result);
                }
            });
        }
    });
    for ((cells, guard, force, edit, _), result) in units.iter().zip(compiled) {
        let (asm, sites) = result.expect("every unit compiled")?;
        let prefix = prefix(*cells, *guard, *force, edit.map(|(n, _)| n));
        let path = out.join(format!("{prefix}.s"));
        fs::write(&path, asm).map_err(|e| format!("{}: {e}", path.display()))?;
        build.file(&path);
        let layout = asm::LayoutOf {
            prefix: &prefix,
            cells: *cells,
            guard: *guard,
            force: *force,
            edit: edit.map(|(_, e)| (e.name, e.any_order)),
        };
        emit_layout(&mut layouts, &mut externs, &layout, &sites);
    }
    build.compile("kmap_linux_c");
    externs.push_str("}\n");
    layouts.push_str("];\n");
    failures.push_str("];\n");
    made.push_str("];\n");
    rust.push_str(&made);
    rust.push_str(&externs);
    rust.push_str(&layouts);
    rust.push_str(&failures);
    Ok(rust)
}

/// A unit compiled: its labelled assembly and its sites, or why not.
type Compiled = Result<(String, Vec<asm::Site>), String>;

/// The symbol prefix of a unit: `kl_CELLS_GUARD_FORCE`, and `_EDIT` for an edited one.
fn prefix(cells: usize, guard: bool, force: bool, edit: Option<usize>) -> String {
    let mut prefix = format!("kl_{cells}_{}_{}", guard as u8, force as u8);
    if let Some(n) = edit {
        write!(prefix, "_e{n}").unwrap();
    }
    prefix
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

/// The 2020 RFC's one-step switch, written against the extracted code.
const SWITCH_TEMPORARY: &str = include_str!("../c/switch_temporary.c");

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
void ENTRY(switch_temporary)(struct task_struct *prev, struct task_struct *next)
{
	kmap_switch_temporary(prev, next);
}
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
    "switch_temporary",
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
    text.push_str("#line 1 \"c/switch_temporary.c\"\n");
    text.push_str(SWITCH_TEMPORARY);
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
