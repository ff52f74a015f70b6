//! One test per rule of `shared/reference/linux-kmap-local.md`, named after the rule, against the
//! recording host platform.

mod support;

use kmap::{
    Cell, Checkpoint, CpuId, Frame, KmapStack, MapError, MappingsHeld, Point, Pte, Report, Slot,
    UnmapError, assert_no_mappings,
};
use kmap_host::{Counter, Event, HostPlatform, PROT_READ_ONLY, PTE_WRITE};
use support::*;

fn slot(cpu: u32, cell: usize) -> Slot {
    Slot {
        cpu: CpuId(cpu),
        cell: Cell(cell),
    }
}

// ---- M: map -------------------------------------------------------------------------------

#[test]
fn rule_m0_lowmem_frame_takes_the_direct_path_without_state_change() {
    let p = machine();
    let before = state(&p, 3, 2);
    let addr = map(&p, 3).unwrap();
    assert_eq!(
        Some(addr),
        kmap::Platform::direct_map(&p, Frame::new(3)).map(|a| a.as_usize())
    );
    assert_eq!(p.events(), vec![], "the fast path touches nothing");
    unmap(&p, addr + 100).unwrap();
    assert_eq!(
        p.events(),
        vec![],
        "unmapping a direct-map address is a no-op"
    );
    assert_eq!(state(&p, 3, 2), before);
}

#[test]
fn rule_m0_force_map_puts_lowmem_frames_in_a_slot() {
    let p: HostPlatform<16, false, true> = HostPlatform::new(1, FRAMES, LOWMEM, 1);
    let addr = map(&p, 3).unwrap();
    assert_eq!(p.task(0).depth(), 1);
    assert_eq!(
        HostPlatform::<16, false, true>::pte_frame(p.pte(0, 0)),
        Frame::new(3)
    );
    let direct = kmap::Platform::direct_map(&p, Frame::new(3))
        .unwrap()
        .as_usize();
    assert_eq!(
        unmap(&p, direct),
        Err(UnmapError::NotKmapAddress {
            addr: kmap::VirtAddr::new(direct)
        }),
        "under force-map only slot addresses come from map"
    );
    unmap(&p, addr).unwrap();
    assert_eq!(p.task(0).depth(), 0);
}

#[test]
fn rule_m0_map_pfn_always_uses_a_slot() {
    let p = machine();
    let addr = map_pfn(&p, 3).unwrap();
    assert_eq!(p.task(0).depth(), 1);
    assert_eq!(HostPlatform::<16>::pte_frame(p.pte(0, 0)), Frame::new(3));
    assert_ne!(
        Some(addr),
        kmap::Platform::direct_map(&p, Frame::new(3)).map(|a| a.as_usize())
    );
    unmap(&p, addr).unwrap();
}

#[test]
fn rule_m1_map_steps_happen_in_linux_order() {
    let p = machine();
    map(&p, 20).unwrap();
    let pte = p.task(0).saved(Cell(0));
    assert_eq!(
        p.events(),
        vec![
            Event::Count(Counter::Migrate, 1),
            Event::Point(Point::MapMigrationDisabled),
            Event::Count(Counter::Preempt, 1),
            Event::Point(Point::MapPreemptionDisabled),
            Event::Point(Point::MapHomeSet),
            Event::Point(Point::MapPushed),
            Event::Install(slot(0, 0), pte),
            Event::Point(Point::MapInstalled),
            Event::Point(Point::MapRecorded),
            Event::Count(Counter::Preempt, -1),
            Event::Point(Point::MapPreemptionEnabled),
        ]
    );
}

#[test]
fn rule_m1_push_precedes_install_and_record_precedes_preempt_enable() {
    let p = machine();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = seen.clone();
    p.on_point(Some(Box::new(move |p: &HostPlatform, point| {
        log.borrow_mut().push((
            point,
            p.task(0).depth(),
            p.pte(0, 0),
            p.task(0).saved(Cell(0)),
            p.counter(Counter::Preempt),
        ));
    })));
    map(&p, 20).unwrap();
    let seen = seen.borrow();
    let at = |point| *seen.iter().find(|s| s.0 == point).unwrap();
    let (_, depth, slot_pte, saved, _) = at(Point::MapPushed);
    assert_eq!(
        (depth, slot_pte, saved),
        (1, Pte::EMPTY, Pte::EMPTY),
        "pushed, nothing installed yet"
    );
    let (_, _, slot_pte, saved, preempt) = at(Point::MapInstalled);
    assert!(
        !slot_pte.is_empty() && saved.is_empty() && preempt == 1,
        "installed, not yet recorded, preemption off"
    );
    let (_, _, _, saved, preempt) = at(Point::MapRecorded);
    assert!(
        !saved.is_empty() && preempt == 1,
        "recorded while preemption is still off"
    );
}

#[test]
fn rule_m1_migration_stays_disabled_until_unmap() {
    let p = machine();
    let a = map(&p, 20).unwrap();
    let b = map(&p, 21).unwrap();
    assert_eq!((p.migrate_count(0), p.counter(Counter::Preempt)), (2, 0));
    unmap(&p, b).unwrap();
    assert_eq!(p.migrate_count(0), 1);
    unmap(&p, a).unwrap();
    assert_eq!(p.migrate_count(0), 0);
}

#[test]
fn rule_m1_protection_travels_in_the_saved_pte() {
    let p = machine();
    // SAFETY: the address is only compared.
    let addr = unsafe { kmap::raw::map_prot(&p, Frame::new(20), PROT_READ_ONLY) }.unwrap();
    let saved = p.task(0).saved(Cell(0));
    assert_eq!(saved.raw() & PTE_WRITE, 0, "read-only mapping");
    p.switch_to(1);
    p.switch_to(0);
    assert_eq!(
        p.pte(0, 0),
        saved,
        "sched_in restores exactly the PTE that was made"
    );
    unmap(&p, addr as usize).unwrap();
}

#[test]
fn rule_m1_occupied_slot_is_refused_and_nothing_changes() {
    let p = machine();
    // Task 1 maps cell 0 on CPU 0; then task 0 becomes current without the switch hooks (a broken
    // scheduler), so cell 0's slot is still occupied when task 0 maps.
    p.set_current(0, 1);
    map(&p, 20).unwrap();
    p.set_current(0, 0);
    let before = state(&p, 3, 2);
    assert_eq!(
        map(&p, 21),
        Err(MapError::SlotNotEmpty { slot: slot(0, 0) })
    );
    assert_eq!(state(&p, 3, 2), before);
}

#[test]
fn rule_m2_the_address_is_a_per_cpu_slot() {
    let p = machine();
    let on_cpu0 = map(&p, 20).unwrap();
    p.run_on(1);
    let on_cpu1 = map(&p, 21).unwrap();
    assert_ne!(
        on_cpu0, on_cpu1,
        "the same cell has another address on another CPU"
    );
    assert_eq!(
        kmap::Platform::slot_of(&p, kmap::VirtAddr::new(on_cpu1)),
        Some(slot(1, 0))
    );
}

#[test]
fn rule_m3_all_cells_are_usable() {
    let p = machine();
    let addrs: Vec<usize> = (0..16).map(|i| map(&p, 20 + i).unwrap()).collect();
    assert_eq!(
        p.task(0).depth(),
        16,
        "all 16 cells hold a mapping (Linux: 15)"
    );
    for addr in addrs.into_iter().rev() {
        unmap(&p, addr).unwrap();
    }
}

#[test]
fn rule_m3_overflow_is_refused_before_any_state_change() {
    let p = machine();
    for i in 0..16 {
        map(&p, 20 + i).unwrap();
    }
    p.take_events();
    let before = state(&p, 3, 2);
    assert_eq!(map(&p, 40), Err(MapError::Overflow { cells: 16 }));
    assert_eq!(map_atomic(&p, 40), Err(MapError::Overflow { cells: 16 }));
    assert_eq!(p.events(), vec![]);
    assert_eq!(state(&p, 3, 2), before);
    assert!(
        map(&p, 3).is_ok(),
        "a full stack still maps lowmem through the direct map"
    );
}

// ---- U: unmap -----------------------------------------------------------------------------

#[test]
fn rule_u1_any_address_inside_the_page_unmaps_it() {
    let p = machine();
    let addr = map(&p, 20).unwrap();
    unmap(&p, addr + 4095).unwrap();
    assert_eq!(p.task(0).depth(), 0);
}

#[test]
fn rule_u1_unmap_steps_happen_in_linux_order() {
    let p = machine();
    let addr = map(&p, 20).unwrap();
    p.take_events();
    unmap(&p, addr).unwrap();
    assert_eq!(
        p.events(),
        vec![
            Event::Count(Counter::Preempt, 1),
            Event::Point(Point::UnmapPreemptionDisabled),
            Event::Clear(slot(0, 0)),
            Event::Point(Point::UnmapCleared),
            Event::Invalidate(slot(0, 0)),
            Event::Point(Point::UnmapInvalidated),
            Event::Point(Point::UnmapZeroed),
            Event::Point(Point::UnmapPopped),
            Event::Count(Counter::Preempt, -1),
            Event::Point(Point::UnmapPreemptionEnabled),
            Event::Count(Counter::Migrate, -1),
            Event::Point(Point::UnmapMigrationEnabled),
        ]
    );
}

#[test]
fn rule_u1_saved_value_is_zeroed_before_the_pop() {
    let p = machine();
    let addr = map(&p, 20).unwrap();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = seen.clone();
    p.on_point(Some(Box::new(move |p: &HostPlatform, point| {
        log.borrow_mut()
            .push((point, p.task(0).depth(), p.task(0).saved(Cell(0))));
    })));
    unmap(&p, addr).unwrap();
    let seen = seen.borrow();
    let zeroed = seen.iter().find(|s| s.0 == Point::UnmapZeroed).unwrap();
    assert_eq!(
        (zeroed.1, zeroed.2),
        (1, Pte::EMPTY),
        "zeroed while still pushed"
    );
}

#[test]
fn rule_u2_unmap_atomic_enables_pagefaults_then_preemption() {
    let p = machine();
    let addr = map_atomic(&p, 20).unwrap();
    p.take_events();
    unmap_atomic(&p, addr).unwrap();
    let counts: Vec<Event> = p
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Count(..)))
        .collect();
    assert_eq!(
        &counts[counts.len() - 2..],
        &[
            Event::Count(Counter::Pagefault, -1),
            Event::Count(Counter::Preempt, -1)
        ]
    );
    assert_eq!(
        (p.counter(Counter::Preempt), p.counter(Counter::Pagefault)),
        (0, 0)
    );
}

#[test]
fn rule_u3_out_of_order_unmap_is_refused() {
    let p = machine();
    let a = map(&p, 20).unwrap();
    let b = map(&p, 21).unwrap();
    p.take_events();
    let before = state(&p, 3, 2);
    assert_eq!(
        unmap(&p, a),
        Err(UnmapError::NotTopCell {
            given: slot(0, 0),
            top: slot(0, 1)
        })
    );
    assert_eq!(p.events(), vec![], "refused before any state change");
    assert_eq!(state(&p, 3, 2), before);
    unmap(&p, b).unwrap();
    unmap(&p, a).unwrap();
}

#[test]
fn rule_u3_another_cpus_slot_is_refused() {
    let p = machine();
    let a = map(&p, 20).unwrap();
    p.set_current(1, 1);
    p.run_on(1);
    map(&p, 21).unwrap();
    assert_eq!(
        unmap(&p, a),
        Err(UnmapError::NotTopCell {
            given: slot(0, 0),
            top: slot(1, 0)
        })
    );
}

#[test]
fn rule_u4_unmap_with_an_empty_stack_is_refused() {
    let p = machine();
    let addr = kmap::Platform::slot_address(&p, slot(0, 0)).as_usize();
    assert_eq!(unmap(&p, addr), Err(UnmapError::EmptyStack));
    assert_eq!(p.events(), vec![]);
    assert_eq!(unmap_atomic(&p, addr), Err(UnmapError::EmptyStack));
    assert_eq!(
        (p.counter(Counter::Preempt), p.counter(Counter::Pagefault)),
        (0, 0)
    );
}

#[test]
fn rule_u5_double_unmap_is_refused() {
    let p = machine();
    let a = map(&p, 20).unwrap();
    let b = map(&p, 21).unwrap();
    unmap(&p, b).unwrap();
    assert_eq!(
        unmap(&p, b),
        Err(UnmapError::NotTopCell {
            given: slot(0, 1),
            top: slot(0, 0)
        })
    );
    unmap(&p, a).unwrap();
    assert_eq!(unmap(&p, a), Err(UnmapError::EmptyStack));
}

// ---- A: the atomic flavour ----------------------------------------------------------------

#[test]
fn rule_a1_atomic_disables_preemption_and_pagefaults_until_unmap() {
    let p = machine();
    let addr = map_atomic(&p, 20).unwrap();
    assert_eq!(
        (
            p.counter(Counter::Preempt),
            p.counter(Counter::Pagefault),
            p.migrate_count(0)
        ),
        (1, 1, 1)
    );
    let order: Vec<Event> = p
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Count(..)))
        .take(2)
        .collect();
    assert_eq!(
        order,
        vec![
            Event::Count(Counter::Preempt, 1),
            Event::Count(Counter::Pagefault, 1)
        ]
    );
    unmap_atomic(&p, addr).unwrap();
    assert_eq!(
        (
            p.counter(Counter::Preempt),
            p.counter(Counter::Pagefault),
            p.migrate_count(0)
        ),
        (0, 0, 0)
    );
}

#[test]
fn rule_a2_atomic_fast_path_still_disables_preemption_and_pagefaults() {
    let p = machine();
    let addr = map_atomic(&p, 3).unwrap();
    assert_eq!(p.task(0).depth(), 0, "no cell for a lowmem frame");
    assert_eq!(
        (p.counter(Counter::Preempt), p.counter(Counter::Pagefault)),
        (1, 1)
    );
    unmap_atomic(&p, addr).unwrap();
    assert_eq!(
        (p.counter(Counter::Preempt), p.counter(Counter::Pagefault)),
        (0, 0)
    );
}

#[test]
fn rule_a3_atomic_and_local_mappings_share_one_stack() {
    let p = machine();
    let local = map(&p, 20).unwrap();
    let atomic = map_atomic(&p, 21).unwrap();
    assert_eq!(p.task(0).depth(), 2);
    assert_eq!(
        unmap(&p, local),
        Err(UnmapError::NotTopCell {
            given: slot(0, 0),
            top: slot(0, 1)
        })
    );
    unmap_atomic(&p, atomic).unwrap();
    unmap(&p, local).unwrap();
    assert_eq!(state(&p, 3, 2), state(&machine(), 3, 2));
}

// ---- S / I: the switch hooks --------------------------------------------------------------

#[test]
fn rule_s3_sched_out_clears_and_invalidates_every_slot_bottom_to_top() {
    let p = machine();
    map(&p, 20).unwrap();
    map(&p, 21).unwrap();
    p.take_events();
    // SAFETY: this test plays the scheduler's prepare-switch with current = task 0.
    unsafe { kmap::sched_out(&p) };
    assert_eq!(
        p.hardware_events(),
        vec![
            Event::Clear(slot(0, 0)),
            Event::Invalidate(slot(0, 0)),
            Event::Clear(slot(0, 1)),
            Event::Invalidate(slot(0, 1))
        ]
    );
    assert_eq!(p.occupied(0), Vec::<usize>::new());
}

#[test]
fn rule_s2_i2_switch_hooks_with_no_mappings_touch_nothing() {
    let p = machine();
    p.switch_to(1);
    p.switch_to(0);
    assert_eq!(p.events(), vec![]);
}

#[test]
fn rule_s4_i4_switch_hooks_never_write_the_stack() {
    let p = machine();
    map(&p, 20).unwrap();
    map(&p, 21).unwrap();
    p.switch_to(1);
    map(&p, 30).unwrap();
    let stacks = |p: &HostPlatform| state(p, 3, 2).stacks;
    let before = stacks(&p);
    p.switch_to(0);
    p.switch_to(1);
    p.switch_to(0);
    assert_eq!(stacks(&p), before);
}

#[test]
fn rule_i3_sched_in_reinstalls_the_saved_ptes_without_flushing() {
    let p = machine();
    map(&p, 20).unwrap();
    map(&p, 21).unwrap();
    let saved = [p.task(0).saved(Cell(0)), p.task(0).saved(Cell(1))];
    p.switch_to(1);
    p.take_events();
    p.switch_to(0);
    assert_eq!(
        p.hardware_events(),
        vec![
            Event::Install(slot(0, 0), saved[0]),
            Event::Install(slot(0, 1), saved[1])
        ],
        "task 1 holds nothing, so only task 0's PTEs are installed, and nothing is invalidated"
    );
}

#[test]
fn rule_i5_sched_in_reports_a_task_back_on_another_cpu() {
    let p = machine();
    map(&p, 20).unwrap();
    // SAFETY: prepare-switch on CPU 0 with current = task 0.
    unsafe { kmap::sched_out(&p) };
    p.set_current(0, 1);
    p.run_on(1);
    p.set_current(1, 0);
    // SAFETY: finish-switch on CPU 1 with current = task 0 (which a correct kernel never does).
    unsafe { kmap::sched_in(&p) };
    assert_eq!(
        p.reports(),
        vec![Report::Migrated {
            from: CpuId(0),
            to: CpuId(1)
        }]
    );
}

#[test]
fn rule_i6_each_hook_looks_only_at_current() {
    let p = machine();
    let x = map(&p, 20).unwrap();
    p.switch_to(1);
    assert_eq!(
        p.occupied(0),
        Vec::<usize>::new(),
        "task 1 holds nothing: its slots are empty"
    );
    let y = map(&p, 30).unwrap();
    let z = map(&p, 31).unwrap();
    assert_eq!(
        x, y,
        "task 1's first cell uses the slot task 0's first cell uses"
    );
    p.switch_to(0);
    assert_eq!(p.occupied(0), vec![0]);
    assert_eq!(HostPlatform::<16>::pte_frame(p.pte(0, 0)), Frame::new(20));
    p.switch_to(1);
    assert_eq!(p.occupied(0), vec![0, 1]);
    unmap(&p, z).unwrap();
    unmap(&p, y).unwrap();
}

#[test]
fn rule_s3_a_cell_without_saved_value_is_reported_and_skipped() {
    let p = machine();
    // A broken scheduler switches inside map's preemption-disabled window, after the push and
    // before the record.
    p.on_point(Some(Box::new(|p: &HostPlatform, point| {
        if point == Point::MapPushed {
            // SAFETY: deliberately misplaced hook call; the test checks it is reported.
            unsafe { kmap::sched_out(p) };
            p.on_point(None);
        }
    })));
    map(&p, 20).unwrap();
    assert_eq!(p.reports(), vec![Report::SavedValueEmpty { cell: Cell(0) }]);
}

// ---- 1.4: guard cells ---------------------------------------------------------------------

type Guarded = HostPlatform<33, true, false>;

#[test]
fn rule_1_4_guard_cells_use_odd_cells_only_and_fit_16_mappings() {
    let p: Guarded = HostPlatform::new(1, FRAMES, LOWMEM, 2);
    let addrs: Vec<usize> = (0..16).map(|i| map(&p, 20 + i).unwrap()).collect();
    assert_eq!(p.task(0).depth(), 32);
    assert_eq!(
        p.occupied(0),
        (0..16).map(|i| 2 * i + 1).collect::<Vec<_>>()
    );
    assert!(
        (0..33)
            .step_by(2)
            .all(|c| p.task(0).saved(Cell(c)).is_empty())
    );
    assert_eq!(map(&p, 40), Err(MapError::Overflow { cells: 33 }));
    for addr in addrs.into_iter().rev() {
        unmap(&p, addr).unwrap();
    }
    assert_eq!(p.task(0).depth(), 0);
}

#[test]
fn rule_1_4_switch_hooks_skip_guard_cells() {
    let p: Guarded = HostPlatform::new(1, FRAMES, LOWMEM, 2);
    map(&p, 20).unwrap();
    map(&p, 21).unwrap();
    p.take_events();
    p.switch_to(1);
    p.switch_to(0);
    let touched: Vec<usize> = p
        .hardware_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Clear(s) | Event::Install(s, _) | Event::Invalidate(s) => Some(s.cell.0),
            _ => None,
        })
        .collect();
    assert_eq!(touched, vec![1, 1, 3, 3, 1, 3]);
    assert_eq!(p.reports(), vec![]);
}

#[test]
fn rule_1_4_a_dirty_guard_cell_is_reported() {
    // The March 2021 LKP bug: stacks written by one layout, switched by another. Cells 0 and 1
    // are filled without guards; the guard layout then finds cell 0 (even) not empty.
    let p: HostPlatform<33, false, false> = HostPlatform::new(1, FRAMES, LOWMEM, 2);
    map(&p, 20).unwrap();
    map(&p, 21).unwrap();
    let guarded = support::AsGuarded(&p);
    // SAFETY: prepare-switch with current = task 0, seen through the guard layout.
    unsafe { kmap::sched_out(&guarded) };
    assert_eq!(
        p.reports(),
        vec![Report::GuardCellNotEmpty { cell: Cell(0) }]
    );
    assert_eq!(
        p.occupied(0),
        vec![0],
        "the guard cell is skipped, the odd cell cleared"
    );
}

// ---- F: fork, exit, return to user --------------------------------------------------------

#[test]
fn rule_f1_fork_child_starts_empty_and_parent_is_untouched() {
    let p = machine();
    let child: KmapStack = p.task(0).fork(&p);
    assert_eq!(child.depth(), 0);
    assert_eq!(p.reports(), vec![]);
    map(&p, 20).unwrap();
    let before = state(&p, 3, 2);
    let child: KmapStack = p.task(0).fork(&p);
    assert_eq!(child.depth(), 0);
    assert!((0..16).all(|c| child.saved(Cell(c)).is_empty()));
    assert_eq!(p.reports(), vec![Report::ForkWithMappings { held: 1 }]);
    assert_eq!(state(&p, 3, 2), before);
}

#[test]
fn rule_f2_return_to_user_with_mappings_is_reported() {
    let p = machine();
    assert_eq!(assert_no_mappings(&p, Checkpoint::ReturnToUser), Ok(()));
    let addr = map(&p, 20).unwrap();
    assert_eq!(
        assert_no_mappings(&p, Checkpoint::ReturnToUser),
        Err(MappingsHeld { held: 1 })
    );
    assert_eq!(
        p.reports(),
        vec![Report::MappingsHeld {
            at: Checkpoint::ReturnToUser,
            held: 1
        }]
    );
    assert_eq!(p.task(0).depth(), 1, "nothing is cleaned up");
    unmap(&p, addr).unwrap();
}

#[test]
fn rule_f3_exit_with_mappings_is_reported() {
    let p = machine();
    map(&p, 20).unwrap();
    assert_eq!(
        assert_no_mappings(&p, Checkpoint::TaskExit),
        Err(MappingsHeld { held: 1 })
    );
    assert_eq!(
        p.reports(),
        vec![Report::MappingsHeld {
            at: Checkpoint::TaskExit,
            held: 1
        }]
    );
}

// ---- N: interrupts and NMIs ---------------------------------------------------------------

#[test]
fn rule_n1_an_interrupt_maps_on_the_interrupted_tasks_stack() {
    let p = machine();
    map(&p, 20).unwrap();
    p.switch_to(1);
    map(&p, 30).unwrap();
    p.interrupt(|| {
        let addr = map(&p, 40).unwrap();
        assert_eq!(
            (p.task(0).depth(), p.task(1).depth()),
            (1, 2),
            "pushed on current (task 1)"
        );
        unmap(&p, addr).unwrap();
    });
    assert_eq!(
        p.reports(),
        vec![],
        "interrupts are off in the handler: no warning"
    );
}

#[test]
fn rule_n1_mapping_in_hardirq_with_interrupts_on_is_reported() {
    let p = machine();
    p.set_context(true, false);
    let addr = map(&p, 20).unwrap();
    unmap(&p, addr).unwrap();
    assert_eq!(p.reports(), vec![Report::MapInHardIrqWithIrqsOn]);
}

/// At every arrival point of a task's map and unmap, an interrupt maps two frames (one nested in
/// the other), checks they land above the task's `idx` on empty slots, and unmaps them; an NMI
/// nests inside it at its own points. The task's stack and slots come out exactly as they would
/// have without the interrupt.
#[test]
fn rule_n2_n3_nested_contexts_land_above_idx_and_leave_the_stack_as_found() {
    for trigger in Point::ALL.iter().copied() {
        let quiet = machine();
        let p = machine();
        map(&quiet, 20).unwrap();
        map(&p, 20).unwrap();
        let fired = std::rc::Rc::new(std::cell::Cell::new(0));
        let count = fired.clone();
        p.on_point(Some(Box::new(move |p: &HostPlatform, point| {
            if point != trigger {
                return;
            }
            count.set(count.get() + 1);
            p.interrupt(|| {
                let found = p.task(0).depth();
                let a = map(p, 40).unwrap();
                let b = map(p, 41).unwrap();
                for (depth, addr) in [(found + 1, a), (found + 2, b)] {
                    let slot = kmap::Platform::slot_of(p, kmap::VirtAddr::new(addr)).unwrap();
                    assert_eq!(slot.cell.0, depth - 1, "at {trigger}: lands at idx");
                }
                unmap(p, b).unwrap();
                unmap(p, a).unwrap();
                assert_eq!(p.task(0).depth(), found, "at {trigger}: idx restored");
            });
        })));
        let addr = map(&p, 21).unwrap();
        let quiet_addr = map(&quiet, 21).unwrap();
        assert_eq!(
            state(&p, 3, 2),
            state(&quiet, 3, 2),
            "after map, interrupt at {trigger}"
        );
        unmap(&p, addr).unwrap();
        unmap(&quiet, quiet_addr).unwrap();
        assert_eq!(
            state(&p, 3, 2),
            state(&quiet, 3, 2),
            "after unmap, interrupt at {trigger}"
        );
        let expected = match trigger {
            Point::AtomicPreemptionDisabled
            | Point::AtomicPagefaultsDisabled
            | Point::AtomicPagefaultsEnabled
            | Point::AtomicPreemptionEnabled
            | Point::SchedOutCleared
            | Point::SchedOutInvalidated
            | Point::SchedInInstalled
            | Point::MapRefusedPreemptionEnabled
            | Point::MapRefusedMigrationEnabled
            // Any-order release: not on a LIFO map and unmap (tests/any_order.rs).
            | Point::ReleasePreemptionDisabled
            | Point::ReleaseCleared
            | Point::ReleaseInvalidated
            | Point::ReleaseHoled
            | Point::ReleasePreemptionEnabled
            | Point::ReleaseMigrationEnabled
            | Point::UnmapHoleZeroed => 0,
            _ => 1,
        };
        assert_eq!(fired.get(), expected, "the interrupt ran at {trigger}");
    }
}

#[test]
fn rule_n2_an_interrupt_during_sched_in_lands_above_next_idx() {
    let p = machine();
    map(&p, 20).unwrap();
    map(&p, 21).unwrap();
    p.switch_to(1);
    p.on_point(Some(Box::new(|p: &HostPlatform, point| {
        if point == Point::SchedInInstalled {
            p.interrupt(|| {
                let addr = map(p, 40).unwrap();
                assert_eq!(
                    kmap::Platform::slot_of(p, kmap::VirtAddr::new(addr))
                        .unwrap()
                        .cell,
                    Cell(2)
                );
                unmap(p, addr).unwrap();
            });
        }
    })));
    p.switch_to(0);
    assert_eq!(p.occupied(0), vec![0, 1]);
    assert_eq!(p.reports(), vec![]);
}

#[test]
fn rule_n4_the_depth_budget_is_shared_with_interrupts() {
    let p = machine();
    for i in 0..15 {
        map(&p, 20 + i).unwrap();
    }
    p.interrupt(|| {
        let a = map(&p, 40).unwrap();
        assert_eq!(map(&p, 41), Err(MapError::Overflow { cells: 16 }));
        unmap(&p, a).unwrap();
    });
    assert_eq!(p.task(0).depth(), 15);
}
