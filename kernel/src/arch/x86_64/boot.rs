//! From the PVH entry to `kmain`: a 32-bit stub that builds the boot page tables, enters long
//! mode and calls Rust; and the trampoline that brings an application processor to the same
//! place (`ap_main`), with `start_ap`, which sends it there.
//!
//! Hand-written: no crate boots a PVH ELF without a bootloader, and the AP must go from 16-bit
//! real mode to long mode on page tables that exist before any Rust code runs.
//!
//! The boot page tables map, with 2 MiB pages, only the low `LOWMEM_MIB` of physical memory
//! (the kernel's permanent direct map: image, stacks, page tables, lowmem frames) and the local
//! APIC. Every frame above is highmem: no kernel address reaches it except a kmap slot.

core::arch::global_asm!(
    // PVH: QEMU reads the 32-bit entry point from this note (a host-sized field on x86_64).
    ".section .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4",
    ".long 8",
    ".long 18", // XEN_ELFNOTE_PHYS32_ENTRY
    ".asciz \"Xen\"",
    ".balign 4",
    ".quad _start32",
    "",
    ".section .boot.text, \"ax\"",
    ".code32",
    ".global _start32",
    "_start32:",
    "    mov dword ptr [boot_start_info], ebx",
    "    mov esp, offset boot_stack_top",
    "    mov edi, offset boot_pml4",
    "    xor eax, eax",
    "    mov ecx, 6 * 1024",
    "    rep stosd",
    "    mov eax, offset boot_pdpt",
    "    or eax, 3",
    "    mov dword ptr [boot_pml4], eax",
    "    mov eax, offset boot_pd0",
    "    or eax, 3",
    "    mov dword ptr [boot_pdpt], eax",
    "    mov eax, offset boot_pd3",
    "    or eax, 3",
    "    mov dword ptr [boot_pdpt + 24], eax",
    "    xor ecx, ecx",
    "2:",
    "    mov eax, ecx",
    "    shl eax, 21",
    "    or eax, 0x83", // present, writable, 2 MiB
    "    mov dword ptr [boot_pd0 + ecx * 8], eax",
    "    inc ecx",
    "    cmp ecx, {lowmem_pages}",
    "    jb 2b",
    "    mov eax, 0xFEE00000 | 0x9B", // the LAPIC: present, writable, uncached, 2 MiB
    "    mov dword ptr [boot_pd3 + 503 * 8], eax",
    "    jmp enter_long_mode",
    "",
    // Shared by the BSP and the APs: PAE, CR3, EFER.LME, paging, then the 64-bit GDT.
    "enter_long_mode:",
    "    mov eax, cr4",
    "    or eax, 0x20",
    "    mov cr4, eax",
    "    mov eax, offset boot_pml4",
    "    mov cr3, eax",
    "    mov ecx, 0xC0000080",
    "    rdmsr",
    "    or eax, 0x100",
    "    wrmsr",
    "    mov eax, cr0",
    "    or eax, 0x80000001",
    "    mov cr0, eax",
    "    lgdt [boot_gdt_pointer]",
    ".byte 0xEA", // ljmp 0x08:_start64
    ".long _start64",
    ".word 0x08",
    "",
    ".code64",
    "_start64:",
    "    mov ax, 0x10",
    "    mov ds, ax",
    "    mov es, ax",
    "    mov ss, ax",
    "    xor eax, eax",
    "    mov fs, ax",
    "    mov gs, ax",
    "    mov rax, cr0", // SSE before any Rust code: libcore uses it
    "    and ax, 0xFFFB",
    "    or ax, 0x2",
    "    mov cr0, rax",
    "    mov rax, cr4",
    "    or ax, 0x600",
    "    mov cr4, rax",
    "    cmp byte ptr [ap_booting], 0",
    "    jne 3f",
    "    mov rsp, offset boot_stack_top",
    "    mov edi, dword ptr [boot_start_info]",
    "    call kmain",
    "4:  hlt",
    "    jmp 4b",
    "3:",
    "    mov rsp, qword ptr [ap_stack_top]",
    "    call ap_main",
    "5:  hlt",
    "    jmp 5b",
    "",
    // The AP trampoline, copied to 0x8000 (SIPI vector 8): 16-bit real mode to protected
    // mode, then the shared path above. Offsets are from the copy's start.
    ".global ap_trampoline_start",
    ".global ap_trampoline_end",
    ".code16",
    "ap_trampoline_start:",
    "    cli",
    "    xor ax, ax",
    "    mov ds, ax",
    ".byte 0x0F, 0x01, 0x16", // lgdt [0x8000 + gdt32 pointer offset]
    ".word 0x8000 + (ap_gdt32_pointer - ap_trampoline_start)",
    "    mov eax, cr0",
    "    or al, 1",
    "    mov cr0, eax",
    ".byte 0x66, 0xEA", // ljmp 0x08:ap_protected (32-bit offset)
    ".long ap_protected",
    ".word 0x08",
    ".balign 8",
    "ap_gdt32:",
    ".quad 0",
    ".quad 0x00CF9A000000FFFF",
    ".quad 0x00CF92000000FFFF",
    "ap_gdt32_pointer:",
    ".word 23",
    ".long 0x8000 + (ap_gdt32 - ap_trampoline_start)",
    "ap_trampoline_end:",
    ".code32",
    "ap_protected:",
    "    mov ax, 0x10",
    "    mov ds, ax",
    "    mov es, ax",
    "    mov ss, ax",
    "    jmp enter_long_mode",
    "",
    ".section .data",
    ".balign 8",
    "boot_gdt:",
    ".quad 0",
    ".quad 0x00AF9A000000FFFF",
    ".quad 0x00CF92000000FFFF",
    "boot_gdt_pointer:",
    ".word 23",
    ".quad boot_gdt",
    ".global ap_booting",
    "ap_booting: .byte 0",
    ".balign 8",
    ".global ap_stack_top",
    "ap_stack_top: .quad 0",
    "boot_start_info: .long 0",
    "",
    ".section .bss.boot, \"aw\", @nobits",
    ".balign 4096",
    ".global boot_pml4",
    "boot_pml4: .skip 4096",
    "boot_pdpt: .skip 4096",
    "boot_pd0: .skip 4096",
    "boot_pd1: .skip 4096",
    "boot_pd2: .skip 4096",
    "boot_pd3: .skip 4096",
    "boot_stack: .skip 65536",
    "boot_stack_top:",
    ".code64",
    lowmem_pages = const crate::config::LOWMEM_MIB / 2,
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static mut ap_booting: u8;
    static mut ap_stack_top: u64;
}

/// Start the second CPU at `ap_main` on the stack whose top is `stack_top`; whether it said it
/// runs (`online`) within about a second.
pub fn start_ap(stack_top: usize, online: impl Fn() -> bool) -> bool {
    // SAFETY: the trampoline's bytes are in the kernel image; 0x8000 is free low memory inside
    // the identity map; the AP reads ap_booting and ap_stack_top only after the SIPI.
    unsafe {
        let start = core::ptr::addr_of!(ap_trampoline_start);
        let length = core::ptr::addr_of!(ap_trampoline_end) as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, 0x8000 as *mut u8, length);
        core::ptr::write_volatile(
            core::ptr::addr_of_mut!(ap_stack_top),
            (stack_top & !15) as u64,
        );
        core::ptr::write_volatile(core::ptr::addr_of_mut!(ap_booting), 1);
    }
    super::apic::start_aps(8);
    for _ in 0..1_000 {
        if online() {
            return true;
        }
        super::instructions::delay(100_000);
    }
    false
}
