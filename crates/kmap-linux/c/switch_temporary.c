/*
 * The September 2020 RFC's switch (the behavioural reference, linux-kmap-local.md 3.1), written
 * after Linux's __kmap_local_sched_out/in loops (GPL-2.0, like them): prepare_task_switch()
 * calls it while current is still prev; it clears all of prev's slots, then installs all of
 * next's saved PTEs. An interrupt that maps in between indexes by current (prev), not by the
 * slots being restored. tglx's fix splits it into __kmap_local_sched_out() and
 * __kmap_local_sched_in(), around the switch of current. Adapted to the simulator: the guard
 * cells of CONFIG_DEBUG_KMAP_LOCAL (which came later) are skipped as the split hooks skip them,
 * and the machine runs it with interrupts on, as its rfc-v1 model runs the swap (reference 3.2).
 */
void kmap_switch_temporary(struct task_struct *prev, struct task_struct *next)
{
	pte_t *kmap_pte;
	int i;

	for (i = 0; i < prev->kmap_ctrl.idx; i++) {
		pte_t pteval = prev->kmap_ctrl.pteval[i];
		unsigned long addr;
		int idx;

		if (IS_ENABLED(CONFIG_DEBUG_KMAP_LOCAL) && !(i & 0x01))
			continue;
		if (WARN_ON_ONCE(pte_none(pteval)))
			continue;
		idx = arch_kmap_local_map_idx(i, pte_pfn(pteval));
		addr = __fix_to_virt(FIX_KMAP_BEGIN + idx);
		kmap_pte = kmap_get_pte(addr, idx);
		arch_kmap_local_pre_unmap(addr);
		pte_clear(&init_mm, addr, kmap_pte);
		arch_kmap_local_post_unmap(addr);
	}
	for (i = 0; i < next->kmap_ctrl.idx; i++) {
		pte_t pteval = next->kmap_ctrl.pteval[i];
		unsigned long addr;
		int idx;

		if (IS_ENABLED(CONFIG_DEBUG_KMAP_LOCAL) && !(i & 0x01))
			continue;
		if (WARN_ON_ONCE(pte_none(pteval)))
			continue;
		idx = arch_kmap_local_map_idx(i, pte_pfn(pteval));
		addr = __fix_to_virt(FIX_KMAP_BEGIN + idx);
		kmap_pte = kmap_get_pte(addr, idx);
		set_pte_at(&init_mm, addr, kmap_pte, pteval);
		arch_kmap_local_post_map(addr, pteval);
	}
}
