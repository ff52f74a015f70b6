//! Short random runs: the split protocol stays clean, the other two are caught.

use kmap_check::search::random::Rates;
use kmap_check::stress::{Options, run_one, stress};
use kmap_sim::{Protocol, RunOptions, Verdict};

fn options(protocol: Protocol, cpus: usize, kmap_ops: u64) -> Options {
    Options {
        seed: 3,
        protocol,
        cpus,
        kmap_ops,
        time: None,
        rates: Rates::default(),
        implementation: kmap_sim::Implementation::Crate,
    }
}

#[test]
fn split_stays_clean_on_one_and_two_cpus() {
    for cpus in [1, 2] {
        let report = stress(&options(Protocol::Split, cpus, 30_000), |_, _| {});
        assert!(
            report.found.is_none(),
            "{:?}",
            report.found.map(|f| f.outcome.violations)
        );
        let s = report.stats;
        assert!(s.kmap_ops >= 30_000);
        assert!(
            s.switches > 0 && s.preemptions > 0 && s.irqs > 0 && s.nmis > 0,
            "{s:?}"
        );
    }
}

#[test]
fn rfc_v1_and_swap_after_current_are_caught() {
    for protocol in [Protocol::RfcV1, Protocol::SwapAfterCurrent] {
        let report = stress(&options(protocol, 1, 200_000), |_, _| {});
        let found = report
            .found
            .unwrap_or_else(|| panic!("{protocol} not caught"));
        assert_eq!(found.outcome.verdict(), Verdict::Violation);
        // The seed replays the very same execution.
        let again = run_one(
            found.execution_seed,
            &options(protocol, 1, 0),
            RunOptions::default(),
        );
        assert_eq!(again.violations, found.outcome.violations);
        assert_eq!(again.schedule, found.outcome.schedule);
    }
}
