//! The local APIC: this CPU's timer, end of interrupt, and interprocessor interrupts (INIT, SIPI,
//! NMI). The APIC page is mapped uncached by the boot page tables.

const BASE: usize = 0xFEE0_0000;
const ID: usize = 0x20;
const EOI: usize = 0xB0;
const SVR: usize = 0xF0;
const ICR_LOW: usize = 0x300;
const ICR_HIGH: usize = 0x310;
const LVT_TIMER: usize = 0x320;
const TIMER_INITIAL: usize = 0x380;
const TIMER_DIVIDE: usize = 0x3E0;

/// The timer's vector.
pub const TIMER_VECTOR: u8 = 0x20;

fn read(register: usize) -> u32 {
    // SAFETY: the APIC page is mapped at BASE; its registers are 32-bit and aligned.
    unsafe { core::ptr::read_volatile((BASE + register) as *const u32) }
}

fn write(register: usize, value: u32) {
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((BASE + register) as *mut u32, value) }
}

pub fn id() -> u32 {
    read(ID) >> 24
}

/// Enable the APIC and start a periodic timer (QEMU's APIC clock runs at 1 GHz: with divide 16,
/// `count` 625000 is about 10 ms).
pub fn init(count: u32) {
    write(SVR, 0x1FF);
    write(TIMER_DIVIDE, 0x3);
    write(LVT_TIMER, TIMER_VECTOR as u32 | 1 << 17);
    write(TIMER_INITIAL, count);
}

pub fn eoi() {
    write(EOI, 0);
}

fn send(destination: u32, command: u32) {
    // The ICR is two registers: with interrupts off, the timer handler's own IPI cannot land
    // between this destination and this command (NMI handlers send none).
    let enabled = super::instructions::interrupts_enabled();
    super::instructions::disable_interrupts();
    write(ICR_HIGH, destination << 24);
    write(ICR_LOW, command);
    while read(ICR_LOW) & (1 << 12) != 0 {
        core::hint::spin_loop();
    }
    if enabled {
        super::instructions::enable_interrupts();
    }
}

/// An NMI to the CPU with APIC id `destination` (never the "self" shorthand, which the SDM
/// says is invalid for NMIs).
pub fn send_nmi(destination: u32) {
    send(destination, 0b100 << 8 | 1 << 14);
}

/// INIT, then two start-up IPIs with vector `page` (the trampoline at `page * 4096`), to every
/// other CPU.
pub fn start_aps(page: u8) {
    write(ICR_HIGH, 0);
    write(ICR_LOW, 0xC4500);
    super::instructions::delay(10_000_000);
    for _ in 0..2 {
        write(ICR_LOW, 0xC4600 | page as u32);
        super::instructions::delay(200_000);
    }
}

/// A fixed interrupt with `vector` to the CPU with APIC id `destination`.
pub fn send_fixed(destination: u32, vector: u8) {
    send(destination, vector as u32 | 1 << 14);
}
