//! What a kernel or a checker can observe of the crate without changing it: the labels of the
//! arrival points, and a stack's depth, home CPU and saved values.

mod support;

use kmap::{Cell, CpuId, Point, Pte};
use support::*;

#[test]
fn a_point_prints_its_label() {
    assert_eq!(Point::MapPushed.to_string(), "map: after push");
    assert_eq!(
        Point::ReleaseHoled.to_string(),
        "release below top: after marking the hole"
    );
    for &point in Point::ALL {
        assert_eq!(point.to_string(), point.label());
        assert!(!point.label().is_empty());
    }
}

#[test]
fn a_stack_says_where_its_mappings_are() {
    let p = machine();
    assert_eq!(p.task(0).home_cpu(), None, "nothing held: no home");
    p.run_on(1);
    p.set_current(1, 0);
    let a = map(&p, 20).unwrap();
    assert_eq!(p.task(0).home_cpu(), Some(CpuId(1)));
    assert_eq!(p.task(0).depth(), 1);
    assert_ne!(p.task(0).saved(Cell(0)), Pte::EMPTY);
    unmap(&p, a).unwrap();
    assert_eq!(p.task(0).home_cpu(), None);
    assert_eq!(p.task(0).saved(Cell(0)), Pte::EMPTY);
}

#[test]
fn a_stack_prints_its_depth_and_the_cells_in_use() {
    let p = machine();
    assert_eq!(
        format!("{:?}", p.task(0)),
        "KmapStack { idx: 0, saved: [] }"
    );
    map(&p, 20).unwrap();
    map(&p, 21).unwrap();
    let pte = |frame: u64| {
        kmap::Platform::make_pte(&p, kmap::Frame::new(frame), kmap_host::PROT_READ_WRITE)
    };
    assert_eq!(
        format!("{:?}", p.task(0)),
        format!(
            "KmapStack {{ idx: 2, saved: [{:?}, {:?}] }}",
            pte(20),
            pte(21)
        )
    );
}

#[test]
fn the_value_types_print_as_a_kernel_log_wants_them() {
    let frame = kmap::Frame::new(0x1234);
    assert_eq!(format!("{frame:?}"), "Frame(4660)");
    assert_eq!(frame.to_string(), "frame 4660");
    assert_eq!(format!("{:?}", Pte::from_raw(0x4003)), "Pte(0x4003)");
    assert_eq!(format!("{:?}", Pte::HOLE), "Pte(0xffffffffffffffff)");
    assert_eq!(
        format!("{:?}", kmap::VirtAddr::new(0xffff_8000_0000_1000)),
        "VirtAddr(0xffff800000001000)"
    );
}
