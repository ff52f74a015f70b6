//! COM1, for the log (the `uart_16550` crate). One writer at a time across CPUs (a spinlock);
//! interrupt and NMI handlers do not print except on the way to a failure.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use uart_16550::SerialPort;

struct Com1(UnsafeCell<SerialPort>);
// SAFETY: the port is used only by the holder of LOCK, or by the one context that failed (see
// `print_forced`), after which nothing else prints.
unsafe impl Sync for Com1 {}

// SAFETY: 0x3F8 is COM1 on the PC QEMU emulates; nothing else drives it.
static COM1: Com1 = Com1(UnsafeCell::new(unsafe { SerialPort::new(0x3F8) }));
static LOCK: AtomicBool = AtomicBool::new(false);

fn port() -> &'static mut SerialPort {
    // SAFETY: the caller holds LOCK, or is the failing context (see `Com1`).
    unsafe { &mut *COM1.0.get() }
}

/// Set the port up (115200 baud, 8N1, FIFO, no interrupts), once, at boot.
pub fn init() {
    port().init();
}

pub fn print(args: fmt::Arguments) {
    while LOCK
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    let _ = port().write_fmt(args);
    LOCK.store(false, Ordering::Release);
}

/// For a failure report from any context: does not wait for the lock forever.
pub fn print_forced(args: fmt::Arguments) {
    for _ in 0..1_000_000 {
        if LOCK
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            let _ = port().write_fmt(args);
            LOCK.store(false, Ordering::Release);
            return;
        }
        core::hint::spin_loop();
    }
    let _ = port().write_fmt(args);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}
