//! `cargo xtask mutants`: which checks catch which bug.
//!
//! Each named mutant of `xtask/mutants.toml` breaks one rule of the reference in `crates/kmap`.
//! It is applied to a copy of the workspace under `target/mutants/NAME/` (never to the tree
//! itself), built with one target folder shared by every mutant (`target/mutant-target`, so
//! that only the workspace's crates rebuild), and put through the checks in order: the explorer
//! on every built-in scenario (`kmap check --all`), `kmap prove` on small scopes, random stress
//! (`kmap stress`), the crate's tests (`cargo test -p kmap`) and, with `--kernel`, a boot of
//! the demo kernel built from the copy (`cargo xtask kernel` inside it). The table says which
//! checks caught each mutant, the size of the shortest counterexample the explorer printed and
//! the time to the first catch; a full run writes it into BENCHMARKS.md between its markers.
//!
//! Every mechanism mutant must be caught by the explorer alone (`check` or `prove`), every
//! guard-API mutant by the crate's tests: the command fails when one is not.
//!
//! With `--cargo-mutants` it also runs `cargo mutants` over `crates/kmap`, with the tests of the
//! crate and of the explorer as the test command (`cargo test` of kmap, kmap-sim, kmap-check and
//! kmap-cli: every built-in scenario, the proofs of small scopes, the `kmap` binary's checks):
//! cargo-mutants runs no other command than `cargo test` or nextest.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::{copy_tree, workspace_root};

/// Where the section of BENCHMARKS.md begins and ends.
pub const BEGIN: &str = "<!-- mutants: cargo xtask mutants -->";
pub const END: &str = "<!-- end of mutants -->";
/// How the paragraph on `cargo mutants` begins, so that a run without `--cargo-mutants` keeps it.
const CARGO_MUTANTS_PREFIX: &str = "**`cargo mutants`**";

/// The scopes of `kmap prove` (CPUs, tasks, depth, release order), smallest first; on the crate
/// as it is each is proved in under a few seconds. The first that fails stops the series.
const PROVE_SCOPES: [(usize, usize, usize, &str); 5] = [
    (1, 2, 2, "lifo"),
    (1, 2, 2, "any"),
    (2, 2, 2, "lifo"),
    (2, 2, 2, "any"),
    (2, 2, 3, "lifo"),
];
/// Random stress: at most this many kmap operations (about 10 s here) or this many seconds.
const STRESS_OPS: u64 = 5_000_000;
const STRESS_SECONDS: u64 = 20;

/// Wall-clock limits, far above what each takes on the crate as it is: a mutant that makes a
/// check loop is reported as such instead of hanging the command.
const EXPLORER_LIMIT: Duration = Duration::from_secs(300);
const BUILD_LIMIT: Duration = Duration::from_secs(1800);
const TESTS_LIMIT: Duration = Duration::from_secs(1800);
const KERNEL_LIMIT: Duration = Duration::from_secs(3600);

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Only this mutant (repeat for several). BENCHMARKS.md is then left alone.
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// Only these checks, comma-separated (check, prove, stress, tests, kernel). BENCHMARKS.md
    /// is then left alone.
    #[arg(long, value_enum, value_delimiter = ',')]
    checks: Vec<Check>,
    /// Apply each mutant to its copy and `cargo check` it (does it still apply, does it
    /// compile?), and run no check.
    #[arg(long)]
    check_only: bool,
    /// Also boot each mutant's kernel: `cargo xtask kernel` inside the copy (QEMU, minutes).
    #[arg(long)]
    kernel: bool,
    /// Also run `cargo mutants` over crates/kmap (half an hour here; installed if missing) with
    /// the tests of the crate and of the explorer, and report its caught, missed and unviable
    /// mutants.
    #[arg(long)]
    cargo_mutants: bool,
    /// With `--cargo-mutants` or `--cargo-mutants-only`: go on from the last cargo-mutants run
    /// (cargo-mutants' `--iterate`): test again only the mutants it did not catch or find
    /// unviable, and those it had not reached when it was stopped; the report counts the
    /// outcomes of every run since the last one without `--iterate`. For after new tests or a
    /// stopped run: a mutant is known by its file, line, column and change, so a change to
    /// crates/kmap/src in between calls for a run without it.
    #[arg(long)]
    iterate: bool,
    /// Run only `cargo mutants` (no named mutant), and write only its paragraph of BENCHMARKS.md,
    /// keeping the table of the named mutants.
    #[arg(long)]
    cargo_mutants_only: bool,
    /// List the named mutants and stop.
    #[arg(long)]
    list: bool,
}

impl Options {
    /// The mutants named, through the explorer alone (`kmap check --all` and `kmap prove`): for
    /// `cargo xtask test`, which fails if one of them is not caught.
    pub fn explorer_only(names: &[&str]) -> Options {
        Options {
            only: names.iter().map(|n| n.to_string()).collect(),
            checks: vec![Check::Explore, Check::Prove],
            check_only: false,
            kernel: false,
            cargo_mutants: false,
            iterate: false,
            cargo_mutants_only: false,
            list: false,
        }
    }
}

/// One of the checks a mutant is put through, in the order they run.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Check {
    /// `kmap check --all`.
    #[value(name = "check")]
    Explore,
    /// `kmap prove` on the scopes 1/2/2, 2/2/2 (each with release lifo and any) and 2/2/3
    /// (CPUs/tasks/depth).
    Prove,
    /// `kmap stress` (5,000,000 kmap operations or 20 s).
    Stress,
    /// `cargo test -p kmap`.
    Tests,
    /// `cargo xtask kernel` inside the copy.
    Kernel,
}

impl Check {
    const ALL: [Check; 5] = [
        Check::Explore,
        Check::Prove,
        Check::Stress,
        Check::Tests,
        Check::Kernel,
    ];

    fn name(self) -> &'static str {
        match self {
            Check::Explore => "check",
            Check::Prove => "prove",
            Check::Stress => "stress",
            Check::Tests => "tests",
            Check::Kernel => "kernel",
        }
    }

    fn explorer(self) -> bool {
        matches!(self, Check::Explore | Check::Prove)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MutantsFile {
    mutant: Vec<Mutant>,
    #[serde(default)]
    equivalent: Vec<Equivalent>,
}

/// A mutant of cargo-mutants that no test can catch because it does not change what the crate
/// does, and why.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct Equivalent {
    /// cargo-mutants' name of it without the line and column, e.g.
    /// `crates/kmap/src/platform.rs: replace Platform::point with ()`.
    mutant: String,
    /// Why it changes nothing.
    reason: String,
}

/// cargo-mutants' name of a mutant without its line and column (`FILE:LINE:COL: WHAT` becomes
/// `FILE: WHAT`), which stays the same when lines move.
fn without_position(name: &str) -> String {
    let mut parts = name.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(file), Some(line), Some(column), Some(what))
            if line.chars().all(|c| c.is_ascii_digit())
                && column.chars().all(|c| c.is_ascii_digit()) =>
        {
            format!("{file}:{what}")
        }
        _ => name.to_string(),
    }
}

/// One named mutant, as `xtask/mutants.toml` gives it.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct Mutant {
    name: String,
    /// The reference's rule id, a colon, and the rule in one line.
    rule: String,
    /// What the patch changes, in one line.
    change: String,
    kind: Kind,
    /// The file patched, from the workspace root.
    file: String,
    find: Patterns,
    replace: Patterns,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    Mechanism,
    GuardApi,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mechanism => "mechanism",
            Kind::GuardApi => "guard API",
        }
    }
}

/// One string, or a list of them (a patch in several places).
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
enum Patterns {
    One(String),
    Many(Vec<String>),
}

impl Patterns {
    fn list(&self) -> Vec<&str> {
        match self {
            Patterns::One(one) => vec![one.as_str()],
            Patterns::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

impl Mutant {
    /// The rule's id: what comes before the first colon.
    fn rule_id(&self) -> &str {
        self.rule.split_once(':').map_or(&self.rule, |(id, _)| id)
    }

    /// `text` (the contents of `self.file`) with the patch applied; an error when a find string
    /// does not occur exactly once.
    fn apply(&self, text: &str) -> Result<String, String> {
        let (finds, replaces) = (self.find.list(), self.replace.list());
        if finds.len() != replaces.len() {
            return Err(format!(
                "the mutant `{}` has {} find strings and {} replacements: xtask/mutants.toml must \
                 give as many of each",
                self.name,
                finds.len(),
                replaces.len()
            ));
        }
        let mut text = text.to_string();
        for (i, (find, replace)) in finds.into_iter().zip(replaces).enumerate() {
            let count = if find.is_empty() {
                0
            } else {
                text.matches(find).count()
            };
            if count != 1 {
                return Err(format!(
                    "the mutant `{}` no longer applies: its find string #{} occurs {count} times \
                     in {} (it must occur exactly once); update xtask/mutants.toml:\n{find}",
                    self.name,
                    i + 1,
                    self.file
                ));
            }
            text = text.replacen(find, replace, 1);
        }
        Ok(text)
    }
}

fn load_file(root: &Path) -> Result<MutantsFile, String> {
    let path = root.join("xtask/mutants.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn load(root: &Path) -> Result<Vec<Mutant>, String> {
    let file = load_file(root)?;
    let mut names = BTreeSet::new();
    for mutant in &file.mutant {
        if !names.insert(mutant.name.as_str()) {
            return Err(format!("xtask/mutants.toml names `{}` twice", mutant.name));
        }
        if mutant.name.is_empty()
            || !mutant
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "xtask/mutants.toml: `{}` is not a name of letters, digits and dashes",
                mutant.name
            ));
        }
    }
    Ok(file.mutant)
}

pub fn run(options: &Options) -> Result<(), String> {
    if options.iterate && !(options.cargo_mutants || options.cargo_mutants_only) {
        return Err("--iterate goes with --cargo-mutants or --cargo-mutants-only".into());
    }
    if options.cargo_mutants_only && (options.check_only || !options.only.is_empty()) {
        return Err(
            "--cargo-mutants-only runs no named mutant: leave out --check-only and --only".into(),
        );
    }
    let root = workspace_root();
    let all = load(&root)?;
    if options.list {
        for m in &all {
            println!("{:<40} {:<10} {}", m.name, m.kind.name(), m.rule);
            println!("{:<40} {:<10} {}", "", "", m.change);
        }
        return Ok(());
    }
    for name in &options.only {
        if !all.iter().any(|m| &m.name == name) {
            return Err(format!(
                "no mutant is named `{name}` (see `cargo xtask mutants --list`)"
            ));
        }
    }
    let selected: Vec<Mutant> = all
        .into_iter()
        .filter(|m| {
            !options.cargo_mutants_only
                && (options.only.is_empty() || options.only.contains(&m.name))
        })
        .collect();
    // Every patch must still apply to the tree as it is, before anything is built.
    for mutant in &selected {
        let path = root.join(&mutant.file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        mutant.apply(&text)?;
    }
    println!(
        "xtask: {} mutant(s) of crates/kmap apply to the tree",
        selected.len()
    );

    if options.check_only {
        for mutant in &selected {
            let copy = prepare(&root, mutant, false)?;
            let build = cargo_in(
                &root,
                &copy,
                &[
                    "check",
                    "--package",
                    "kmap",
                    "--package",
                    "kmap-cli",
                    "--all-targets",
                ],
                BUILD_LIMIT,
            )?;
            compiled(mutant, &build)?;
            println!(
                "xtask: mutant {:<40} applies and compiles ({:.0} s)",
                mutant.name,
                build.elapsed.as_secs_f64()
            );
        }
        return Ok(());
    }

    let mut checks: Vec<Check> = if options.checks.is_empty() {
        vec![Check::Explore, Check::Prove, Check::Stress, Check::Tests]
    } else {
        options.checks.clone()
    };
    if options.kernel {
        checks.push(Check::Kernel);
    }
    let checks: BTreeSet<Check> = checks.into_iter().collect();
    let full = !options.cargo_mutants_only && options.only.is_empty() && options.checks.is_empty();

    // cargo-mutants first: the longer of the two, and the one whose survivors may need work.
    let (cargo_mutants, unexplained) = if options.cargo_mutants || options.cargo_mutants_only {
        let command = format!(
            "cargo xtask mutants --cargo-mutants{}{}",
            if options.cargo_mutants_only {
                "-only"
            } else {
                ""
            },
            if options.iterate { " --iterate" } else { "" }
        );
        let (paragraph, unexplained) = cargo_mutants(&root, options.iterate, &command)?;
        (Some(paragraph), unexplained)
    } else {
        (None, Vec::new())
    };
    let mut results = Vec::new();
    for mutant in &selected {
        results.push(run_mutant(&root, mutant, &checks)?);
    }

    // The named mutants' misses go into the section; cargo-mutants' survivors are in its
    // paragraph. Both make the command fail.
    let mut unmet = unmet(&results, &checks);
    let section = section(&root, &results, &checks, cargo_mutants.as_deref(), &unmet);
    unmet.extend(unexplained.into_iter().map(|name| {
        (
            name,
            "a survivor of cargo-mutants that no test kills and xtask/mutants.toml does not \
             explain as equivalent"
                .to_string(),
        )
    }));
    if !options.cargo_mutants_only {
        println!();
        print!("{section}");
    }
    if full {
        write_section(&root, &section)?;
    } else if let (true, Some(paragraph)) = (options.cargo_mutants_only, &cargo_mutants) {
        write_paragraph(&root, paragraph)?;
        println!("xtask: BENCHMARKS.md: the paragraph on cargo mutants written, the table kept");
    } else {
        println!("xtask: BENCHMARKS.md left alone (not every mutant or check ran)");
    }
    if unmet.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "not caught as required: {}",
            unmet
                .iter()
                .map(|(name, why)| format!("{name} ({why})"))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }
}

/// What one check made of one mutant.
#[derive(Clone, Debug)]
enum Verdict {
    /// Caught, with what caught it.
    Caught(String),
    /// It passed: not caught.
    Missed,
    /// The check could not say (it timed out, did not build, could not run).
    Error(String),
}

#[derive(Clone, Debug)]
struct CheckRun {
    check: Check,
    verdict: Verdict,
    elapsed: Duration,
}

/// A counterexample the explorer printed: the steps of its trace, its injected events, and
/// where it came from.
#[derive(Clone, Debug)]
struct Counterexample {
    steps: usize,
    events: usize,
    source: String,
}

struct MutantResult {
    mutant: Mutant,
    runs: Vec<CheckRun>,
    shortest: Option<Counterexample>,
    build: Duration,
}

impl MutantResult {
    fn run(&self, check: Check) -> Option<&CheckRun> {
        self.runs.iter().find(|r| r.check == check)
    }

    fn caught_by(&self, check: Check) -> bool {
        self.run(check)
            .is_some_and(|r| matches!(r.verdict, Verdict::Caught(_)))
    }

    /// The time of the checks, in the order they ran, up to the first that caught the mutant.
    fn first_catch(&self) -> Option<(Duration, Check)> {
        let mut total = Duration::ZERO;
        for run in &self.runs {
            total += run.elapsed;
            if matches!(run.verdict, Verdict::Caught(_)) {
                return Some((total, run.check));
            }
        }
        None
    }
}

fn run_mutant(
    root: &Path,
    mutant: &Mutant,
    checks: &BTreeSet<Check>,
) -> Result<MutantResult, String> {
    println!("xtask: mutant {} ({})", mutant.name, mutant.rule);
    let copy = prepare(root, mutant, checks.contains(&Check::Kernel))?;
    let mut build_time = Duration::ZERO;
    if checks
        .iter()
        .any(|c| matches!(c, Check::Explore | Check::Prove | Check::Stress))
    {
        let build = cargo_in(
            root,
            &copy,
            &["build", "--release", "--package", "kmap-cli"],
            BUILD_LIMIT,
        )?;
        compiled(mutant, &build)?;
        build_time = build.elapsed;
        println!("xtask:   built kmap in {:.0} s", build_time.as_secs_f64());
    }
    let kmap = mutant_target(root).join("release/kmap");
    let mut runs = Vec::new();
    let mut counterexamples = Vec::new();
    for &check in checks {
        let (verdict, elapsed) = match check {
            Check::Explore => check_all(&kmap, &mut counterexamples)?,
            Check::Prove => prove(&kmap, &mut counterexamples)?,
            Check::Stress => stress(&kmap)?,
            Check::Tests => tests(root, &copy)?,
            Check::Kernel => kernel(root, &copy)?,
        };
        println!(
            "xtask:   {:<6} {:.1} s: {}",
            check.name(),
            elapsed.as_secs_f64(),
            verdict_text(&verdict)
        );
        runs.push(CheckRun {
            check,
            verdict,
            elapsed,
        });
    }
    let shortest = counterexamples.into_iter().min_by_key(|c| c.steps);
    Ok(MutantResult {
        mutant: mutant.clone(),
        runs,
        shortest,
        build: build_time,
    })
}

fn verdict_text(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Caught(what) => format!("caught: {what}"),
        Verdict::Missed => "not caught".into(),
        Verdict::Error(why) => format!("no verdict: {why}"),
    }
}

fn mutant_target(root: &Path) -> PathBuf {
    root.join("target/mutant-target")
}

/// A fresh copy of the workspace under target/mutants/NAME with the mutant applied: what
/// builds the `kmap` binary and runs the crate's tests, and with `kernel` the demo kernel
/// (without its build folder).
fn prepare(root: &Path, mutant: &Mutant, kernel: bool) -> Result<PathBuf, String> {
    let copy = root.join("target/mutants").join(&mutant.name);
    if copy.exists() {
        std::fs::remove_dir_all(&copy)
            .map_err(|e| format!("cannot remove {}: {e}", copy.display()))?;
    }
    for part in ["Cargo.toml", "Cargo.lock", ".cargo", "crates", "xtask"] {
        if root.join(part).exists() {
            copy_tree(&root.join(part), &copy.join(part))
                .map_err(|e| format!("cannot copy {part} for the mutant: {e}"))?;
        }
    }
    if kernel {
        let entries = std::fs::read_dir(root.join("kernel"))
            .map_err(|e| format!("cannot read kernel/: {e}"))?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            if entry.file_name() == "target" {
                continue;
            }
            copy_tree(&entry.path(), &copy.join("kernel").join(entry.file_name()))
                .map_err(|e| format!("cannot copy kernel/ for the mutant: {e}"))?;
        }
    }
    let file = copy.join(&mutant.file);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    std::fs::write(&file, mutant.apply(&text)?)
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(copy)
}

/// What a command did.
struct Ran {
    /// The exit code; `None` when it was killed (by a signal, or at its time limit).
    code: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Run `command` to its end or to `limit`, whichever comes first, with its output captured.
fn run_limited(mut command: Command, limit: Duration) -> Result<Ran, String> {
    let shown = format!("{command:?}");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("could not run {shown}: {e}"))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().map_err(|e| e.to_string())?;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    Ok(Ran {
        code: if timed_out { None } else { status.code() },
        timed_out,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed,
    })
}

/// `cargo ARGS` on the copy's workspace, with the target folder all mutants share.
fn cargo_in(root: &Path, copy: &Path, args: &[&str], limit: Duration) -> Result<Ran, String> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args(args)
        .arg("--manifest-path")
        .arg(copy.join("Cargo.toml"))
        .current_dir(copy)
        // One target folder for every mutant: cargo names the artifacts of workspace crates by
        // their path inside the workspace, so each mutant rebuilds only the workspace's crates,
        // and never overwrites the real tree's artifacts in target/.
        .env("CARGO_TARGET_DIR", mutant_target(root));
    run_limited(command, limit)
}

/// The last `lines` lines of `text`.
/// A build of a mutant's copy must have succeeded: a mutant that does not compile tests nothing.
fn compiled(mutant: &Mutant, build: &Ran) -> Result<(), String> {
    if build.code == Some(0) {
        return Ok(());
    }
    Err(format!(
        "the mutant `{}` does not compile: fix its patch in xtask/mutants.toml\n{}",
        mutant.name,
        tail(&build.stderr, 40)
    ))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The verdict of a run of the explorer whose exit status says 0 for "as expected", 1 for
/// "something went wrong", 2 for bad input; `caught` describes a catch from the output.
fn explorer_verdict(ran: &Ran, caught: impl FnOnce(&Ran) -> String) -> Verdict {
    match ran.code {
        Some(0) => Verdict::Missed,
        Some(1) => Verdict::Caught(caught(ran)),
        Some(101) => Verdict::Caught(format!(
            "the explorer panicked: {}",
            ran.stderr
                .lines()
                .find(|l| l.contains("panicked"))
                .unwrap_or("(no message)")
                .trim()
        )),
        _ if ran.timed_out => Verdict::Error(format!(
            "timed out after {:.0} s",
            ran.elapsed.as_secs_f64()
        )),
        code => Verdict::Error(format!("exit status {code:?}: {}", tail(&ran.stderr, 3))),
    }
}

/// The injected events of a printed schedule (`ARRIVAL:CHOICE,...`).
fn events(schedule: &str) -> usize {
    schedule
        .split(',')
        .filter_map(|entry| entry.split_once(':').map(|(_, choice)| choice))
        .filter(|choice| {
            matches!(*choice, "irq" | "nmi" | "preempt")
                || ["preempt-to", "migrate", "cpu"]
                    .iter()
                    .any(|p| choice.starts_with(p))
        })
        .count()
}

/// A counterexample from a result of `kmap check --json` or `kmap replay --json`.
fn counterexample(value: &serde_json::Value, source: String) -> Option<Counterexample> {
    let trace = value["trace"].as_array()?;
    Some(Counterexample {
        steps: trace.len(),
        events: value["schedule"].as_str().map_or(0, events),
        source,
    })
}

fn check_all(
    kmap: &Path,
    counterexamples: &mut Vec<Counterexample>,
) -> Result<(Verdict, Duration), String> {
    let mut command = Command::new(kmap);
    command.args(["check", "--all", "--json"]);
    let ran = run_limited(command, EXPLORER_LIMIT)?;
    let verdict = explorer_verdict(&ran, |ran| {
        let value: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap_or_default();
        let results = match value {
            serde_json::Value::Array(results) => results,
            one => vec![one],
        };
        let failed: Vec<&serde_json::Value> = results.iter().filter(|r| r["ok"] == false).collect();
        let mut names = Vec::new();
        for result in &failed {
            let name = result["scenario"].as_str().unwrap_or("?").to_string();
            if let Some(ce) = counterexample(result, format!("check {name}")) {
                counterexamples.push(ce);
            }
            names.push(name);
        }
        if names.is_empty() {
            return "no failing scenario in the output".into();
        }
        let shown = names.len().min(2);
        format!(
            "{} of {} scenarios ({}{})",
            names.len(),
            results.len(),
            names[..shown].join(", "),
            if names.len() > shown { ", …" } else { "" }
        )
    });
    Ok((verdict, ran.elapsed))
}

fn prove(
    kmap: &Path,
    counterexamples: &mut Vec<Counterexample>,
) -> Result<(Verdict, Duration), String> {
    let mut total = Duration::ZERO;
    for (cpus, tasks, depth, release) in PROVE_SCOPES {
        let scope = match release {
            "lifo" => format!("{cpus}/{tasks}/{depth}"),
            _ => format!("{cpus}/{tasks}/{depth} --release {release}"),
        };
        let mut command = Command::new(kmap);
        command.arg("prove");
        for (flag, value) in [("--cpus", cpus), ("--tasks", tasks), ("--depth", depth)] {
            command.arg(flag).arg(value.to_string());
        }
        command.args(["--release", release]);
        command.arg("--json");
        let ran = run_limited(command, EXPLORER_LIMIT)?;
        total += ran.elapsed;
        let mut replay_id = None;
        let verdict = explorer_verdict(&ran, |ran| {
            let value: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap_or_default();
            replay_id = value["replay"].as_str().map(str::to_string);
            let what = value["violation"]["kind"]
                .as_str()
                .or(value["verdict"].as_str())
                .unwrap_or("?");
            format!("scope {scope} ({what})")
        });
        if let Some(id) = replay_id {
            // The proof prints no trace: replay its counterexample for one.
            let mut command = Command::new(kmap);
            command.args(["replay", &id, "--json"]);
            let replayed = run_limited(command, EXPLORER_LIMIT)?;
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&replayed.stdout)
                && let Some(ce) = counterexample(&value, format!("prove {scope}"))
            {
                counterexamples.push(ce);
            }
        }
        if !matches!(verdict, Verdict::Missed) {
            return Ok((verdict, total));
        }
    }
    Ok((Verdict::Missed, total))
}

fn stress(kmap: &Path) -> Result<(Verdict, Duration), String> {
    let mut command = Command::new(kmap);
    command.args([
        "stress",
        "--ops",
        &STRESS_OPS.to_string(),
        "--time",
        &STRESS_SECONDS.to_string(),
    ]);
    let ran = run_limited(
        command,
        Duration::from_secs(STRESS_SECONDS) + EXPLORER_LIMIT,
    )?;
    let verdict = explorer_verdict(&ran, |ran| {
        // `VIOLATION: crash on CPU 1 in IRQ after "…": map 510: …`: its first words.
        let line = ran
            .stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix("VIOLATION: ")
                    .or_else(|| l.strip_prefix("REFUSED: "))
            })
            .unwrap_or("a violation");
        line.split(" after ")
            .next()
            .unwrap_or(line)
            .split(": ")
            .next()
            .unwrap_or(line)
            .to_string()
    });
    Ok((verdict, ran.elapsed))
}

fn tests(root: &Path, copy: &Path) -> Result<(Verdict, Duration), String> {
    let ran = cargo_in(
        root,
        copy,
        &["test", "--package", "kmap", "--no-fail-fast"],
        TESTS_LIMIT,
    )?;
    let output = format!("{}\n{}", ran.stdout, ran.stderr);
    let failed: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
        .collect();
    let verdict = match ran.code {
        Some(0) => Verdict::Missed,
        _ if ran.timed_out => Verdict::Error(format!(
            "timed out after {:.0} s",
            ran.elapsed.as_secs_f64()
        )),
        _ if !failed.is_empty() => {
            let shown = failed.len().min(2);
            let mut text = failed[..shown].join(", ");
            if failed.len() > shown {
                let _ = write!(text, " and {} more", failed.len() - shown);
            }
            Verdict::Caught(text)
        }
        _ if output.contains("could not compile") => {
            Verdict::Error("the tests did not compile".into())
        }
        code => Verdict::Error(format!("exit status {code:?}: {}", tail(&ran.stderr, 3))),
    };
    Ok((verdict, ran.elapsed))
}

/// `cargo xtask kernel` inside the copy: its xtask, built from the copy (so that its kernel is
/// the copy's, with the mutant), run there. The kernel builds into the copy's kernel/target.
fn kernel(root: &Path, copy: &Path) -> Result<(Verdict, Duration), String> {
    let start = Instant::now();
    let build = cargo_in(root, copy, &["build", "--package", "xtask"], BUILD_LIMIT)?;
    if build.code != Some(0) {
        return Ok((
            Verdict::Error(format!(
                "the copy's xtask did not build: {}",
                tail(&build.stderr, 3)
            )),
            start.elapsed(),
        ));
    }
    let mut command = Command::new(mutant_target(root).join("debug/xtask"));
    command
        .arg("kernel")
        .current_dir(copy)
        .env_remove("CARGO_TARGET_DIR");
    let ran = run_limited(command, KERNEL_LIMIT)?;
    let verdict_line = || {
        format!("{}\n{}", ran.stdout, ran.stderr)
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("xtask: "))
            .map(|l| {
                l.split(": not a failure")
                    .next()
                    .unwrap_or(l)
                    .trim()
                    // "split kernel: caught: slot-fault after 3.2 s" in a cell that says caught
                    .replacen(": caught: ", ": ", 1)
            })
            .unwrap_or_default()
    };
    // Exit statuses of `cargo xtask kernel` (see its help): 0 the boot ended as the split
    // build is meant to (RESULT: PASS), 1 it ended otherwise, 3 it hung or QEMU ended without
    // a verdict, 4 the kernel did not build or QEMU could not run.
    let verdict = match ran.code {
        Some(0) => Verdict::Missed,
        Some(1) | Some(3) => Verdict::Caught(verdict_line()),
        _ if ran.timed_out => Verdict::Error(format!(
            "timed out after {:.0} s",
            ran.elapsed.as_secs_f64()
        )),
        code => Verdict::Error(format!("exit status {code:?}: {}", verdict_line())),
    };
    Ok((verdict, start.elapsed()))
}

/// The mutants not caught as required: a mechanism mutant by the explorer (check or prove), a
/// guard-API mutant by the crate's tests. Only judged when those checks ran.
fn unmet(results: &[MutantResult], checks: &BTreeSet<Check>) -> Vec<(String, String)> {
    let explorer_ran = checks.contains(&Check::Explore) && checks.contains(&Check::Prove);
    let tests_ran = checks.contains(&Check::Tests);
    let mut unmet = Vec::new();
    for r in results {
        let why = match r.mutant.kind {
            Kind::Mechanism
                if explorer_ran && !Check::ALL.iter().any(|&c| c.explorer() && r.caught_by(c)) =>
            {
                "a mechanism mutant the explorer did not catch"
            }
            Kind::GuardApi if tests_ran && !r.caught_by(Check::Tests) => {
                "a guard-API mutant the crate's tests did not catch"
            }
            _ => continue,
        };
        unmet.push((r.mutant.name.clone(), why.to_string()));
    }
    unmet
}

fn cell(result: &MutantResult, check: Check) -> String {
    match result.run(check) {
        None => "not run".into(),
        Some(run) => match &run.verdict {
            Verdict::Caught(what) => format!("**caught**: {}", what.replace('|', "\\|")),
            Verdict::Missed => "—".into(),
            Verdict::Error(why) => format!("no verdict: {}", why.replace('|', "\\|")),
        },
    }
}

/// The Markdown section: the table, the mutants in words, the requirement, and the paragraph on
/// `cargo mutants` (this run's, or the one already in BENCHMARKS.md).
fn section(
    root: &Path,
    results: &[MutantResult],
    checks: &BTreeSet<Check>,
    cargo_mutants: Option<&str>,
    unmet: &[(String, String)],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Mutants of the crate: which checks catch them\n");
    let _ = writeln!(
        s,
        "Generated by `cargo xtask mutants{}` on {}; machine: {}.\n",
        if checks.contains(&Check::Kernel) {
            " --kernel"
        } else {
            ""
        },
        crate::bench::today(),
        crate::bench::machine()
    );
    let scopes: Vec<String> = PROVE_SCOPES
        .iter()
        .map(|(c, t, d, r)| match *r {
            "lifo" => format!("{c}/{t}/{d}"),
            _ => format!("{c}/{t}/{d} (release {r})"),
        })
        .collect();
    let _ = writeln!(
        s,
        "Each mutant of `xtask/mutants.toml` breaks one rule of the reference in `crates/kmap` \
         with a small source patch, applied to a copy of the workspace (`target/mutants/NAME/`). \
         The checks run in this order: `kmap check --all` (every built-in scenario must get its \
         expected verdict), `kmap prove` on the scopes {} (CPUs/tasks/depth, the first that \
         fails ends the series), `kmap stress --ops {STRESS_OPS} --time {STRESS_SECONDS}`, \
         `cargo test -p kmap`{}. *Shortest counterexample*: the fewest steps (trace lines: \
         calls, arrival points, program steps) of a counterexample the explorer printed, from \
         `kmap check --json` or from `kmap replay --json` of the proof's, with its injected \
         events (interrupts, NMIs, preemptions, migrations). *First catch*: the time of the \
         checks, in that order, up to the first that caught the mutant (the release build of \
         the copy not included{}).\n",
        scopes.join(", "),
        if checks.contains(&Check::Kernel) {
            ", and a boot of the demo kernel built from the copy (`cargo xtask kernel`)"
        } else {
            " (a boot of the kernel only with `--kernel`)"
        },
        if checks.contains(&Check::Kernel) {
            "; a kernel boot's time includes the build of the copy's xtask and kernel"
        } else {
            ""
        }
    );
    let shown: Vec<Check> = Check::ALL
        .into_iter()
        .filter(|c| checks.contains(c))
        .collect();
    let header = |c: Check| match c {
        Check::Explore => "`check --all`",
        Check::Prove => "`prove`",
        Check::Stress => "`stress`",
        Check::Tests => "`cargo test -p kmap`",
        Check::Kernel => "kernel boot",
    };
    let _ = writeln!(
        s,
        "| mutant | rule | kind | {} | shortest counterexample | first catch |",
        shown
            .iter()
            .map(|&c| header(c))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(s, "|---|---|---|{}---|---|", "---|".repeat(shown.len()));
    for r in results {
        let shortest = r.shortest.as_ref().map_or("—".to_string(), |ce| {
            format!(
                "{} steps, {} event{} ({})",
                ce.steps,
                ce.events,
                if ce.events == 1 { "" } else { "s" },
                ce.source
            )
        });
        let first = r.first_catch().map_or("not caught".to_string(), |(t, c)| {
            format!("{:.1} s ({})", t.as_secs_f64(), c.name())
        });
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} |",
            r.mutant.name,
            r.mutant.rule_id(),
            r.mutant.kind.name(),
            shown
                .iter()
                .map(|&c| cell(r, c))
                .collect::<Vec<_>>()
                .join(" | "),
            shortest,
            first
        );
    }
    let _ = writeln!(s, "\nThe mutants:\n");
    for r in results {
        let built = if r.build.is_zero() {
            String::new()
        } else {
            format!(
                " (the copy's release build: {:.0} s)",
                r.build.as_secs_f64()
            )
        };
        let _ = writeln!(
            s,
            "- `{}` ({}, `{}`): breaks {}; {}{built}.",
            r.mutant.name,
            r.mutant.kind.name(),
            r.mutant.file,
            r.mutant.rule,
            r.mutant.change,
        );
    }
    let _ = writeln!(s);
    let judged = [Check::Explore, Check::Prove, Check::Tests]
        .iter()
        .all(|c| checks.contains(c));
    if unmet.is_empty() && !judged {
        let _ = writeln!(
            s,
            "Not judged whether each mutant is caught as required: that needs `check`, `prove` \
             and `tests`.\n"
        );
    } else if unmet.is_empty() {
        let _ = writeln!(
            s,
            "Every mechanism mutant is caught by the explorer alone (`kmap check --all` or \
             `kmap prove`), every guard-API mutant by the crate's tests.\n"
        );
    } else {
        let _ = writeln!(s, "Not caught as required:\n");
        for (name, why) in unmet {
            let _ = writeln!(s, "- `{name}`: {why}.");
        }
        let _ = writeln!(s);
    }
    // The previous run's paragraph (with its lists), from its first word to the end marker.
    let previous = std::fs::read_to_string(root.join("BENCHMARKS.md"))
        .ok()
        .and_then(|text| {
            let (start, end) = paragraph_range(&text)?;
            Some(text[start..end].trim_end().to_string())
        });
    match (cargo_mutants, previous) {
        (Some(paragraph), _) => {
            let _ = writeln!(s, "{paragraph}\n");
        }
        (None, Some(paragraph)) => {
            let _ = writeln!(s, "{paragraph}\n");
        }
        (None, None) => {
            let _ = writeln!(
                s,
                "{CARGO_MUTANTS_PREFIX} (every mutant cargo-mutants generates in crates/kmap, \
                 against the tests of the crate and of the explorer): not run yet; `cargo xtask \
                 mutants --cargo-mutants` runs it.\n"
            );
        }
    }
    s
}

/// Put `section` between the markers of BENCHMARKS.md, touching nothing outside them; append
/// the markers with the section when they are missing.
fn write_section(root: &Path, section: &str) -> Result<(), String> {
    let path = root.join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let new = splice(&old, section);
    std::fs::write(&path, new).map_err(|e| format!("cannot write BENCHMARKS.md: {e}"))?;
    println!("xtask: the section `{BEGIN}` of BENCHMARKS.md written");
    Ok(())
}

/// Put the paragraph on `cargo mutants` in place of the one in the section of BENCHMARKS.md,
/// keeping the rest of the section (the table of a run of the named mutants).
fn write_paragraph(root: &Path, paragraph: &str) -> Result<(), String> {
    let path = root.join("BENCHMARKS.md");
    let old =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read BENCHMARKS.md: {e}"))?;
    let new = replace_paragraph(&old, paragraph).ok_or(
        "BENCHMARKS.md has no section of `cargo xtask mutants` with a paragraph on cargo \
         mutants to replace: run `cargo xtask mutants` first",
    )?;
    std::fs::write(&path, new).map_err(|e| format!("cannot write BENCHMARKS.md: {e}"))
}

fn replace_paragraph(old: &str, paragraph: &str) -> Option<String> {
    let (start, end) = paragraph_range(old)?;
    Some(format!("{}{paragraph}\n\n{}", &old[..start], &old[end..]))
}

/// Where the paragraph on `cargo mutants` stands in the section of BENCHMARKS.md: from its
/// first word to the end marker.
fn paragraph_range(text: &str) -> Option<(usize, usize)> {
    let begin = text.find(BEGIN)? + BEGIN.len();
    let end = begin + text[begin..].find(END)?;
    let start = begin + text[begin..end].find(&format!("\n{CARGO_MUTANTS_PREFIX}"))? + 1;
    Some((start, end))
}

fn splice(old: &str, section: &str) -> String {
    match old.find(BEGIN).and_then(|b| {
        let start = b + BEGIN.len();
        old[start..].find(END).map(|e| (start, start + e))
    }) {
        Some((start, end)) => format!("{}\n{section}{}", &old[..start], &old[end..]),
        None => {
            let separator = if old.is_empty() || old.ends_with("\n\n") {
                ""
            } else if old.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{old}{separator}{BEGIN}\n{section}{END}\n")
        }
    }
}

/// `cargo mutants` over crates/kmap, with the tests of the whole workspace (the explorer's
/// among them); returns the paragraph for BENCHMARKS.md and the survivors that
/// xtask/mutants.toml does not explain as equivalent. With `iterate`, it goes on from the last
/// run (cargo-mutants' `--iterate`) and reports the outcomes of every run since the last one
/// without it, kept in the ledger (`target/cargo-mutants/ledger.json`).
fn cargo_mutants(
    root: &Path,
    iterate: bool,
    command: &str,
) -> Result<(String, Vec<String>), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let installed = Command::new(&cargo)
        .args(["mutants", "--version"])
        .output()
        .map(|o| {
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).trim().to_string(),
            )
        });
    let version = match installed {
        Ok((true, version)) => version,
        _ => {
            println!("xtask: cargo-mutants is missing: cargo install cargo-mutants --locked");
            let status = Command::new(&cargo)
                .args(["install", "cargo-mutants", "--locked"])
                .status()
                .map_err(|e| format!("could not run cargo install: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "`cargo install cargo-mutants --locked` failed ({status})"
                ));
            }
            Command::new(&cargo)
                .args(["mutants", "--version"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        }
    };
    let output = root.join("target/cargo-mutants");
    let outcomes = output.join("mutants.out/outcomes.json");
    let ledger_path = output.join("ledger.json");
    // The outcomes so far: with --iterate, the ledger and then the last run (which may have been
    // stopped before it wrote its end, or before xtask could fold it in).
    let mut ledger = Ledger::default();
    if iterate {
        if let Ok(text) = std::fs::read_to_string(&ledger_path) {
            ledger = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not a ledger: {e}", ledger_path.display()))?;
        }
        if outcomes.exists() {
            ledger.fold(&read_json(&outcomes)?);
        }
    }
    // Saved before cargo-mutants moves the last run aside, so that a run stopped now loses
    // nothing; a run without --iterate starts a new ledger.
    ledger.save(&ledger_path)?;
    // The tests of the crate and of the explorer: every package whose tests run the crate
    // (not xtask's, kmap-host's or the benchmarks').
    // A timeout far above the tests' time (under a minute here): cargo-mutants' default is five
    // times the baseline's, which tests kmap's tests alone, far shorter than the explorer's.
    let selection = ["--package", "kmap"];
    let args = [
        "--test-package",
        "kmap,kmap-sim,kmap-check,kmap-cli",
        "--timeout",
        "300",
        "--gitignore=true",
        "--no-shuffle",
    ];
    let shown = format!(
        "mutants {} {}{}",
        selection.join(" "),
        args.join(" "),
        if iterate { " --iterate" } else { "" }
    );
    println!(
        "xtask: cargo {shown} --dir {} --output {} (half an hour here)",
        root.display(),
        output.display()
    );
    let status = Command::new(&cargo)
        .arg("mutants")
        .args(selection)
        .args(args)
        .args(iterate.then_some("--iterate"))
        .arg("--dir")
        .arg(root)
        .arg("--output")
        .arg(&output)
        .current_dir(root)
        .status()
        .map_err(|e| format!("could not run cargo mutants: {e}"))?;
    // cargo-mutants: 0 every mutant caught, 2 some missed, 3 some timed out; 4 the tests fail
    // on the unmutated tree, anything else a usage or internal error.
    if !matches!(status.code(), Some(0 | 2 | 3)) {
        return Err(format!("cargo mutants failed ({status})"));
    }
    ledger.fold(&read_json(&outcomes)?);
    ledger.save(&ledger_path)?;

    // Every mutant of the tree as it is must have an outcome (lines that moved make new names).
    let listed = Command::new(&cargo)
        .arg("mutants")
        .args(["--list", "--colors=never"])
        .args(selection)
        .arg("--dir")
        .arg(root)
        .current_dir(root)
        .output()
        .map_err(|e| format!("could not run cargo mutants --list: {e}"))?;
    if !listed.status.success() {
        return Err(format!("cargo mutants --list failed ({})", listed.status));
    }
    let listed: BTreeSet<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let (counts, untested) = ledger.count(&listed);
    if !untested.is_empty() {
        return Err(format!(
            "cargo-mutants has no outcome for {} mutant(s) of the tree as it is (the first: \
             `{}`): `{command}` again, or without `--iterate` to test every mutant anew",
            untested.len(),
            untested[0]
        ));
    }
    let names = |summary: &str| -> Vec<String> {
        ledger
            .with(&listed, summary)
            .map(|name| without_position(name))
            .collect()
    };
    let missed = names("MissedMutant");
    if !missed.is_empty() {
        println!(
            "xtask: the mutants cargo-mutants missed:\n{}",
            missed.join("\n")
        );
    }
    let timed_out: Vec<String> = names("Timeout")
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect();
    let equivalents = load_file(root)?.equivalent;
    let mut explained = Vec::new();
    let mut unexplained = Vec::new();
    for name in missed {
        match equivalents.iter().find(|e| e.mutant == name) {
            Some(e) => explained.push(format!("`{name}`: {}", e.reason)),
            None => unexplained.push(name),
        }
    }
    let runs = ledger.runs.len();
    let mut paragraph = format!(
        "{CARGO_MUTANTS_PREFIX} ({version}, `cargo {shown}`, run by `{command}` on {}{}; \
         {:.1} h of builds and tests): {} mutants of crates/kmap, \
         {} caught, {} missed, {} unviable, {} timed out (a test that no longer ends: caught). \
         The test command is `cargo test` of kmap, kmap-sim, kmap-check and kmap-cli: the \
         crate's tests and the explorer's (every built-in scenario, small proofs, the `kmap` \
         binary's checks).{}",
        crate::bench::today(),
        if runs == 1 {
            String::new()
        } else {
            format!(
                ", the last of {runs} runs, each after the first going on from the one before; \
                 a mutant's outcome is that of the last run that tested it"
            )
        },
        ledger.seconds() / 3600.0,
        counts.total,
        counts.caught,
        counts.missed,
        counts.unviable,
        counts.timeout,
        if timed_out.is_empty() {
            String::new()
        } else {
            format!(" Timed out: {}.", timed_out.join(", "))
        }
    );
    if !explained.is_empty() {
        let _ = writeln!(
            paragraph,
            " {} (`[[equivalent]]` in xtask/mutants.toml):",
            if explained.len() == 1 {
                "The survivor is an equivalent mutant (it changes nothing the crate does)"
            } else {
                "The survivors are equivalent mutants (they change nothing the crate does)"
            }
        );
        for line in &explained {
            let _ = write!(paragraph, "\n- {line}");
        }
    }
    if !unexplained.is_empty() {
        let _ = writeln!(
            paragraph,
            "\n\nSurvivors not explained (a test must kill them, or xtask/mutants.toml must say \
             why they are equivalent):"
        );
        for name in &unexplained {
            let _ = write!(paragraph, "\n- `{name}`");
        }
    }
    println!("xtask: {paragraph}");
    Ok((paragraph, unexplained))
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// The outcomes of cargo-mutants' runs since the last one without `--iterate`: for each mutant
/// (cargo-mutants' name, with its position) the outcome of the last run that tested it. A run
/// with `--iterate` lumps the mutants it skips, caught and unviable alike, into one list; the
/// ledger keeps them apart.
#[derive(Default, Debug, PartialEq, serde::Serialize, Deserialize)]
struct Ledger {
    /// When each run folded in began (cargo-mutants' `start_time`), and the seconds of all its
    /// builds and tests, the baseline's included.
    runs: Vec<(String, f64)>,
    outcomes: std::collections::BTreeMap<String, Outcome>,
}

#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
struct Outcome {
    /// cargo-mutants' summary: CaughtMutant, MissedMutant, Unviable or Timeout.
    summary: String,
    /// The build and test time it took in that run.
    seconds: f64,
}

impl Ledger {
    /// Fold in one run's `outcomes.json` (a run folded in before, perhaps stopped part-way then,
    /// replaces what it gave then).
    fn fold(&mut self, value: &serde_json::Value) {
        let start = value["start_time"].as_str().unwrap_or_default().to_string();
        let mut total = 0.0;
        let mut mutants = 0;
        for outcome in value["outcomes"].as_array().into_iter().flatten() {
            let seconds: f64 = outcome["phase_results"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["duration"].as_f64())
                .sum();
            total += seconds;
            if outcome["scenario"] == "Baseline" {
                continue;
            }
            let (Some(name), Some(summary)) = (
                outcome["scenario"]["Mutant"]["name"].as_str(),
                outcome["summary"].as_str(),
            ) else {
                continue;
            };
            mutants += 1;
            self.outcomes.insert(
                name.to_string(),
                Outcome {
                    summary: summary.to_string(),
                    seconds,
                },
            );
        }
        // A run that tested no mutant (its baseline failed, or it was stopped first) is none.
        self.runs.retain(|(s, _)| *s != start);
        if mutants > 0 {
            self.runs.push((start, total));
        }
    }

    fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The build and test time of every run folded in.
    fn seconds(&self) -> f64 {
        self.runs.iter().map(|(_, s)| s).sum()
    }

    /// The outcomes of the mutants `listed` (the tree's, as `cargo mutants --list` names them),
    /// and those of them that have none.
    fn count(&self, listed: &BTreeSet<String>) -> (Counts, Vec<String>) {
        let counts = Counts {
            total: listed.len(),
            caught: self.with(listed, "CaughtMutant").count(),
            missed: self.with(listed, "MissedMutant").count(),
            unviable: self.with(listed, "Unviable").count(),
            timeout: self.with(listed, "Timeout").count(),
        };
        let untested = listed
            .iter()
            .filter(|name| {
                self.outcomes
                    .get(*name)
                    .is_none_or(|o| !SUMMARIES.contains(&o.summary.as_str()))
            })
            .cloned()
            .collect();
        (counts, untested)
    }

    /// The mutants of `listed` whose last outcome is `summary`.
    fn with<'a>(
        &'a self,
        listed: &'a BTreeSet<String>,
        summary: &'a str,
    ) -> impl Iterator<Item = &'a String> {
        listed.iter().filter(move |name| {
            self.outcomes
                .get(*name)
                .is_some_and(|o| o.summary == summary)
        })
    }
}

/// The outcomes of cargo-mutants that the ledger counts.
const SUMMARIES: [&str; 4] = ["CaughtMutant", "MissedMutant", "Unviable", "Timeout"];

#[derive(Default, Debug, PartialEq, Eq)]
struct Counts {
    total: usize,
    caught: usize,
    missed: usize,
    unviable: usize,
    timeout: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_mutants_parse() {
        let mutants = load(&workspace_root()).unwrap();
        assert!(mutants.len() >= 12);
        for kind in [Kind::Mechanism, Kind::GuardApi] {
            assert!(mutants.iter().any(|m| m.kind == kind));
        }
        for m in &mutants {
            assert_eq!(m.find.list().len(), m.replace.list().len(), "{}", m.name);
        }
    }

    #[test]
    fn a_find_string_must_occur_exactly_once() {
        let mutant = Mutant {
            name: "m".into(),
            rule: "X-1: a rule".into(),
            change: "a change".into(),
            kind: Kind::Mechanism,
            file: "f.rs".into(),
            find: Patterns::One("a".into()),
            replace: Patterns::One("b".into()),
        };
        assert_eq!(mutant.apply("xay").unwrap(), "xby");
        assert!(
            mutant
                .apply("aa")
                .unwrap_err()
                .contains("no longer applies")
        );
        assert!(mutant.apply("xyz").unwrap_err().contains("occurs 0 times"));
        assert_eq!(mutant.rule_id(), "X-1");
    }

    #[test]
    fn the_section_replaces_only_what_is_between_the_markers() {
        let old = format!("# B\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n");
        assert_eq!(
            splice(&old, "new table\n"),
            format!("# B\n\nbefore\n{BEGIN}\nnew table\n{END}\nafter\n")
        );
        assert_eq!(
            splice("# B\n", "t\n"),
            format!("# B\n\n{BEGIN}\nt\n{END}\n")
        );
    }

    #[test]
    fn a_paragraph_alone_replaces_only_the_old_paragraph() {
        let old =
            format!("before\n{BEGIN}\ntable\n\n{CARGO_MUTANTS_PREFIX} old\n- a\n\n{END}\nafter\n");
        assert_eq!(
            replace_paragraph(&old, &format!("{CARGO_MUTANTS_PREFIX} new")).unwrap(),
            format!("before\n{BEGIN}\ntable\n\n{CARGO_MUTANTS_PREFIX} new\n\n{END}\nafter\n")
        );
        assert!(replace_paragraph(&format!("{BEGIN}\ntable\n{END}\n"), "p").is_none());
        assert!(replace_paragraph("no section", "p").is_none());
    }

    #[test]
    fn schedules_count_injected_events_only() {
        assert_eq!(events("25:irq"), 1);
        assert_eq!(events("3:map,7:preempt-to1,9:continue,12:nmi,14:cpu1"), 3);
        assert_eq!(events("-"), 0);
    }

    #[test]
    fn a_mutant_is_named_without_its_position() {
        assert_eq!(
            super::without_position(
                "crates/kmap/src/platform.rs:127:9: replace Platform::point with ()"
            ),
            "crates/kmap/src/platform.rs: replace Platform::point with ()"
        );
        assert_eq!(super::without_position("no position"), "no position");
    }

    fn run(start: &str, outcomes: &[(&str, &str, f64)]) -> serde_json::Value {
        let mut list = vec![serde_json::json!({
            "scenario": "Baseline",
            "summary": "Success",
            "phase_results": [
                { "phase": "Build", "duration": 10.0 },
                { "phase": "Test", "duration": 5.0 },
            ],
        })];
        for (name, summary, seconds) in outcomes {
            list.push(serde_json::json!({
                "scenario": { "Mutant": { "name": name } },
                "summary": summary,
                "phase_results": [{ "phase": "Build", "duration": seconds }],
            }));
        }
        serde_json::json!({ "start_time": start, "outcomes": list })
    }

    #[test]
    fn the_ledger_keeps_each_mutants_last_outcome_across_runs() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let first = run(
            "t1",
            &[
                ("a", "CaughtMutant", 1.0),
                ("b", "Unviable", 2.0),
                ("c", "MissedMutant", 3.0),
            ],
        );
        let mut ledger = Ledger::default();
        // A first run, stopped before it reached `d`.
        ledger.fold(&first);
        let listed = set(&["a", "b", "c", "d"]);
        let (counts, untested) = ledger.count(&listed);
        assert_eq!(untested, vec!["d".to_string()]);
        assert_eq!((counts.caught, counts.unviable, counts.missed), (1, 1, 1));
        // Folding the same run again (xtask folds the last run before it goes on) changes nothing.
        let before = serde_json::to_string(&ledger).unwrap();
        ledger.fold(&first);
        assert_eq!(serde_json::to_string(&ledger).unwrap(), before);
        // The run with --iterate tests again only the missed one and the one not reached.
        ledger.fold(&run(
            "t2",
            &[("c", "CaughtMutant", 4.0), ("d", "Timeout", 5.0)],
        ));
        let (counts, untested) = ledger.count(&listed);
        assert!(untested.is_empty());
        assert_eq!(
            counts,
            Counts {
                total: 4,
                caught: 2,
                missed: 0,
                unviable: 1,
                timeout: 1
            }
        );
        // A run stopped before its first mutant is not a run.
        ledger.fold(&run("t3", &[]));
        assert_eq!(ledger.runs.len(), 2);
        // Every build and test of both runs: two baselines of 15 s, then 1 + 2 + 3 and 4 + 5.
        assert_eq!(ledger.seconds(), 30.0 + 6.0 + 9.0);
        // A mutant no longer in the tree (its line moved) is not counted.
        let (counts, _) = ledger.count(&set(&["a", "b"]));
        assert_eq!(counts.total, 2);
    }
}
