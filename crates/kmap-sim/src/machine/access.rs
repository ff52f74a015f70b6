//! What the crate does to the MMU (installs, clears, invalidations) and every access a
//! program makes through a mapping, each checked as it happens: a map over a live slot, a slot
//! reused before its invalidation, an access that faults or reaches another frame.

use kmap::{Frame, Pte, Slot, VirtAddr};

use super::Machine;
use super::task::Held;
use crate::outcome::{Rule, ViolationKind};
use crate::platform::pte_frame;
use crate::settings::Mutation;
use crate::trace::{SlotName, What};

impl Machine {
    /// The crate (or the simulated swap) writes a slot's PTE.
    pub(crate) fn install_pte(&self, slot: Slot, pte: Pte) {
        let (live, unflushed, stale) = {
            let mmu = self.mmu.borrow();
            (
                mmu.pte(slot),
                mmu.is_unflushed(slot),
                mmu.tlb_entry(slot.cpu, slot),
            )
        };
        if !live.is_empty() {
            let what = format!(
                "slot {} is installed with frame {} while it still maps frame {}",
                SlotName(slot),
                pte_frame(pte).pfn(),
                pte_frame(live).pfn()
            );
            if self.config.machine.bug_on() {
                self.violate(ViolationKind::Crash, format!("{what} (BUG_ON(!pte_none))"));
                return;
            }
            self.hazard(Rule::Inv1, format!("{what}: overwritten"));
        }
        if unflushed {
            let consequence = match stale {
                Some(frame) => format!(
                    ": CPU {}'s TLB still translates it to frame {}",
                    slot.cpu.0,
                    frame.pfn()
                ),
                None => String::new(),
            };
            self.hazard(
                Rule::Inv6,
                format!(
                    "slot {} is reused before its TLB entry was invalidated{consequence}",
                    SlotName(slot)
                ),
            );
        }
        self.mmu.borrow_mut().install(slot, pte);
        self.trace(What::Install {
            slot,
            frame: pte_frame(pte),
        });
    }

    /// The crate clears a slot's PTE.
    pub(crate) fn clear_pte(&self, slot: Slot) {
        self.mmu.borrow_mut().clear(slot);
        self.trace(What::Clear { slot });
    }

    /// The crate invalidates the executing CPU's TLB entry for `addr` (unless the platform is
    /// mutated to drop invalidations).
    pub(crate) fn invalidate_local(&self, addr: VirtAddr) {
        if self.config.machine.mutation == Some(Mutation::DropInvalidations) {
            return;
        }
        let slot = self.mmu.borrow_mut().invalidate(self.cpu(), addr);
        self.trace(What::Invalidate { cell: slot.cell });
    }

    /// Read (or, with `write`, write a fresh tag into) the frame `held` maps, through the MMU,
    /// and check that the access reaches that frame and sees what was last written to it.
    pub(crate) fn access(&self, held: Held, write: bool) {
        let translation = self.mmu.borrow_mut().translate(self.cpu(), held.addr);
        self.trace(What::Access {
            expected: held.frame,
            reached: translation.frame,
            tlb_hit: translation.tlb_hit,
        });
        let access = if write { "a write" } else { "a read" };
        let Some(frame) = translation.frame else {
            self.violate(
                ViolationKind::Fault,
                format!(
                    "{access} of frame {} at {:#x} faults: the slot has no translation",
                    held.frame.pfn(),
                    held.addr.as_usize()
                ),
            );
            return;
        };
        if write {
            self.memory.borrow_mut().write(frame, held.frame);
            if frame == held.frame {
                return;
            }
        } else if frame == held.frame {
            let intact = self.memory.borrow().intact(frame);
            // Not the tags themselves: the state key remembers only whether a frame holds what
            // its owner last wrote (`memory.rs`), and what a run reports of a state must not
            // tell apart two runs that reach it.
            if !intact {
                self.violate(
                    ViolationKind::Corruption,
                    format!(
                        "frame {} does not hold what its owner last wrote there: another \
                         context wrote into it",
                        frame.pfn()
                    ),
                );
            }
            return;
        }
        let via = if translation.tlb_hit {
            " through a stale TLB entry"
        } else {
            ""
        };
        let what = format!(
            "{access} of frame {} at {:#x} reached frame {}{via}",
            held.frame.pfn(),
            held.addr.as_usize(),
            frame.pfn()
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
    fn frame_is_held(&self, frame: Frame) -> bool {
        let tasks = self.tasks.borrow();
        let cpus = self.cpus.borrow();
        tasks
            .iter()
            .flat_map(|t| t.mappings.iter())
            .chain(
                cpus.iter()
                    .flat_map(|c| c.handlers().iter().flat_map(|h| h.mappings.iter())),
            )
            .any(|h| h.frame == frame)
    }
}
