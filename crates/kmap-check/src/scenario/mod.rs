//! Scenario files: a machine, bounds, the programs of the tasks and handlers, and the verdict
//! expected. The machine's settings, the bounds and the operations are the simulator's own
//! types, read by serde; the configuration is validated once ([`Config::validate`]); every
//! error names the file, the line and the field.

mod document;

use std::fmt;
use std::path::Path;

use kmap::{CpuId, Frame};
use kmap_sim::{Alphabet, Api, Bounds, Config, ConfigError, Op, Program, Settings, Task, Verdict};
use serde::Deserialize;
use toml::Spanned;

use self::document::Document;

/// A scenario ready to explore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Its name (the file's stem unless it says otherwise).
    pub name: String,
    /// Where it came from: a path, or `built-in NAME`.
    pub source: String,
    /// Machine, bounds and programs.
    pub config: Config,
    /// The verdict the scenario expects of the crate's code.
    pub expect: Verdict,
    /// The verdict it expects of Linux's code (`[expect] linux`), where that differs: where
    /// the crate refuses a misuse before any state changes, Linux BUGs or warns.
    pub expect_linux: Verdict,
    /// Things worth knowing about how the file was read (old names of settings, say).
    pub notes: Vec<String>,
}

impl Scenario {
    /// The verdict expected of the implementation the scenario runs.
    pub fn expected(&self) -> Verdict {
        match self.config.machine.implementation {
            kmap_sim::Implementation::Crate => self.expect,
            kmap_sim::Implementation::Linux => self.expect_linux,
        }
    }
}

/// What is wrong with a scenario.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The file cannot be read.
    #[error("cannot read it: {reason}")]
    Read {
        /// Why.
        reason: String,
    },
    /// No built-in scenario has the name, and no file either.
    #[error("no such built-in scenario or file (`kmap check --list` lists the built-ins)")]
    NotFound,
    /// It is not TOML, or a value has the wrong type, or a field is unknown or missing.
    #[error("{message}")]
    Toml {
        /// The parser's message.
        message: String,
    },
    /// An old name that cannot be read as its new one.
    #[error("{message}")]
    OldName {
        /// Why.
        message: String,
    },
    /// An operation cannot be read.
    #[error(transparent)]
    Op(#[from] kmap_sim::OpError),
    /// The configuration cannot run.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A task has neither `ops` nor `any = true`.
    #[error("missing field `ops`")]
    MissingOps,
    /// A task with `any = true` has `ops` too.
    #[error("a task with `any = true` runs an endless program: it has no `ops`")]
    OpsWithAny,
    /// A task without `any = true` has a `depth`.
    #[error("`depth` is for a task with `any = true`")]
    DepthWithoutAny,
    /// An endless program's depth outside 1 to the cells of a stack.
    #[error("{depth}: must be 1 to the cells per task ({cells})")]
    Depth {
        /// What was given.
        depth: usize,
        /// The cells per stack.
        cells: usize,
    },
    /// No highmem frame is left for an endless program's pages.
    #[error(
        "no highmem frame left for the pages of task {task}: the `any` tasks take the highest \
         frames, which the programs must not name"
    )]
    NoPagesLeft {
        /// The task.
        task: String,
    },
    /// No lowmem frame is left for an endless program's lowmem page.
    #[error(
        "no lowmem frame left for the lowmem page of task {task}: the `any` tasks with \
         `lowmem = true` take the highest frames below `machine.lowmem` ({lowmem}), which the \
         programs must not name"
    )]
    NoLowmemLeft {
        /// The task.
        task: String,
        /// The machine's lowmem frames.
        lowmem: u64,
    },
    /// A `scope:` name that is not a scope.
    #[error("{0}")]
    Scope(#[from] crate::scope::ScopeError),
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
    pub problem: Box<Problem>,
}

impl ScenarioError {
    /// `problem` in `file`, with no place in it.
    pub fn in_file(file: impl Into<String>, problem: Problem) -> Self {
        ScenarioError {
            file: file.into(),
            line: None,
            field: None,
            problem: Box::new(problem),
        }
    }
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
        write!(f, "{}", self.problem)
    }
}

impl std::error::Error for ScenarioError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    #[serde(default)]
    machine: Settings,
    #[serde(default = "Bounds::scenario")]
    bounds: Bounds,
    #[serde(rename = "task")]
    tasks: Vec<TaskSection>,
    irq: Option<HandlerSection>,
    nmi: Option<HandlerSection>,
    #[serde(default)]
    expect: ExpectSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskSection {
    name: String,
    #[serde(default)]
    cpu: u32,
    /// Bound to its CPU (no load balancing, no `migrate`).
    #[serde(default)]
    pinned: bool,
    ops: Option<Vec<Spanned<String>>>,
    /// An endless nondeterministic program (for `kmap prove`) instead of `ops`.
    #[serde(default)]
    any: bool,
    /// How many pages the nondeterministic program maps at most.
    depth: Option<usize>,
    /// The nondeterministic program may also map through kmap_atomic.
    #[serde(default)]
    atomic: bool,
    /// The nondeterministic program may also write through its most recent mapping.
    #[serde(default)]
    write: bool,
    /// The nondeterministic program may also disable and enable interrupts.
    #[serde(default)]
    irq_off: bool,
    /// The nondeterministic program may also sleep.
    #[serde(default)]
    sleep: bool,
    /// The nondeterministic program also maps a lowmem page of its own.
    #[serde(default)]
    lowmem: bool,
    /// The crate's API the task maps through (`raw`, the default, or `guard`).
    #[serde(default)]
    api: Api,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerSection {
    ops: Vec<Spanned<String>>,
    /// The crate's API the handler maps through (`raw`, the default, or `guard`).
    #[serde(default)]
    api: Api,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSection {
    #[serde(default = "pass")]
    verdict: Verdict,
    #[serde(default)]
    strict: bool,
    /// Linux's verdict, where it is not `verdict`.
    linux: Option<Verdict>,
}

fn pass() -> Verdict {
    Verdict::Pass
}

impl Default for ExpectSection {
    fn default() -> Self {
        ExpectSection {
            verdict: Verdict::Pass,
            strict: false,
            linux: None,
        }
    }
}

/// Read the scenario in the file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ScenarioError::in_file(
            file.clone(),
            Problem::Read {
                reason: e.to_string(),
            },
        )
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse(&file, &stem, &text)
}

/// Parse a scenario; `file` names it in errors, `default_name` is its name if it gives none.
pub fn parse(file: &str, default_name: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let toml_error = |document: Option<&Document<'_>>, e: toml::de::Error| {
        let span = e.span();
        let (line, field) = match (document, span) {
            (Some(d), Some(span)) => (Some(d.line(span.start)), d.path_at(span.start)),
            (None, Some(span)) => (Some(text[..span.start].matches('\n').count() + 1), None),
            _ => (None, None),
        };
        ScenarioError {
            file: file.into(),
            line,
            field,
            problem: Box::new(Problem::Toml {
                message: e.message().to_string(),
            }),
        }
    };
    let mut document = Document::parse(text).map_err(|e| toml_error(None, e))?;
    let notes = document.read_old_names().map_err(|e| ScenarioError {
        file: file.into(),
        line: Some(document.line(e.span.start)),
        field: Some(e.field),
        problem: Box::new(Problem::OldName { message: e.message }),
    })?;
    let parsed =
        File::deserialize(document.deserializer()).map_err(|e| toml_error(Some(&document), e))?;
    // A problem at `path` in the file.
    let at = |path: String, problem: Problem| ScenarioError {
        file: file.into(),
        line: document
            .span_of(&path)
            .map(|span| document.line(span.start)),
        field: Some(path),
        problem: Box::new(problem),
    };
    // Each operation read on its own, so that an error names its element.
    let ops = |list: &[Spanned<String>], field: &str| -> Result<Vec<Op>, ScenarioError> {
        list.iter()
            .enumerate()
            .map(|(i, text)| {
                text.get_ref().parse::<Op>().map_err(|e| ScenarioError {
                    file: file.into(),
                    line: Some(document.line(text.span().start)),
                    field: Some(format!("{field}[{i}]")),
                    problem: Box::new(Problem::Op(e)),
                })
            })
            .collect()
    };
    let mut machine = parsed.machine;
    machine.strict = parsed.expect.strict;
    let mut tasks = Vec::new();
    for (i, task) in parsed.tasks.iter().enumerate() {
        let depth = match (task.depth, task.any) {
            (Some(_), false) => {
                return Err(at(format!("task[{i}].depth"), Problem::DepthWithoutAny));
            }
            (Some(depth), true) if !(1..=machine.cells).contains(&depth) => {
                return Err(at(
                    format!("task[{i}].depth"),
                    Problem::Depth {
                        depth,
                        cells: machine.cells,
                    },
                ));
            }
            (depth, _) => depth.unwrap_or(1),
        };
        let ops = match (&task.ops, task.any) {
            (Some(_), true) => return Err(at(format!("task[{i}].ops"), Problem::OpsWithAny)),
            (Some(list), false) => ops(list, &format!("task[{i}].ops"))?,
            (None, true) => Vec::new(),
            (None, false) => {
                return Err(ScenarioError {
                    file: file.into(),
                    line: document.header_line("[[task]]", i),
                    field: None,
                    problem: Box::new(Problem::MissingOps),
                });
            }
        };
        tasks.push(Task {
            name: task.name.clone(),
            cpu: CpuId(task.cpu),
            pinned: task.pinned,
            alphabet: Alphabet {
                atomic: task.atomic,
                write: task.write,
                irq_off: task.irq_off,
                sleep: task.sleep,
                lowmem: task.lowmem,
            },
            api: task.api,
            ops,
            any: if task.any {
                vec![Frame::new(0); depth + usize::from(task.lowmem)]
            } else {
                Vec::new()
            },
        });
    }
    let mut program = Program {
        tasks,
        irq: match &parsed.irq {
            Some(handler) => ops(&handler.ops, "irq.ops")?,
            None => Vec::new(),
        },
        nmi: match &parsed.nmi {
            Some(handler) => ops(&handler.ops, "nmi.ops")?,
            None => Vec::new(),
        },
        irq_api: parsed.irq.as_ref().map_or(Api::Raw, |h| h.api),
        nmi_api: parsed.nmi.as_ref().map_or(Api::Raw, |h| h.api),
    };
    let config_at = |e: ConfigError| at(e.field().to_string(), Problem::Config(e));
    if program.tasks.is_empty() {
        return Err(config_at(ConfigError::NoTask));
    }
    // The machine and the fixed programs first, so that a frame out of range is named as the
    // file names it before the endless programs take the highest frames.
    machine.validate().map_err(|e| config_at(e.into()))?;
    assign_pages(&mut program, &machine).map_err(|problem| ScenarioError {
        file: file.into(),
        line: None,
        field: Some("task".into()),
        problem: Box::new(problem),
    })?;
    let config = Config {
        machine,
        bounds: parsed.bounds,
        program,
    };
    config.validate().map_err(config_at)?;
    Ok(Scenario {
        name: parsed.name.unwrap_or_else(|| default_name.into()),
        source: file.into(),
        config,
        expect: parsed.expect.verdict,
        expect_linux: parsed.expect.linux.unwrap_or(parsed.expect.verdict),
        notes,
    })
}

/// Give the nondeterministic tasks their pages: the highest frames of the machine, one per
/// depth, in task order, none of them named by an operation of the scenario.
fn assign_pages(program: &mut Program, machine: &Settings) -> Result<(), Problem> {
    let named: Vec<Frame> = program
        .tasks
        .iter()
        .flat_map(|t| t.ops.iter())
        .chain(program.irq.iter())
        .chain(program.nmi.iter())
        .filter_map(|op| op.frame())
        .collect();
    let mut next = machine.frames;
    let mut next_low = machine.lowmem;
    for task in program.tasks.iter_mut().filter(|t| t.is_any()) {
        let highmem = task.any.len() - usize::from(task.alphabet.lowmem);
        for (at, page) in task.any.iter_mut().enumerate() {
            let high = at < highmem;
            let (next, floor) = if high {
                (&mut next, machine.lowmem)
            } else {
                // The lowmem page, from the top of lowmem down.
                (&mut next_low, 0)
            };
            *next = next
                .checked_sub(1)
                .filter(|&f| f >= floor && !named.contains(&Frame::new(f)))
                .ok_or_else(|| {
                    let task = task.name.clone();
                    if high {
                        Problem::NoPagesLeft { task }
                    } else {
                        Problem::NoLowmemLeft {
                            task,
                            lowmem: machine.lowmem,
                        }
                    }
                })?;
            *page = Frame::new(*next);
        }
    }
    Ok(())
}
