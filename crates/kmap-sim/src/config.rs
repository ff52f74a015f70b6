//! What a run is made of: the machine's [`Settings`], the [`Bounds`] on injected events, and
//! the [`Program`]; and the one check that they can run ([`Config::validate`]).

use std::fmt;

use kmap::{CpuId, Frame};
use serde::{Deserialize, Serialize};

use crate::program::{Api, Op, Program};
use crate::settings::{Settings, SettingsError};

/// Limits on what one execution may contain. `None` is unlimited.
///
/// Interrupts and NMIs are bounded by how deep they nest, not by how many arrive: the
/// explorer probes a handler at every arrival point, and a probe that leaves its CPU as it found
/// it amounts to no event at all. A handler that leaves a trace (a stale TLB entry, a slot it
/// overwrote) is a *lasting* handler: it is offered as a real event whose effects persist, and
/// those are bounded by count.
///
/// A scenario file reads them from `[bounds]`; a bound it leaves out takes its value in
/// [`Bounds::scenario`]. The command line changes them with `--preemptions N` and so on (old
/// names `--irqs`, `--nmis`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash, Serialize, Deserialize, clap::Args)]
#[serde(default = "Bounds::scenario", deny_unknown_fields)]
pub struct Bounds {
    /// Bound on preemptions (involuntary context switches) per execution.
    #[arg(long)]
    pub preemptions: Option<u32>,
    /// How deep interrupts nest: 0 (none) or 1 (an interrupt cannot nest in an interrupt:
    /// handlers run with interrupts off). Old name: irqs.
    #[arg(long, alias = "irqs")]
    pub irq_depth: Option<u32>,
    /// How deep NMIs nest: 0 or 1 (an NMI does not nest in an NMI). Old name: nmis.
    #[arg(long, alias = "nmis")]
    pub nmi_depth: Option<u32>,
    /// Bound on switches of the executing CPU (on machines with more than one) per execution.
    #[arg(long)]
    pub cpu_switches: Option<u32>,
    /// Bound on lasting handlers (handlers that leave a trace, run as real events) per
    /// execution.
    #[arg(long)]
    pub lasting_handlers: Option<u32>,
}

impl Bounds {
    /// No bound at all (a replay, a proof).
    pub const UNLIMITED: Bounds = Bounds {
        preemptions: None,
        irq_depth: None,
        nmi_depth: None,
        cpu_switches: None,
        lasting_handlers: None,
    };

    /// The bounds of a scenario file that sets none.
    pub fn scenario() -> Bounds {
        Bounds {
            preemptions: Some(2),
            irq_depth: Some(1),
            nmi_depth: Some(1),
            cpu_switches: Some(2),
            lasting_handlers: Some(1),
        }
    }
}

/// A complete description of a run: machine, bounds, program.
#[derive(Clone, PartialEq, Eq, Debug, Hash, Default)]
pub struct Config {
    /// The machine.
    pub machine: Settings,
    /// Limits on injected events.
    pub bounds: Bounds,
    /// The programs.
    pub program: Program,
}

/// A handler's program.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum HandlerKind {
    /// The interrupt handler.
    Irq,
    /// The NMI handler.
    Nmi,
}

impl fmt::Display for HandlerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandlerKind::Irq => "irq",
            HandlerKind::Nmi => "nmi",
        })
    }
}

/// Where in a configuration a problem is, named as a scenario file names it.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub enum Field {
    /// A setting of `[machine]`.
    Machine(String),
    /// A bound of `[bounds]`.
    Bounds(&'static str),
    /// The list of tasks.
    Tasks,
    /// A task's CPU.
    TaskCpu(usize),
    /// A task's program.
    TaskOps(usize),
    /// A task's endless program (`any`).
    TaskAny(usize),
    /// An addition to the alphabet of a task's endless program (`atomic`, `write`, `irq_off`,
    /// `sleep`): the task's position and the key.
    TaskAlphabet(usize, &'static str),
    /// An operation of a task's program.
    TaskOp(usize, usize),
    /// An operation of a handler's program.
    HandlerOp(HandlerKind, usize),
    /// A task's API.
    TaskApi(usize),
    /// A handler's API.
    HandlerApi(HandlerKind),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Machine(key) => write!(f, "machine.{key}"),
            Field::Bounds(key) => write!(f, "bounds.{key}"),
            Field::Tasks => f.write_str("task"),
            Field::TaskCpu(task) => write!(f, "task[{task}].cpu"),
            Field::TaskOps(task) => write!(f, "task[{task}].ops"),
            Field::TaskAny(task) => write!(f, "task[{task}].any"),
            Field::TaskAlphabet(task, key) => write!(f, "task[{task}].{key}"),
            Field::TaskOp(task, op) => write!(f, "task[{task}].ops[{op}]"),
            Field::HandlerOp(kind, op) => write!(f, "{kind}.ops[{op}]"),
            Field::TaskApi(task) => write!(f, "task[{task}].api"),
            Field::HandlerApi(kind) => write!(f, "{kind}.api"),
        }
    }
}

/// Why a configuration cannot run.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ConfigError {
    /// A machine setting cannot run.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A nesting bound above 1.
    #[error(
        "{bound} must be 0 or 1, not {given}: a handler runs with interrupts off, so nothing of \
         its kind nests in it"
    )]
    NestingDepth {
        /// `irq_depth` or `nmi_depth`.
        bound: &'static str,
        /// What was given.
        given: u32,
    },
    /// There is no task.
    #[error("at least one task is needed")]
    NoTask,
    /// The implementation cannot run this machine.
    #[error("impl = \"{implementation}\": {reason}")]
    Implementation {
        /// The implementation.
        implementation: crate::settings::Implementation,
        /// Why.
        reason: String,
    },
    /// A task starts on a CPU the machine does not have.
    #[error("task {name}: cpu {} but the machine has {cpus} CPU(s)", cpu.0)]
    TaskCpu {
        /// The task's position.
        task: usize,
        /// Its name.
        name: String,
        /// The CPU it names.
        cpu: CpuId,
        /// The CPUs of the machine.
        cpus: usize,
    },
    /// A task has both a program and an endless one.
    #[error("task {name}: a task runs either ops or an endless program (any), not both")]
    OpsAndAny {
        /// The task's position.
        task: usize,
        /// Its name.
        name: String,
    },
    /// An addition to the alphabet of a task with no endless program.
    #[error("task {name}: {key} = true is for an endless program (any = true)")]
    AlphabetWithoutAny {
        /// The task's position.
        task: usize,
        /// Its name.
        name: String,
        /// The scenario key of the addition (`atomic`, `write`, `irq_off`, `sleep`).
        key: &'static str,
    },
    /// An endless program has more pages than its stack has cells.
    #[error(
        "task {name}: an endless program of {pages} pages in slots needs as many cells, and a stack has {cells}"
    )]
    AnyDepth {
        /// The task's position.
        task: usize,
        /// Its name.
        name: String,
        /// Its pages.
        pages: usize,
        /// The cells per stack.
        cells: usize,
    },
    /// An operation (or an endless program's page) names a frame the machine does not have.
    #[error("frame {} is out of range: the machine has {frames} frames", frame.pfn())]
    FrameOutOfRange {
        /// Where.
        at: Field,
        /// The frame.
        frame: Frame,
        /// The frames of the machine.
        frames: u64,
    },
    /// A `migrate` names a CPU the machine does not have.
    #[error("`{op}`: the machine has {cpus} CPU(s)")]
    MigrateCpu {
        /// Where.
        at: Field,
        /// The operation.
        op: Op,
        /// The CPUs of the machine.
        cpus: usize,
    },
    /// A task bound to its CPU asks to migrate.
    #[error("task {name}: `{op}` in a task pinned to its CPU")]
    PinnedMigrate {
        /// Where.
        at: Field,
        /// Its name.
        name: String,
        /// The operation.
        op: Op,
    },
    /// A handler runs an operation only a task may.
    #[error("`{op}` cannot run in a handler")]
    TaskOnly {
        /// Where.
        at: Field,
        /// The operation.
        op: Op,
    },
    /// An operation the program's API has not: `leak` in the raw API, `unmap F` in the safe
    /// one.
    #[error("`{op}` is not in the {api} API ({})", match api {
        Api::Raw => "only a guard of the safe API is leaked: api = \"guard\" or \"scope\"",
        Api::Guard => "a guard is released from the inside out: `unmap` drops the innermost",
        Api::Scope => "a Scope maps with kmap_local_page only",
    })]
    NotInApi {
        /// Where.
        at: Field,
        /// The operation.
        op: Op,
        /// The API.
        api: Api,
    },
    /// The scope API where it cannot run.
    #[error("api = \"scope\" {why}")]
    ScopeApi {
        /// Where.
        at: Field,
        /// Why not.
        why: &'static str,
    },
}

impl ConfigError {
    /// Where the problem is.
    pub fn field(&self) -> Field {
        match self {
            ConfigError::Settings(e) => Field::Machine(e.key().unwrap_or("").into()),
            ConfigError::NestingDepth { bound, .. } => Field::Bounds(bound),
            ConfigError::NoTask => Field::Tasks,
            ConfigError::Implementation { .. } => Field::Machine("impl".into()),
            ConfigError::TaskCpu { task, .. } => Field::TaskCpu(*task),
            ConfigError::OpsAndAny { task, .. } => Field::TaskOps(*task),
            ConfigError::AnyDepth { task, .. } => Field::TaskAny(*task),
            ConfigError::AlphabetWithoutAny { task, key, .. } => Field::TaskAlphabet(*task, key),
            ConfigError::FrameOutOfRange { at, .. }
            | ConfigError::MigrateCpu { at, .. }
            | ConfigError::PinnedMigrate { at, .. }
            | ConfigError::TaskOnly { at, .. }
            | ConfigError::NotInApi { at, .. }
            | ConfigError::ScopeApi { at, .. } => at.clone(),
        }
    }
}

impl Config {
    /// Check that the implementation under test exists in this build and can run this
    /// configuration (Linux's code releases in any order only with the `any-order` edit, its
    /// factory says) and that its programs call it as it can be called: Linux's code has no
    /// guard or scope API.
    fn validate_implementation(&self) -> Result<(), ConfigError> {
        let m = &self.machine;
        let refuse = |reason: String| ConfigError::Implementation {
            implementation: m.implementation,
            reason,
        };
        if m.edit.is_some() && m.implementation != crate::settings::Implementation::Linux {
            return Err(refuse(
                "edit is a scripted edit of Linux's code: it needs impl = \"linux\"".into(),
            ));
        }
        if m.implementation == crate::settings::Implementation::Linux {
            let p = &self.program;
            let apis = p.tasks.iter().map(|t| t.api).chain([p.irq_api, p.nmi_api]);
            if let Some(api) = apis.into_iter().find(|&api| api != Api::Raw) {
                return Err(refuse(format!(
                    "api = \"{api}\" is the crate's own; Linux's code is called as \
                     kmap_local_page and kunmap_local are (api = \"raw\")"
                )));
            }
        }
        crate::implementation::ops(m).map_err(refuse)?;
        Ok(())
    }

    /// Check that the configuration can run, naming the first problem and where it is.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.machine;
        m.validate()?;
        let b = &self.bounds;
        for (bound, depth) in [("irq_depth", b.irq_depth), ("nmi_depth", b.nmi_depth)] {
            if let Some(given) = depth.filter(|&d| d > 1) {
                return Err(ConfigError::NestingDepth { bound, given });
            }
        }
        if self.program.tasks.is_empty() {
            return Err(ConfigError::NoTask);
        }
        self.validate_implementation()?;
        let check_op = |at: Field, op: Op, in_handler: bool, api: Api| -> Result<(), ConfigError> {
            let in_api = match api {
                Api::Raw => op != Op::Leak,
                Api::Guard => !matches!(op, Op::UnmapFrame(_)),
                Api::Scope => !matches!(op, Op::MapAtomic(_) | Op::MapPfn(_)),
            };
            if !in_api {
                return Err(ConfigError::NotInApi { at, op, api });
            }
            if let Some(frame) = op.frame()
                && frame.pfn() >= m.frames
            {
                return Err(ConfigError::FrameOutOfRange {
                    at,
                    frame,
                    frames: m.frames,
                });
            }
            if let Op::Migrate(cpu) = op
                && cpu.0 as usize >= m.cpus
            {
                return Err(ConfigError::MigrateCpu {
                    at,
                    op,
                    cpus: m.cpus,
                });
            }
            if in_handler && op.task_only() {
                return Err(ConfigError::TaskOnly { at, op });
            }
            Ok(())
        };
        let scope_api = |at: Field, atomic: bool| -> Result<(), ConfigError> {
            if !m.any_order() {
                return Err(ConfigError::ScopeApi {
                    at,
                    why: "needs release = \"any\" (a Scope is for platforms that release in any order)",
                });
            }
            if atomic {
                return Err(ConfigError::ScopeApi {
                    at,
                    why: "maps with kmap_local_page only: no `atomic` in an endless program's alphabet",
                });
            }
            Ok(())
        };
        for (t, task) in self.program.tasks.iter().enumerate() {
            if task.api == Api::Scope {
                scope_api(Field::TaskApi(t), task.alphabet.atomic)?;
            }
            if task.cpu.0 as usize >= m.cpus {
                return Err(ConfigError::TaskCpu {
                    task: t,
                    name: task.name.clone(),
                    cpu: task.cpu,
                    cpus: m.cpus,
                });
            }
            if task.is_any() && !task.ops.is_empty() {
                return Err(ConfigError::OpsAndAny {
                    task: t,
                    name: task.name.clone(),
                });
            }
            if let Some(name) = task.alphabet.names().first()
                && !task.is_any()
            {
                return Err(ConfigError::AlphabetWithoutAny {
                    task: t,
                    name: task.name.clone(),
                    key: match *name {
                        "irq-off" => "irq_off",
                        other => other,
                    },
                });
            }
            // Pages on the fast path take no cell.
            let pages = task
                .any
                .iter()
                .filter(|f| f.pfn() >= m.lowmem || m.force_map)
                .count();
            if pages > m.cells {
                return Err(ConfigError::AnyDepth {
                    task: t,
                    name: task.name.clone(),
                    pages,
                    cells: m.cells,
                });
            }
            for (i, &op) in task.ops.iter().enumerate() {
                check_op(Field::TaskOp(t, i), op, false, task.api)?;
                if task.pinned && matches!(op, Op::Migrate(_)) {
                    return Err(ConfigError::PinnedMigrate {
                        at: Field::TaskOp(t, i),
                        name: task.name.clone(),
                        op,
                    });
                }
            }
            for &page in &task.any {
                check_op(Field::TaskAny(t), Op::Map(page), false, task.api)?;
            }
        }
        for (kind, ops, api) in [
            (HandlerKind::Irq, &self.program.irq, self.program.irq_api),
            (HandlerKind::Nmi, &self.program.nmi, self.program.nmi_api),
        ] {
            if api == Api::Scope {
                scope_api(Field::HandlerApi(kind), false)?;
            }
            for (i, &op) in ops.iter().enumerate() {
                check_op(Field::HandlerOp(kind, i), op, true, api)?;
            }
        }
        Ok(())
    }
}
