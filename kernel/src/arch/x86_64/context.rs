//! Switching stacks, and turning a timer interrupt into a preemption on the task's own stack.
//!
//! A switch saves the callee-saved registers on the outgoing stack, stores its stack pointer and
//! loads the incoming one (`switch_stacks`). A new task's first switch-in returns into
//! `task_trampoline`, which calls its entry with its argument. The timer interrupt runs on an IST
//! stack and must not switch there: `redirect_to_preemption` copies the interrupted context onto
//! the task's own stack, below its 128-byte red zone (libcore uses it), and rewrites the
//! interrupt frame so that `iretq` lands in `preempt_trampoline`, which calls
//! `preempt_schedule(context)` (the scheduler's) and then returns to where the task was
//! interrupted, every register and the SSE state restored. Hand-written: the preemption path
//! needs the whole register file saved in one frame.

use super::interrupts::{Frame, FxArea};

core::arch::global_asm!(
    ".section .text",
    // switch_stacks(prev_rsp: *mut usize, next_rsp: usize)
    ".global switch_stacks",
    "switch_stacks:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov [rdi], rsp",
    "    mov rsp, rsi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    // A new task's first return from switch_stacks lands here: its entry in r13, its argument
    // in r12 (see `initial_stack`).
    "task_trampoline:",
    "    mov rdi, r12",
    "    and rsp, -16",
    "    call r13",
    "    ud2",
    // The timer made an interrupted task come here, rsp at a saved context (see
    // `redirect_to_preemption`).
    ".global preempt_trampoline",
    "preempt_trampoline:",
    "    mov rdi, rsp",
    "    call preempt_schedule",
    "    cli",
    "    fxrstor64 [rsp]",
    "    add rsp, 512",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rbp",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rbx",
    "    pop rax",
    "    iretq",
);

unsafe extern "C" {
    fn switch_stacks(prev_rsp: *mut usize, next_rsp: usize);
    static task_trampoline: u8;
    static preempt_trampoline: u8;
}

/// Save the running stack's pointer in `*prev_rsp` and continue on the stack saved at
/// `next_rsp`; returns when something switches back to the saved one.
///
/// # Safety
///
/// `prev_rsp` is writable and nothing else reads it until this switch is done; `next_rsp` was
/// saved by `switch` or made by `initial_stack`, and its stack runs nowhere else.
pub unsafe fn switch(prev_rsp: *mut usize, next_rsp: usize) {
    // SAFETY: the caller's promise.
    unsafe { switch_stacks(prev_rsp, next_rsp) }
}

/// What a task runs when it is first switched to: `entry(argument)`, which never returns.
pub type Entry = extern "C" fn(usize) -> !;

/// Lay out the stack whose top is `top` so that its first switch-in calls `entry(argument)`;
/// returns the stack pointer to switch to.
///
/// # Safety
///
/// The stack below `top` (64 bytes of it) is writable, and nothing runs on it yet.
pub unsafe fn initial_stack(top: usize, entry: Entry, argument: usize) -> usize {
    let top = top & !15;
    // r15 r14 r13 r12 rbx rbp, the return address, padding.
    let words = [
        0,
        0,
        entry as usize as u64,
        argument as u64,
        0,
        0,
        core::ptr::addr_of!(task_trampoline) as u64,
        0,
    ];
    let base = top - words.len() * 8;
    for (i, word) in words.iter().enumerate() {
        // SAFETY: the caller's promise: within the stack, which nothing runs on yet.
        unsafe { core::ptr::write((base + i * 8) as *mut u64, *word) };
    }
    base
}

/// The saved context of a preempted task, on its own stack: the interrupt frame without the
/// vector and error code, so that the trampoline ends with a plain `iretq`.
#[repr(C, align(16))]
pub struct PreemptContext {
    fx: [u8; 512],
    gprs: [u64; 15],
    iret: [u64; 5],
}

/// From the timer interrupt: make the interrupted task, on return, call `preempt_schedule` on its
/// own stack with interrupts off, and then continue where it was interrupted.
///
/// # Safety
///
/// `frame` is the interrupt frame of a kernel task interrupted with interrupts on, on its own
/// stack; that stack has room for one more `PreemptContext` below its red zone, and nothing else
/// runs on it while the task is interrupted.
pub unsafe fn redirect_to_preemption(frame: &mut Frame, fx: &FxArea) {
    let size = core::mem::size_of::<PreemptContext>() as u64;
    let at = (frame.rsp - 128 - size) & !15;
    let context = at as *mut PreemptContext;
    // SAFETY: the caller's promise: `at` is below the interrupted stack pointer and its red
    // zone, on the task's own stack, which nothing else uses meanwhile.
    unsafe {
        (*context).fx = fx.0;
        (*context).gprs = [
            frame.r15, frame.r14, frame.r13, frame.r12, frame.r11, frame.r10, frame.r9, frame.r8,
            frame.rbp, frame.rdi, frame.rsi, frame.rdx, frame.rcx, frame.rbx, frame.rax,
        ];
        (*context).iret = [frame.rip, frame.cs, frame.rflags, frame.rsp, frame.ss];
    }
    frame.rip = core::ptr::addr_of!(preempt_trampoline) as u64;
    frame.rsp = at;
    frame.rflags &= !(1 << 9);
}
