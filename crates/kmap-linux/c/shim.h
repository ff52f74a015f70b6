/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel as mm/highmem.c's kmap_local code sees it, on kmap's simulated machine.
 *
 * Linux's functions are compiled unchanged against this header in place of the kernel's:
 * types and macros for what is computation (PTE bits, the fixmap arithmetic), and a call into
 * the simulator (kmap_sim_*, in hooks.c) for everything that reads or changes machine state
 * (current, the CPU number, the counters, the slot PTEs, the TLB, WARN and BUG). Every such
 * call is an arrival point of the explorer, as every instrumented memory access is.
 *
 * The build script defines KM_MAX_IDX (the run's cells per stack), KMAP_FIXADDR_TOP and
 * KMAP_WINDOW_BASE (the simulator's layout), NR_CPUS, and the CONFIG_ options of the build.
 */
#ifndef KMAP_SHIM_H
#define KMAP_SHIM_H

#include <stddef.h>
#include <stdbool.h>

/* include/linux/kconfig.h's IS_ENABLED, for options defined to 1 or not at all. */
#define __ARG_PLACEHOLDER_1 0,
#define __take_second_arg(__ignored, val, ...) val
#define ____is_defined(arg1_or_junk) __take_second_arg(arg1_or_junk 1, 0)
#define ___is_defined(val) ____is_defined(__ARG_PLACEHOLDER_##val)
#define __is_defined(x) ___is_defined(x)
#define IS_ENABLED(option) __is_defined(option)

#define EXPORT_SYMBOL(sym)
#define EXPORT_SYMBOL_GPL(sym)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define likely(x) __builtin_expect(!!(x), 1)

/* Pages, PTEs and protections as on x86-64 (arch/x86/include/asm/pgtable_types.h). */
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
typedef unsigned long pteval_t;
typedef struct { pteval_t pte; } pte_t;
typedef struct { pteval_t pgprot; } pgprot_t;
#define _PAGE_PRESENT 1UL
#define _PAGE_RW 2UL
#define PAGE_KERNEL ((pgprot_t){ _PAGE_PRESENT | _PAGE_RW })
#define kmap_prot PAGE_KERNEL
#define pte_val(x) ((x).pte)
#define __pte(x) ((pte_t){ (x) })
#define pte_none(x) (!pte_val(x))
#define pte_pfn(x) (pte_val(x) >> PAGE_SHIFT)
#define pfn_pte(pfn, prot) __pte(((pteval_t)(pfn) << PAGE_SHIFT) | (prot).pgprot)

/* The kernel's address space: the fixmap grows down from KMAP_FIXADDR_TOP. */
#define PAGE_OFFSET KMAP_DIRECT_MAP
#define FIX_KMAP_BEGIN 0
#define FIX_KMAP_END (FIX_KMAP_BEGIN + (KM_MAX_IDX * NR_CPUS) - 1)
#define __fix_to_virt(x) (KMAP_FIXADDR_TOP - ((unsigned long)(x) << PAGE_SHIFT))
#define __virt_to_fix(x) ((KMAP_FIXADDR_TOP - ((x) & ~(PAGE_SIZE - 1))) >> PAGE_SHIFT)

/* A task as kmap_local knows it (include/linux/sched.h). */
struct kmap_ctrl {
	int idx;
	pte_t pteval[KM_MAX_IDX];
};
struct task_struct {
	struct kmap_ctrl kmap_ctrl;
};
struct page {
	char opaque;
};
struct mm_struct {
	int opaque;
};
extern struct mm_struct init_mm;

/*
 * The page table of the kmap window: the PTE of the page at address a is entry
 * (a - KMAP_WINDOW_BASE) / PAGE_SIZE, so that kmap_get_pte's &__kmap_pte[-idx] holds as on
 * x86. Never read or written as memory: ptep_get, set_pte_at and pte_clear are calls.
 */
extern pte_t kmap_sim_window_ptes[];
#define virt_to_kpte(vaddr) (&kmap_sim_window_ptes[((vaddr) - KMAP_WINDOW_BASE) >> PAGE_SHIFT])
/* struct page of frame pfn; never dereferenced. */
extern struct page kmap_sim_mem_map[];
#define page_to_pfn(page) ((unsigned long)((page) - kmap_sim_mem_map))

/* The simulator (hooks.c). */
struct task_struct *kmap_sim_current(void) __attribute__((const));
#define current (kmap_sim_current())
int kmap_sim_smp_processor_id(void);
#define smp_processor_id() kmap_sim_smp_processor_id()
void preempt_disable(void);
void preempt_enable(void);
void migrate_disable(void);
void migrate_enable(void);
void pagefault_disable(void);
void pagefault_enable(void);
bool in_hardirq(void);
bool irqs_disabled(void);
pte_t ptep_get(pte_t *ptep);
void kmap_sim_set_pte(pte_t *ptep, pte_t pte);
#define set_pte_at(mm, addr, ptep, pte) kmap_sim_set_pte((ptep), (pte))
void kmap_sim_pte_clear(pte_t *ptep);
#define pte_clear(mm, addr, ptep) kmap_sim_pte_clear(ptep)
void flush_tlb_one_kernel(unsigned long addr);
#define arch_flush_lazy_mmu_mode() do { } while (0)
bool PageHighMem(const struct page *page);
void *page_address(const struct page *page);
/* kmap_local_fork's memset, a call like the others (not a `rep stos` the hooks cannot see). */
void *kmap_sim_memset(void *s, int c, size_t n);
#define memset(s, c, n) kmap_sim_memset((s), (c), (n))

void kmap_sim_warn(const char *file, int line, const char *condition);
void kmap_sim_bug(const char *file, int line, const char *condition) __attribute__((noreturn));
#define WARN_ON_ONCE(condition) ({					\
	int __ret_warn_on = !!(condition);				\
	if (unlikely(__ret_warn_on))					\
		kmap_sim_warn(__FILE__, __LINE__, #condition);		\
	unlikely(__ret_warn_on);					\
})
#define BUG_ON(condition) do {						\
	if (unlikely(condition))					\
		kmap_sim_bug(__FILE__, __LINE__, #condition);		\
} while (0)
#define BUG() kmap_sim_bug(__FILE__, __LINE__, "BUG()")

#endif
