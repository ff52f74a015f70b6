//! COM1, for the log. One writer at a time across CPUs (a spinlock); interrupt and NMI handlers
//! do not print except on the way to a failure.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::{inb, outb};

const COM1: u16 = 0x3F8;
static LOCK: AtomicBool = AtomicBool::new(false);

pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts
    outb(COM1 + 3, 0x80); // divisor latch
    outb(COM1, 0x01); // 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1
    outb(COM1 + 2, 0xC7); // FIFO
}

struct Port;

impl Write for Port {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            while inb(COM1 + 5) & 0x20 == 0 {}
            outb(COM1, byte);
        }
        Ok(())
    }
}

pub fn print(args: fmt::Arguments) {
    while LOCK
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    let _ = Port.write_fmt(args);
    LOCK.store(false, Ordering::Release);
}

/// For a failure report from any context: does not wait for the lock forever.
pub fn print_forced(args: fmt::Arguments) {
    for _ in 0..1_000_000 {
        if LOCK
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            let _ = Port.write_fmt(args);
            LOCK.store(false, Ordering::Release);
            return;
        }
        core::hint::spin_loop();
    }
    let _ = Port.write_fmt(args);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}
