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
/// Set by the one context reporting a failure: from then on it writes without the lock (its
/// holder may be the very context that failure stopped).
static STOLEN: AtomicBool = AtomicBool::new(false);

fn port() -> &'static mut SerialPort {
    // SAFETY: the caller holds LOCK, or is the failing context (see `Com1`).
    unsafe { &mut *COM1.0.get() }
}

/// Set the port up (115200 baud, 8N1, FIFO, no interrupts), once, at boot.
pub fn init() {
    port().init();
}

/// Hold the lock with interrupts off, so that its holder is never preempted (or failed by an
/// interrupt of its own CPU) while others wait; `attempts` bounds the wait. Returns whether the
/// lock was taken and whether interrupts were on.
fn lock(attempts: Option<u64>) -> (bool, bool) {
    let enabled = crate::arch::interrupts_enabled();
    crate::arch::disable_interrupts();
    let mut tries = 0;
    while LOCK
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        tries += 1;
        if attempts.is_some_and(|n| tries >= n) {
            return (false, enabled);
        }
        core::hint::spin_loop();
    }
    (true, enabled)
}

fn unlock((taken, enabled): (bool, bool)) {
    if taken {
        LOCK.store(false, Ordering::Release);
    }
    if enabled {
        crate::arch::enable_interrupts();
    }
}

pub fn print(args: fmt::Arguments) {
    let held = lock(None);
    let _ = port().write_fmt(args);
    unlock(held);
}

/// For reports: after a failure took the port (`take_for_failure`), the reporting context
/// writes at once; before, as `print`, but never waiting for the lock for ever.
pub fn print_forced(args: fmt::Arguments) {
    if STOLEN.load(Ordering::Relaxed) {
        let _ = port().write_fmt(args);
        return;
    }
    let held = lock(Some(1_000_000));
    let _ = port().write_fmt(args);
    unlock(held);
}

/// The failing context takes the port for its whole report: it waits for the lock once, a
/// bounded time, and then writes without it (interrupts are already off).
pub fn take_for_failure() {
    let _ = lock(Some(1_000_000));
    STOLEN.store(true, Ordering::Relaxed);
}

/// A line built in memory, written with one call (no other output is spliced into it).
pub struct Line {
    bytes: [u8; 256],
    len: usize,
}

impl Line {
    pub const fn new() -> Self {
        Line {
            bytes: [0; 256],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Write for Line {
    /// Text past 256 bytes is dropped.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}
