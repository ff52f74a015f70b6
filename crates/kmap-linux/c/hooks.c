// SPDX-License-Identifier: GPL-2.0
/*
 * The calls Linux's instrumented code makes into the simulator: GCC's TSAN hooks (before
 * every memory access) and the shim's kernel functions (shim.h). Each passes its return
 * address, which names the call site (the build script labels every call of the compiled
 * Linux code), to the one Rust entry point of its kind in src/glue.rs. Compiled without
 * instrumentation.
 */
#include <stdbool.h>
#include <stddef.h>
#include "shim.h"

#define SITE __builtin_return_address(0)

/* The accesses (src/glue.rs: ACCESS_*). */
enum { ACCESS_WRITE = 1, ACCESS_VOLATILE = 2 };
/* The shim's calls (src/glue.rs: Call). */
enum {
	CALL_CURRENT, CALL_CPU, CALL_PREEMPT_DISABLE, CALL_PREEMPT_ENABLE, CALL_MIGRATE_DISABLE,
	CALL_MIGRATE_ENABLE, CALL_PAGEFAULT_DISABLE, CALL_PAGEFAULT_ENABLE, CALL_IN_HARDIRQ,
	CALL_IRQS_DISABLED, CALL_PTE_GET, CALL_PTE_SET, CALL_PTE_CLEAR, CALL_FLUSH_ONE,
	CALL_PAGE_HIGHMEM, CALL_PAGE_ADDRESS, CALL_MEMSET,
};

void kmap_linux_access(const void *addr, unsigned size, unsigned flags, const void *site);
unsigned long kmap_linux_call(unsigned call, unsigned long a, unsigned long b,
			      unsigned long c, const void *site);
void kmap_linux_warn(const char *file, int line, const char *condition, const void *site);
void kmap_linux_bug(const char *file, int line, const char *condition, const void *site)
	__attribute__((noreturn));

struct mm_struct init_mm;
/* Never read or written: their addresses name PTEs and pages (shim.h). */
pte_t kmap_sim_window_ptes[NR_CPUS * 33];
struct page kmap_sim_mem_map[1 << 20];

#define TSAN_ACCESS(size)							\
void __tsan_read##size(void *addr) { kmap_linux_access(addr, size, 0, SITE); }		\
void __tsan_write##size(void *addr) { kmap_linux_access(addr, size, ACCESS_WRITE, SITE); } \
void __tsan_unaligned_read##size(void *addr) { kmap_linux_access(addr, size, 0, SITE); } \
void __tsan_unaligned_write##size(void *addr)						\
	{ kmap_linux_access(addr, size, ACCESS_WRITE, SITE); }				\
void __tsan_volatile_read##size(void *addr)						\
	{ kmap_linux_access(addr, size, ACCESS_VOLATILE, SITE); }			\
void __tsan_volatile_write##size(void *addr)						\
	{ kmap_linux_access(addr, size, ACCESS_WRITE | ACCESS_VOLATILE, SITE); }	\
void __tsan_unaligned_volatile_read##size(void *addr)					\
	{ kmap_linux_access(addr, size, ACCESS_VOLATILE, SITE); }			\
void __tsan_unaligned_volatile_write##size(void *addr)					\
	{ kmap_linux_access(addr, size, ACCESS_WRITE | ACCESS_VOLATILE, SITE); }

TSAN_ACCESS(1)
TSAN_ACCESS(2)
TSAN_ACCESS(4)
TSAN_ACCESS(8)
TSAN_ACCESS(16)

void __tsan_read_range(void *addr, unsigned long size)
{
	kmap_linux_access(addr, size, 0, SITE);
}
void __tsan_write_range(void *addr, unsigned long size)
{
	kmap_linux_access(addr, size, ACCESS_WRITE, SITE);
}
/* The module constructor GCC adds; there is no runtime to start. */
void __tsan_init(void) { }

#define CALL(call, a, b, c) kmap_linux_call(call, (unsigned long)(a), (unsigned long)(b), \
					    (unsigned long)(c), SITE)

struct task_struct *kmap_sim_current(void)
{
	return (struct task_struct *)CALL(CALL_CURRENT, 0, 0, 0);
}
int kmap_sim_smp_processor_id(void) { return (int)CALL(CALL_CPU, 0, 0, 0); }
void preempt_disable(void) { CALL(CALL_PREEMPT_DISABLE, 0, 0, 0); }
void preempt_enable(void) { CALL(CALL_PREEMPT_ENABLE, 0, 0, 0); }
void migrate_disable(void) { CALL(CALL_MIGRATE_DISABLE, 0, 0, 0); }
void migrate_enable(void) { CALL(CALL_MIGRATE_ENABLE, 0, 0, 0); }
void pagefault_disable(void) { CALL(CALL_PAGEFAULT_DISABLE, 0, 0, 0); }
void pagefault_enable(void) { CALL(CALL_PAGEFAULT_ENABLE, 0, 0, 0); }
bool in_hardirq(void) { return CALL(CALL_IN_HARDIRQ, 0, 0, 0) != 0; }
bool irqs_disabled(void) { return CALL(CALL_IRQS_DISABLED, 0, 0, 0) != 0; }
pte_t ptep_get(pte_t *ptep) { return __pte(CALL(CALL_PTE_GET, ptep, 0, 0)); }
void kmap_sim_set_pte(pte_t *ptep, pte_t pte) { CALL(CALL_PTE_SET, ptep, pte_val(pte), 0); }
void kmap_sim_pte_clear(pte_t *ptep) { CALL(CALL_PTE_CLEAR, ptep, 0, 0); }
void flush_tlb_one_kernel(unsigned long addr) { CALL(CALL_FLUSH_ONE, addr, 0, 0); }
bool PageHighMem(const struct page *page)
{
	return CALL(CALL_PAGE_HIGHMEM, page_to_pfn(page), 0, 0) != 0;
}
void *page_address(const struct page *page)
{
	return (void *)CALL(CALL_PAGE_ADDRESS, page_to_pfn(page), 0, 0);
}
#undef memset
void *kmap_sim_memset(void *s, int c, size_t n)
{
	CALL(CALL_MEMSET, s, c, n);
	return s;
}
void kmap_sim_warn(const char *file, int line, const char *condition)
{
	kmap_linux_warn(file, line, condition, SITE);
}
void kmap_sim_bug(const char *file, int line, const char *condition)
{
	kmap_linux_bug(file, line, condition, SITE);
}
