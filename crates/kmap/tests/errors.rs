//! What a refusal says: every error's message names what was refused and why, with the
//! numbers a kernel log needs.

use kmap::{Cell, CpuId, MapError, OutOfBounds, Slot, UnmapError, VirtAddr};

fn slot(cpu: u32, cell: usize) -> Slot {
    Slot {
        cpu: CpuId(cpu),
        cell: Cell(cell),
    }
}

#[test]
fn map_errors_say_what_was_refused() {
    assert_eq!(
        MapError::Overflow { cells: 16 }.to_string(),
        "kmap stack overflow: all 16 cells in use"
    );
    assert_eq!(
        MapError::SlotNotEmpty { slot: slot(1, 3) }.to_string(),
        "slot for cell 3 on CPU 1 is not empty (INV-1 broken)"
    );
}

#[test]
fn unmap_errors_say_what_was_refused() {
    assert_eq!(
        UnmapError::EmptyStack.to_string(),
        "unmap with no mapping held"
    );
    assert_eq!(
        UnmapError::NotTopCell {
            given: slot(0, 1),
            top: slot(0, 2)
        }
        .to_string(),
        "unmap of cell 1 on CPU 0, but the top is cell 2 on CPU 0 (unmaps are LIFO)"
    );
    assert_eq!(
        UnmapError::NotLive { given: slot(1, 4) }.to_string(),
        "release of cell 4 on CPU 1, which holds no live mapping of this task here"
    );
    assert_eq!(
        UnmapError::NotKmapAddress {
            addr: VirtAddr::new(0x1000)
        }
        .to_string(),
        format!(
            "{:?} is not a kmap address (force-map is on)",
            VirtAddr::new(0x1000)
        )
    );
}

#[test]
fn an_out_of_bounds_access_says_how_far_it_went() {
    let error = OutOfBounds {
        offset: 4000,
        len: 200,
        page_size: 4096,
    };
    assert_eq!(
        error.to_string(),
        "200 bytes at offset 4000 pass the end of a 4096-byte page"
    );
}
