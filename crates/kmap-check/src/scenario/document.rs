//! A scenario file as a spanned TOML document: the old names of settings read as their new
//! ones (with a note), and every place in it found by its path (`task[0].ops[1]`) or by a byte
//! offset, so that an error names the line and the field.

use std::borrow::Cow;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A parsed scenario file, before it is read as a scenario.
pub(crate) struct Document<'i> {
    text: &'i str,
    root: Spanned<DeTable<'i>>,
}

/// An old name that cannot be read, with where it is.
pub(crate) struct OldNameError {
    pub(crate) span: Range<usize>,
    pub(crate) field: String,
    pub(crate) message: String,
}

impl<'i> Document<'i> {
    /// Parse the text as TOML.
    pub(crate) fn parse(text: &'i str) -> Result<Self, toml::de::Error> {
        Ok(Document {
            text,
            root: DeTable::parse(text)?,
        })
    }

    /// The document, for serde (its spans kept, so errors point into the text).
    pub(crate) fn deserializer(&self) -> toml::de::Deserializer<'i> {
        toml::de::Deserializer::from(self.root.clone())
    }

    /// Read old names as their new ones: `[machine] slots` (now `cells`), `debug_guards` (now
    /// `guard_cells`), `bug_on = false` (now `mutation = "no-bug-on"`); `[bounds] irqs` and
    /// `nmis` (now `irq_depth` and `nmi_depth`, a value above 1 read as 1). Returns a note for
    /// each.
    pub(crate) fn read_old_names(&mut self) -> Result<Vec<String>, OldNameError> {
        let mut notes = Vec::new();
        let root = self.root.get_mut();
        if let Some(machine) = table_mut(root, "machine") {
            for (old, new) in [("slots", "cells"), ("debug_guards", "guard_cells")] {
                if rename(machine, "machine", old, new, |v| v)? {
                    notes.push(format!(
                        "`{old}` is the old name of `{new}`: read as `{new}`"
                    ));
                }
            }
            if let Some((key, value)) = machine.remove_entry("bug_on") {
                let span = value.span();
                match value.get_ref().as_bool() {
                    Some(true) => {}
                    Some(false) => {
                        if let Some(mutation) = machine.get("mutation")
                            && mutation.get_ref().as_str() != Some("no-bug-on")
                        {
                            return Err(OldNameError {
                                span,
                                field: "machine.bug_on".into(),
                                message: format!(
                                    "`bug_on = false` is the mutation no-bug-on; a scenario has \
                                     one mutation, and this one names {}",
                                    mutation.get_ref().as_str().unwrap_or("another")
                                ),
                            });
                        }
                        let value = DeValue::String(Cow::Borrowed("no-bug-on"));
                        machine.insert(
                            Spanned::new(key.span(), Cow::Borrowed("mutation")),
                            Spanned::new(span, value),
                        );
                    }
                    None => {
                        return Err(OldNameError {
                            span,
                            field: "machine.bug_on".into(),
                            message: "expected true or false".into(),
                        });
                    }
                }
                notes.push(
                    "`bug_on` is the old name of `mutation = \"no-bug-on\"`: `bug_on = false` is \
                     read as that mutation, `bug_on = true` as no mutation"
                        .into(),
                );
            }
        }
        if let Some(bounds) = table_mut(root, "bounds") {
            for (old, new) in [("irqs", "irq_depth"), ("nmis", "nmi_depth")] {
                let Some(given) = bounds.get(old).and_then(|v| v.get_ref().as_integer()) else {
                    continue;
                };
                let given: i64 = given.as_str().parse().unwrap_or(1);
                let depth = given.clamp(0, 1);
                rename(bounds, "bounds", old, new, |value| {
                    let one = DeValue::parse(if depth == 0 { "0" } else { "1" })
                        .expect("a number")
                        .into_inner();
                    Spanned::new(value.span(), one)
                })?;
                notes.push(format!(
                    "`{old} = {given}` is read as `{new} = {depth}`: handlers are probed at \
                     every point, so the bound is how deep they nest (0 or 1), not how many \
                     arrive"
                ));
            }
        }
        Ok(notes)
    }

    /// The line (from 1) of byte `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The path (`machine.cpus`, `task[0].ops[1]`) of the deepest key or value at byte
    /// `offset`, if it is inside one.
    pub(crate) fn path_at(&self, offset: usize) -> Option<String> {
        let mut path = String::new();
        let found = path_in_table(self.root.get_ref(), offset, &mut path);
        found.then_some(path)
    }

    /// Where the value at `path` (as [`path_at`](Self::path_at) writes it) is.
    pub(crate) fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut segments = path.split('.').flat_map(|part| {
            let (key, rest) = part.split_once('[').unwrap_or((part, ""));
            std::iter::once(Segment::Key(key.to_string())).chain(
                rest.split('[')
                    .filter(|s| !s.is_empty())
                    .filter_map(|i| i.trim_end_matches(']').parse().ok().map(Segment::Index)),
            )
        });
        let first = segments.next()?;
        let Segment::Key(key) = first else {
            return None;
        };
        let mut value = self.root.get_ref().get(key.as_str())?;
        for segment in segments {
            value = match (segment, value.get_ref()) {
                (Segment::Key(key), DeValue::Table(table)) => table.get(key.as_str())?,
                (Segment::Index(i), DeValue::Array(array)) => array.get(i)?,
                _ => return None,
            };
        }
        Some(value.span())
    }

    /// The line of the `n`-th (from 0) table header `header`.
    pub(crate) fn header_line(&self, header: &str, n: usize) -> Option<usize> {
        self.text
            .lines()
            .enumerate()
            .filter(|(_, line)| line.trim() == header)
            .nth(n)
            .map(|(number, _)| number + 1)
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

fn table_mut<'a, 'i>(root: &'a mut DeTable<'i>, key: &str) -> Option<&'a mut DeTable<'i>> {
    match root.get_mut(key)?.get_mut() {
        DeValue::Table(table) => Some(table),
        _ => None,
    }
}

/// Rename `old` to `new` in `table` (the `[section]` of a scenario), with its value changed by
/// `value`; an error when both are given.
fn rename<'i>(
    table: &mut DeTable<'i>,
    section: &str,
    old: &'static str,
    new: &'static str,
    value: impl FnOnce(Spanned<DeValue<'i>>) -> Spanned<DeValue<'i>>,
) -> Result<bool, OldNameError> {
    let Some((key, old_value)) = table.remove_entry(old) else {
        return Ok(false);
    };
    if table.contains_key(new) {
        return Err(OldNameError {
            span: key.span(),
            field: format!("{section}.{old}"),
            message: format!("`{old}` is the old name of `{new}`: give one of them"),
        });
    }
    table.insert(
        Spanned::new(key.span(), Cow::Borrowed(new)),
        value(old_value),
    );
    Ok(true)
}

fn path_in_table(table: &DeTable<'_>, offset: usize, path: &mut String) -> bool {
    for (key, value) in table.iter() {
        let key_name: &str = key.get_ref();
        let here = if path.is_empty() {
            key_name.to_string()
        } else {
            format!("{path}.{key_name}")
        };
        if key.span().contains(&offset) {
            *path = here;
            return true;
        }
        if value.span().contains(&offset) || contains_deep(value.get_ref(), offset) {
            *path = here;
            path_in_value(value.get_ref(), offset, path);
            return true;
        }
    }
    false
}

fn path_in_value(value: &DeValue<'_>, offset: usize, path: &mut String) {
    match value {
        DeValue::Table(table) => {
            path_in_table(table, offset, path);
        }
        DeValue::Array(array) => {
            for (i, item) in array.iter().enumerate() {
                if item.span().contains(&offset) || contains_deep(item.get_ref(), offset) {
                    path.push_str(&format!("[{i}]"));
                    path_in_value(item.get_ref(), offset, path);
                    return;
                }
            }
        }
        _ => {}
    }
}

/// Whether a table or array holds something at `offset` (a table made by `[header]` lines
/// spans only its header, its keys are elsewhere).
fn contains_deep(value: &DeValue<'_>, offset: usize) -> bool {
    match value {
        DeValue::Table(table) => table.iter().any(|(k, v)| {
            k.span().contains(&offset)
                || v.span().contains(&offset)
                || contains_deep(v.get_ref(), offset)
        }),
        DeValue::Array(array) => array
            .iter()
            .any(|v| v.span().contains(&offset) || contains_deep(v.get_ref(), offset)),
        _ => false,
    }
}
