//! What the precompiled libcore of the host target expects from libc (reference
//! baremetal-x86_64.md §7): the memory functions, with `rep` string instructions so that the
//! compiler cannot turn them back into calls to themselves, and the personality symbol that
//! panic=abort never calls.

use core::arch::asm;

/// # Safety
///
/// `dest` and `src` are valid for `n` bytes and do not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's promise; rep movsb copies exactly n bytes forward.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _, options(nostack, preserves_flags))
    };
    dest
}

/// # Safety
///
/// `dest` and `src` are valid for `n` bytes (they may overlap).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize) + n {
        // SAFETY: a forward copy is right when dest starts before src or after its end.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: copy backwards from the last byte (direction flag set, then cleared again).
    unsafe {
        asm!("std", "rep movsb", "cld",
            inout("rcx") n => _, inout("rdi") dest.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
            options(nostack))
    };
    dest
}

/// # Safety
///
/// `dest` is valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's promise; rep stosb writes exactly n bytes.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") value as u8, options(nostack, preserves_flags))
    };
    dest
}

/// # Safety
///
/// `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n, within both buffers by the caller's promise.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

/// # Safety
///
/// As for [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same promise.
    unsafe { memcmp(a, b, n) }
}

/// libcore refers to it although panic=abort never unwinds.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
