//! Records for xtask: one line `TAG {json}` per record over the serial port, so that what the
//! kernel measured and how it ended are read as data (`serde_json` on xtask's side), never
//! parsed back out of sentences meant for people. A hand-written writer: no allocation, objects
//! and arrays written as they are built, strings escaped as JSON requires.
//!
//! The records: `REPORT` (the workload's figures, `crate::stats`), `NMI-RIPS` (addresses NMIs
//! interrupted), `BENCH` (one benchmark figure), `RESULT` (how the boot ended, `crate::verdict`).

use core::fmt::{self, Write};

use crate::arch::serial;

/// Write one record, `tag` then the object `fields` builds, as one line no other output splits.
/// Records are reports, written as `serial::write_forced` writes: at once by the context that
/// took the port for a failure, and never waiting for the lock for ever.
pub fn emit(tag: &str, fields: impl FnOnce(&mut Object)) {
    serial::write_forced(|port| line(port, tag, fields));
}

fn line(out: &mut dyn Write, tag: &str, fields: impl FnOnce(&mut Object)) {
    let _ = write!(out, "{tag} ");
    object(out, fields);
    let _ = out.write_str("\n");
}

fn object(out: &mut dyn Write, fields: impl FnOnce(&mut Object)) {
    let _ = out.write_char('{');
    fields(&mut Object { out, empty: true });
    let _ = out.write_char('}');
}

/// A JSON object being written: each call adds one member.
pub struct Object<'w> {
    out: &'w mut dyn Write,
    empty: bool,
}

impl Object<'_> {
    fn key(&mut self, key: &str) -> &mut dyn Write {
        if !self.empty {
            let _ = self.out.write_char(',');
        }
        self.empty = false;
        let _ = string(self.out, format_args!("{key}"));
        let _ = self.out.write_char(':');
        self.out
    }

    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        let _ = write!(self.key(key), "{value}");
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        let _ = write!(self.key(key), "{value}");
        self
    }

    /// A string member: whatever `value` formats to, escaped.
    pub fn str(&mut self, key: &str, value: impl fmt::Display) -> &mut Self {
        let _ = string(self.key(key), format_args!("{value}"));
        self
    }

    /// An array member of numbers.
    pub fn u64s(&mut self, key: &str, values: impl IntoIterator<Item = u64>) -> &mut Self {
        let out = self.key(key);
        let _ = out.write_char('[');
        for (i, value) in values.into_iter().enumerate() {
            let _ = write!(out, "{}{value}", if i == 0 { "" } else { "," });
        }
        let _ = out.write_char(']');
        self
    }

    /// An array member of objects, `each` writing one per item.
    pub fn objects<T>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Object, T),
    ) -> &mut Self {
        let out = self.key(key);
        let _ = out.write_char('[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                let _ = out.write_char(',');
            }
            object(out, |o| each(o, item));
        }
        let _ = out.write_char(']');
        self
    }
}

/// `value` as a JSON string.
fn string(out: &mut dyn Write, value: fmt::Arguments) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_fmt(value)?;
    out.write_char('"')
}

/// Escapes what it is given as the inside of a JSON string.
struct Escaped<'w>(&'w mut dyn Write);

impl Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\t' => self.0.write_str("\\t")?,
                c if (c as u32) < 0x20 => write!(self.0, "\\u{:04x}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}
