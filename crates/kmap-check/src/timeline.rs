//! A counterexample as a timeline a person can read: one column per CPU and context (task,
//! scheduler, IRQ, NMI), one row per step with its arrival point, the slot and `idx` changes it
//! made, and the broken rule at the end.

use std::fmt::Write as _;

use kmap_sim::{Context, Event, Label, Outcome, What};

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
    /// The broken rule.
    Violation,
}

/// One row of the timeline.
#[derive(Clone, Debug)]
pub struct Row {
    /// The column: CPU and lane.
    pub column: (usize, Lane),
    /// The text.
    pub text: String,
    /// What it is.
    pub kind: RowKind,
}

/// The rows and columns of a traced run.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Columns, in order: CPU, then lane.
    pub columns: Vec<(usize, Lane)>,
    /// Rows, in order.
    pub rows: Vec<Row>,
}

fn change(what: &What) -> Option<String> {
    Some(match what {
        What::Install { cpu, cell, frame } => format!("slot {cpu}.{cell} := frame {frame}"),
        What::Clear { cpu, cell } => format!("slot {cpu}.{cell} := empty"),
        What::Invalidate { cell } => format!("invlpg {cell}"),
        What::Idx { task, from, to } => format!("{task}.idx {from}->{to}"),
        What::Access {
            expected,
            reached: Some(frame),
            tlb_hit,
        } if frame == expected => {
            format!(
                "access frame {frame}{}",
                if *tlb_hit { " (TLB)" } else { "" }
            )
        }
        What::Access {
            expected,
            reached: Some(frame),
            tlb_hit,
        } => {
            format!(
                "frame {expected} REACHES FRAME {frame}{}",
                if *tlb_hit { " (TLB)" } else { "" }
            )
        }
        What::Access {
            expected,
            reached: None,
            ..
        } => format!("frame {expected} FAULTS"),
        _ => return None,
    })
}

impl Timeline {
    /// The timeline of a traced outcome.
    pub fn of(outcome: &Outcome) -> Timeline {
        let mut timeline = Timeline::default();
        let mut pending: Vec<((usize, Lane), String)> = Vec::new();
        let push = |timeline: &mut Timeline, column: (usize, Lane), text: String, kind: RowKind| {
            if !timeline.columns.contains(&column) {
                timeline.columns.push(column);
            }
            timeline.rows.push(Row { column, text, kind });
        };
        for Event { cpu, context, what } in &outcome.trace {
            let column = (*cpu, Lane::of(context));
            if let Some(change) = change(what) {
                pending.push((column, change));
                continue;
            }
            let (text, kind) = match what {
                // A crate or swap step's changes show on the row of the point after it; the
                // changes of an operation show on a row of their own before the next one.
                What::Point(label @ Label::BeforeOp(_)) => (label.to_string(), RowKind::Step),
                What::Point(label) => {
                    let changes: Vec<String> = pending
                        .iter()
                        .filter(|(c, _)| *c == column)
                        .map(|(_, text)| text.clone())
                        .collect();
                    pending.retain(|(c, _)| *c != column);
                    if changes.is_empty() {
                        (label.to_string(), RowKind::Step)
                    } else {
                        (format!("{label}  [{}]", changes.join(", ")), RowKind::Step)
                    }
                }
                What::Op(op) => match context {
                    Context::Task(name) => (format!("{name}: `{op}`"), RowKind::Op),
                    _ => (format!("`{op}`"), RowKind::Op),
                },
                What::Enter(_) | What::Exit(_) | What::Switch { .. } | What::Step { .. } => {
                    (what.to_string(), RowKind::Context)
                }
                What::Report(_) | What::Refused(_) => (what.to_string(), RowKind::Note),
                What::Violation(_) => {
                    let rule = outcome
                        .violations
                        .first()
                        .map(|v| v.kind.to_string())
                        .unwrap_or_default();
                    (format!("BROKEN: {rule}"), RowKind::Violation)
                }
                _ => continue,
            };
            // Changes not followed by a step point of their own column show on a row of their
            // own, before the next row there.
            let (here, elsewhere): (Vec<_>, Vec<_>) =
                pending.drain(..).partition(|(c, _)| *c == column);
            pending = elsewhere;
            if !here.is_empty() {
                let texts: Vec<String> = here.into_iter().map(|(_, text)| text).collect();
                push(
                    &mut timeline,
                    column,
                    format!("[{}]", texts.join(", ")),
                    RowKind::Step,
                );
            }
            push(&mut timeline, column, text, kind);
        }
        for (column, text) in pending {
            push(&mut timeline, column, format!("[{text}]"), RowKind::Step);
        }
        timeline.columns.sort();
        timeline
    }

    /// The header of a column.
    pub fn header(column: (usize, Lane)) -> String {
        format!("cpu{} {}", column.0, column.1.name())
    }

    /// The length of the longest row of `column`, in characters (0 for none).
    pub fn longest(&self, column: (usize, Lane)) -> usize {
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
