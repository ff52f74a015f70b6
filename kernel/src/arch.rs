//! The instructions the kernel needs, each behind a small function: from the `x86_64` crate,
//! except `exit_qemu`'s halt loop with interrupts off, which it has no single call for.

use core::arch::asm;

use x86_64::VirtAddr;
use x86_64::instructions::{interrupts, port::Port, tlb};
use x86_64::registers::{control::Cr2, model_specific::GsBase};

pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O to the legacy PIC's mask registers only (masking all its lines).
    unsafe { Port::<u8>::new(port).write(value) };
}

fn outl(port: u16, value: u32) {
    // SAFETY: port I/O to QEMU's isa-debug-exit device only, which ends the machine.
    unsafe { Port::<u32>::new(port).write(value) };
}

/// Point GS at `base` (the per-CPU area).
pub fn set_gs_base(base: u64) {
    GsBase::write(VirtAddr::new(base));
}

pub fn invlpg(address: usize) {
    tlb::flush(VirtAddr::new(address as u64));
}

pub fn cr2() -> u64 {
    Cr2::read_raw()
}

pub fn interrupts_enabled() -> bool {
    interrupts::are_enabled()
}

pub fn enable_interrupts() {
    interrupts::enable();
}

pub fn disable_interrupts() {
    interrupts::disable();
}

/// Leave QEMU through its `isa-debug-exit` device: status `(code << 1) | 1`. Called from any
/// context, an IST stack included: it never enables interrupts again.
pub fn exit_qemu(code: u32) -> ! {
    outl(0xF4, code);
    loop {
        // SAFETY: halting with interrupts off only waits (for an NMI, which returns here).
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// QEMU exits with 33.
pub const EXIT_PASS: u32 = 0x10;
/// QEMU exits with 35.
pub const EXIT_FAIL: u32 = 0x11;
