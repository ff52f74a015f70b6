//! Physical memory: every frame holds a tag, the last value written into it, and remembers the
//! tag its owner last wrote, so that any access can be checked against the frame its context
//! mapped and against what that context last wrote there.

use std::hash::{Hash, Hasher};

use kmap::Frame;

use super::symmetry::Relabel;

/// The frames of the machine.
#[derive(Clone, Debug)]
pub(crate) struct Memory {
    /// What each frame holds.
    tags: Vec<u64>,
    /// What each frame's owner last wrote into it (through a mapping of that very frame).
    expected: Vec<u64>,
    /// The next fresh tag.
    next_tag: u64,
}

/// A read found another tag than its owner last wrote.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Overwritten {
    /// What the frame holds.
    pub(crate) seen: u64,
    /// What its owner last wrote.
    pub(crate) expected: u64,
}

impl Memory {
    /// `frames` frames, each holding a tag of its own.
    pub(crate) fn new(frames: u64) -> Memory {
        let tags: Vec<u64> = (0..frames).map(|f| 0x7A6_0000 + f).collect();
        Memory {
            expected: tags.clone(),
            tags,
            next_tag: 1,
        }
    }

    /// A write meant for `owner`'s frame reached `reached`: a fresh tag lands there, and if it is
    /// the owner's own frame, the owner now expects it.
    pub(crate) fn write(&mut self, reached: Frame, owner: Frame) {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.tags[reached.pfn() as usize] = tag;
        if reached == owner {
            self.expected[reached.pfn() as usize] = tag;
        }
    }

    /// A read of `frame` by its owner: what it holds must be what the owner last wrote.
    pub(crate) fn read(&self, frame: Frame) -> Result<(), Overwritten> {
        let at = frame.pfn() as usize;
        let (seen, expected) = (self.tags[at], self.expected[at]);
        if seen == expected {
            Ok(())
        } else {
            Err(Overwritten { seen, expected })
        }
    }

    /// What `frame` holds and what its owner expects (for the probes' keys).
    pub(crate) fn tags_of(&self, frame: Frame) -> [u64; 2] {
        let at = frame.pfn() as usize;
        [self.tags[at], self.expected[at]]
    }

    /// Hash the contents (not the next fresh tag: tags matter only by equality, so two states
    /// that differ only in it have the same futures up to renaming). Renamed by `relabel`,
    /// whose frames put it in another order, only whether each frame holds what its owner
    /// last wrote is hashed: a tag is written into one frame only, so that bit is all a future
    /// read can tell of it.
    pub(crate) fn hash_contents(&self, relabel: &Relabel, hasher: &mut impl Hasher) {
        if !relabel.abstract_tags {
            (&self.tags, &self.expected).hash(hasher);
            return;
        }
        self.tags.len().hash(hasher);
        for new in 0..self.tags.len() as u64 {
            let old = relabel.old_frame(new) as usize;
            (self.tags[old] == self.expected[old]).hash(hasher);
        }
    }

    /// Whether `frame` holds what its owner last wrote there.
    pub(crate) fn intact(&self, frame: Frame) -> bool {
        let at = frame.pfn() as usize;
        self.tags[at] == self.expected[at]
    }
}
