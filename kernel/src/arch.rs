//! The instructions the kernel needs, each behind a small function.

use core::arch::asm;

pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O to the serial port and the QEMU exit device only.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

pub fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    };
}

/// # Safety
///
/// The write must keep the machine consistent (the kernel writes only the GS base).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller's promise.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    };
}

pub fn invlpg(address: usize) {
    // SAFETY: invlpg only drops a translation from this CPU's TLB.
    unsafe { asm!("invlpg [{}]", in(reg) address, options(nostack, preserves_flags)) };
}

pub fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no effect.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack, with no other effect.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) };
    flags & (1 << 9) != 0
}

pub fn enable_interrupts() {
    // SAFETY: every vector has a handler once the IDT is loaded (the caller's context).
    unsafe { asm!("sti", options(nomem, nostack)) };
}

pub fn disable_interrupts() {
    // SAFETY: masking interrupts is always allowed in ring 0.
    unsafe { asm!("cli", options(nomem, nostack)) };
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
