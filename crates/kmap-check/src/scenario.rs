//! Scenario files: a machine, bounds, the programs of the tasks and handlers, and the verdict
//! expected. Every error names the file, the line and the field.

use std::fmt;
use std::path::Path;

use kmap_sim::{
    Bounds, Config, MachineConfig, Mutation, Op, Program, Protocol, Release, Task, Verdict,
};
use serde::Deserialize;
use toml::Spanned;

/// A scenario ready to explore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Its name (the file's stem unless it says otherwise).
    pub name: String,
    /// Where it came from: a path, or `built-in`.
    pub source: String,
    /// Machine, bounds and programs.
    pub config: Config,
    /// The verdict the scenario expects.
    pub expect: Verdict,
    /// Things worth knowing about how the file was read (old names of settings, say).
    pub notes: Vec<String>,
}

/// A scenario that cannot be used, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file (or built-in name).
    pub file: String,
    /// The line, from 1, when known.
    pub line: Option<usize>,
    /// The field, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    #[serde(default)]
    machine: MachineSection,
    #[serde(default)]
    bounds: BoundsSection,
    #[serde(rename = "task")]
    tasks: Vec<TaskSection>,
    irq: Option<HandlerSection>,
    nmi: Option<HandlerSection>,
    #[serde(default)]
    expect: ExpectSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MachineSection {
    cpus: Spanned<usize>,
    frames: Spanned<u64>,
    lowmem: Spanned<u64>,
    slots: Spanned<usize>,
    switch: Spanned<String>,
    debug_guards: bool,
    force_map: bool,
    release: Spanned<String>,
    tlb: bool,
    bug_on: bool,
    mutation: Option<Spanned<String>>,
}

impl Default for MachineSection {
    fn default() -> Self {
        let m = MachineConfig::default();
        MachineSection {
            cpus: Spanned::new(0..0, m.cpus),
            frames: Spanned::new(0..0, m.frames),
            lowmem: Spanned::new(0..0, m.lowmem),
            slots: Spanned::new(0..0, m.cells),
            switch: Spanned::new(0..0, m.protocol.name().into()),
            debug_guards: m.guard_cells,
            force_map: m.force_map,
            release: Spanned::new(0..0, m.release.name().into()),
            tlb: m.tlb,
            bug_on: true,
            mutation: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BoundsSection {
    preemptions: u32,
    irq_depth: Option<Spanned<u32>>,
    nmi_depth: Option<Spanned<u32>>,
    /// The old name of `irq_depth`.
    irqs: Option<Spanned<u32>>,
    /// The old name of `nmi_depth`.
    nmis: Option<Spanned<u32>>,
    cpu_switches: u32,
    lasting_handlers: u32,
}

impl Default for BoundsSection {
    fn default() -> Self {
        BoundsSection {
            preemptions: 2,
            irq_depth: None,
            nmi_depth: None,
            irqs: None,
            nmis: None,
            cpu_switches: 2,
            lasting_handlers: 1,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskSection {
    name: String,
    #[serde(default = "cpu_zero")]
    cpu: Spanned<usize>,
    ops: Option<Vec<Spanned<String>>>,
    /// An endless nondeterministic program (for `kmap prove`) instead of `ops`.
    #[serde(default)]
    any: bool,
    /// How many pages the nondeterministic program maps at most.
    depth: Option<Spanned<usize>>,
}

fn cpu_zero() -> Spanned<usize> {
    Spanned::new(0..0, 0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerSection {
    ops: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSection {
    verdict: Spanned<String>,
    #[serde(default)]
    strict: bool,
}

impl Default for ExpectSection {
    fn default() -> Self {
        ExpectSection {
            verdict: Spanned::new(0..0, "pass".into()),
            strict: false,
        }
    }
}

/// Read the scenario in the file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: None,
        field: None,
        message: format!("cannot read it: {e}"),
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse(&file, &stem, &text)
}

/// Parse a scenario; `file` names it in errors, `default_name` is its name if it gives none.
pub fn parse(file: &str, default_name: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let at = |span: std::ops::Range<usize>, field: Option<String>, message: String| {
        let (line, key) = locate(text, span.start);
        ScenarioError {
            file: file.into(),
            line: Some(line),
            field: field.or(key),
            message,
        }
    };
    let parsed: File = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => at(span, None, e.message().to_string()),
        None => ScenarioError {
            file: file.into(),
            line: None,
            field: None,
            message: e.message().to_string(),
        },
    })?;

    let m = &parsed.machine;
    let protocol = Protocol::from_name(m.switch.get_ref()).ok_or_else(|| {
        at(
            m.switch.span(),
            Some("machine.switch".into()),
            format!(
                "`{}` is not a switch protocol (split, rfc-v1, swap-after-current)",
                m.switch.get_ref()
            ),
        )
    })?;
    let release = Release::from_name(m.release.get_ref()).ok_or_else(|| {
        at(
            m.release.span(),
            Some("machine.release".into()),
            format!(
                "`{}` is not a release order (lifo, any)",
                m.release.get_ref()
            ),
        )
    })?;
    let mutation = match &m.mutation {
        None => None,
        Some(name) => Some(Mutation::from_name(name.get_ref()).ok_or_else(|| {
            at(
                name.span(),
                Some("machine.mutation".into()),
                format!(
                    "`{}` is not a machine mutation (drop-invalidations, no-bug-on, no-sched-out)",
                    name.get_ref()
                ),
            )
        })?),
    };
    let mutation = match (mutation, m.bug_on) {
        (None, false) => Some(Mutation::NoBugOn),
        (Some(other), false) if other != Mutation::NoBugOn => {
            return Err(ScenarioError {
                file: file.into(),
                line: None,
                field: Some("machine.bug_on".into()),
                message: format!(
                    "`bug_on = false` is the mutation no-bug-on; a scenario has one mutation, \
                     and this one names {other}"
                ),
            });
        }
        (mutation, _) => mutation,
    };
    let machine = MachineConfig {
        cpus: *m.cpus.get_ref(),
        frames: *m.frames.get_ref(),
        lowmem: *m.lowmem.get_ref(),
        cells: *m.slots.get_ref(),
        protocol,
        guard_cells: m.debug_guards,
        force_map: m.force_map,
        release,
        tlb: m.tlb,
        mutation,
    };
    let check = |ok: bool,
                 value: &dyn fmt::Display,
                 span: std::ops::Range<usize>,
                 field: &str,
                 rule: String| {
        if ok {
            Ok(())
        } else {
            Err(at(span, Some(field.into()), format!("{value}: {rule}")))
        }
    };
    check(
        (1..=8).contains(&machine.cpus),
        &machine.cpus,
        m.cpus.span(),
        "machine.cpus",
        "must be 1 to 8".into(),
    )?;
    check(
        kmap_sim::SUPPORTED_CELLS.contains(&machine.cells),
        &machine.cells,
        m.slots.span(),
        "machine.slots",
        format!("must be one of {:?}", kmap_sim::SUPPORTED_CELLS),
    )?;
    check(
        machine.frames >= 1 && machine.frames <= 1 << 20,
        &machine.frames,
        m.frames.span(),
        "machine.frames",
        "must be 1 to 1048576".into(),
    )?;
    check(
        machine.lowmem <= machine.frames,
        &machine.lowmem,
        m.lowmem.span(),
        "machine.lowmem",
        format!("must not be more than frames ({})", machine.frames),
    )?;

    let ops = |list: &[Spanned<String>],
               field: &str,
               in_handler: bool|
     -> Result<Vec<Op>, ScenarioError> {
        list.iter()
            .enumerate()
            .map(|(i, text)| {
                let field = format!("{field}[{i}]");
                let op = parse_op(text.get_ref())
                    .map_err(|e| at(text.span(), Some(field.clone()), e))?;
                if let Some(frame) = op.frame()
                    && frame >= machine.frames
                {
                    return Err(at(
                        text.span(),
                        Some(field),
                        format!(
                            "frame {frame} is out of range: the machine has {} frames",
                            machine.frames
                        ),
                    ));
                }
                if let Op::Migrate(cpu) = op
                    && cpu >= machine.cpus
                {
                    return Err(at(
                        text.span(),
                        Some(field),
                        format!("CPU {cpu}: the machine has {}", machine.cpus),
                    ));
                }
                if in_handler && op.task_only() {
                    return Err(at(
                        text.span(),
                        Some(field),
                        format!("`{op}` cannot run in a handler"),
                    ));
                }
                Ok(op)
            })
            .collect()
    };
    if parsed.tasks.is_empty() {
        return Err(ScenarioError {
            file: file.into(),
            line: None,
            field: Some("task".into()),
            message: "at least one [[task]] is needed".into(),
        });
    }
    let mut tasks = Vec::new();
    for (i, task) in parsed.tasks.iter().enumerate() {
        let cpu = *task.cpu.get_ref();
        check(
            cpu < machine.cpus,
            &cpu,
            task.cpu.span(),
            &format!("task[{i}].cpu"),
            format!("the machine has {} CPU(s)", machine.cpus),
        )?;
        let depth = task.depth.as_ref().map_or(1, |d| *d.get_ref());
        let field = format!("task[{i}].depth");
        match (&task.depth, task.any) {
            (Some(d), false) => {
                return Err(at(
                    d.span(),
                    Some(field),
                    "`depth` is for a task with `any = true`".into(),
                ));
            }
            (Some(d), true) => check(
                (1..=machine.cells).contains(&depth),
                &depth,
                d.span(),
                &field,
                format!("must be 1 to the slots per task ({})", machine.cells),
            )?,
            _ => {}
        }
        let task_ops = match (&task.ops, task.any) {
            (Some(list), true) => {
                let span = list.first().map_or(0..0, |op| op.span());
                return Err(at(
                    span,
                    Some(format!("task[{i}].ops")),
                    "a task with `any = true` runs an endless program: it has no `ops`".into(),
                ));
            }
            (Some(list), false) => ops(list, &format!("task[{i}].ops"), false)?,
            (None, true) => Vec::new(),
            (None, false) => {
                return Err(ScenarioError {
                    file: file.into(),
                    line: nth_table_line(text, "[[task]]", i),
                    field: None,
                    message: "missing field `ops`".into(),
                });
            }
        };
        tasks.push(Task {
            name: task.name.clone(),
            cpu,
            ops: task_ops,
            any: if task.any { vec![0; depth] } else { Vec::new() },
        });
    }
    assign_pages(&mut tasks, &machine, &parsed).map_err(|message| ScenarioError {
        file: file.into(),
        line: None,
        field: Some("task".into()),
        message,
    })?;
    let irq = match &parsed.irq {
        Some(h) => ops(&h.ops, "irq.ops", true)?,
        None => Vec::new(),
    };
    let nmi = match &parsed.nmi {
        Some(h) => ops(&h.ops, "nmi.ops", true)?,
        None => Vec::new(),
    };
    let verdict = &parsed.expect.verdict;
    let expect = match verdict.get_ref().as_str() {
        "pass" => Verdict::Pass,
        "violation" => Verdict::Violation,
        "refused" => Verdict::Refused,
        other => {
            return Err(at(
                verdict.span(),
                Some("expect.verdict".into()),
                format!("`{other}` is not a verdict (pass, violation, refused)"),
            ));
        }
    };
    let b = &parsed.bounds;
    let mut notes = Vec::new();
    let mut depth = |new: &Option<Spanned<u32>>,
                     old: &Option<Spanned<u32>>,
                     name: &str,
                     old_name: &str|
     -> Result<u32, ScenarioError> {
        let field = format!("bounds.{name}");
        match (new, old) {
            (Some(_), Some(old)) => Err(at(
                old.span(),
                Some(format!("bounds.{old_name}")),
                format!("`{old_name}` is the old name of `{name}`: give one of them"),
            )),
            (Some(value), None) => {
                check(
                    *value.get_ref() <= 1,
                    value.get_ref(),
                    value.span(),
                    &field,
                    "must be 0 or 1: a handler runs with interrupts off, so nothing of its \
                     kind nests in it"
                        .into(),
                )?;
                Ok(*value.get_ref())
            }
            (None, Some(value)) => {
                let depth = (*value.get_ref()).min(1);
                notes.push(format!(
                    "`{old_name} = {}` is read as `{name} = {depth}`: handlers are probed at \
                     every point, so the bound is how deep they nest (0 or 1), not how many arrive",
                    value.get_ref()
                ));
                Ok(depth)
            }
            (None, None) => Ok(1),
        }
    };
    let irq_depth = depth(&b.irq_depth, &b.irqs, "irq_depth", "irqs")?;
    let nmi_depth = depth(&b.nmi_depth, &b.nmis, "nmi_depth", "nmis")?;
    Ok(Scenario {
        name: parsed.name.unwrap_or_else(|| default_name.into()),
        source: file.into(),
        config: Config {
            machine,
            bounds: Bounds {
                preemptions: Some(b.preemptions),
                irq_depth: Some(irq_depth),
                nmi_depth: Some(nmi_depth),
                cpu_switches: Some(b.cpu_switches),
                lasting_handlers: Some(b.lasting_handlers),
            },
            program: Program { tasks, irq, nmi },
            strict: parsed.expect.strict,
        },
        expect,
        notes,
    })
}

/// Give the nondeterministic tasks their pages: the highest frames of the machine, one per
/// depth, in task order, none of them named by an operation of the scenario.
fn assign_pages(tasks: &mut [Task], machine: &MachineConfig, file: &File) -> Result<(), String> {
    let named: Vec<u64> = file
        .tasks
        .iter()
        .flat_map(|t| t.ops.iter().flatten())
        .chain(file.irq.iter().flat_map(|h| h.ops.iter()))
        .chain(file.nmi.iter().flat_map(|h| h.ops.iter()))
        .filter_map(|text| parse_op(text.get_ref()).ok()?.frame())
        .collect();
    let mut next = machine.frames;
    for task in tasks.iter_mut().filter(|t| t.is_any()) {
        for page in task.any.iter_mut() {
            next = next
                .checked_sub(1)
                .filter(|&f| f >= machine.lowmem && !named.contains(&f))
                .ok_or_else(|| {
                    format!(
                        "no highmem frame left for the pages of task {}: the `any` tasks take \
                         the highest frames, which the programs must not name",
                        task.name
                    )
                })?;
            *page = next;
        }
    }
    Ok(())
}

/// The line (from 1) of the `n`-th (from 0) table header `header`.
fn nth_table_line(text: &str, header: &str, n: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.trim() == header)
        .nth(n)
        .map(|(number, _)| number + 1)
}

/// One operation, as written in a scenario (`map 20`, `unmap`, `migrate 1`, …).
pub fn parse_op(text: &str) -> Result<Op, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let number = |what: &str| -> Result<u64, String> {
        match words.as_slice() {
            [_, n] => n
                .parse()
                .map_err(|_| format!("`{text}`: `{n}` is not a {what} number")),
            _ => Err(format!(
                "`{text}`: `{}` takes one {what} number",
                words.first().unwrap_or(&"")
            )),
        }
    };
    let bare = |op: Op| {
        if words.len() == 1 {
            Ok(op)
        } else {
            Err(format!("`{text}`: `{}` takes no argument", words[0]))
        }
    };
    match words.first().copied() {
        Some("map") => number("frame").map(Op::Map),
        Some("map_atomic") => number("frame").map(Op::MapAtomic),
        Some("map_pfn") => number("frame").map(Op::MapPfn),
        Some("unmap") if words.len() == 1 => Ok(Op::Unmap),
        Some("unmap") => number("frame").map(Op::UnmapFrame),
        Some("check") => bare(Op::Check),
        Some("write") => number("frame").map(Op::Write),
        Some("yield") => bare(Op::Yield),
        Some("sleep") => bare(Op::Sleep),
        Some("migrate") => number("CPU").map(|c| Op::Migrate(c as usize)),
        Some("fork") => bare(Op::Fork),
        Some("irq_off") => bare(Op::IrqOff),
        Some("irq_on") => bare(Op::IrqOn),
        Some("preempt_off") => bare(Op::PreemptOff),
        Some("preempt_on") => bare(Op::PreemptOn),
        _ => Err(format!(
            "unknown operation `{text}` (map F, map_atomic F, map_pfn F, unmap, unmap F, check, write F, \
             yield, sleep, migrate C, fork, irq_off, irq_on, preempt_off, preempt_on)"
        )),
    }
}

/// The line (from 1) of byte `offset`, and the key assigned on it, or on the line that opens
/// the array it continues (none for a table header).
fn locate(text: &str, offset: usize) -> (usize, Option<String>) {
    let offset = offset.min(text.len());
    let line = text[..offset].matches('\n').count() + 1;
    let lines: Vec<&str> = text.lines().take(line).collect();
    let key = lines.iter().rev().find_map(|l| {
        let trimmed = l.trim_start();
        if trimmed.starts_with('[') && !trimmed.starts_with("[\"") {
            return Some(None); // a table header: no key
        }
        let (key, _) = l.split_once('=')?;
        let key = key.trim();
        Some(
            (!key.is_empty() && !key.starts_with('#') && !key.contains('"'))
                .then(|| key.to_string()),
        )
    });
    (line, key.flatten())
}
