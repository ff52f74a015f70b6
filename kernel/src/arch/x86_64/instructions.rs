//! The instructions the kernel needs, each behind a small function, so that no other file
//! issues one inline: from the `x86_64` crate, except `exit_qemu`'s halt loop with interrupts
//! off and the time-stamp counter, which it has no call for.

use core::arch::asm;

use x86_64::VirtAddr;
use x86_64::instructions::{interrupts, port::Port, tlb};
use x86_64::registers::control::Cr2;

/// Spin for about `n` iterations.
pub fn delay(n: u64) {
    for _ in 0..n {
        core::hint::spin_loop();
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: reading the time-stamp counter has no effect.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Flush this CPU's whole TLB (global pages aside: the kernel maps none).
pub fn flush_tlb() {
    tlb::flush_all();
}

/// Halt with interrupts off until the machine ends: NMIs still arrive, and return here.
pub fn halt_for_ever() -> ! {
    disable_interrupts();
    loop {
        // SAFETY: halting with interrupts off only waits; an NMI returns here at once.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

/// Mask every line of the legacy 8259 PIC, which would otherwise deliver its timer as vector 8
/// (a "double fault").
pub fn mask_legacy_pic() {
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
}

fn outb(port: u16, value: u8) {
    // SAFETY: port I/O to the legacy PIC's mask registers only (masking all its lines).
    unsafe { Port::<u8>::new(port).write(value) };
}

fn outl(port: u16, value: u32) {
    // SAFETY: port I/O to QEMU's isa-debug-exit device only, which ends the machine.
    unsafe { Port::<u32>::new(port).write(value) };
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
