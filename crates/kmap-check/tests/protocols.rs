//! The machine: each switch protocol on a hand-built situation, the TLB model, nesting,
//! determinism (driven by hand-written choosers and the explorer's own).

use kmap::{Cell, CpuId, Frame};
use kmap_check::search::random::{RandomChooser, Rates};
use kmap_check::search::replay::Replayer;
use kmap_sim::{
    Choice, ChoicePoint, Chooser, Config, Decision, Label, Mutation, NoInjection, Op, Program,
    Protocol, RunOptions, Settings, Task, Verdict, ViolationKind, run_with,
};

/// Takes each `(label, n, choice)` in turn, at the `n`-th arrival (from 1) at `label`.
struct At {
    script: Vec<(Label, usize, Choice)>,
    seen: usize,
    last_arrival: Option<u64>,
}

fn at(script: &[(Label, usize, Choice)]) -> At {
    At {
        script: script.to_vec(),
        seen: 0,
        last_arrival: None,
    }
}

impl Chooser for At {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision {
        let Some(&(label, n, choice)) = self.script.first() else {
            return Decision::Take(0);
        };
        if point.label != label || self.last_arrival == Some(point.arrival) {
            return Decision::Take(0);
        }
        self.last_arrival = Some(point.arrival);
        self.seen += 1;
        if self.seen < n {
            return Decision::Take(0);
        }
        match point.options.iter().position(|&c| c == choice) {
            Some(position) => {
                self.script.remove(0);
                self.seen = 0;
                Decision::Take(position)
            }
            None => Decision::Take(0),
        }
    }
}

/// Options that keep the step-by-step trace.
fn traced() -> RunOptions {
    RunOptions {
        trace: true,
        ..RunOptions::default()
    }
}

fn task(name: &str, ops: &[Op]) -> Task {
    Task {
        name: name.into(),
        cpu: CpuId(0),
        ops: ops.to_vec(),
        ..Task::default()
    }
}

fn config(protocol: Protocol, tasks: Vec<Task>, irq: &[Op]) -> Config {
    Config {
        machine: Settings {
            switch: protocol,
            ..Settings::default()
        },
        program: Program {
            tasks,
            irq: irq.to_vec(),
            ..Program::default()
        },
        ..Config::default()
    }
}

const IRQ_MAPS: &[Op] = &[Op::Map(Frame::new(40)), Op::Check, Op::Unmap];

/// Next (N) holds two mappings and yields to prev (P), which holds none and yields back: the
/// restore of N's slots is where the interrupt lands.
fn restore_race(protocol: Protocol) -> Config {
    config(
        protocol,
        vec![
            task(
                "N",
                &[
                    Op::Map(Frame::new(20)),
                    Op::Map(Frame::new(21)),
                    Op::Yield,
                    Op::Check,
                    Op::Unmap,
                    Op::Unmap,
                ],
            ),
            task("P", &[Op::Yield]),
        ],
        IRQ_MAPS,
    )
}

#[test]
fn rfc_v1_an_interrupt_during_the_restore_lands_on_next_s_slot() {
    let config = restore_race(Protocol::RfcV1);
    let chooser = at(&[(Label::SwapInstalled(Cell(0)), 1, Choice::Irq)]);
    let outcome = run_with(&config, chooser, traced()).unwrap();
    assert_eq!(
        outcome.verdict(),
        Verdict::Violation,
        "{:#?}",
        outcome.trace
    );
    // The consequence: the interrupt's map finds the slot occupied (Linux's BUG_ON)...
    let violation = &outcome.violations[0];
    assert_eq!(violation.kind, ViolationKind::Crash, "{violation}");
    assert_eq!(violation.context, kmap_sim::Context::Irq(1));
    assert!(violation.message.contains("BUG_ON"), "{violation}");
    // ... and the hazard that led there: `current`'s idx disagrees with the slots.
    let hazard = &outcome.hazards[0];
    assert_eq!(hazard.rule, kmap_sim::Rule::Inv1);
    assert!(hazard.message.contains("maps frame 20"), "{hazard}");
    assert!(hazard.message.contains("current (P) has idx 0"), "{hazard}");
}

#[test]
fn rfc_v1_without_an_interrupt_looks_fine() {
    let outcome = run_with(
        &restore_race(Protocol::RfcV1),
        NoInjection,
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(outcome.verdict(), Verdict::Pass, "{:?}", outcome.violations);
}

#[test]
fn split_the_same_interrupt_during_sched_in_is_harmless() {
    let config = restore_race(Protocol::Split);
    let chooser = at(&[(Label::Crate(kmap::Point::SchedInInstalled), 1, Choice::Irq)]);
    let outcome = run_with(&config, chooser, RunOptions::default()).unwrap();
    assert_eq!(outcome.verdict(), Verdict::Pass, "{:?}", outcome.violations);
    assert_eq!(outcome.stats.irqs, 1);
}

/// The mirror image: prev (P) holds two, next (N) holds one, and the swap runs with `current`
/// already next; an interrupt after the first clear pushes at next's idx = 1, onto prev's Q.
fn clear_race(protocol: Protocol) -> Config {
    config(
        protocol,
        vec![
            task(
                "N",
                &[Op::Map(Frame::new(30)), Op::Yield, Op::Check, Op::Unmap],
            ),
            task(
                "P",
                &[
                    Op::Map(Frame::new(20)),
                    Op::Map(Frame::new(21)),
                    Op::Yield,
                    Op::Unmap,
                    Op::Unmap,
                ],
            ),
        ],
        IRQ_MAPS,
    )
}

#[test]
fn swap_after_current_an_interrupt_during_the_clear_lands_on_prev_s_slot() {
    let chooser = at(&[(Label::SwapInvalidated(Cell(0)), 2, Choice::Irq)]);
    let outcome = run_with(
        &clear_race(Protocol::SwapAfterCurrent),
        chooser,
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(outcome.verdict(), Verdict::Violation);
    let violation = &outcome.violations[0];
    assert_eq!(violation.kind, ViolationKind::Crash, "{violation}");
    let hazard = &outcome.hazards[0];
    assert!(
        hazard.message.contains("slot 0.1 maps frame 21"),
        "{hazard}"
    );
}

#[test]
fn split_an_interrupt_during_sched_out_is_harmless() {
    // sched_out runs with interrupts off; an NMI can still arrive there.
    let mut config = clear_race(Protocol::Split);
    config.program.nmi = IRQ_MAPS.to_vec();
    let chooser = at(&[(
        Label::Crate(kmap::Point::SchedOutInvalidated),
        1,
        Choice::Nmi,
    )]);
    let outcome = run_with(&config, chooser, RunOptions::default()).unwrap();
    assert_eq!(outcome.verdict(), Verdict::Pass, "{:?}", outcome.violations);
    assert_eq!(outcome.stats.nmis, 1);
}

/// Frame 20 is mapped and read (so a TLB holds the translation), unmapped, and frame 21 is
/// mapped into the same slot.
fn slot_reuse() -> Config {
    let ops = [
        Op::Map(Frame::new(20)),
        Op::Check,
        Op::Unmap,
        Op::Map(Frame::new(21)),
        Op::Check,
        Op::Unmap,
    ];
    config(Protocol::Split, vec![task("A", &ops)], &[])
}

#[test]
fn slot_reuse_is_clean_when_invalidations_happen() {
    let outcome = run_with(&slot_reuse(), NoInjection, RunOptions::default()).unwrap();
    assert_eq!(outcome.verdict(), Verdict::Pass, "{:?}", outcome.violations);
}

#[test]
fn a_skipped_invalidation_is_caught_with_the_stale_translation_named() {
    let mut config = slot_reuse();
    config.machine.mutation = Some(Mutation::DropInvalidations);
    let outcome = run_with(&config, NoInjection, RunOptions::default()).unwrap();
    // The hazard (the slot is reused before its invalidation), then its consequence: the
    // read of frame 21 goes through the stale entry to frame 20.
    let hazard = &outcome.hazards[0];
    assert_eq!(hazard.rule, kmap_sim::Rule::Inv6, "{hazard}");
    assert!(
        hazard
            .message
            .ends_with("CPU 0's TLB still translates it to frame 20"),
        "{hazard}"
    );
    let violation = &outcome.violations[0];
    assert_eq!(violation.kind, ViolationKind::Corruption, "{violation}");
    assert!(
        violation
            .message
            .contains("reached frame 20 through a stale TLB entry"),
        "{violation}"
    );
}

#[test]
fn a_skipped_invalidation_breaks_inv6_even_without_a_tlb_model() {
    let mut config = slot_reuse();
    config.machine.mutation = Some(Mutation::DropInvalidations);
    config.machine.tlb = false;
    let outcome = run_with(&config, NoInjection, RunOptions::default()).unwrap();
    let hazard = &outcome.hazards[0];
    assert_eq!(hazard.rule, kmap_sim::Rule::Inv6);
    assert!(!hazard.message.contains("TLB still"), "{hazard}");
    // With no TLB to go stale, what remains at the end is a slot never invalidated: a leak.
    let violation = &outcome.violations[0];
    assert_eq!(violation.kind, ViolationKind::Leak, "{violation}");
    assert!(
        violation.message.contains("never invalidated"),
        "{violation}"
    );
}

#[test]
fn interrupt_and_nmi_nesting_is_counted_and_balanced() {
    let mut config = config(
        Protocol::Split,
        vec![task("A", &[Op::Map(Frame::new(20)), Op::Check, Op::Unmap])],
        IRQ_MAPS,
    );
    config.program.nmi = vec![Op::Map(Frame::new(41)), Op::Check, Op::Unmap];
    let chooser = at(&[
        (Label::BeforeOp(Op::Check), 1, Choice::Irq),
        (Label::Crate(kmap::Point::MapPushed), 1, Choice::Nmi),
    ]);
    let outcome = run_with(&config, chooser, traced()).unwrap();
    assert_eq!(outcome.verdict(), Verdict::Pass, "{:?}", outcome.violations);
    assert_eq!(
        (
            outcome.stats.irqs,
            outcome.stats.nmis,
            outcome.stats.max_nesting
        ),
        (1, 1, 2)
    );
    let contexts: Vec<String> = outcome
        .trace
        .iter()
        .filter(|e| matches!(e.what, kmap_sim::What::Enter(_)))
        .map(|e| e.what.to_string())
        .collect();
    assert_eq!(contexts, vec!["IRQ enters", "NMI enters"]);
}

#[test]
fn the_same_choices_give_the_same_trace() {
    let config = kmap_check::stress::workload(7, 2, kmap_sim::Implementation::Crate);
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let chooser = RandomChooser::new(99, Rates::default());
            run_with(&config, chooser, traced()).unwrap()
        })
        .collect();
    assert!(
        runs[0].stats.switches > 0 && runs[0].stats.irqs > 0,
        "{:?}",
        runs[0].stats
    );
    assert_eq!(runs[0].trace, runs[1].trace);
    let replayed = run_with(&config, Replayer::new(runs[0].schedule.clone()), traced()).unwrap();
    assert_eq!(
        replayed.trace, runs[0].trace,
        "the schedule replays the run"
    );
}

/// Probing: one run checks an interrupt at every point; the rfc-v1 race is found without a
/// chooser, its schedule names the probe, and replaying the schedule finds the same violation.
#[test]
fn probing_finds_the_restore_race_in_one_run_and_the_schedule_replays_it() {
    use kmap_sim::ProbeMemo;
    let probing = RunOptions {
        probe: Some(std::sync::Arc::new(ProbeMemo::default())),
        probe_depth: 2,
        prune: true,
        ..RunOptions::default()
    };
    let config = restore_race(Protocol::RfcV1);
    let found = run_with(&config, NoInjection, probing.clone()).unwrap();
    assert_eq!(found.verdict(), Verdict::Violation);
    assert_eq!(found.schedule.0.len(), 1, "{}", found.schedule);
    assert_eq!(found.schedule.0[0].choice, Choice::Irq);
    let replayed = run_with(
        &config,
        Replayer::new(found.schedule.clone()),
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(replayed.violations, found.violations);

    let clean = run_with(&restore_race(Protocol::Split), NoInjection, probing).unwrap();
    assert_eq!(clean.verdict(), Verdict::Pass, "{:?}", clean.violations);
    // A handler is checked at every point: run, or remembered from the same observable state.
    assert!(
        clean.stats.probes + clean.stats.probes_remembered > 10,
        "{:?}",
        clean.stats
    );
}

/// A write through a stale translation into a frame nobody maps is a hazard (a stray write);
/// it becomes corruption when the frame's next owner reads it and finds another context's data.
#[test]
fn a_stray_write_is_a_hazard_and_its_reader_suffers_corruption() {
    let mut config = config(
        Protocol::Split,
        vec![task(
            "T",
            &[
                Op::Map(Frame::new(20)),
                Op::Write(Frame::new(20)),
                Op::Unmap,
            ],
        )],
        &[
            Op::Map(Frame::new(40)),
            Op::Check,
            Op::Write(Frame::new(40)),
            Op::Unmap,
        ],
    );
    config.machine.mutation = Some(Mutation::DropInvalidations);
    // Arrival numbers of the run with no event: the first point and T's last one.
    let quiet = run_with(&config, NoInjection, traced()).unwrap();
    let points: Vec<&Label> = quiet
        .trace
        .iter()
        .filter_map(|e| match &e.what {
            kmap_sim::What::Point(label) => Some(label),
            _ => None,
        })
        .collect();
    let first = points
        .iter()
        .position(|l| **l == Label::BeforeOp(Op::Map(Frame::new(20))))
        .unwrap() as u64;
    let last = points
        .iter()
        .rposition(|l| **l == Label::Crate(kmap::Point::UnmapMigrationEnabled))
        .unwrap() as u64;
    // The first interrupt runs (and lasts) before T maps; its invalidation is dropped, so the
    // arrival numbering after it moves on by the points it passed.
    let with_first = run_with(
        &config,
        Replayer::new(format!("{first}:irq").parse().unwrap()),
        traced(),
    )
    .unwrap();
    let handler_points = with_first
        .trace
        .iter()
        .filter(|e| matches!(e.what, kmap_sim::What::Point(_)))
        .count() as u64
        - points.len() as u64;
    let schedule: kmap_sim::Schedule = format!("{first}:irq,{}:irq", last + handler_points)
        .parse()
        .unwrap();
    let outcome = run_with(&config, Replayer::new(schedule), traced()).unwrap();
    assert!(
        outcome
            .hazards
            .iter()
            .any(|h| h.rule == kmap_sim::Rule::StrayWrite),
        "{:?}",
        outcome.hazards
    );
    let violation = &outcome.violations[0];
    assert_eq!(violation.kind, ViolationKind::Corruption, "{violation}");
    assert!(
        violation.message.contains("another context wrote into it"),
        "{violation}"
    );
}

/// Takes the first lasting interrupt offered, then keeps what the same arrival point offers
/// next.
#[derive(Default)]
struct AfterIrq {
    irq_at: Option<u64>,
    then: Option<Vec<Choice>>,
}

impl Chooser for AfterIrq {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision {
        if self.irq_at.is_none()
            && let Some(irq) = point.options.iter().position(|&c| c == Choice::Irq)
        {
            self.irq_at = Some(point.arrival);
            return Decision::Take(irq);
        }
        if self.irq_at == Some(point.arrival) && self.then.is_none() {
            self.then = Some(point.options.to_vec());
        }
        Decision::Take(0)
    }
}

/// K2: after a lasting handler the arrival point is probed again, on the state the handler
/// left, and only what leaves a trace there is offered. With every invalidation dropped and no
/// TLB model, each handler's unmap leaves its slot uninvalidated: a trace on the clean state,
/// so both handlers are lasting there. On the state the interrupt leaves (its slot already
/// uninvalidated) neither leaves a trace any more, so the point offers nothing else; an offer
/// made from the probe before the interrupt would still list both. (Probes do not nest here:
/// an NMI probed inside the interrupt would land on the next slot and leave a trace there.)
#[test]
fn a_lasting_interrupt_has_the_point_probed_again_on_the_state_it_left() {
    let mut config = config(
        Protocol::Split,
        vec![task("A", &[Op::Map(Frame::new(20)), Op::Check, Op::Unmap])],
        IRQ_MAPS,
    );
    config.program.nmi = vec![Op::Map(Frame::new(41)), Op::Check, Op::Unmap];
    config.machine.mutation = Some(Mutation::DropInvalidations);
    config.machine.tlb = false;
    let chooser = std::rc::Rc::new(std::cell::RefCell::new(AfterIrq::default()));
    let options = RunOptions {
        probe: Some(Default::default()),
        probe_depth: 1,
        ..RunOptions::default()
    };
    kmap_sim::run(&config, chooser.clone(), options).unwrap();
    let chooser = chooser.borrow();
    assert!(
        chooser.irq_at.is_some(),
        "the interrupt is offered as lasting"
    );
    assert_eq!(
        chooser.then, None,
        "after the interrupt the point offers only to continue"
    );
}

/// Takes the first interrupt offered, then keeps the state key of every choice point at
/// `label` (inside the interrupt, its program's arrival points).
struct KeysInside {
    label: Label,
    irq_taken: bool,
    keys: Vec<u128>,
}

impl Chooser for KeysInside {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision {
        if !self.irq_taken
            && let Some(irq) = point.options.iter().position(|&c| c == Choice::Irq)
        {
            self.irq_taken = true;
            return Decision::Take(irq);
        }
        if self.irq_taken && point.label == self.label && !point.is_step() {
            self.keys.push(point.state.expect("a stateful run").key);
        }
        Decision::Take(0)
    }
}

/// K4: the state at a choice point inside a lasting interrupt names how far the interrupt's
/// program has come. Every invalidation dropped and no TLB model: the interrupt's first
/// mapping leaves its slot uninvalidated (so it is a lasting event), then it maps and unmaps
/// a lowmem frame twice, which touches no slot: the two arrival points before those maps
/// see the same machine, and differ only in what the interrupt has still to do. An NMI that
/// maps two pages leaves the second slot uninvalidated, so it is offered at both.
#[test]
fn a_choice_point_inside_an_interrupt_knows_where_the_interrupt_is() {
    let lowmem = Frame::new(2);
    let mut config = config(
        Protocol::Split,
        vec![task("A", &[Op::Check])],
        &[
            Op::Map(Frame::new(40)),
            Op::Unmap,
            Op::Map(lowmem),
            Op::Unmap,
            Op::Map(lowmem),
            Op::Unmap,
        ],
    );
    config.program.nmi = vec![
        Op::Map(Frame::new(41)),
        Op::Map(Frame::new(42)),
        Op::Unmap,
        Op::Unmap,
    ];
    config.machine.mutation = Some(Mutation::DropInvalidations);
    config.machine.tlb = false;
    let chooser = std::rc::Rc::new(std::cell::RefCell::new(KeysInside {
        label: Label::BeforeOp(Op::Map(lowmem)),
        irq_taken: false,
        keys: Vec::new(),
    }));
    let options = RunOptions {
        probe: Some(Default::default()),
        probe_depth: 2,
        stateful: true,
        ..RunOptions::default()
    };
    kmap_sim::run(&config, chooser.clone(), options).unwrap();
    let keys = &chooser.borrow().keys;
    assert_eq!(keys.len(), 2, "the NMI is offered before both lowmem maps");
    assert_ne!(keys[0], keys[1]);
}

/// Keeps the options of the first arrival point that offers anything.
#[derive(Default)]
struct FirstOffer(Option<Vec<Choice>>);

impl Chooser for FirstOffer {
    fn choose(&mut self, point: &ChoicePoint<'_>) -> Decision {
        if self.0.is_none() {
            self.0 = Some(point.options.to_vec());
        }
        Decision::Take(0)
    }
}

/// K3: a handler whose own run is clean, but inside whose probe a nested handler left a
/// trace, is offered as a lasting event, so that the nested handler's trace is explored
/// inside it (no choice is taken inside a probe). The interrupt maps a lowmem frame (no slot,
/// no trace of its own); the NMI, with every invalidation dropped and no TLB model, leaves its
/// slot uninvalidated wherever it lands.
#[test]
fn a_clean_interrupt_with_a_lasting_nmi_inside_is_offered() {
    let mut config = config(
        Protocol::Split,
        vec![task("A", &[Op::Check])],
        &[Op::Map(Frame::new(2)), Op::Check, Op::Unmap],
    );
    config.program.nmi = vec![Op::Map(Frame::new(41)), Op::Check, Op::Unmap];
    config.machine.mutation = Some(Mutation::DropInvalidations);
    config.machine.tlb = false;
    let chooser = std::rc::Rc::new(std::cell::RefCell::new(FirstOffer::default()));
    let options = RunOptions {
        probe: Some(Default::default()),
        probe_depth: 2,
        ..RunOptions::default()
    };
    kmap_sim::run(&config, chooser.clone(), options).unwrap();
    let offered = chooser.borrow().0.clone().expect("a point offers events");
    assert!(offered.contains(&Choice::Nmi), "{offered:?}");
    assert!(offered.contains(&Choice::Irq), "{offered:?}");
}
