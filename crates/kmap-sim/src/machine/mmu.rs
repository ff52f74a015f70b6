//! The MMU: the kernel page table's kmap slots (shared by every CPU), a TLB per CPU that keeps
//! a translation until that CPU invalidates it, and the record of slots cleared but not yet
//! invalidated (INV-6). Every access through a slot goes through it.

use std::hash::{Hash, Hasher};

use kmap::{Cell, CpuId, Frame, Pte, Slot, VirtAddr};

use super::symmetry::Relabel;
use crate::platform::{Layout, PAGE_SIZE, pte_flags, pte_frame};

/// Where an access led.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Translation {
    /// The frame reached (`None`: a fault).
    pub(crate) frame: Option<Frame>,
    /// A TLB entry served it.
    pub(crate) tlb_hit: bool,
}

/// What a run left in the MMU when every task had ended (the first found).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Leftover {
    /// A slot still maps a frame.
    Mapped(Slot, Frame),
    /// A CPU's TLB still translates a slot.
    Translated(CpuId, Slot, Frame),
    /// A slot was cleared and its TLB entry never invalidated.
    Unflushed(Slot),
}

/// One CPU's part of the MMU, as a handler found it (see [`Mmu::save`]).
pub(crate) struct SavedMmu {
    page_table: Vec<Pte>,
    tlb: Vec<Option<Frame>>,
    unflushed: Vec<bool>,
}

/// What a handler on a CPU may touch of the MMU, and must leave as it found it (INV-3).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct MmuView {
    /// The CPU's slots.
    pub(crate) slots: Vec<Pte>,
    /// Its TLB's entries, in slot order.
    pub(crate) tlb: Vec<(Slot, Frame)>,
    /// Its slots cleared and not yet invalidated.
    pub(crate) unflushed: Vec<Cell>,
}

/// The page table, the TLBs and the unflushed slots.
pub(crate) struct Mmu {
    layout: Layout,
    /// Whether TLBs keep translations (else every access walks the page table).
    tlb_model: bool,
    /// The slots' PTEs, by [`Layout::index`].
    page_table: Vec<Pte>,
    /// Each CPU's TLB: the frame it translates each slot to, if any, by [`Layout::index`]
    /// (a CPU may translate another CPU's slot: a task moved after it read its CPU).
    tlbs: Vec<Vec<Option<Frame>>>,
    /// Slots cleared and not yet invalidated on their own CPU (INV-6), by [`Layout::index`].
    unflushed: Vec<bool>,
}

impl Mmu {
    /// Every slot empty, every TLB empty.
    pub(crate) fn new(layout: Layout, tlb_model: bool) -> Mmu {
        Mmu {
            layout,
            tlb_model,
            page_table: vec![Pte::EMPTY; layout.cpus * layout.cells],
            tlbs: vec![vec![None; layout.cpus * layout.cells]; layout.cpus],
            unflushed: vec![false; layout.cpus * layout.cells],
        }
    }

    /// The address space's layout.
    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// A slot's PTE.
    pub(crate) fn pte(&self, slot: Slot) -> Pte {
        self.page_table[self.layout.index(slot)]
    }

    /// Whether a slot was cleared and not yet invalidated on its CPU.
    pub(crate) fn is_unflushed(&self, slot: Slot) -> bool {
        self.unflushed[self.layout.index(slot)]
    }

    /// The frame `cpu`'s TLB translates `slot` to, if it has an entry.
    pub(crate) fn tlb_entry(&self, cpu: CpuId, slot: Slot) -> Option<Frame> {
        self.tlbs[cpu.0 as usize][self.layout.index(slot)]
    }

    /// Write a slot's PTE.
    pub(crate) fn install(&mut self, slot: Slot, pte: Pte) {
        let index = self.layout.index(slot);
        self.page_table[index] = pte;
    }

    /// Clear a slot's PTE: its TLB entries stay until invalidated.
    pub(crate) fn clear(&mut self, slot: Slot) {
        let index = self.layout.index(slot);
        self.page_table[index] = Pte::EMPTY;
        self.unflushed[index] = true;
    }

    /// `invlpg` on `cpu` for the page of `addr` (a slot's): returns the slot.
    pub(crate) fn invalidate(&mut self, cpu: CpuId, addr: VirtAddr) -> Slot {
        let slot = self
            .layout
            .slot_of(addr.align_down(PAGE_SIZE))
            .expect("the crate invalidates only slot addresses");
        let index = self.layout.index(slot);
        self.tlbs[cpu.0 as usize][index] = None;
        if slot.cpu == cpu {
            self.unflushed[index] = false;
        }
        slot
    }

    /// Where `addr` leads on `cpu`: through the direct map, the TLB, or the page table (which
    /// fills the TLB).
    pub(crate) fn translate(&mut self, cpu: CpuId, addr: VirtAddr) -> Translation {
        if let Some(frame) = self.layout.direct_frame(addr) {
            return Translation {
                frame: Some(frame),
                tlb_hit: false,
            };
        }
        let Some(slot) = self.layout.slot_of(addr) else {
            return Translation {
                frame: None,
                tlb_hit: false,
            };
        };
        let index = self.layout.index(slot);
        let tlb = &mut self.tlbs[cpu.0 as usize];
        if self.tlb_model
            && let Some(frame) = tlb[index]
        {
            return Translation {
                frame: Some(frame),
                tlb_hit: true,
            };
        }
        let pte = self.page_table[index];
        if pte.is_empty() {
            return Translation {
                frame: None,
                tlb_hit: false,
            };
        }
        let frame = pte_frame(pte);
        if self.tlb_model {
            tlb[index] = Some(frame);
        }
        Translation {
            frame: Some(frame),
            tlb_hit: false,
        }
    }

    /// The PTEs of `cpu`'s slots, by cell.
    pub(crate) fn slots(&self, cpu: CpuId) -> &[Pte] {
        let start = cpu.0 as usize * self.layout.cells;
        &self.page_table[start..start + self.layout.cells]
    }

    /// `cpu`'s TLB entries, in slot order.
    pub(crate) fn tlb(&self, cpu: CpuId) -> impl Iterator<Item = (Slot, Frame)> + Clone + '_ {
        let layout = self.layout;
        self.tlbs[cpu.0 as usize]
            .iter()
            .enumerate()
            .filter_map(move |(index, frame)| frame.map(|frame| (layout.slot(index), frame)))
    }

    /// `cpu`'s slots cleared and not yet invalidated, by cell.
    pub(crate) fn unflushed(&self, cpu: CpuId) -> Vec<Cell> {
        (0..self.layout.cells)
            .map(Cell)
            .filter(|&cell| self.unflushed[self.layout.index(Slot { cpu, cell })])
            .collect()
    }

    /// What a handler on `cpu` may touch (see [`MmuView`]).
    pub(crate) fn view(&self, cpu: CpuId) -> MmuView {
        MmuView {
            slots: self.slots(cpu).to_vec(),
            tlb: self.tlb(cpu).collect(),
            unflushed: self.unflushed(cpu),
        }
    }

    /// Everything a handler on `cpu` can change (the page table, `cpu`'s TLB, the unflushed
    /// slots), to put back with [`restore`](Self::restore).
    pub(crate) fn save(&self, cpu: CpuId) -> SavedMmu {
        SavedMmu {
            page_table: self.page_table.clone(),
            tlb: self.tlbs[cpu.0 as usize].clone(),
            unflushed: self.unflushed.clone(),
        }
    }

    /// Put back what [`save`](Self::save) saved on `cpu`.
    pub(crate) fn restore(&mut self, cpu: CpuId, saved: SavedMmu) {
        self.page_table = saved.page_table;
        self.tlbs[cpu.0 as usize] = saved.tlb;
        self.unflushed = saved.unflushed;
    }

    /// What a run left behind, if anything: a mapped slot, else a TLB entry, else an unflushed
    /// slot (each the first in slot order).
    pub(crate) fn leftover(&self) -> Option<Leftover> {
        if let Some(index) = self.page_table.iter().position(|pte| !pte.is_empty()) {
            return Some(Leftover::Mapped(
                self.layout.slot(index),
                pte_frame(self.page_table[index]),
            ));
        }
        let translated = (0..self.layout.cpus)
            .map(|cpu| CpuId(cpu as u32))
            .flat_map(|cpu| self.tlb(cpu).map(move |(s, f)| (cpu, s, f)))
            .next();
        if let Some((cpu, slot, frame)) = translated {
            return Some(Leftover::Translated(cpu, slot, frame));
        }
        let first = self.unflushed.iter().position(|&unflushed| unflushed);
        first.map(|index| Leftover::Unflushed(self.layout.slot(index)))
    }

    /// Hash the page table, every TLB (in slot order) and the unflushed slots (in order).
    pub(crate) fn hash_contents(&self, relabel: &Relabel, hasher: &mut impl Hasher) {
        let layout = self.layout;
        for new in 0..self.page_table.len() {
            let pte = self.page_table[relabel.old_slot_index(layout, new)];
            relabel.pte(pte).raw().hash(hasher);
        }
        for new in 0..layout.cpus {
            // In the new slot order: a TLB may translate other CPUs' slots, whose blocks a
            // rotation moves around.
            let tlb = self.renamed_tlb(new, relabel);
            tlb.clone().count().hash(hasher);
            for (index, frame) in tlb {
                (index, relabel.frame(frame).pfn()).hash(hasher);
            }
        }
        let unflushed = (0..self.unflushed.len())
            .filter(|&new| self.unflushed[relabel.old_slot_index(layout, new)]);
        unflushed.clone().count().hash(hasher);
        for new in unflushed {
            new.hash(hasher);
        }
    }

    /// Hash where `frame` is mapped: the slots whose PTE maps it (with the PTE's flags) and
    /// the TLB entries that translate to it (for a task's signature, see `symmetry.rs`).
    pub(crate) fn hash_references(
        &self,
        frame: Frame,
        relabel: &Relabel,
        hasher: &mut impl Hasher,
    ) {
        let layout = self.layout;
        for new in 0..self.page_table.len() {
            let pte = self.page_table[relabel.old_slot_index(layout, new)];
            if pte != Pte::EMPTY && pte != Pte::HOLE && pte_frame(pte) == frame {
                (new, pte_flags(pte)).hash(hasher);
            }
        }
        for new in 0..layout.cpus {
            for (index, to) in self.renamed_tlb(new, relabel) {
                if to == frame {
                    (new, index).hash(hasher);
                }
            }
        }
    }

    /// The TLB of the CPU that `relabel` numbers `new`: its entries by new slot index, in that
    /// order.
    fn renamed_tlb<'a>(
        &'a self,
        new: usize,
        relabel: &'a Relabel,
    ) -> impl Iterator<Item = (usize, Frame)> + Clone + 'a {
        let layout = self.layout;
        let tlb = &self.tlbs[relabel.old_cpu(new)];
        (0..tlb.len()).filter_map(move |index| {
            tlb[relabel.old_slot_index(layout, index)].map(|frame| (index, frame))
        })
    }
}
