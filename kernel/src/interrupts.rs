//! Descriptor tables and interrupt entry.
//!
//! Every vector runs on an IST stack (reference baremetal-x86_64.md §4): the precompiled libcore
//! uses the red zone, so the CPU must never push onto the interrupted stack. IST1 takes NMIs,
//! IST2 double faults, IST3 other exceptions, IST4 device interrupts. Each CPU has its own GDT,
//! TSS and IST stacks; the IDT is shared.

use core::cell::UnsafeCell;

use crate::MAX_CPUS;

/// The SSE state `isr_common` saves, in a 16-byte aligned area of its own (so that entry
/// alignment never matters to `fxsave`).
#[repr(C, align(16))]
pub struct FxArea(pub [u8; 512]);

/// What `isr_common` saves: the general registers, and the CPU's frame.
#[repr(C)]
pub struct Frame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

core::arch::global_asm!(
    ".section .text",
    ".balign 16",
    ".global isr_stubs",
    "isr_stubs:",
    ".set vec, 0",
    ".rept 256",
    ".balign 16",
    ".if (vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)",
    "    pushq $vec",
    ".else",
    "    pushq $0",
    "    pushq $vec",
    ".endif",
    "    jmp isr_common",
    ".set vec, vec + 1",
    ".endr",
    "isr_common:",
    "    pushq %rax",
    "    pushq %rbx",
    "    pushq %rcx",
    "    pushq %rdx",
    "    pushq %rsi",
    "    pushq %rdi",
    "    pushq %rbp",
    "    pushq %r8",
    "    pushq %r9",
    "    pushq %r10",
    "    pushq %r11",
    "    pushq %r12",
    "    pushq %r13",
    "    pushq %r14",
    "    pushq %r15",
    "    movq %rsp, %rbx", // the Frame (rbx is callee-saved: it survives the call)
    "    subq $512, %rsp",
    "    andq $-16, %rsp",
    "    fxsave64 (%rsp)",
    "    movq %rbx, %rdi",
    "    movq %rsp, %rsi",
    "    cld",
    "    call isr_dispatch",
    "    fxrstor64 (%rsp)",
    "    movq %rbx, %rsp",
    "    popq %r15",
    "    popq %r14",
    "    popq %r13",
    "    popq %r12",
    "    popq %r11",
    "    popq %r10",
    "    popq %r9",
    "    popq %r8",
    "    popq %rbp",
    "    popq %rdi",
    "    popq %rsi",
    "    popq %rdx",
    "    popq %rcx",
    "    popq %rbx",
    "    popq %rax",
    "    addq $16, %rsp",
    "    iretq",
    options(att_syntax)
);

extern "C" {
    static isr_stubs: u8;
}

const IST_STACK: usize = 16 * 1024;

#[repr(C, packed)]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap: u16,
}

#[repr(C, align(16))]
struct CpuTables {
    gdt: [u64; 5],
    tss: Tss,
    ist_stacks: [[u8; IST_STACK]; 4],
}

struct PerCpuTables(UnsafeCell<[CpuTables; MAX_CPUS]>);
// SAFETY: each CPU touches only its own element, once, while it boots.
unsafe impl Sync for PerCpuTables {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_TABLES: CpuTables = CpuTables {
    gdt: [0; 5],
    tss: Tss {
        reserved0: 0,
        rsp: [0; 3],
        reserved1: 0,
        ist: [0; 7],
        reserved2: 0,
        reserved3: 0,
        iomap: 104,
    },
    ist_stacks: [[0; IST_STACK]; 4],
};
static TABLES: PerCpuTables = PerCpuTables(UnsafeCell::new([EMPTY_TABLES; MAX_CPUS]));

#[repr(C, align(16))]
struct Idt([u64; 512]);
struct SharedIdt(UnsafeCell<Idt>);
// SAFETY: written once by the BSP before any CPU loads it, then only read by the hardware.
unsafe impl Sync for SharedIdt {}
static IDT: SharedIdt = SharedIdt(UnsafeCell::new(Idt([0; 512])));

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Fill the IDT: every vector an interrupt gate to its stub, on the IST for its kind.
pub fn init_idt() {
    // SAFETY: the BSP runs this once, before any CPU loads the IDT.
    let idt = unsafe { &mut *IDT.0.get() };
    let stubs = core::ptr::addr_of!(isr_stubs) as u64;
    for vector in 0..256u64 {
        let handler = stubs + 16 * vector;
        let ist: u64 = match vector {
            2 => 1,
            8 => 2,
            0..=31 => 3,
            _ => 4,
        };
        let low = (handler & 0xFFFF)
            | (0x08 << 16)
            | (ist << 32)
            | (0x8E << 40)
            | ((handler >> 16) & 0xFFFF) << 48;
        idt.0[2 * vector as usize] = low;
        idt.0[2 * vector as usize + 1] = handler >> 32;
    }
}

/// Load this CPU's GDT (with its TSS and IST stacks) and the shared IDT.
pub fn init_cpu(cpu: usize) {
    // SAFETY: each CPU initialises only its own tables, once, before enabling interrupts.
    let t = unsafe { &mut (*TABLES.0.get())[cpu] };
    for (i, stack) in t.ist_stacks.iter().enumerate() {
        let top = stack.as_ptr() as u64 + IST_STACK as u64;
        t.tss.ist[i] = top & !15;
    }
    let tss = core::ptr::addr_of!(t.tss) as u64;
    t.gdt = [
        0,
        0x00AF9A000000FFFF,
        0x00CF92000000FFFF,
        (103 & 0xFFFF) | (tss & 0xFFFFFF) << 16 | 0x89 << 40 | ((tss >> 24) & 0xFF) << 56,
        tss >> 32,
    ];
    let gdt = Pointer {
        limit: 39,
        base: t.gdt.as_ptr() as u64,
    };
    let idt = Pointer {
        limit: 4095,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the GDT keeps the boot code and data selectors (0x08, 0x10) and adds this CPU's
    // TSS at 0x18; the IDT is complete (`init_idt` ran on the BSP before any AP started).
    unsafe {
        core::arch::asm!(
            "lgdt [{gdt}]",
            "mov ax, 0x18",
            "ltr ax",
            "lidt [{idt}]",
            gdt = in(reg) &gdt,
            idt = in(reg) &idt,
            out("ax") _,
            options(nostack)
        );
    }
}

#[no_mangle]
extern "C" fn isr_dispatch(frame: &mut Frame, fx: &mut FxArea) {
    crate::handlers::dispatch(frame, fx);
}
