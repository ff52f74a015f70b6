//! The built-in scenarios, compiled into the binary (the files are in `scenarios/`).

/// `(name, file contents)` of every built-in scenario.
pub const BUILTINS: &[(&str, &str)] = &[
    (
        "restore-race",
        include_str!("../scenarios/restore-race.toml"),
    ),
    (
        "restore-race-split",
        include_str!("../scenarios/restore-race-split.toml"),
    ),
    ("clear-race", include_str!("../scenarios/clear-race.toml")),
    (
        "clear-race-split",
        include_str!("../scenarios/clear-race-split.toml"),
    ),
    ("irq-on-nmi", include_str!("../scenarios/irq-on-nmi.toml")),
    (
        "preempt-in-windows",
        include_str!("../scenarios/preempt-in-windows.toml"),
    ),
    (
        "migrate-while-holding",
        include_str!("../scenarios/migrate-while-holding.toml"),
    ),
    ("fork", include_str!("../scenarios/fork.toml")),
    (
        "atomic-inside-local",
        include_str!("../scenarios/atomic-inside-local.toml"),
    ),
    ("guard-cells", include_str!("../scenarios/guard-cells.toml")),
    ("guard-api", include_str!("../scenarios/guard-api.toml")),
    ("scope-api", include_str!("../scenarios/scope-api.toml")),
    ("force-map", include_str!("../scenarios/force-map.toml")),
    ("overflow", include_str!("../scenarios/overflow.toml")),
    (
        "atomic-overflow",
        include_str!("../scenarios/atomic-overflow.toml"),
    ),
    ("pinned-cpus", include_str!("../scenarios/pinned-cpus.toml")),
    (
        "handler-overflow",
        include_str!("../scenarios/handler-overflow.toml"),
    ),
    (
        "out-of-order-unmap",
        include_str!("../scenarios/out-of-order-unmap.toml"),
    ),
    ("three-tasks", include_str!("../scenarios/three-tasks.toml")),
    (
        "three-across-switch",
        include_str!("../scenarios/three-across-switch.toml"),
    ),
    (
        "guard-cells-any-order",
        include_str!("../scenarios/guard-cells-any-order.toml"),
    ),
    (
        "restore-race-silent",
        include_str!("../scenarios/restore-race-silent.toml"),
    ),
    (
        "lowmem-irq-rfc",
        include_str!("../scenarios/lowmem-irq-rfc.toml"),
    ),
    (
        "drop-invalidations",
        include_str!("../scenarios/drop-invalidations.toml"),
    ),
    (
        "no-sched-out",
        include_str!("../scenarios/no-sched-out.toml"),
    ),
    (
        "migrate-on-preempt",
        include_str!("../scenarios/migrate-on-preempt.toml"),
    ),
    (
        "exit-then-preempt",
        include_str!("../scenarios/exit-then-preempt.toml"),
    ),
    (
        "hole-then-irq",
        include_str!("../scenarios/hole-then-irq.toml"),
    ),
    (
        "hole-across-switch",
        include_str!("../scenarios/hole-across-switch.toml"),
    ),
    (
        "hole-overflow",
        include_str!("../scenarios/hole-overflow.toml"),
    ),
];

/// The first comment paragraph of a built-in scenario: what it shows.
pub fn summary(text: &str) -> String {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join(" ")
}
