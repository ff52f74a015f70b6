//! The per-CPU area through GS: each CPU's GS base points at its own area, whose first word
//! holds the area's address, so that a word of it is read, or a counter of it changed, in one
//! gs-relative instruction, which no preemption or move to the other CPU can split (Linux's
//! `this_cpu_read` and `this_cpu_add`). The area's layout is the kernel's (`crate::percpu`); here
//! are only the instructions.

use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

/// Point GS at `base` (this CPU's area, whose first word must hold `base`).
pub fn set_base(base: usize) {
    GsBase::write(VirtAddr::new(base as u64));
}

/// The word at `OFFSET` of this CPU's area, in one load.
///
/// # Safety
///
/// GS points at this CPU's area (`set_base`), and a word that only this CPU writes, or an atomic
/// one, is at `OFFSET` of it.
pub unsafe fn read_word<const OFFSET: usize>() -> usize {
    let word: usize;
    // SAFETY: the caller's promise: a readable word at gs:[OFFSET].
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[{offset}]",
            out(reg) word,
            offset = const OFFSET,
            options(nostack, readonly, preserves_flags)
        )
    };
    word
}

/// Add `delta` to the 32-bit counter at `OFFSET` of this CPU's area in one instruction; whether
/// it is now zero.
///
/// # Safety
///
/// GS points at this CPU's area, and a 32-bit counter that only this CPU modifies is at `OFFSET`
/// of it (an interrupt in between sees the whole instruction or none of it).
pub unsafe fn add_i32<const OFFSET: usize>(delta: i32) -> bool {
    let zero: u8;
    // SAFETY: the caller's promise: a counter of this CPU's own at gs:[OFFSET].
    unsafe {
        core::arch::asm!(
            "add dword ptr gs:[{offset}], {delta:e}",
            "setz {zero}",
            offset = const OFFSET,
            delta = in(reg) delta,
            zero = out(reg_byte) zero,
            options(nostack)
        )
    };
    zero != 0
}
