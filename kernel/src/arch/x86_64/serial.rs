//! COM1, for the log and the records xtask reads (the `uart_16550` crate). Two CPUs, interrupt
//! handlers and NMIs may all want to print; a line must never be spliced into another, and the
//! context that stops the machine must get its report out even if the lock's holder is the very
//! context it stopped. One writer at a time across CPUs (a spinlock taken with interrupts off);
//! interrupt and NMI handlers do not print except on the way to a failure, which takes the port
//! for good.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use uart_16550::SerialPort;

struct Com1(UnsafeCell<SerialPort>);
// SAFETY: the port is used only by the holder of LOCK, or by the one context that failed (see
// `write_forced`), after which nothing else prints.
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
    let enabled = super::instructions::interrupts_enabled();
    super::instructions::disable_interrupts();
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
        super::instructions::enable_interrupts();
    }
}

/// Write with the lock held: whatever `f` writes, in as many pieces as it likes, no other
/// output splits (a record of `crate::record` is written this way).
pub fn write(f: impl FnOnce(&mut dyn Write)) {
    let held = lock(None);
    f(port());
    unlock(held);
}

/// For reports: after a failure took the port (`take_for_failure`), the reporting context
/// writes at once; before, as `write`, but never waiting for the lock for ever.
pub fn write_forced(f: impl FnOnce(&mut dyn Write)) {
    if STOLEN.load(Ordering::Relaxed) {
        f(port());
        return;
    }
    let held = lock(Some(1_000_000));
    f(port());
    unlock(held);
}

pub fn print(args: fmt::Arguments) {
    write(|port| {
        let _ = port.write_fmt(args);
    });
}

/// The failing context takes the port for its whole report: it waits for the lock once, a
/// bounded time, and then writes without it (interrupts are already off).
pub fn take_for_failure() {
    let _ = lock(Some(1_000_000));
    STOLEN.store(true, Ordering::Relaxed);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::arch::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}
