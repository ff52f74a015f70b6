//! Linux's own `mm/highmem.c` behind the simulator's seam: every built-in scenario gets
//! Linux's verdict (the crate's, except where the crate refuses a misuse that Linux BUGs or
//! warns about), the checks Linux makes itself are named by its own file and line, and small
//! scopes are proved under the split switch and refuted under the RFC's.

use kmap_check::scope::Scope;
use kmap_check::search::{check, prove, replay};
use kmap_check::{builtin, resolve};
use kmap_sim::{Config, ConfigError, Implementation, Protocol, Verdict};

/// Register Linux's code, or fail naming why this build has none.
fn linux() {
    if let Some(why) = kmap_linux::unavailable() {
        panic!("this build has no Linux code: {why}");
    }
    kmap_linux::register();
}

/// `config` run on Linux's code.
fn on_linux(mut config: Config) -> Config {
    config.machine.implementation = Implementation::Linux;
    config
}

/// The scope's configuration on Linux's code under `protocol`, with the extra cell Linux's
/// push-then-check needs (rule M-3).
fn scope(cpus: usize, tasks: usize, depth: usize, protocol: Protocol) -> Config {
    let scope = Scope::new(cpus, tasks, depth);
    let mut config = on_linux(scope.config());
    config.machine.switch = protocol;
    config.machine.cells = scope.cells_on(&config.machine);
    config
}

/// Whether `text` names a line of Linux's `mm/highmem.c` (`mm/highmem.c:565`).
fn names_a_highmem_line(text: &str) -> bool {
    text.split("mm/highmem.c:").skip(1).any(|rest| {
        rest.chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() && c != '0')
    })
}

/// The violations of `outcome`, a line each.
fn violations(outcome: &kmap_sim::Outcome) -> String {
    let lines: Vec<String> = outcome.violations.iter().map(|v| v.to_string()).collect();
    lines.join("\n")
}

/// The built-ins Linux's code cannot run: the crate's own APIs and release in any order.
const REFUSED: &[&str] = &[
    "guard-api",
    "scope-api",
    "guard-cells-any-order",
    "hole-then-irq",
    "hole-across-switch",
    "hole-overflow",
];

/// The built-ins where the crate refuses a misuse and Linux's code BUGs, with the check.
const LINUX_BUGS: &[(&str, &str)] = &[
    ("overflow", "BUG_ON(current->kmap_ctrl.idx >= KM_MAX_IDX)"),
    (
        "atomic-overflow",
        "BUG_ON(current->kmap_ctrl.idx >= KM_MAX_IDX)",
    ),
    (
        "pinned-cpus",
        "BUG_ON(current->kmap_ctrl.idx >= KM_MAX_IDX)",
    ),
];

#[test]
fn every_builtin_gets_linux_s_verdict_and_every_difference_is_a_linux_check() {
    linux();
    let mut ran = 0;
    for (name, _) in builtin::BUILTINS {
        let mut scenario = resolve(name).unwrap();
        scenario.config.machine.implementation = Implementation::Linux;
        match scenario.config.validate() {
            Err(ConfigError::Implementation { reason, .. }) => {
                assert!(REFUSED.contains(name), "{name} refused: {reason}");
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(()) => assert!(!REFUSED.contains(name), "{name} must be refused"),
        }
        ran += 1;
        let found = check(&scenario.config);
        let violations = found
            .counterexample
            .as_ref()
            .map(|c| &c.outcome.violations[..])
            .unwrap_or_default();
        assert_eq!(found.verdict, scenario.expected(), "{name}: {violations:?}");
        if scenario.expected() == Verdict::Pass {
            assert!(found.complete, "{name}: the search must cover the bounds");
        }
        let bug = LINUX_BUGS.iter().find(|(n, _)| n == name);
        if scenario.expect_linux != scenario.expect {
            // Only misuse the crate refuses differs, and Linux's own check names it.
            assert_eq!(scenario.expect, Verdict::Refused, "{name}");
            let text: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
            let text = text.join("\n");
            match bug {
                Some((_, check)) => assert!(
                    text.contains(check) && names_a_highmem_line(&text),
                    "{name}: {text}"
                ),
                None => {
                    assert_eq!(*name, "out-of-order-unmap");
                    let hazards = &found.counterexample.as_ref().unwrap().outcome.hazards;
                    let hazards: Vec<String> = hazards.iter().map(|h| h.to_string()).collect();
                    assert!(
                        hazards.iter().any(|h| h.contains("WARN_ON_ONCE(addr != ")
                            && names_a_highmem_line(h)),
                        "{name}: {hazards:?}"
                    );
                }
            }
        } else {
            assert!(bug.is_none(), "{name}");
        }
    }
    assert_eq!(ran + REFUSED.len(), builtin::BUILTINS.len());
}

#[test]
fn the_restore_race_crashes_at_linux_s_own_bug_on_and_replays() {
    linux();
    let config = on_linux(resolve("restore-race").unwrap().config);
    let found = check(&config);
    assert_eq!(found.verdict, Verdict::Violation);
    let ce = found.counterexample.unwrap();
    let text = violations(&ce.outcome);
    assert!(
        text.contains("BUG_ON(!pte_none(ptep_get(kmap_pte)))") && names_a_highmem_line(&text),
        "{text}"
    );
    let again = replay(&config, &ce.schedule);
    assert_eq!(again.trace, ce.outcome.trace);
    assert_eq!(again.violations, ce.outcome.violations);
    // The timeline names each access by Linux's file and line and by what it touches.
    let labels: Vec<String> = ce.outcome.trace.iter().map(|e| e.to_string()).collect();
    for touched in [
        "read current->kmap_ctrl.idx",
        "write current->kmap_ctrl.idx",
    ] {
        assert!(
            labels
                .iter()
                .any(|l| l.contains(touched) && names_a_highmem_line(l)),
            "no `{touched}` in {labels:#?}"
        );
    }
    assert!(
        labels.iter().any(|l| l.contains("(PTE of slot 0.")),
        "{labels:#?}"
    );
}

#[test]
fn small_scopes_are_proved_under_split_and_refuted_under_the_rfc_designs() {
    linux();
    for (cpus, tasks, depth) in [(1, 2, 2), (1, 3, 2), (2, 3, 1)] {
        let config = scope(cpus, tasks, depth, Protocol::Split);
        let proof = prove(&config);
        let name = format!("{cpus}/{tasks}/{depth}");
        assert_eq!(proof.verdict, Verdict::Pass, "{name}");
        let states = proof.states.as_ref().map_or(0, |s| s.states);
        assert!(proof.complete && states > 100, "{name}: {states} states");
    }
    for protocol in [Protocol::RfcV1, Protocol::SwapAfterCurrent] {
        let config = scope(1, 2, 2, protocol);
        let proof = prove(&config);
        assert_eq!(proof.verdict, Verdict::Violation, "{protocol}");
        let ce = proof.counterexample.expect("a counterexample");
        let again = replay(&config, &ce.schedule);
        assert_eq!(
            again.violations, ce.outcome.violations,
            "{protocol} replays"
        );
        let text = violations(&ce.outcome);
        assert!(names_a_highmem_line(&text), "{protocol}: {text:?}");
    }
}

#[test]
fn linux_s_code_is_refused_where_it_has_no_counterpart() {
    linux();
    let config = on_linux(resolve("guard-api").unwrap().config);
    let error = config.validate().unwrap_err();
    assert!(
        matches!(error, ConfigError::Implementation { .. }) && error.to_string().contains("api"),
        "{error}"
    );
}

#[test]
fn random_stress_of_linux_s_code_is_clean_under_split_and_catches_the_rfc() {
    linux();
    let options = |protocol, cpus| kmap_check::stress::Options {
        seed: 3,
        protocol,
        cpus,
        kmap_ops: 40_000,
        time: None,
        rates: kmap_check::search::random::Rates::default(),
        implementation: Implementation::Linux,
    };
    let clean = kmap_check::stress::stress(&options(Protocol::Split, 2), |_, _| {});
    assert!(
        clean.found.is_none(),
        "{:?}",
        clean.found.map(|f| f.outcome.violations)
    );
    assert!(clean.stats.kmap_ops >= 40_000 && clean.stats.irqs > 0);
    let rfc = kmap_check::stress::stress(&options(Protocol::RfcV1, 1), |_, _| {});
    assert!(
        rfc.found.is_some(),
        "the RFC's race in {} kmap operations",
        rfc.stats.kmap_ops
    );
}

#[test]
fn a_scenario_file_names_the_implementation_and_the_edit() {
    linux();
    let text = "[machine]\nimpl = \"linux\"\nedit = \"pop-before-clear\"\n\n\
                [bounds]\npreemptions = 0\nirq_depth = 1\nnmi_depth = 0\n\n\
                [[task]]\nname = \"A\"\nops = [\"map 20\", \"map 21\", \"check\", \"unmap\", \"unmap\"]\n\n\
                [irq]\nops = [\"map 40\", \"check\", \"unmap\"]\n\n\
                [expect]\nverdict = \"violation\"\n";
    let scenario = kmap_check::scenario::parse("own.toml", "own", text).unwrap();
    assert_eq!(
        scenario.config.machine.implementation,
        Implementation::Linux
    );
    let found = check(&scenario.config);
    assert_eq!(found.verdict, scenario.expected());
    let text: Vec<String> = found
        .counterexample
        .unwrap()
        .outcome
        .violations
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert!(names_a_highmem_line(&text.join("\n")), "{text:?}");
    // A misspelt edit is refused when the file is read, naming the field.
    let bad = kmap_check::scenario::parse("bad.toml", "bad", &text_with_edit("pop-before-cleer"));
    let error = bad.unwrap_err().to_string();
    assert!(
        error.contains("bad.toml") && error.contains("no edit pop-before-cleer"),
        "{error}"
    );
}

/// A scenario of one task on Linux's code with `edit`.
fn text_with_edit(edit: &str) -> String {
    format!(
        "[machine]\nimpl = \"linux\"\nedit = \"{edit}\"\n[[task]]\nname = \"A\"\nops = [\"map 20\", \"unmap\"]\n"
    )
}

#[test]
fn a_warn_on_once_is_a_hazard_and_under_strict_a_violation() {
    linux();
    let mut config = on_linux(resolve("out-of-order-unmap").unwrap().config);
    let warned = |found: &kmap_check::search::Exploration| {
        found.counterexample.as_ref().is_some_and(|c| {
            c.outcome
                .violations
                .iter()
                .map(|v| v.to_string())
                .chain(c.outcome.hazards.iter().map(|h| h.to_string()))
                .any(|t| t.contains("WARN_ON_ONCE(addr != ") && names_a_highmem_line(&t))
        })
    };
    let lenient = check(&config);
    let ce = lenient.counterexample.as_ref().unwrap();
    assert!(
        ce.outcome
            .hazards
            .iter()
            .any(|h| h.rule == kmap_sim::Rule::Warn)
            && warned(&lenient),
        "{:?}",
        ce.outcome.hazards
    );
    assert_eq!(
        ce.outcome.violations[0].kind,
        kmap_sim::ViolationKind::Fault
    );
    config.machine.strict = true;
    let strict = check(&config);
    let first = &strict.counterexample.as_ref().unwrap().outcome.violations[0];
    assert!(
        first.to_string().contains("WARN_ON_ONCE(addr != "),
        "under --strict the warning is the violation: {first}"
    );
}
