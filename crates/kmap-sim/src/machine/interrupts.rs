//! Interrupts and NMIs: a handler runs nested on the current stack, to completion, and must
//! leave its CPU as it found it (INV-3; rules N-1 to N-3).

use super::Machine;
use crate::config::HandlerKind;
use crate::outcome::Rule;
use crate::program::Api;
use crate::trace::What;

impl Machine {
    /// An interrupt or NMI arrives: its handler runs here, nested, to completion.
    ///
    /// Returns whether the handler left a trace (INV-3: it must leave the CPU exactly as it
    /// found it), which is then a hazard.
    pub(crate) fn interrupt(&self, kind: HandlerKind) -> bool {
        let task = self.current_task();
        let entry_depth = self.stack(task).depth();
        let before = self.cpu_view();
        {
            let mut outcome = self.outcome.borrow_mut();
            match kind {
                HandlerKind::Irq => outcome.stats.irqs += 1,
                HandlerKind::Nmi => outcome.stats.nmis += 1,
            }
        }
        let saved_irqs_off = {
            let mut cpu = self.this_cpu();
            let depth = cpu.enter(kind, before);
            let mut outcome = self.outcome.borrow_mut();
            outcome.stats.max_nesting = outcome.stats.max_nesting.max(depth);
            cpu.set_irqs_off(true)
        };
        self.trace(What::Enter(self.where_now().1));
        self.check_above_idx(task, entry_depth, "when an interrupt arrives");
        // Nothing that owns memory is kept in a local while the handler's code runs (it may
        // be suspended there for good, see `driver.rs`): the CPU as the handler found it is
        // kept in the handler's record, and where it runs is asked again when it returns.
        match self.handler_program(kind) {
            (ops, Api::Raw) => self.run_ops(ops, None),
            (ops, Api::Guard) => self.run_guarded_program(ops, None),
            (ops, Api::Scope) => self.run_scoped_program(ops, None),
        }
        let (_, context) = self.where_now();
        let left = self
            .this_cpu()
            .innermost()
            .map_or(0, |handler| handler.mappings.len());
        if left > 0 {
            self.refuse(
                format!("{context} returned holding {left} mapping(s)"),
                false,
            );
        }
        self.check_above_idx(task, entry_depth, "when an interrupt returns");
        self.trace(What::Exit(context.clone()));
        let before = {
            let mut cpu = self.this_cpu();
            let found = cpu.leave();
            cpu.set_irqs_off(saved_irqs_off);
            found
        };
        if self.aborted() {
            return false;
        }
        let after = self.cpu_view();
        if after == before {
            return false;
        }
        let (_, under) = self.where_now();
        let trace = self.describe_trace(&before, &after);
        self.hazard(
            Rule::Inv3,
            format!("{context} on top of {under} left a trace: {trace}"),
        );
        true
    }

    /// Whether a handler of `kind` may arrive now: interrupts need interrupts on, nothing
    /// arrives inside an NMI, a handler needs a program, and the nesting depth of that kind is
    /// within its bound.
    pub(super) fn handler_may_arrive(&self, kind: HandlerKind) -> bool {
        let cpu = self.this_cpu();
        let (program, _) = self.handler_program(kind);
        let bound = match kind {
            HandlerKind::Irq => self.config.bounds.irq_depth,
            HandlerKind::Nmi => self.config.bounds.nmi_depth,
        };
        let used = cpu.nesting_of(kind) as u32;
        cpu.nesting_of(HandlerKind::Nmi) == 0
            && !program.is_empty()
            && (kind == HandlerKind::Nmi || !cpu.irqs_off())
            && bound.is_none_or(|limit| used < limit)
    }
}
