//! A counterexample as a timeline a person can read: one column per CPU and context (task,
//! scheduler, IRQ, NMI), one row per step with its arrival point, the slot and `idx` changes it
//! made, the hazards (rules broken with no consequence yet) where they happened, and the
//! consequence at the end. Rows follow the trace's order exactly.

use std::ops::Range;

use std::fmt::Write as _;

use kmap::CpuId;
use kmap_sim::{Context, Event, Label, Outcome, SlotName, What};

/// A kind of context: the columns of a CPU.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Lane {
    /// Tasks (and the idle loop).
    Task,
    /// The scheduler's switch path.
    Scheduler,
    /// Interrupt handlers.
    Irq,
    /// NMI handlers.
    Nmi,
}

impl Lane {
    fn of(context: &Context) -> Lane {
        match context {
            Context::Task(_) | Context::Idle => Lane::Task,
            Context::Scheduler => Lane::Scheduler,
            Context::Irq(_) => Lane::Irq,
            Context::Nmi => Lane::Nmi,
        }
    }

    /// Its name in a column header.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Task => "task",
            Lane::Scheduler => "scheduler",
            Lane::Irq => "IRQ",
            Lane::Nmi => "NMI",
        }
    }
}

/// What a row shows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RowKind {
    /// An arrival point of the crate or the machine, with the changes since the last one.
    Step,
    /// An operation of a program begins.
    Op,
    /// A handler enters or returns, or `current` changes.
    Context,
    /// The crate refused something, or reported it.
    Note,
    /// A rule broken with no consequence yet.
    Hazard,
    /// The consequence: what the kernel suffers.
    Violation,
}

/// One row of the timeline.
#[derive(Clone, Debug)]
pub struct Row {
    /// The column: CPU and lane.
    pub column: (CpuId, Lane),
    /// The text.
    pub text: String,
    /// What it is.
    pub kind: RowKind,
    /// The events of the trace it shows (by index): rows cover the trace in order.
    pub events: Range<usize>,
}

/// The rows and columns of a traced run.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Columns, in order: CPU, then lane.
    pub columns: Vec<(CpuId, Lane)>,
    /// Rows, in order.
    pub rows: Vec<Row>,
}

fn change(what: &What) -> Option<String> {
    Some(match what {
        What::Install { slot, frame } => {
            format!("slot {} := frame {}", SlotName(*slot), frame.pfn())
        }
        What::Clear { slot } => format!("slot {} := empty", SlotName(*slot)),
        What::Invalidate { cell } => format!("invlpg {}", cell.0),
        What::Idx { task, from, to } => format!("{task}.idx {from}->{to}"),
        What::Access {
            expected,
            reached: Some(frame),
            tlb_hit,
        } if frame == expected => {
            format!(
                "access frame {}{}",
                frame.pfn(),
                if *tlb_hit { " (TLB)" } else { "" }
            )
        }
        What::Access {
            expected,
            reached: Some(frame),
            tlb_hit,
        } => {
            format!(
                "frame {} REACHES FRAME {}{}",
                expected.pfn(),
                frame.pfn(),
                if *tlb_hit { " (TLB)" } else { "" }
            )
        }
        What::Access {
            expected,
            reached: None,
            ..
        } => format!("frame {} FAULTS", expected.pfn()),
        _ => return None,
    })
}

impl Timeline {
    /// The timeline of a traced outcome. A step's changes (slot, TLB, `idx`, accesses) show on
    /// the row of the arrival point that follows them in the same column; when anything of
    /// another column comes first, they get a row of their own there, so that rows never
    /// reorder the trace. Platform calls are not shown.
    pub fn of(outcome: &Outcome) -> Timeline {
        let mut timeline = Timeline::default();
        // Changes waiting for their arrival point: the column, the texts, the first event.
        let mut pending: Option<((CpuId, Lane), Vec<String>, usize)> = None;
        let push = |timeline: &mut Timeline, column, text, kind, events| {
            if !timeline.columns.contains(&column) {
                timeline.columns.push(column);
            }
            timeline.rows.push(Row {
                column,
                text,
                kind,
                events,
            });
        };
        let flush = |timeline: &mut Timeline, pending: &mut Option<_>, end: usize| {
            if let Some((column, texts, start)) = pending.take() {
                let texts: Vec<String> = texts;
                push(
                    timeline,
                    column,
                    format!("[{}]", texts.join(", ")),
                    RowKind::Step,
                    start..end,
                );
            }
        };
        for (index, Event { cpu, context, what }) in outcome.trace.iter().enumerate() {
            let column = (*cpu, Lane::of(context));
            if matches!(what, What::Call(_)) {
                continue;
            }
            if pending.as_ref().is_some_and(|(c, _, _)| *c != column) {
                flush(&mut timeline, &mut pending, index);
            }
            if let Some(change) = change(what) {
                match &mut pending {
                    Some((_, texts, _)) => texts.push(change),
                    None => pending = Some((column, vec![change], index)),
                }
                continue;
            }
            let (text, kind) = match what {
                // A crate or swap step's changes show on the row of the point after it; the
                // changes of an operation show on a row of their own before the next one.
                What::Point(label @ Label::BeforeOp(_)) => {
                    flush(&mut timeline, &mut pending, index);
                    (label.to_string(), RowKind::Step)
                }
                What::Point(label) => match pending.take() {
                    Some((_, changes, start)) => {
                        let text = format!("{label}  [{}]", changes.join(", "));
                        push(&mut timeline, column, text, RowKind::Step, start..index + 1);
                        continue;
                    }
                    None => (label.to_string(), RowKind::Step),
                },
                What::Op(op) => match context {
                    Context::Task(name) => (format!("{name}: `{op}`"), RowKind::Op),
                    _ => (format!("`{op}`"), RowKind::Op),
                },
                What::Enter(_) | What::Exit(_) | What::Switch { .. } | What::Step { .. } => {
                    (what.to_string(), RowKind::Context)
                }
                What::Report(_) | What::Refused(_) => (what.to_string(), RowKind::Note),
                What::Hazard(why) => (format!("hazard: {why}"), RowKind::Hazard),
                What::Violation(_) => {
                    let text = outcome
                        .violations
                        .first()
                        .map(|v| format!("{}: {}", v.kind.name().to_uppercase(), v.message))
                        .unwrap_or_default();
                    (text, RowKind::Violation)
                }
                _ => continue,
            };
            flush(&mut timeline, &mut pending, index);
            push(&mut timeline, column, text, kind, index..index + 1);
        }
        flush(&mut timeline, &mut pending, outcome.trace.len());
        timeline.columns.sort();
        timeline
    }

    /// The header of a column.
    pub fn header(column: (CpuId, Lane)) -> String {
        format!("cpu{} {}", column.0.0, column.1.name())
    }

    /// The length of the longest row of `column`, in characters (0 for none).
    pub fn longest(&self, column: (CpuId, Lane)) -> usize {
        self.rows
            .iter()
            .filter(|r| r.column == column)
            .map(|r| r.text.chars().count())
            .max()
            .unwrap_or(0)
    }

    /// The timeline as text, columns at most `width` characters wide.
    pub fn render(&self, width: usize) -> String {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .map(|&column| {
                self.longest(column)
                    .max(Self::header(column).len())
                    .min(width)
            })
            .collect();
        let mut out = String::new();
        let cell = |text: &str, width: usize| {
            let count = text.chars().count();
            if count <= width {
                format!("{text}{}", " ".repeat(width - count))
            } else {
                format!("{}…", text.chars().take(width - 1).collect::<String>())
            }
        };
        let _ = write!(out, "{:>4} ", "step");
        for (i, &column) in self.columns.iter().enumerate() {
            let _ = write!(out, "| {} ", cell(&Self::header(column), widths[i]));
        }
        out.push('\n');
        let _ = write!(out, "{:->4}-", "");
        for width in &widths {
            let _ = write!(out, "+-{}-", "-".repeat(*width));
        }
        out.push('\n');
        for (n, row) in self.rows.iter().enumerate() {
            let _ = write!(out, "{:>4} ", n + 1);
            for (i, &column) in self.columns.iter().enumerate() {
                let text = if column == row.column {
                    row.text.as_str()
                } else {
                    ""
                };
                let _ = write!(out, "| {} ", cell(text, widths[i]));
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        out
    }
}
