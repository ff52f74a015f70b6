//! Descriptor tables and interrupt entry: every vector lands in `isr_common`, which saves the
//! whole register file and the SSE state in one frame and calls `isr_dispatch(frame, fx)` (the
//! kernel's, in `main.rs`: what each vector does is not the architecture's business).
//!
//! Every vector runs on an IST stack (reference baremetal-x86_64.md §4): the precompiled libcore
//! uses the red zone, so the CPU must never push onto the interrupted stack. IST1 takes NMIs,
//! IST2 double faults, IST3 other exceptions, IST4 device interrupts. Each CPU has its own GDT,
//! TSS and IST stacks; the IDT is shared. The tables are the `x86_64` crate's; the entry stubs
//! are hand-written, because that crate's `extern "x86-interrupt"` handlers need nightly, and
//! because `isr_common` saves the whole register file and SSE state the preemption path needs.

use core::cell::UnsafeCell;

use x86_64::VirtAddr;
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;

use crate::config::MAX_CPUS;

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

impl Frame {
    /// Whether the interrupted code ran in the kernel's code segment with interrupts on (where a
    /// timer interrupt may turn into a preemption).
    pub fn interrupted_kernel_with_interrupts_on(&self) -> bool {
        self.cs == 0x08 && self.rflags & (1 << 9) != 0
    }
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

unsafe extern "C" {
    static isr_stubs: u8;
}

const IST_STACK: usize = 16 * 1024;

#[repr(C, align(16))]
struct CpuTables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
    ist_stacks: [[u8; IST_STACK]; 4],
}

struct PerCpuTables(UnsafeCell<[CpuTables; MAX_CPUS]>);
// SAFETY: each CPU touches only its own element, once, while it boots.
unsafe impl Sync for PerCpuTables {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_TABLES: CpuTables = CpuTables {
    gdt: GlobalDescriptorTable::new(),
    tss: TaskStateSegment::new(),
    ist_stacks: [[0; IST_STACK]; 4],
};
static TABLES: PerCpuTables = PerCpuTables(UnsafeCell::new([EMPTY_TABLES; MAX_CPUS]));

struct SharedIdt(UnsafeCell<InterruptDescriptorTable>);
// SAFETY: written once by the BSP before any CPU loads it, then only read by the hardware.
unsafe impl Sync for SharedIdt {}
static IDT: SharedIdt = SharedIdt(UnsafeCell::new(InterruptDescriptorTable::new()));

/// The IST slot (0-based, as the TSS numbers them) for `vector`.
fn ist(vector: u8) -> u16 {
    match vector {
        2 => 0,
        8 => 1,
        0..=31 => 2,
        _ => 3,
    }
}

/// Fill the IDT: every vector an interrupt gate to its stub, on the IST for its kind (the
/// reserved exception vectors stay absent: the CPU never raises them).
pub fn init_idt() {
    // SAFETY: the BSP runs this once, before any CPU loads the IDT.
    let idt = unsafe { &mut *IDT.0.get() };
    let stubs = core::ptr::addr_of!(isr_stubs) as u64;
    let stub = |vector: u8| VirtAddr::new(stubs + 16 * vector as u64);
    macro_rules! exceptions {
        ($($field:ident = $vector:expr_2021),* $(,)?) => {$(
            // SAFETY: the stub for this vector pushes a dummy error code where the CPU pushes
            // none, so every stub leaves the frame `isr_common` expects; its IST stack is this
            // CPU's own (loaded with the TSS in `init_cpu`).
            unsafe { idt.$field.set_handler_addr(stub($vector)).set_stack_index(ist($vector)) };
        )*};
    }
    exceptions!(
        divide_error = 0,
        debug = 1,
        non_maskable_interrupt = 2,
        breakpoint = 3,
        overflow = 4,
        bound_range_exceeded = 5,
        invalid_opcode = 6,
        device_not_available = 7,
        double_fault = 8,
        invalid_tss = 10,
        segment_not_present = 11,
        stack_segment_fault = 12,
        general_protection_fault = 13,
        page_fault = 14,
        x87_floating_point = 16,
        alignment_check = 17,
        machine_check = 18,
        simd_floating_point = 19,
        virtualization = 20,
        cp_protection_exception = 21,
        hv_injection_exception = 28,
        vmm_communication_exception = 29,
        security_exception = 30,
    );
    for (entry, vector) in idt.slice_mut(32..=255).iter_mut().zip(32..=255u8) {
        // SAFETY: as above, for device interrupts (no error code).
        unsafe {
            entry
                .set_handler_addr(stub(vector))
                .set_stack_index(ist(vector))
        };
    }
}

/// Load this CPU's GDT (with its TSS and IST stacks) and the shared IDT.
pub fn init_cpu(cpu: usize) {
    // SAFETY: each CPU initialises only its own tables, once, before enabling interrupts.
    let t: &'static mut CpuTables = unsafe { &mut (*TABLES.0.get())[cpu] };
    for (i, stack) in t.ist_stacks.iter().enumerate() {
        let top = stack.as_ptr() as u64 + IST_STACK as u64;
        t.tss.interrupt_stack_table[i] = VirtAddr::new(top & !15);
    }
    // SAFETY: the TSS is a static's field, never written again once the GDT describes it.
    let tss: &'static TaskStateSegment = unsafe { &*core::ptr::addr_of!(t.tss) };
    // The boot code's selectors stay valid: code 0x08, data 0x10; the TSS takes 0x18.
    let mut gdt = GlobalDescriptorTable::new();
    gdt.append(Descriptor::kernel_code_segment());
    gdt.append(Descriptor::kernel_data_segment());
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    t.gdt = gdt;
    // SAFETY: the GDT and the IDT are statics, live for ever; the GDT keeps the selectors the
    // boot code loaded (0x08, 0x10); the IDT is complete (`init_idt` ran on the BSP before any
    // AP started).
    unsafe {
        t.gdt.load_unsafe();
        load_tss(tss_selector);
        (*IDT.0.get()).load_unsafe();
    }
}
