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

    /// Hash the contents as a future can tell them apart: for each frame (in the order
    /// `relabel` gives the frames), whether it holds what its owner last wrote there. Not the
    /// tags themselves, nor the next fresh tag: a tag is written into one frame only, and a read
    /// compares a frame's tag only with the tag its owner last wrote into that frame, so two
    /// states that differ only in tags but agree on these bits have the same futures up to a
    /// renaming of tags (and without this, every write would make a state never seen before,
    /// and a proof of a program that writes would not end).
    pub(crate) fn hash_contents(&self, relabel: &Relabel, hasher: &mut impl Hasher) {
        self.tags.len().hash(hasher);
        for new in 0..self.tags.len() as u64 {
            let old = relabel.old_frame(new) as usize;
            (self.tags[old] == self.expected[old]).hash(hasher);
        }
    }

    /// Whether `frame` holds what its owner last wrote there (what a read by its owner checks).
    pub(crate) fn intact(&self, frame: Frame) -> bool {
        let at = frame.pfn() as usize;
        self.tags[at] == self.expected[at]
    }
}
