//! The messages between ranks: little-endian numbers, lengths before lists.

use kmap::CpuId;
use kmap_sim::{AnyOp, Choice, Stats, TaskId};

use super::Mark;
use crate::search::bfs::Step;

/// A message being written: little-endian numbers, lengths before lists.
#[derive(Clone, Default)]
pub(super) struct Wire(pub(super) Vec<u8>);

impl Wire {
    pub(super) fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    pub(super) fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn u128(&mut self, value: u128) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn order(&mut self, order: &[u32]) {
        self.u32(order.len() as u32);
        order.iter().for_each(|&at| self.u32(at));
    }

    pub(super) fn option_order(&mut self, order: Option<&[u32]>) {
        self.u8(order.is_some().into());
        order.iter().for_each(|order| self.order(order));
    }

    pub(super) fn steps(&mut self, steps: &[Step]) {
        self.u32(steps.len() as u32);
        for step in steps {
            self.u64(step.arrival);
            let (tag, payload) = encode(step.choice);
            self.u8(tag | (u8::from(step.step) << 7));
            self.u64(payload);
        }
    }

    pub(super) fn mark(&mut self, mark: &Mark) {
        self.u32(mark.level);
        self.order(&mark.order);
        self.steps(&mark.path);
    }

    pub(super) fn stats(&mut self, stats: &Stats) {
        // Every field, by name: a field added to `Stats` does not compile here until it is sent.
        let Stats {
            ops,
            kmap_ops,
            switches,
            preemptions,
            irqs,
            nmis,
            points,
            choice_points,
            max_nesting,
            pruned,
            probes,
            probes_remembered,
            probes_with_trace,
        } = *stats;
        for value in [
            ops,
            kmap_ops,
            switches,
            preemptions,
            irqs,
            nmis,
            points,
            choice_points,
            max_nesting as u64,
            pruned,
            probes,
            probes_remembered,
            probes_with_trace,
        ] {
            self.u64(value);
        }
    }
}

/// A message being read, as [`Wire`] wrote it. The messages are this search's own, from ranks
/// running this same program: one that does not read back is a bug, not an input error.
pub(super) struct Read<'a> {
    bytes: &'a [u8],
}

impl<'a> Read<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Read { bytes }
    }

    pub(super) fn done(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(super) fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .expect("a rank's message is whole");
        self.bytes = rest;
        *head
    }

    pub(super) fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    pub(super) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    pub(super) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    pub(super) fn u128(&mut self) -> u128 {
        u128::from_le_bytes(self.take())
    }

    pub(super) fn order(&mut self) -> Vec<u32> {
        let len = self.u32();
        (0..len).map(|_| self.u32()).collect()
    }

    pub(super) fn option_order(&mut self) -> Option<Vec<u32>> {
        (self.u8() == 1).then(|| self.order())
    }

    pub(super) fn steps(&mut self) -> Vec<Step> {
        let len = self.u32();
        (0..len)
            .map(|_| {
                let arrival = self.u64();
                let tag = self.u8();
                let payload = self.u64();
                Step {
                    arrival,
                    step: tag & 0x80 != 0,
                    choice: decode(tag & 0x7f, payload),
                }
            })
            .collect()
    }

    pub(super) fn mark(&mut self) -> Mark {
        Mark {
            level: self.u32(),
            order: self.order(),
            path: self.steps(),
        }
    }

    pub(super) fn stats(&mut self) -> Stats {
        let mut next = || self.u64();
        Stats {
            ops: next(),
            kmap_ops: next(),
            switches: next(),
            preemptions: next(),
            irqs: next(),
            nmis: next(),
            points: next(),
            choice_points: next(),
            max_nesting: next() as usize,
            pruned: next(),
            probes: next(),
            probes_remembered: next(),
            probes_with_trace: next(),
        }
    }
}

/// A choice as a tag (below 0x80) and a number.
fn encode(choice: Choice) -> (u8, u64) {
    match choice {
        Choice::Continue => (0, 0),
        Choice::Irq => (1, 0),
        Choice::Nmi => (2, 0),
        Choice::Preempt => (3, 0),
        Choice::PreemptTo(task) => (4, task.0 as u64),
        Choice::Migrate(cpu) => (5, cpu.0.into()),
        Choice::Cpu(cpu) => (6, cpu.0.into()),
        Choice::Do(op) => match op {
            AnyOp::Map => (7, 0),
            AnyOp::MapAtomic => (8, 0),
            AnyOp::Check => (9, 0),
            AnyOp::Unmap => (10, 0),
            AnyOp::Release(at) => (11, at as u64),
            AnyOp::Yield => (12, 0),
            AnyOp::Write => (13, 0),
            AnyOp::IrqOff => (14, 0),
            AnyOp::IrqOn => (15, 0),
            AnyOp::Sleep => (16, 0),
            AnyOp::MapLowmem => (17, 0),
        },
    }
}

/// The choice [`encode`] gave `(tag, payload)`.
fn decode(tag: u8, payload: u64) -> Choice {
    match tag {
        0 => Choice::Continue,
        1 => Choice::Irq,
        2 => Choice::Nmi,
        3 => Choice::Preempt,
        4 => Choice::PreemptTo(TaskId(payload as usize)),
        5 => Choice::Migrate(CpuId(payload as u32)),
        6 => Choice::Cpu(CpuId(payload as u32)),
        7 => Choice::Do(AnyOp::Map),
        8 => Choice::Do(AnyOp::MapAtomic),
        9 => Choice::Do(AnyOp::Check),
        10 => Choice::Do(AnyOp::Unmap),
        11 => Choice::Do(AnyOp::Release(payload as usize)),
        12 => Choice::Do(AnyOp::Yield),
        13 => Choice::Do(AnyOp::Write),
        14 => Choice::Do(AnyOp::IrqOff),
        15 => Choice::Do(AnyOp::IrqOn),
        16 => Choice::Do(AnyOp::Sleep),
        17 => Choice::Do(AnyOp::MapLowmem),
        _ => panic!("choice tag {tag} is not one this search writes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_crosses_the_wire_as_it_was() {
        let choices = [
            Choice::Continue,
            Choice::Irq,
            Choice::Nmi,
            Choice::Preempt,
            Choice::PreemptTo(TaskId(7)),
            Choice::Migrate(CpuId(3)),
            Choice::Cpu(CpuId(1)),
            Choice::Do(AnyOp::Map),
            Choice::Do(AnyOp::MapAtomic),
            Choice::Do(AnyOp::Check),
            Choice::Do(AnyOp::Unmap),
            Choice::Do(AnyOp::Release(2)),
            Choice::Do(AnyOp::Yield),
            Choice::Do(AnyOp::Write),
            Choice::Do(AnyOp::IrqOff),
            Choice::Do(AnyOp::IrqOn),
            Choice::Do(AnyOp::Sleep),
            Choice::Do(AnyOp::MapLowmem),
        ];
        let steps: Vec<Step> = choices
            .iter()
            .enumerate()
            .map(|(at, &choice)| Step {
                arrival: at as u64 * 1_000_003,
                step: at % 2 == 0,
                choice,
            })
            .collect();
        let mut wire = Wire::default();
        wire.steps(&steps);
        let mut read = Read::new(&wire.0);
        assert_eq!(read.steps(), steps);
        assert!(read.done());
    }
}
