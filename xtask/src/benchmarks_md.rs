//! BENCHMARKS.md is written by several commands, each owning a section of it between two HTML
//! comments: `cargo xtask bench` (instruction counts, the kernel, `kmap prove` against SPIN),
//! `cargo xtask mutants` (the mutation table, and within it the paragraph on cargo-mutants).
//! A command rewrites only its own section and must leave every byte outside it as it was, so
//! that the commands can run in any order; this module is the one place that finds a section,
//! replaces it, or appends it when its markers are missing, with one rule for the line breaks:
//! the begin marker's line, then the body (which ends with a line break), then the end marker,
//! with whatever followed the end marker kept as it was.

use std::ops::Range;
use std::path::Path;

use thiserror::Error;

use crate::process::{self, FileError};
use crate::say;

/// One section of BENCHMARKS.md: the comments that begin and end it.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    pub begin: &'static str,
    pub end: &'static str,
}

/// `cargo xtask bench --instructions-only`.
pub const INSTRUCTIONS: Section = Section {
    begin: "<!-- instruction counts: cargo xtask bench --instructions-only -->",
    end: "<!-- end of instruction counts -->",
};
/// `cargo xtask bench --kernel-only`.
pub const KERNEL: Section = Section {
    begin: "<!-- the kernel under QEMU: cargo xtask bench --kernel-only -->",
    end: "<!-- end of the kernel under QEMU -->",
};
/// `cargo xtask bench --prove-only`.
pub const PROVE: Section = Section {
    begin: "<!-- kmap prove against SPIN: cargo xtask bench --prove-only -->",
    end: "<!-- end of kmap prove against SPIN -->",
};
/// `cargo xtask bench --linux-only`.
pub const LINUX: Section = Section {
    begin: "<!-- Linux's code against the crate: cargo xtask bench --linux-only -->",
    end: "<!-- end of Linux's code against the crate -->",
};
/// `cargo xtask mutants`.
pub const MUTANTS: Section = Section {
    begin: "<!-- mutants: cargo xtask mutants -->",
    end: "<!-- end of mutants -->",
};

/// How the paragraph on `cargo mutants` begins, inside the mutants' section.
pub const CARGO_MUTANTS_PREFIX: &str = "**`cargo mutants`**";

/// Why BENCHMARKS.md could not be updated.
#[derive(Debug, Error)]
pub enum BenchmarksMdError {
    /// The file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// There is no paragraph on cargo-mutants to replace.
    #[error(
        "BENCHMARKS.md has no section of `cargo xtask mutants` with a paragraph on cargo \
         mutants to replace: run `cargo xtask mutants` first"
    )]
    NoParagraph,
}

impl Section {
    /// Where the body lies in `text`: from the line after the begin marker to the end marker.
    pub fn body_range(&self, text: &str) -> Option<Range<usize>> {
        let start = text.find(self.begin)? + self.begin.len();
        let end = start + text[start..].find(self.end)?;
        // The begin marker's own line break is not the body's.
        let start = if text[start..end].starts_with('\n') {
            start + 1
        } else {
            start
        };
        Some(start..end)
    }

    /// The section with its markers, as it stands in `text`.
    pub fn whole<'a>(&self, text: &'a str) -> Option<&'a str> {
        let begin = text.find(self.begin)?;
        let body = self.body_range(text)?;
        Some(&text[begin..body.end + self.end.len()])
    }

    /// `text` with the section's body replaced by `body`, or the section appended (after a
    /// blank line) when its markers are missing. Nothing outside the markers changes.
    pub fn splice(&self, text: &str, body: &str) -> String {
        let body = if body.ends_with('\n') || body.is_empty() {
            body.to_string()
        } else {
            format!("{body}\n")
        };
        match text.find(self.begin).and(self.body_range(text)) {
            Some(range) => {
                let before = &text[..text.find(self.begin).unwrap_or(0) + self.begin.len()];
                format!("{before}\n{body}{}", &text[range.end..])
            }
            None => {
                let separator = if text.is_empty() || text.ends_with("\n\n") {
                    ""
                } else if text.ends_with('\n') {
                    "\n"
                } else {
                    "\n\n"
                };
                format!("{text}{separator}{}\n{body}{}\n", self.begin, self.end)
            }
        }
    }

    /// Put `body` into the section of `root/BENCHMARKS.md`.
    pub fn write(&self, root: &Path, body: &str) -> Result<(), BenchmarksMdError> {
        let path = root.join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        process::write(&path, &self.splice(&old, body))?;
        say!("the section `{}` of BENCHMARKS.md written", self.begin);
        Ok(())
    }
}

/// Where the paragraph on `cargo mutants` stands in the mutants' section of `text`: from its
/// first word to the end marker.
fn paragraph_range(text: &str) -> Option<Range<usize>> {
    let body = MUTANTS.body_range(text)?;
    let at = text[body.clone()].find(&format!("\n{CARGO_MUTANTS_PREFIX}"))?;
    Some(body.start + at + 1..body.end)
}

/// The paragraph on `cargo mutants` (with its lists) in `text`, without the blank lines after it.
pub fn cargo_mutants_paragraph(text: &str) -> Option<&str> {
    paragraph_range(text).map(|range| text[range].trim_end())
}

/// `text` with the paragraph on `cargo mutants` replaced by `paragraph`, the rest of the
/// mutants' section kept.
pub fn replace_cargo_mutants_paragraph(text: &str, paragraph: &str) -> Option<String> {
    let range = paragraph_range(text)?;
    Some(format!(
        "{}{paragraph}\n\n{}",
        &text[..range.start],
        &text[range.end..]
    ))
}

/// Put the paragraph on `cargo mutants` into `root/BENCHMARKS.md`, keeping the table of the
/// named mutants.
pub fn write_cargo_mutants_paragraph(
    root: &Path,
    paragraph: &str,
) -> Result<(), BenchmarksMdError> {
    let path = root.join("BENCHMARKS.md");
    let old = process::read(&path)?;
    let new =
        replace_cargo_mutants_paragraph(&old, paragraph).ok_or(BenchmarksMdError::NoParagraph)?;
    process::write(&path, &new)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_replaces_only_what_is_between_the_markers() {
        let (begin, end) = (MUTANTS.begin, MUTANTS.end);
        let old = format!("# B\n\nbefore\n{begin}\nold table\n{end}\nafter\n");
        assert_eq!(
            MUTANTS.splice(&old, "new table\n"),
            format!("# B\n\nbefore\n{begin}\nnew table\n{end}\nafter\n")
        );
        assert_eq!(
            MUTANTS.splice("# B\n", "t\n"),
            format!("# B\n\n{begin}\nt\n{end}\n")
        );
    }

    #[test]
    fn every_section_keeps_the_bytes_around_it() {
        // What follows the end marker (a blank line, or none) is kept as it was, for the
        // bench's sections as for the mutants'.
        for tail in ["\n## Next\n", "\n\n## Next\n", ""] {
            let old = format!("# B\n{}\nold\n\n{}{tail}", KERNEL.begin, KERNEL.end);
            let new = KERNEL.splice(&old, "new\n");
            assert_eq!(
                new,
                format!("# B\n{}\nnew\n{}{tail}", KERNEL.begin, KERNEL.end)
            );
            assert_eq!(KERNEL.splice(&new, "old\n\n"), old);
        }
        // A body without its last line break gets one.
        let old = format!("{}\nx\n{}\n", PROVE.begin, PROVE.end);
        assert_eq!(
            PROVE.splice(&old, "y"),
            format!("{}\ny\n{}\n", PROVE.begin, PROVE.end)
        );
        // Another section's markers are not this one's.
        let both = format!(
            "{}\na\n{}\n{}\nb\n{}\n",
            KERNEL.begin, KERNEL.end, PROVE.begin, PROVE.end
        );
        assert_eq!(
            PROVE.splice(&both, "c\n"),
            format!(
                "{}\na\n{}\n{}\nc\n{}\n",
                KERNEL.begin, KERNEL.end, PROVE.begin, PROVE.end
            )
        );
        assert_eq!(
            KERNEL.whole(&both),
            Some(&both[..both.find(PROVE.begin).unwrap() - 1])
        );
    }

    #[test]
    fn a_paragraph_alone_replaces_only_the_old_paragraph() {
        let (begin, end) = (MUTANTS.begin, MUTANTS.end);
        let old =
            format!("before\n{begin}\ntable\n\n{CARGO_MUTANTS_PREFIX} old\n- a\n\n{end}\nafter\n");
        assert_eq!(
            replace_cargo_mutants_paragraph(&old, &format!("{CARGO_MUTANTS_PREFIX} new")).unwrap(),
            format!("before\n{begin}\ntable\n\n{CARGO_MUTANTS_PREFIX} new\n\n{end}\nafter\n")
        );
        assert_eq!(
            cargo_mutants_paragraph(&old),
            Some(format!("{CARGO_MUTANTS_PREFIX} old\n- a").as_str())
        );
        assert!(
            replace_cargo_mutants_paragraph(&format!("{begin}\ntable\n{end}\n"), "p").is_none()
        );
        assert!(replace_cargo_mutants_paragraph("no section", "p").is_none());
    }
}
