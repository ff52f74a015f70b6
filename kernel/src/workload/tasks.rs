//! The workers: each maps one to three nested highmem frames, writes a pattern, holds them
//! across a yield or a preemption (sending NMIs to the other CPU meanwhile), and verifies every
//! word after; every fourth round copies a page through two nested mappings; one round in four
//! holds three pages side by side and releases them out of order (holes under preemption and
//! NMIs). A refused map stops the machine, saying whose mapping occupies the slot.

use core::sync::atomic::Ordering::{Acquire, Relaxed};

use kmap::{Local, Page, ScopedMapping};

use super::verify::{fill, verify};
use super::{jitter, other_apic_id};
use crate::arch::{apic, instructions};
use crate::frames::describe;
use crate::percpu::{AP_ONLINE, current_task, percpu};
use crate::platform::{KERNEL, Kernel};
use crate::stats::{COPIES, HOLES, UNORDERED_ROUNDS, YIELDS_HOLDING};
use crate::verdict::{Failure, fail};
use crate::{platform, sched, task};

pub fn map<'m>(local: &'m mut Local<'_, Kernel>, page: &'m mut Page) -> kmap::Mapping<'m, Kernel> {
    let frame = page.frame();
    local
        .try_map(page)
        .unwrap_or_else(|refused| refusal(frame, refused))
}

fn map_in<'c>(
    parent: &'c mut kmap::Mapping<'_, Kernel>,
    page: &'c mut Page,
) -> kmap::Mapping<'c, Kernel> {
    let frame = page.frame();
    parent
        .try_map(page)
        .unwrap_or_else(|refused| refusal(frame, refused))
}

/// A refused map, with whose frame occupies the slot when that is why.
fn refusal(frame: kmap::Frame, refused: kmap::MapError) -> ! {
    let cpu = percpu();
    let during = if cpu.in_swap.load(Relaxed) {
        " while this CPU was in the rfc-v1 slot swap"
    } else {
        ""
    };
    if let kmap::MapError::SlotNotEmpty { slot } = refused {
        use kmap::Platform;
        let address = KERNEL.slot_address(slot).as_usize();
        let held = platform::slot_pte(address) >> 12;
        fail(
            Failure::OccupiedSlot,
            format_args!(
                "mapping {} refused: slot {}.{} already maps {} ({}), although current's idx is {}{during}: \
             an interrupt would have overwritten another task's mapping",
                describe(frame.pfn()),
                slot.cpu.0,
                slot.cell.0,
                describe(held),
                refused,
                current_task().kmap.depth()
            ),
        )
    }
    fail(
        Failure::Crate,
        format_args!(
            "mapping {} refused by the crate: {refused}{during}",
            describe(frame.pfn())
        ),
    )
}

/// Hold the mappings a while: yield every fifth round, else spin (the timer preempts), sending
/// NMIs to the other CPU meanwhile so that some land inside its switch path.
fn hold(round: u64) {
    if round.is_multiple_of(5) {
        YIELDS_HOLDING.fetch_add(1, Relaxed);
        sched::schedule();
    } else {
        for _ in 0..32 {
            if AP_ONLINE.load(Acquire) {
                apic::send_nmi(other_apic_id());
            }
            instructions::delay(jitter(600));
        }
    }
}

/// A worker task's life.
pub fn task_main(task: usize) -> ! {
    // SAFETY: this task's one handle, for its whole life (it never ends).
    let mut local = unsafe { Local::new(&KERNEL) };
    // SAFETY: only this task takes its pages, once.
    let [a, b, c, d] = unsafe { task::task_pages(task) };
    let [fa, fb, fc, fd] = [a.frame(), b.frame(), c.frame(), d.frame()];
    let owner = task as u64 + 1;
    let mut round = 0u64;
    loop {
        round += 1;
        let depth = 1 + round % 3;
        {
            let mut first = map(&mut local, a);
            fill(first.bytes_mut(), owner, round, 0);
            if depth >= 2 {
                let mut second = map_in(&mut first, b);
                fill(second.bytes_mut(), owner, round, 1);
                if depth >= 3 {
                    let mut third = map_in(&mut second, c);
                    fill(third.bytes_mut(), owner, round, 2);
                    hold(round);
                    verify(third.bytes(), fc, owner, round, 2, 2, 1);
                } else {
                    hold(round);
                }
                verify(second.bytes(), fb, owner, round, 1, 1, 1);
            } else {
                hold(round);
            }
            verify(first.bytes(), fa, owner, round, 0, 0, 1);
        }
        // Work that holds no mapping: the balancer may move the task to the other CPU now (and
        // only now: its migration-disable count is zero).
        if round.is_multiple_of(3) {
            sched::schedule();
        } else {
            instructions::delay(400);
        }
        if round % 4 == 2 {
            unordered_round(&mut local, [&mut *a, &mut *b, &mut *c], owner, round);
        }
        if round.is_multiple_of(4) {
            // A page copy through two nested mappings, then the copy checked through a third.
            let mut source = map(&mut local, a);
            fill(source.bytes_mut(), owner, round, 3);
            source.copy_to(d);
            drop(source);
            let copy = map(&mut local, d);
            verify(copy.bytes(), fd, owner, round, 3, 0, 1);
            COPIES.fetch_add(1, Relaxed);
        }
    }
}

/// Three pages held side by side, as struct fields, and released in an order the stack does not
/// dictate: the middle one first (a hole under the third), then, after holding the other two
/// across preemption (the switch skips the hole), the struct is dropped in field order: the
/// first (a second hole), then the third, which pops both holes.
fn unordered_round(local: &mut Local<'_, Kernel>, pages: [&mut Page; 3], owner: u64, round: u64) {
    struct Three<'s> {
        first: ScopedMapping<'s, Kernel>,
        second: Option<ScopedMapping<'s, Kernel>>,
        third: ScopedMapping<'s, Kernel>,
    }
    let [pa, pb, pc] = pages;
    let frames = [pa.frame(), pb.frame(), pc.frame()];
    let scope = local.scope();
    let mut held = Three {
        first: scoped(&scope, pa),
        second: Some(scoped(&scope, pb)),
        third: scoped(&scope, pc),
    };
    fill(held.first.bytes_mut(), owner, round, 4);
    if let Some(second) = &mut held.second {
        fill(second.bytes_mut(), owner, round, 5);
        hold(round);
        verify(second.bytes(), frames[1], owner, round, 5, 1, 1);
    }
    fill(held.third.bytes_mut(), owner, round, 6);
    held.second = None; // below the top: a hole
    HOLES.fetch_add(1, Relaxed);
    hold(round + 1);
    verify(held.first.bytes(), frames[0], owner, round, 4, 0, 1);
    verify(held.third.bytes(), frames[2], owner, round, 6, 2, 1);
    HOLES.fetch_add(1, Relaxed); // `first`, dropped first, is below the top too
    drop(held);
    UNORDERED_ROUNDS.fetch_add(1, Relaxed);
}

fn scoped<'s>(scope: &'s kmap::Scope<'_, Kernel>, page: &'s mut Page) -> ScopedMapping<'s, Kernel> {
    let frame = page.frame();
    scope
        .try_map(page)
        .unwrap_or_else(|refused| refusal(frame, refused))
}
