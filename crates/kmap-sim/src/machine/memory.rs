//! Memory and the MMU: frames with a tag each, the kernel page table's kmap slots, and a TLB per
//! CPU that keeps a translation until it is invalidated. Every access goes through them and is
//! checked against the frame its context mapped.

use kmap::Pte;

use super::{Held, Machine};
use crate::adapter::{DIRECT_MAP, PAGE_SIZE, WINDOW, pte_frame};
use crate::config::Mutation;
use crate::outcome::{Rule, ViolationKind};
use crate::trace::What;

impl Machine {
    fn slot_index(&self, cpu: usize, cell: usize) -> usize {
        cpu * self.cells() + cell
    }

    pub(crate) fn slot_address(&self, cpu: usize, cell: usize) -> usize {
        WINDOW + self.slot_index(cpu, cell) * PAGE_SIZE
    }

    pub(crate) fn read_pte(&self, cpu: usize, cell: usize) -> Pte {
        self.st.borrow().pt[self.slot_index(cpu, cell)]
    }

    pub(crate) fn install_pte(&self, cpu: usize, cell: usize, pte: Pte) {
        let index = self.slot_index(cpu, cell);
        let (unflushed, live) = {
            let st = self.st.borrow();
            (st.unflushed.contains(&index), st.pt[index])
        };
        if !live.is_empty() {
            let what = format!(
                "slot {cpu}.{cell} is installed with frame {} while it still maps frame {}",
                pte_frame(pte),
                pte_frame(live)
            );
            if self.config.machine.bug_on() {
                self.violate(ViolationKind::Crash, format!("{what} (BUG_ON(!pte_none))"));
                return;
            }
            self.hazard(Rule::Inv1, format!("{what}: overwritten"));
        }
        if unflushed {
            let page = self.slot_address(cpu, cell);
            let stale = self.st.borrow().tlb[cpu].get(&page).copied();
            let consequence = match stale {
                Some(frame) => format!(": CPU {cpu}'s TLB still translates it to frame {frame}"),
                None => String::new(),
            };
            self.hazard(
                Rule::Inv6,
                format!(
                    "slot {cpu}.{cell} is reused before its TLB entry was invalidated{consequence}"
                ),
            );
        }
        self.st.borrow_mut().pt[index] = pte;
        self.trace(What::Install {
            cpu,
            cell,
            frame: pte_frame(pte),
        });
    }

    pub(crate) fn clear_pte(&self, cpu: usize, cell: usize) {
        let index = self.slot_index(cpu, cell);
        {
            let mut st = self.st.borrow_mut();
            st.pt[index] = Pte::EMPTY;
            st.unflushed.insert(index);
        }
        self.trace(What::Clear { cpu, cell });
    }

    pub(crate) fn invalidate_local(&self, addr: usize) {
        if self.config.machine.mutation == Some(Mutation::DropInvalidations) {
            return;
        }
        let page = addr & !(PAGE_SIZE - 1);
        let index = (page - WINDOW) / PAGE_SIZE;
        let cell = index % self.cells();
        {
            let mut st = self.st.borrow_mut();
            let cpu = st.active;
            st.tlb[cpu].remove(&page);
            if index / self.cells() == cpu {
                st.unflushed.remove(&index);
            }
        }
        self.trace(What::Invalidate { cell });
    }

    /// Where `addr` leads on the executing CPU: the frame (and whether the TLB served it), or a
    /// fault.
    pub(crate) fn translate(&self, addr: usize) -> (Option<u64>, bool) {
        let m = &self.config.machine;
        let page = addr & !(PAGE_SIZE - 1);
        if (DIRECT_MAP..DIRECT_MAP + m.lowmem as usize * PAGE_SIZE).contains(&page) {
            return (Some(((page - DIRECT_MAP) / PAGE_SIZE) as u64), false);
        }
        if !(WINDOW..WINDOW + m.cpus * m.cells * PAGE_SIZE).contains(&page) {
            return (None, false);
        }
        let mut st = self.st.borrow_mut();
        let cpu = st.active;
        if m.tlb
            && let Some(&frame) = st.tlb[cpu].get(&page)
        {
            return (Some(frame), true);
        }
        let pte = st.pt[(page - WINDOW) / PAGE_SIZE];
        if pte.is_empty() {
            return (None, false);
        }
        let frame = pte_frame(pte);
        if m.tlb {
            st.tlb[cpu].insert(page, frame);
        }
        (Some(frame), false)
    }

    /// Read (or, with `write`, write a fresh tag into) the frame `held` maps, through the MMU,
    /// and check that the access reaches that frame and sees what was last written to it.
    pub(crate) fn access(&self, held: Held, write: bool) {
        let (reached, tlb_hit) = self.translate(held.addr);
        self.trace(What::Access {
            expected: held.frame,
            reached,
            tlb_hit,
        });
        let Some(frame) = reached else {
            self.violate(
                ViolationKind::Fault,
                format!(
                    "{} of frame {} at {:#x} faults: the slot has no translation",
                    if write { "a write" } else { "a read" },
                    held.frame,
                    held.addr
                ),
            );
            return;
        };
        let mut st = self.st.borrow_mut();
        if write {
            let tag = st.next_tag;
            st.next_tag += 1;
            st.tags[frame as usize] = tag;
            if frame == held.frame {
                st.expected[frame as usize] = tag;
                return;
            }
        } else if frame == held.frame {
            let (seen, expected) = (st.tags[frame as usize], st.expected[frame as usize]);
            drop(st);
            if seen != expected {
                self.violate(
                    ViolationKind::Corruption,
                    format!(
                        "frame {frame} holds tag {seen:#x}, but its owner last wrote {expected:#x}: \
                         another context wrote into it"
                    ),
                );
            }
            return;
        }
        drop(st);
        let via = if tlb_hit {
            " through a stale TLB entry"
        } else {
            ""
        };
        let what = format!(
            "{} of frame {} at {:#x} reached frame {frame}{via}",
            if write { "a write" } else { "a read" },
            held.frame,
            held.addr
        );
        // A read of the wrong frame returns wrong data now; a write corrupts the frame's owner
        // now, or, if nobody maps that frame, whoever maps and reads it next.
        if write && !self.frame_is_held(frame) {
            self.hazard(Rule::StrayWrite, format!("{what}, which nobody maps now"));
        } else {
            self.violate(ViolationKind::Corruption, what);
        }
    }

    /// Whether some context (a task, or a handler in progress) holds a mapping of `frame`.
    fn frame_is_held(&self, frame: u64) -> bool {
        let st = self.st.borrow();
        st.tasks
            .iter()
            .flat_map(|t| t.mappings.iter())
            .chain(
                st.cpus
                    .iter()
                    .flat_map(|c| c.nested.iter().flat_map(|n| n.mappings.iter())),
            )
            .any(|h| h.frame == frame)
    }
}
