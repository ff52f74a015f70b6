//! An execution ends with its tasks suspended in the middle of their code, and the driver ends
//! their coroutines without unwinding them (`kmap_sim`'s `machine/driver.rs`). That is sound
//! only if no frame of a task's stack owns memory, or anything else that must be dropped, at a
//! point where its code may be suspended. A frame that did would leak it at every execution
//! that ended there: this test counts every allocation of the process over many executions
//! (every built-in scenario searched, scopes proved under every switch, with two CPUs, release
//! in any order, guard cells and the largest stacks, random executions), each ended where its
//! search ends it (a stateful search stops each execution at its first new state, a violation
//! ends one inside a handler or a probe), and requires that they leave none behind.
//!
//! One test in this file: the count is the whole process's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use kmap_check::builtin::BUILTINS;
use kmap_check::scope::Scope;
use kmap_check::search::{Bfs, Dfs, Random};
use kmap_check::{Options, explore, resolve};
use kmap_sim::settings::ValueEnum;
use kmap_sim::{Config, Protocol, Release};

/// The system allocator, counting the blocks alive.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator with the same arguments, which
// upholds `GlobalAlloc`'s contract; the count is only a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's `layout` meets `alloc`'s contract, passed on unchanged.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            LIVE.fetch_add(1, Ordering::Relaxed);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: `block` was allocated by `alloc` above (the system allocator) with `layout`.
        unsafe { System.dealloc(block, layout) };
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// A scope's configuration.
fn scope(cpus: usize, tasks: usize, depth: usize) -> Config {
    Scope::new(cpus, tasks, depth).config()
}

/// Executions of every kind, each ended wherever its search ends it.
fn workload() {
    let whole = Options {
        stop_at_violation: false,
        ..Options::default()
    };
    for (name, _) in BUILTINS {
        let mut config = resolve(name).unwrap().config;
        config.bounds.preemptions = config.bounds.preemptions.map(|p| p.min(1));
        explore(&config, &mut Dfs::default(), Options::default(), |_| {});
        explore(
            &config,
            &mut Random {
                seed: 7,
                executions: 20,
            },
            whole,
            |_| {},
        );
    }
    let mut scopes = Vec::new();
    for &protocol in Protocol::value_variants() {
        let mut config = scope(1, 2, 1);
        config.machine.switch = protocol;
        scopes.push(config);
    }
    scopes.push(scope(2, 2, 1));
    let mut any = scope(1, 2, 2);
    any.machine.release = Release::Any;
    any.machine.guard_cells = true;
    any.machine.cells = 16;
    scopes.push(any);
    // Endless programs in the safe APIs: guards and scoped mappings live in call frames.
    for api in [kmap_sim::Api::Guard, kmap_sim::Api::Scope] {
        let mut config = Scope {
            api,
            ..Scope::new(1, 2, 2)
        }
        .config();
        config.machine.release = Release::Any;
        scopes.push(config);
    }
    let mut largest = scope(1, 2, 2);
    largest.machine.cells = kmap_sim::MAX_CELLS;
    scopes.push(largest);
    for config in &scopes {
        let mut bfs = Bfs {
            max_states: Some(400),
            // One thread: the count is the whole process's, and worker threads' own blocks
            // (their start and exit, timed by the system) made it differ between rounds in
            // about one run in six on two cores, with no frame of a task's stack involved.
            threads: Some(1),
            ..Bfs::default()
        };
        explore(config, &mut bfs, whole, |_| {});
    }
}

#[test]
fn executions_ended_anywhere_leave_no_allocation_behind() {
    // The first round allocates what lives on (the pool of task stacks, lazily built tables).
    workload();
    let before = LIVE.load(Ordering::Relaxed);
    workload();
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(
        after - before,
        0,
        "blocks still allocated after the second round of executions (a frame of a task's \
         stack owned memory where its execution ended)"
    );
}
