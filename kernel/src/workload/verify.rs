//! The words the workload writes and checks: each names its owner (a task, or a CPU's
//! interrupt or NMI handler), the round and the page, so that a word read through the wrong
//! mapping says whose it is. A wrong word stops the machine with what, where and whose.

use core::sync::atomic::Ordering::Relaxed;

use kmap::Frame;

use crate::frames::describe;
use crate::percpu::percpu;
use crate::stats::ACCESSES;
use crate::verdict::{Failure, fail};

const WORDS: usize = 512;

/// The word `word` of page `page` of owner `owner` at round `round`.
fn pattern(owner: u64, round: u64, page: u64, word: u64) -> u64 {
    owner << 48 | (round & 0xFF_FFFF) << 24 | page << 16 | word
}

pub fn fill(bytes: &mut [u8], owner: u64, round: u64, page: u64) {
    for word in 0..WORDS {
        // SAFETY: word * 8 + 8 <= 4096, inside the page this byte view covers.
        unsafe {
            core::ptr::write_volatile(
                bytes.as_mut_ptr().add(word * 8).cast::<u64>(),
                pattern(owner, round, page, word as u64),
            )
        };
    }
}

/// Check the words of `bytes` (a mapping of `frame`; every `stride`-th word) against the
/// pattern; `cell` is the kmap cell it is expected in, for the report.
pub fn verify(
    bytes: &[u8],
    frame: Frame,
    owner: u64,
    round: u64,
    page: u64,
    cell: usize,
    stride: usize,
) {
    for word in (0..WORDS).step_by(stride) {
        // SAFETY: as in `fill`, reading.
        let seen = unsafe { core::ptr::read_volatile(bytes.as_ptr().add(word * 8).cast::<u64>()) };
        let expected = pattern(owner, round, page, word as u64);
        if seen != expected {
            let slot = crate::platform::slot_pte(bytes.as_ptr() as usize);
            fail(
                Failure::WrongWord,
                format_args!(
                    "wrong data through slot {}.{cell}: word {word} of page {page} of owner \
                     {owner:#x} (round {round}) is {seen:#018x}, expected {expected:#018x}; the \
                     mapping is of {}, the slot's PTE now maps {}",
                    percpu().id,
                    describe(frame.pfn()),
                    describe(slot >> 12)
                ),
            );
        }
    }
    ACCESSES.fetch_add((WORDS / stride) as u64, Relaxed);
}
