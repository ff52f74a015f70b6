//! The compiled assembly: a label after every call of a hook or of the shim, the sites'
//! table, and the Rust that names each layout's entry points and sites.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::{ENTRY_NAMES, SHIM_CALLS};

/// x86's string instructions in AT&T syntax (not `movsd`/`movss`, SSE moves): their accesses
/// go by no hook.
const STRING_INSTRUCTIONS: &[&str] = &[
    "movs", "movsb", "movsw", "movsl", "movsq", "stos", "stosb", "stosw", "stosl", "stosq", "cmps",
    "cmpsb", "cmpsw", "cmpsl", "cmpsq", "scas", "scasb", "scasw", "scasl", "scasq", "lods",
    "lodsb", "lodsw", "lodsl", "lodsq",
];

/// A site: a call of a hook or of the shim in the compiled code.
pub(crate) struct Site {
    file: String,
    line: usize,
    function: String,
    text: String,
}

/// Label the return address of every call of a hook or of the shim (`.Lkmap_site_N`), and
/// list them in a table `PREFIX_sites`. Refuses what the hooks would not see: inline
/// assembly, string instructions, and a tail jump out of the unit.
pub(crate) fn label_sites(
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
        } else if first.starts_with("rep") || STRING_INSTRUCTIONS.contains(&first) {
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

/// What [`emit_layout`] needs to know of a unit.
pub(crate) struct LayoutOf<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) cells: usize,
    pub(crate) guard: bool,
    pub(crate) force: bool,
    /// The edit's name, and whether it releases in any order.
    pub(crate) edit: Option<(&'static str, bool)>,
}

/// The Rust for one layout: its entry points and its sites.
pub(crate) fn emit_layout(
    layouts: &mut String,
    externs: &mut String,
    layout: &LayoutOf<'_>,
    sites: &[Site],
) {
    let LayoutOf {
        prefix,
        cells,
        guard,
        force,
        edit,
    } = *layout;
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
        (
            "switch_temporary",
            "(prev: *mut core::ffi::c_void, next: *mut core::ffi::c_void)",
        ),
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
    let entries: Vec<String> = ENTRY_NAMES
        .iter()
        .map(|name| format!("{name}: {prefix}_{name}"))
        .collect();
    let (edit, any_order) = match edit {
        Some((name, any_order)) => (format!("Some({name:?})"), any_order),
        None => ("None".into(), false),
    };
    writeln!(
        layouts,
        "    Layout {{ cells: {cells}, guard: {guard}, force: {force}, edit: {edit}, \
         any_order: {any_order}, entries: Entries {{ {} }}, \
         addresses: &raw const {prefix}_sites as *const usize, sites: &[",
        entries.join(", ")
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
