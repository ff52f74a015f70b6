//! The safe API: guards, byte views, copies, leaks.

mod support;

use kmap::{Local, MapError, Report};
use kmap_host::{Counter, HostPlatform, PAGE_SIZE};
use support::*;

fn local(p: &HostPlatform) -> Local<'_, HostPlatform> {
    // SAFETY: each test makes one Local per task context and drops it in that context.
    unsafe { Local::new(p) }
}

#[test]
fn a_view_reads_and_writes_the_frame_through_a_slot() {
    let p = machine();
    p.fill_frame(20, 0xAB);
    let mut page = p.page(20);
    let mut local = local(&p);
    let mut m = local.map(&mut page);
    assert!(m.is_slot());
    assert!(m.bytes().iter().all(|&b| b == 0xAB));
    m.write(100, b"kmap").unwrap();
    drop(m);
    assert_eq!(&p.frame_bytes(20)[100..104], b"kmap");
    assert_eq!(p.task(0).depth(), 0);
    drop(local);
    assert!(
        p.reports().is_empty(),
        "a guard and a Local released as made report nothing: {:?}",
        p.reports()
    );
}

#[test]
fn a_lowmem_view_goes_through_the_direct_map() {
    let p = machine();
    p.fill_frame(3, 7);
    let mut page = p.page(3);
    let mut local = local(&p);
    let mut m = local.map(&mut page);
    assert!(!m.is_slot());
    assert_eq!(p.task(0).depth(), 0);
    m.zero();
    drop(m);
    assert!(p.frame_bytes(3).iter().all(|&b| b == 0));
}

#[test]
fn a_mapping_survives_being_switched_out_while_another_task_uses_the_slot() {
    let p = machine();
    let (mut mine, mut theirs) = (p.page(20), p.page(30));
    let mut task0 = local(&p);
    let mut m = task0.map(&mut mine);
    m.bytes_mut().fill(0x11);
    p.switch_to(1);
    {
        let mut task1 = local(&p);
        let mut t = task1.map(&mut theirs);
        t.bytes_mut().fill(0x22);
        p.switch_to(0);
        assert!(
            m.bytes().iter().all(|&b| b == 0x11),
            "task 0 sees its own page again"
        );
        p.switch_to(1);
        assert!(t.bytes().iter().all(|&b| b == 0x22));
        drop(t);
    }
    p.switch_to(0);
    assert!(m.bytes().iter().all(|&b| b == 0x11));
    drop(m);
    assert!(p.frame_bytes(20).iter().all(|&b| b == 0x11));
    assert!(p.frame_bytes(30).iter().all(|&b| b == 0x22));
}

#[test]
fn copy_page_goes_through_two_nested_mappings() {
    let p = machine();
    p.fill_frame(20, 0x5A);
    let (mut src, mut dst) = (p.page(20), p.page(21));
    let depth = std::rc::Rc::new(std::cell::Cell::new(0));
    let deepest = depth.clone();
    p.on_point(Some(Box::new(move |p: &HostPlatform, _| {
        deepest.set(deepest.get().max(p.task(0).depth()))
    })));
    local(&p).copy_page(&mut src, &mut dst);
    assert_eq!(depth.get(), 2, "source and destination mapped at once");
    assert!(p.frame_bytes(21).iter().all(|&b| b == 0x5A));
    assert_eq!(p.task(0).depth(), 0);
}

#[test]
fn copy_from_fills_this_page_from_another() {
    let p = machine();
    p.fill_frame(21, 9);
    let (mut dst, mut src) = (p.page(20), p.page(21));
    let mut local = local(&p);
    let mut m = local.map(&mut dst);
    m.copy_from(&mut src);
    assert!(m.bytes().iter().all(|&b| b == 9));
}

#[test]
fn reads_and_writes_are_bounded_by_the_page() {
    let p = machine();
    let mut page = p.page(20);
    let mut local = local(&p);
    let mut m = local.map(&mut page);
    let mut buf = [0u8; 8];
    assert!(m.read(PAGE_SIZE - 8, &mut buf).is_ok());
    let err = m.read(PAGE_SIZE - 7, &mut buf).unwrap_err();
    assert_eq!(
        (err.offset, err.len, err.page_size),
        (PAGE_SIZE - 7, 8, PAGE_SIZE)
    );
    assert!(
        m.write(usize::MAX, &buf).is_err(),
        "no overflow in the bounds check"
    );
    assert_eq!(m.bytes().len(), PAGE_SIZE);
}

#[test]
fn the_closure_form_releases_when_the_closure_returns() {
    let p = machine();
    let (mut a, mut b) = (p.page(20), p.page(21));
    let mut local = local(&p);
    let depth = local.with_mapped(&mut a, |m| {
        m.write(0, b"outer").unwrap();
        m.with_mapped(&mut b, |n| {
            n.write(0, b"inner").unwrap();
            p.task(0).depth()
        })
    });
    assert_eq!(depth, 2);
    assert_eq!(p.task(0).depth(), 0);
    assert_eq!(&p.frame_bytes(21)[..5], b"inner");
}

#[test]
fn releasing_a_parent_releases_a_leaked_child() {
    let p = machine();
    let (mut a, mut b, mut c) = (p.page(20), p.page(21), p.page(22));
    let mut local = local(&p);
    let mut parent = local.map(&mut a);
    let mut child = parent.map(&mut b);
    std::mem::forget(child.map(&mut c));
    std::mem::forget(child);
    assert_eq!(p.task(0).depth(), 3);
    drop(parent);
    assert_eq!(p.task(0).depth(), 0);
    assert_eq!(p.occupied(0), Vec::<usize>::new());
    assert_eq!(
        p.migrate_count(0),
        0,
        "every cell's migrate-disable is undone"
    );
    assert_eq!(
        p.reports(),
        vec![Report::LeakedMappingsReleased { cells: 2 }]
    );
}

#[test]
fn a_dropped_local_restores_the_depth_it_found() {
    let p = machine();
    let mut held = p.page(20);
    let mut task = local(&p);
    let m = task.map(&mut held);
    p.interrupt(|| {
        let mut page = p.page(40);
        let mut irq = local(&p);
        std::mem::forget(irq.map(&mut page));
        assert_eq!(p.task(0).depth(), 2);
        drop(irq);
        assert_eq!(
            p.task(0).depth(),
            1,
            "the handler leaves the stack as it found it"
        );
    });
    drop(m);
    assert_eq!(p.task(0).depth(), 0);
}

#[test]
fn an_atomic_guard_keeps_preemption_and_pagefaults_off() {
    let p = machine();
    let (mut a, mut low) = (p.page(20), p.page(3));
    let mut local = local(&p);
    let mut m = local.map_atomic(&mut a);
    assert_eq!(
        (p.counter(Counter::Preempt), p.counter(Counter::Pagefault)),
        (1, 1)
    );
    let n = m.map_atomic(&mut low);
    assert_eq!(
        (p.counter(Counter::Preempt), p.counter(Counter::Pagefault)),
        (2, 2)
    );
    drop(n);
    drop(m);
    assert_eq!(
        (p.counter(Counter::Preempt), p.counter(Counter::Pagefault)),
        (0, 0)
    );
}

#[test]
fn try_map_reports_overflow_and_map_panics_with_a_clear_message() {
    let p: HostPlatform<2> = HostPlatform::new(1, FRAMES, LOWMEM, 1);
    let (mut a, mut b, mut c) = (p.page(20), p.page(21), p.page(22));
    // SAFETY: the only Local of this task.
    let mut local = unsafe { Local::new(&p) };
    let mut m = local.map(&mut a);
    let mut n = m.map(&mut b);
    assert_eq!(
        n.try_map(&mut c).err(),
        Some(MapError::Overflow { cells: 2 })
    );
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = n.map(&mut c);
    }))
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert_eq!(
        message,
        "kmap: map refused: kmap stack overflow: all 2 cells in use"
    );
}

#[test]
fn try_map_slot_and_prot_reach_the_mechanism() {
    let p = machine();
    let (mut low, mut high) = (p.page(3), p.page(20));
    let mut local = local(&p);
    let m = local.try_map_slot(&mut low).unwrap();
    assert!(m.is_slot());
    drop(m);
    let m = local
        .try_map_prot(&mut high, kmap_host::PROT_READ_ONLY)
        .unwrap();
    assert_eq!(p.pte(0, 0).raw() & kmap_host::PTE_WRITE, 0);
    drop(m);
}
