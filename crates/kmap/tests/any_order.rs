//! Release in any order (`Platform::RELEASE_ANY_ORDER`): holes, the lazy pop, the switch hooks
//! skipping holes, interrupts at every point of the new paths, and the safe `Scope` API.

mod support;

use kmap::{Cell, Local, Platform, Point, Pte, Report, UnmapError};
use kmap_host::{Counter, Event, HostPlatform};
use support::*;

/// One CPU... two CPUs, three tasks, 16 cells, releases in any order.
type AnyOrder = HostPlatform<16, false, false, true>;
/// The same with guard cells.
type AnyOrderGuarded = HostPlatform<33, true, false, true>;

fn machine_any() -> AnyOrder {
    HostPlatform::new(2, FRAMES, LOWMEM, 3)
}

fn cell_of<P: Platform>(p: &P, addr: usize) -> usize {
    p.slot_of(kmap::VirtAddr::new(addr & !0xfff))
        .expect("a slot")
        .cell
        .0
}

#[test]
fn a_release_below_the_top_leaves_a_hole_and_changes_no_depth() {
    let p = machine_any();
    let a = map(&p, 20).unwrap();
    let b = map(&p, 21).unwrap();
    let c = map(&p, 22).unwrap();
    p.take_events();
    unmap_any_order(&p, b + 5).unwrap();
    let slot = p.slot_of(kmap::VirtAddr::new(b)).unwrap();
    assert_eq!(
        p.hardware_events(),
        [
            Event::Count(Counter::Preempt, 1),
            Event::Clear(slot),
            Event::Invalidate(slot),
            Event::Count(Counter::Preempt, -1),
            Event::Count(Counter::Migrate, -1),
        ],
        "preemption off, the hole's slot cleared and its TLB entry invalidated, preemption on, \
         the mapping's migrate_disable undone"
    );
    assert_eq!(p.task(0).depth(), 3, "idx does not move");
    assert_eq!(p.task(0).saved(Cell(1)), Pte::HOLE);
    assert_eq!(p.pte(0, 1), Pte::EMPTY);
    assert_eq!(
        p.migrate_count(0),
        2,
        "one migrate_enable for the mapping released"
    );
    assert_eq!(p.counter(Counter::Preempt), 0);
    // The second hole, then the top: the pop takes all three cells.
    unmap_any_order(&p, a).unwrap();
    assert_eq!(p.task(0).depth(), 3);
    unmap_any_order(&p, c).unwrap();
    assert_eq!(p.task(0).depth(), 0, "the top popped the holes beneath it");
    for cell in 0..16 {
        assert_eq!(p.task(0).saved(Cell(cell)), Pte::EMPTY, "cell {cell}");
        assert_eq!(p.pte(0, cell), Pte::EMPTY, "slot {cell}");
    }
    assert_eq!(p.migrate_count(0), 0);
    assert!(p.reports().is_empty(), "{:?}", p.reports());
}

#[test]
fn the_pop_stops_at_the_first_live_cell() {
    let p = machine_any();
    let a = map(&p, 20).unwrap();
    let b = map(&p, 21).unwrap();
    let c = map(&p, 22).unwrap();
    let d = map(&p, 23).unwrap();
    unmap_any_order(&p, c).unwrap();
    unmap_any_order(&p, b).unwrap();
    // The LIFO unmap of the top pops the holes too: a platform that releases in any order
    // keeps the stack's top live whichever function released it.
    unmap(&p, d).unwrap();
    assert_eq!(p.task(0).depth(), 1, "popped d, c and b; a is live");
    assert_eq!(
        cell_of(&p, map(&p, 24).unwrap()),
        1,
        "the next map takes cell 1"
    );
    let _ = a;
}

#[test]
fn lifo_unmap_of_a_cell_below_the_top_is_still_refused() {
    let p = machine_any();
    let a = map(&p, 20).unwrap();
    map(&p, 21).unwrap();
    let before = state(&p, 3, 2);
    assert!(matches!(unmap(&p, a), Err(UnmapError::NotTopCell { .. })));
    assert_eq!(state(&p, 3, 2), before);
}

#[test]
fn a_double_or_foreign_release_is_refused_before_any_state_changes() {
    let p = machine_any();
    assert_eq!(
        unmap_any_order(&p, kmap::Platform::slot_address(&p, slot(0, 0)).as_usize()),
        Err(UnmapError::EmptyStack)
    );
    let a = map(&p, 20).unwrap();
    map(&p, 21).unwrap();
    unmap_any_order(&p, a).unwrap();
    p.take_events();
    let before = state(&p, 3, 2);
    for (addr, what) in [
        (a, "a hole (a double release)"),
        (p.slot_address(slot(0, 2)).as_usize(), "a cell above idx"),
        (p.slot_address(slot(1, 1)).as_usize(), "another CPU's slot"),
    ] {
        assert!(
            matches!(unmap_any_order(&p, addr), Err(UnmapError::NotLive { .. })),
            "{what}"
        );
        assert_eq!(state(&p, 3, 2), before, "{what}: nothing changed");
        assert!(p.take_events().is_empty(), "{what}: nothing done");
    }
    // A direct-map address is a no-op, as its map was.
    let low = map(&p, 3).unwrap();
    unmap_any_order(&p, low).unwrap();
    assert_eq!(state(&p, 3, 2), before);
}

fn slot(cpu: u32, cell: usize) -> kmap::Slot {
    kmap::Slot {
        cpu: kmap::CpuId(cpu),
        cell: Cell(cell),
    }
}

#[test]
fn the_switch_hooks_skip_holes_without_a_report() {
    let p = machine_any();
    let a = map(&p, 20).unwrap();
    let b = map(&p, 21).unwrap();
    let c = map(&p, 22).unwrap();
    unmap_any_order(&p, b).unwrap();
    p.take_events();
    p.switch_to(1);
    assert_eq!(
        p.hardware_events(),
        [
            Event::Clear(slot(0, 0)),
            Event::Invalidate(slot(0, 0)),
            Event::Clear(slot(0, 2)),
            Event::Invalidate(slot(0, 2)),
        ],
        "sched_out clears the live cells only"
    );
    p.take_events();
    p.switch_to(0);
    let installs: Vec<_> = p
        .hardware_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Install(slot, _) => Some(slot.cell.0),
            _ => None,
        })
        .collect();
    assert_eq!(installs, [0, 2], "sched_in restores the live cells only");
    assert_eq!(p.pte(0, 1), Pte::EMPTY, "the hole stays empty");
    assert!(
        p.reports().is_empty(),
        "a hole is not reported: {:?}",
        p.reports()
    );
    unmap_any_order(&p, a).unwrap();
    unmap_any_order(&p, c).unwrap();
    assert_eq!(p.task(0).depth(), 0);
}

#[test]
fn an_empty_cell_below_idx_is_still_reported_as_a_bug() {
    let p = machine_any();
    map(&p, 20).unwrap();
    map(&p, 21).unwrap();
    // Zero cell 0's saved value behind the crate's back (what a broken map would leave).
    let mut saved = p.task(0).state();
    saved.saved[0] = Pte::EMPTY;
    // SAFETY: broken on purpose: the state was edited, not taken by `state()`, and describes a
    // live cell with no saved value, the bug whose report this test checks. Only atomics are
    // stored; nothing reads through the mapping before the switch that reports it.
    unsafe { p.task(0).restore(&saved) };
    p.switch_to(1);
    assert!(
        p.reports()
            .contains(&Report::SavedValueEmpty { cell: Cell(0) }),
        "{:?}",
        p.reports()
    );
}

#[test]
fn guard_cells_keep_working_with_holes() {
    let p: AnyOrderGuarded = HostPlatform::new(1, FRAMES, LOWMEM, 2);
    let a = map(&p, 20).unwrap();
    let b = map(&p, 21).unwrap();
    let c = map(&p, 22).unwrap();
    assert_eq!([a, b, c].map(|x| cell_of(&p, x)), [1, 3, 5]);
    unmap_any_order(&p, b).unwrap();
    unmap_any_order(&p, a).unwrap();
    p.switch_to(1);
    p.switch_to(0);
    assert_eq!(p.pte(0, 5), p.task(0).saved(Cell(5)), "c is restored");
    assert!(p.reports().is_empty(), "{:?}", p.reports());
    unmap_any_order(&p, c).unwrap();
    assert_eq!(p.task(0).depth(), 0);
    assert_eq!(cell_of(&p, map(&p, 23).unwrap()), 1);
}

/// An interrupt that maps two pages and releases them out of order, at every point of a
/// release below the top and of a pop over holes: it lands above `idx`, leaves the stack as it
/// found it, and the task ends in the state of a run without it.
#[test]
fn an_interrupt_at_every_point_of_the_new_paths_lands_above_idx_and_leaves_no_trace() {
    let script = |p: &AnyOrder| {
        let a = map(p, 20).unwrap();
        let b = map(p, 21).unwrap();
        let c = map(p, 22).unwrap();
        unmap_any_order(p, b).unwrap();
        unmap_any_order(p, a).unwrap();
        unmap_any_order(p, c).unwrap();
        map(p, 23).unwrap()
    };
    let quiet = machine_any();
    script(&quiet);
    let mut covered = std::collections::BTreeSet::new();
    for &trigger in Point::ALL {
        let p = machine_any();
        let fired = std::rc::Rc::new(std::cell::Cell::new(0));
        let count = fired.clone();
        p.on_point(Some(Box::new(move |p: &AnyOrder, point| {
            if point != trigger || count.get() > 0 {
                return;
            }
            count.set(1);
            p.on_point(None);
            p.interrupt(|| {
                let found = p.task(0).depth();
                let x = map(p, 40).unwrap();
                let y = map(p, 41).unwrap();
                assert_eq!(cell_of(p, x), found, "at {trigger}: lands at idx");
                unmap_any_order(p, x).unwrap();
                assert_eq!(p.task(0).saved(Cell(found)), Pte::HOLE);
                unmap_any_order(p, y).unwrap();
                assert_eq!(p.task(0).depth(), found, "at {trigger}: idx restored");
            });
        })));
        script(&p);
        if fired.get() > 0 {
            covered.insert(trigger);
        }
        assert_eq!(
            state(&p, 3, 2),
            state(&quiet, 3, 2),
            "interrupt at {trigger}"
        );
        assert!(p.reports().is_empty(), "at {trigger}: {:?}", p.reports());
    }
    for point in [
        Point::ReleasePreemptionDisabled,
        Point::ReleaseCleared,
        Point::ReleaseInvalidated,
        Point::ReleaseHoled,
        Point::ReleasePreemptionEnabled,
        Point::ReleaseMigrationEnabled,
        Point::UnmapZeroed,
        Point::UnmapHoleZeroed,
        Point::UnmapPopped,
    ] {
        assert!(covered.contains(&point), "the script passes {point}");
    }
}

// --- the safe API ----------------------------------------------------------------------------

fn local(p: &AnyOrder) -> Local<'_, AnyOrder> {
    // SAFETY: each test makes one Local per task context and drops it in that context.
    unsafe { Local::new(p) }
}

/// Two pages held side by side in a struct, dropped in field order: the first field (the older
/// mapping, below the top) first.
#[test]
fn two_pages_in_a_struct_drop_in_field_order() {
    let p = machine_any();
    p.fill_frame(20, 1);
    p.fill_frame(21, 2);
    let (mut src, mut dst) = (p.page(20), p.page(21));
    let mut local = local(&p);
    let scope = local.scope();
    struct Pair<'s> {
        src: kmap::ScopedMapping<'s, AnyOrder>,
        dst: kmap::ScopedMapping<'s, AnyOrder>,
    }
    let mut pair = Pair {
        src: scope.map(&mut src),
        dst: scope.map(&mut dst),
    };
    pair.dst.bytes_mut().copy_from_slice(pair.src.bytes());
    assert_eq!(p.task(0).depth(), 2);
    drop(pair.src);
    assert_eq!(p.task(0).depth(), 2, "src was below the top: a hole");
    assert_eq!(p.task(0).saved(Cell(0)), Pte::HOLE);
    assert!(
        pair.dst.bytes().iter().all(|&b| b == 1),
        "dst still reads its page"
    );
    drop(pair.dst);
    assert_eq!(p.task(0).depth(), 0, "dst popped the hole");
    // The same pair dropped whole: the fields go in declaration order, the older first.
    let (mut src, mut dst) = (p.page(22), p.page(23));
    let pair = Pair {
        src: scope.map(&mut src),
        dst: scope.map(&mut dst),
    };
    drop(pair);
    assert_eq!(p.task(0).depth(), 0);
    assert!(p.frame_bytes(21).iter().all(|&b| b == 1));
    assert!(p.reports().is_empty(), "{:?}", p.reports());
}

#[test]
fn a_leaked_scoped_mapping_is_released_when_its_scope_ends() {
    let p = machine_any();
    let (mut a, mut b, mut c) = (p.page(20), p.page(21), p.page(3));
    let mut local = local(&p);
    {
        let scope = local.scope();
        let ma = scope.map(&mut a);
        let mb = scope.map(&mut b);
        let mc = scope.map(&mut c);
        assert!(!mc.is_slot(), "a lowmem page takes no cell");
        std::mem::forget(mb);
        drop(ma);
        drop(mc);
        assert_eq!(
            p.task(0).depth(),
            2,
            "the leaked mapping keeps the hole under it"
        );
    }
    assert_eq!(
        p.task(0).depth(),
        0,
        "the scope released the leaked cell and the hole"
    );
    assert_eq!(p.reports(), [Report::LeakedMappingsReleased { cells: 1 }]);
    assert_eq!(p.migrate_count(0), 0);
    assert_eq!(p.occupied(0), Vec::<usize>::new());
}

#[test]
fn an_overflow_counts_holes_and_is_refused_before_any_state_changes() {
    let p: HostPlatform<3, false, false, true> = HostPlatform::new(1, FRAMES, LOWMEM, 1);
    let (mut a, mut b, mut c, mut d) = (p.page(20), p.page(21), p.page(22), p.page(23));
    // SAFETY: one Local for the task, dropped in the task.
    let mut local = unsafe { Local::new(&p) };
    let scope = local.scope();
    let ma = scope.map(&mut a);
    let mb = scope.map(&mut b);
    let mc = scope.map(&mut c);
    drop(ma);
    drop(mb);
    let before = state(&p, 1, 1);
    assert!(matches!(
        scope.try_map(&mut d),
        Err(kmap::MapError::Overflow { cells: 3 })
    ));
    assert_eq!(state(&p, 1, 1), before);
    drop(mc);
    assert_eq!(p.task(0).depth(), 0);
}

#[test]
fn a_scoped_mapping_reads_writes_and_zeroes_within_its_page() {
    let p = machine_any();
    p.fill_frame(20, 0x55);
    let (mut page, mut low) = (p.page(20), p.page(3));
    let mut local = local(&p);
    let scope = local.scope();
    let mut m = scope.map(&mut page);
    let l = scope.map(&mut low);
    assert!(m.is_slot(), "a highmem page is in a slot");
    assert!(!l.is_slot(), "a lowmem page is on the direct map");
    m.write(4090, b"kmap!!").unwrap();
    let mut back = [0u8; 6];
    m.read(4090, &mut back).unwrap();
    assert_eq!(&back, b"kmap!!");
    assert_eq!(
        m.write(4091, b"kmap!!"),
        Err(kmap::OutOfBounds {
            offset: 4091,
            len: 6,
            page_size: 4096
        })
    );
    assert!(m.read(4096, &mut [0u8; 1]).is_err());
    assert_eq!(&p.frame_bytes(20)[4090..], b"kmap!!");
    m.zero();
    assert!(p.frame_bytes(20).iter().all(|&b| b == 0));
    drop(l);
    drop(m);
    assert_eq!(p.task(0).depth(), 0);
}
