//! Random sequences of map / unmap / context switch / CPU change / nested interrupt, run against
//! the real mechanism on the host platform and against a small reference model; the recorded
//! hardware state (every slot's PTE), every stack and every counter must agree after each step.

mod support;

use kmap::{Cell, Frame, MapError, Platform, Pte, UnmapError};
use kmap_host::{Counter, Event, HostPlatform, PTE_PRESENT, PTE_WRITE};
use proptest::prelude::*;
use support::*;

const CPUS: u32 = 2;
const TASKS: usize = 3;
const CELLS: usize = 4;

type Machine = HostPlatform<CELLS>;

#[derive(Clone, Debug)]
enum Op {
    Map {
        frame: u64,
        atomic: bool,
        pfn: bool,
    },
    Unmap,
    /// Unmap an address that is not the top cell (refused unless it happens to be the top).
    UnmapCell(usize),
    Switch(usize),
    RunOn(u32),
    Irq(Vec<u64>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..FRAMES, any::<bool>(), any::<bool>()).prop_map(|(frame, atomic, pfn)| Op::Map { frame, atomic, pfn }),
        4 => Just(Op::Unmap),
        1 => (0..CELLS).prop_map(Op::UnmapCell),
        2 => (0..TASKS).prop_map(Op::Switch),
        1 => (0..CPUS).prop_map(Op::RunOn),
        1 => prop::collection::vec(0..FRAMES, 0..4).prop_map(Op::Irq),
    ]
}

/// One mapping as the model sees it.
#[derive(Clone, Copy, Debug)]
struct Held {
    frame: u64,
    slot: bool,
    atomic: bool,
    addr: usize,
}

#[derive(Default)]
struct Model {
    stacks: Vec<Vec<Held>>,
    current: Vec<usize>,
    cpu: u32,
    preempt: i32,
}

impl Model {
    fn new() -> Self {
        Model {
            stacks: vec![Vec::new(); TASKS],
            current: (0..CPUS as usize).map(|c| c % TASKS).collect(),
            ..Model::default()
        }
    }

    fn task(&self) -> usize {
        self.current[self.cpu as usize]
    }

    fn depth(&self, task: usize) -> usize {
        self.stacks[task].iter().filter(|h| h.slot).count()
    }

    /// Check the machine against the model.
    fn check(&self, p: &Machine) -> Result<(), TestCaseError> {
        for task in 0..TASKS {
            let slots: Vec<&Held> = self.stacks[task].iter().filter(|h| h.slot).collect();
            prop_assert_eq!(p.task(task).depth(), slots.len(), "depth of task {}", task);
            for cell in 0..CELLS {
                let expected = slots.get(cell).map_or(Pte::EMPTY, |h| pte(h.frame));
                prop_assert_eq!(
                    p.task(task).saved(Cell(cell)),
                    expected,
                    "task {} cell {}",
                    task,
                    cell
                );
            }
            let migrate = slots.len() as i32;
            prop_assert_eq!(
                p.migrate_count(task),
                migrate,
                "migrate count of task {}",
                task
            );
        }
        for cpu in 0..CPUS {
            let task = self.current[cpu as usize];
            let slots: Vec<&Held> = self.stacks[task].iter().filter(|h| h.slot).collect();
            for cell in 0..CELLS {
                let expected = slots.get(cell).map_or(Pte::EMPTY, |h| pte(h.frame));
                prop_assert_eq!(p.pte(cpu, cell), expected, "slot {} of CPU {}", cell, cpu);
            }
        }
        prop_assert_eq!(p.counter(Counter::Preempt), self.preempt);
        prop_assert_eq!(p.counter(Counter::Pagefault), self.preempt);
        Ok(())
    }
}

fn pte(frame: u64) -> Pte {
    Pte::from_raw(frame << 12 | PTE_WRITE | PTE_PRESENT)
}

/// INV-6 on the event record: a slot that was cleared is invalidated (on its own CPU) before
/// anything is installed in it again, and nothing is installed into a slot that is not empty.
fn check_tlb_hygiene(events: &[Event]) -> Result<(), TestCaseError> {
    let mut stale = std::collections::HashSet::new();
    let mut full = std::collections::HashSet::new();
    for event in events {
        match *event {
            Event::Clear(slot) => {
                full.remove(&slot);
                stale.insert(slot);
            }
            Event::Invalidate(slot) => {
                stale.remove(&slot);
            }
            Event::Install(slot, _) => {
                prop_assert!(
                    !stale.contains(&slot),
                    "{:?} reused before its TLB entry was invalidated",
                    slot
                );
                prop_assert!(full.insert(slot), "{:?} installed over a live PTE", slot);
            }
            _ => {}
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let p = Machine::new(CPUS, FRAMES, LOWMEM, TASKS);
    let mut m = Model::new();
    for op in ops {
        match op {
            Op::Map { frame, atomic, pfn } => {
                let task = m.task();
                let slot = pfn || frame >= LOWMEM;
                // SAFETY: the address is only compared and handed back to unmap in LIFO order.
                let result = unsafe {
                    match (atomic, pfn) {
                        (false, false) => kmap::raw::map(&p, Frame::new(frame)),
                        (false, true) => kmap::raw::map_pfn(&p, Frame::new(frame)),
                        (true, false) => kmap::raw::map_atomic(&p, Frame::new(frame)),
                        (true, true) => kmap::raw::map_atomic_pfn(&p, Frame::new(frame)),
                    }
                };
                if slot && m.depth(task) == CELLS {
                    prop_assert_eq!(result, Err(MapError::Overflow { cells: CELLS }));
                } else {
                    let addr = result.unwrap() as usize;
                    if slot {
                        let expected = p.slot_address(kmap::Slot {
                            cpu: kmap::CpuId(m.cpu),
                            cell: Cell(m.depth(task)),
                        });
                        prop_assert_eq!(addr, expected.as_usize());
                    }
                    m.stacks[task].push(Held {
                        frame,
                        slot,
                        atomic,
                        addr,
                    });
                    m.preempt += atomic as i32;
                }
            }
            Op::Unmap => {
                let task = m.task();
                let Some(top) = m.stacks[task].pop() else {
                    continue;
                };
                let result = if top.atomic {
                    unmap_atomic(&p, top.addr + 17)
                } else {
                    unmap(&p, top.addr + 17)
                };
                prop_assert_eq!(result, Ok(()));
                m.preempt -= top.atomic as i32;
            }
            Op::UnmapCell(cell) => {
                let task = m.task();
                let addr = p
                    .slot_address(kmap::Slot {
                        cpu: kmap::CpuId(m.cpu),
                        cell: Cell(cell),
                    })
                    .as_usize();
                let depth = m.depth(task);
                let top_is_slot = m.stacks[task].last().is_some_and(|h| h.slot);
                if depth == 0 {
                    prop_assert_eq!(unmap(&p, addr), Err(UnmapError::EmptyStack));
                } else if cell + 1 != depth || !top_is_slot || m.stacks[task].last().unwrap().atomic
                {
                    // Not the top, or the top is a direct mapping or an atomic one (which must
                    // not be released with plain unmap): only try the refused case.
                    if cell + 1 != depth {
                        let refused = matches!(unmap(&p, addr), Err(UnmapError::NotTopCell { .. }));
                        prop_assert!(
                            refused,
                            "unmap of cell {} under depth {} accepted",
                            cell,
                            depth
                        );
                    }
                } else {
                    prop_assert_eq!(unmap(&p, addr), Ok(()));
                    m.stacks[task].pop();
                }
            }
            Op::Switch(next) => {
                let cpu = m.cpu as usize;
                let running_elsewhere = m
                    .current
                    .iter()
                    .enumerate()
                    .any(|(c, &t)| c != cpu && t == next);
                let pinned_elsewhere =
                    m.depth(next) > 0 && p.task(next).home_cpu() != Some(kmap::CpuId(m.cpu));
                // A kernel never switches with preemption off, nor a pinned task in elsewhere.
                if running_elsewhere || pinned_elsewhere || m.preempt > 0 {
                    continue;
                }
                p.switch_to(next);
                m.current[cpu] = next;
            }
            Op::RunOn(cpu) => {
                if m.preempt > 0 {
                    continue;
                }
                p.run_on(cpu);
                m.cpu = cpu;
            }
            Op::Irq(frames) => {
                let task = m.task();
                let depth = m.depth(task);
                p.interrupt(|| -> Result<(), TestCaseError> {
                    let mut addrs = Vec::new();
                    let mut used = depth;
                    for &frame in &frames {
                        match map(&p, frame) {
                            Ok(addr) => {
                                addrs.push(addr);
                                used += (frame >= LOWMEM) as usize;
                            }
                            Err(e) => {
                                prop_assert_eq!(e, MapError::Overflow { cells: CELLS });
                                prop_assert_eq!(used, CELLS);
                            }
                        }
                    }
                    for addr in addrs.into_iter().rev() {
                        prop_assert_eq!(unmap(&p, addr), Ok(()));
                    }
                    Ok(())
                })?;
            }
        }
        m.check(&p)?;
    }
    check_tlb_hygiene(&p.events())?;
    prop_assert_eq!(p.reports(), vec![]);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_mechanism_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
