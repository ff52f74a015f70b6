//! A scope for `kmap prove`: tasks whose programs are endless nondeterministic mixes of map /
//! check / unmap / yield up to a depth (the SPIN model's tasks), spread over CPUs, and an
//! interrupt and an NMI that map, check and unmap a page of their own (or two, nested). Named
//! `scope:C/T/D`.

use std::fmt;
use std::str::FromStr;

use kmap::{CpuId, Frame};
use kmap_sim::{Alphabet, Api, Config, Op, Program, SUPPORTED_CELLS, Task};

/// The machine and the programs of a scope, built by [`Scope::config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    /// CPUs.
    pub cpus: usize,
    /// Tasks with nondeterministic programs.
    pub tasks: usize,
    /// How many pages each task maps at most.
    pub depth: usize,
    /// An interrupt handler that maps.
    pub irq: bool,
    /// An NMI handler that maps.
    pub nmi: bool,
    /// How many pages each handler maps, nested (1 or 2): with 2, it maps both, checks, and
    /// unmaps both.
    pub handler_pages: usize,
    /// What the tasks may do besides map, check, unmap, release and yield.
    pub alphabet: Alphabet,
    /// The crate's API the tasks and the handlers map through (`:guard`: the safe API, whose
    /// tasks release only their innermost mapping; `:scope`: a `Scope` per context, for
    /// release in any order).
    pub api: Api,
}

/// The syntax of a scope, for messages.
const SYNTAX: &str = "scope:CPUS/TASKS/DEPTH[:irq|:nmi|:none][:nested][:atomic][:write][:irq-off][:sleep][:lowmem][:guard|:scope]";

/// Why a scope cannot be proved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Not `scope:CPUS/TASKS/DEPTH[:irq|:nmi|:none][:nested][:atomic][:write][:irq-off][:sleep]`.
    #[error("`{text}` is not a scope ({SYNTAX})")]
    Syntax {
        /// The text.
        text: String,
    },
    /// CPUs outside 1 to 8.
    #[error("cpus must be 1 to 8, not {given}")]
    Cpus {
        /// What was given.
        given: usize,
    },
    /// Tasks outside 1 to 16.
    #[error("tasks must be 1 to 16, not {given}")]
    Tasks {
        /// What was given.
        given: usize,
    },
    /// A depth outside 1 to 14.
    #[error("depth must be 1 to 14, not {given}")]
    Depth {
        /// What was given.
        given: usize,
    },
    /// Handler pages other than 1 or 2.
    #[error("a handler maps 1 or 2 pages, not {given}")]
    HandlerPages {
        /// What was given.
        given: usize,
    },
    /// A depth too deep for two handler pages: the stacks, guard cells included, would need
    /// more cells than the simulator is built for.
    #[error("with two handler pages the depth must be 1 to 12, not {given}")]
    NestedDepth {
        /// What was given.
        given: usize,
    },
    /// A depth too deep beside a lowmem page, which takes a cell under force-map.
    #[error("with a lowmem page the depth must be 1 to {most}, not {given}")]
    LowmemDepth {
        /// What was given.
        given: usize,
        /// The deepest that fits.
        most: usize,
    },
    /// The scope API with `map_atomic` in the alphabet.
    #[error(
        "the scope API maps with kmap_local_page only: no `atomic` in the alphabet of --api scope"
    )]
    ScopeAtomic,
}

impl Scope {
    /// `C/T/D` with both handlers mapping one page each, and the tasks' plain alphabet.
    pub fn new(cpus: usize, tasks: usize, depth: usize) -> Scope {
        Scope {
            cpus,
            tasks,
            depth,
            irq: true,
            nmi: true,
            handler_pages: 1,
            alphabet: Alphabet::default(),
            api: Api::Raw,
        }
    }

    /// The cells of this scope's stacks: the deepest task plus an interrupt's and an NMI's
    /// pages on top (Linux's KM_MAX_IDX), each mapping taking two cells with guard cells (an
    /// odd cell and the guard below it) and one more at the top, rounded up to a stack size the
    /// simulator is built for.
    pub fn cells(&self, guard_cells: bool) -> usize {
        // A lowmem page takes a cell under force-map.
        let mappings = self.depth + usize::from(self.alphabet.lowmem) + 2 * self.handler_pages;
        let needed = if guard_cells {
            2 * mappings + 1
        } else {
            mappings
        };
        SUPPORTED_CELLS
            .iter()
            .copied()
            .find(|&c| c >= needed)
            .expect("a depth of at most 14 fits in 33 cells")
    }

    /// The cells of this scope's stacks on `machine`: [`cells`](Self::cells), and under Linux's
    /// code one more, which its push-then-check leaves unused (rule M-3:
    /// `BUG_ON(idx >= KM_MAX_IDX)` after the push).
    pub fn cells_on(&self, machine: &kmap_sim::Settings) -> usize {
        let cells = self.cells(machine.guard_cells);
        match machine.implementation {
            kmap_sim::Implementation::Crate => cells,
            kmap_sim::Implementation::Linux => SUPPORTED_CELLS
                .iter()
                .copied()
                .find(|&c| c > cells)
                .unwrap_or(cells),
        }
    }

    /// The configuration of this scope: with `h` handler pages, task `t` starts on CPU
    /// `t % cpus` and maps the pages `lowmem + 2h + t * depth + j` (and, with the lowmem
    /// addition, the lowmem frame `t`); the interrupt maps
    /// `lowmem + 2i` and the NMI `lowmem + 2i + 1`, for `i` below `h`.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        let m = &mut config.machine;
        m.cpus = self.cpus;
        m.cells = self.cells(false);
        let base = m.lowmem;
        let first = base + 2 * self.handler_pages as u64;
        m.frames = first + (self.tasks * self.depth) as u64;
        let page = |t: usize, j: usize| Frame::new(first + (t * self.depth + j) as u64);
        let pages = |of: u64| -> Vec<Frame> {
            (0..self.handler_pages as u64)
                .map(|i| Frame::new(base + 2 * i + of))
                .collect()
        };
        config.program = Program {
            tasks: (0..self.tasks)
                .map(|t| Task {
                    name: format!("T{t}"),
                    cpu: CpuId((t % self.cpus) as u32),
                    any: (0..self.depth)
                        .map(|j| page(t, j))
                        .chain(self.alphabet.lowmem.then(|| Frame::new(t as u64)))
                        .collect(),
                    alphabet: self.alphabet,
                    api: self.api,
                    ..Task::default()
                })
                .collect(),
            irq: handler(self.irq, &pages(0)),
            nmi: handler(self.nmi, &pages(1)),
            irq_api: self.api,
            nmi_api: self.api,
        };
        config
    }

    /// Whether the scope can run, naming the first problem.
    pub fn check(&self) -> Result<(), ScopeError> {
        if !(1..=8).contains(&self.cpus) {
            return Err(ScopeError::Cpus { given: self.cpus });
        }
        if !(1..=16).contains(&self.tasks) {
            return Err(ScopeError::Tasks { given: self.tasks });
        }
        if !(1..=14).contains(&self.depth) {
            return Err(ScopeError::Depth { given: self.depth });
        }
        if !(1..=2).contains(&self.handler_pages) {
            return Err(ScopeError::HandlerPages {
                given: self.handler_pages,
            });
        }
        if self.handler_pages == 2 && self.depth > 12 {
            return Err(ScopeError::NestedDepth { given: self.depth });
        }
        let most = if self.handler_pages == 2 { 11 } else { 13 };
        if self.alphabet.lowmem && self.depth > most {
            return Err(ScopeError::LowmemDepth {
                given: self.depth,
                most,
            });
        }
        if self.api == Api::Scope && self.alphabet.atomic {
            return Err(ScopeError::ScopeAtomic);
        }
        Ok(())
    }
}

/// A handler's program: map `pages` (nested), check, unmap them all.
fn handler(present: bool, pages: &[Frame]) -> Vec<Op> {
    if !present {
        return Vec::new();
    }
    let mut ops: Vec<Op> = pages.iter().map(|&f| Op::Map(f)).collect();
    ops.push(Op::Check);
    ops.extend(pages.iter().map(|_| Op::Unmap));
    ops
}

impl fmt::Display for Scope {
    /// `scope:C/T/D`, with `:irq`, `:nmi` or `:none` when not both handlers map, `:nested`
    /// when they map two pages each, then each addition to the tasks' alphabet (the protocol
    /// is a machine setting, given apart).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scope:{}/{}/{}", self.cpus, self.tasks, self.depth)?;
        match (self.irq, self.nmi) {
            (true, true) => {}
            (true, false) => f.write_str(":irq")?,
            (false, true) => f.write_str(":nmi")?,
            (false, false) => f.write_str(":none")?,
        }
        if self.handler_pages == 2 {
            f.write_str(":nested")?;
        }
        for name in self.alphabet.names() {
            write!(f, ":{name}")?;
        }
        match self.api {
            Api::Raw => {}
            Api::Guard => f.write_str(":guard")?,
            Api::Scope => f.write_str(":scope")?,
        }
        Ok(())
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    /// `scope:C/T/D` and then, each at most once and in this order, the handlers (`irq`,
    /// `nmi` or `none`), `nested`, the additions to the alphabet (in any order), and `guard`
    /// or `scope`.
    fn from_str(text: &str) -> Result<Scope, ScopeError> {
        let syntax = || ScopeError::Syntax { text: text.into() };
        let rest = text.strip_prefix("scope:").ok_or_else(syntax)?;
        let mut words = rest.split(':').peekable();
        let sizes = words.next().ok_or_else(syntax)?;
        let numbers: Vec<usize> = sizes
            .split('/')
            .map(|n| n.parse().map_err(|_| syntax()))
            .collect::<Result<_, _>>()?;
        let [cpus, tasks, depth] = numbers[..] else {
            return Err(syntax());
        };
        let (irq, nmi) = match words.peek() {
            Some(&"irq") => (true, false),
            Some(&"nmi") => (false, true),
            Some(&"none") => (false, false),
            _ => (true, true),
        };
        if (irq, nmi) != (true, true) {
            words.next();
        }
        let handler_pages = if words.next_if_eq(&"nested").is_some() {
            2
        } else {
            1
        };
        let mut alphabet = Alphabet::default();
        let mut words: Vec<&str> = words.collect();
        let api = match words.last() {
            Some(&"guard") => Api::Guard,
            Some(&"scope") => Api::Scope,
            _ => Api::Raw,
        };
        if api != Api::Raw {
            words.pop();
        }
        for word in words {
            let before = alphabet;
            if !alphabet.add(word) || alphabet == before {
                return Err(syntax());
            }
        }
        let scope = Scope {
            cpus,
            tasks,
            depth,
            irq,
            nmi,
            handler_pages,
            alphabet,
            api,
        };
        scope.check()?;
        Ok(scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_depth_gets_room_for_its_pages_and_two_handlers() {
        for depth in 1..=14 {
            let config = Scope {
                handler_pages: 2,
                ..Scope::new(1, 2, depth)
            }
            .config();
            assert!(config.machine.cells >= depth + 4, "depth {depth}");
            config.validate().unwrap();
        }
    }

    /// Every scope `check` accepts has stacks that fit, with and without guard cells.
    #[test]
    fn every_scope_that_checks_has_stacks_that_fit() {
        for lowmem in [false, true] {
            for handler_pages in 1..=2 {
                for depth in 1..=14 {
                    let mut scope = Scope {
                        handler_pages,
                        ..Scope::new(1, 1, depth)
                    };
                    scope.alphabet.lowmem = lowmem;
                    let pages = depth + usize::from(lowmem);
                    if scope.check().is_ok() {
                        assert!(scope.cells(true) > 2 * (pages + 2 * handler_pages));
                        assert!(scope.cells(false) >= pages + 2 * handler_pages);
                    } else {
                        assert!(pages + 2 * handler_pages > 16, "{scope}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_scope_reads_back_as_it_is_written() {
        for text in [
            "scope:1/2/1",
            "scope:2/3/2:irq",
            "scope:1/1/1:none",
            "scope:1/3/2:nested",
            "scope:2/2/1:nmi:nested",
            "scope:1/2/2:atomic",
            "scope:1/2/1:none:nested:atomic",
            "scope:1/3/2:write:irq-off",
            "scope:2/2/1:irq:atomic:write:irq-off:sleep",
            "scope:1/2/1:sleep:lowmem",
            "scope:1/2/2:guard",
            "scope:1/2/1:nested:write:guard",
            "scope:1/2/2:scope",
            "scope:2/2/1:write:sleep:scope",
        ] {
            assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
        }
        // The additions in any order, each once; the handlers and `nested` before them.
        assert_eq!(
            "scope:1/2/1:sleep:write"
                .parse::<Scope>()
                .unwrap()
                .to_string(),
            "scope:1/2/1:write:sleep"
        );
        for bad in [
            "scope:1/2/1:write:write",
            "scope:1/2/1:write:nested",
            "scope:1/2/1:nested:irq",
            "scope:1/2/1:highmem",
            "scope:1/2/1:guard:write",
            "scope:1/2/1:scope:write",
            "scope:1/2/1:guard:scope",
        ] {
            assert!(
                matches!(bad.parse::<Scope>(), Err(ScopeError::Syntax { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            "scope:0/2/1".parse::<Scope>(),
            Err(ScopeError::Cpus { given: 0 })
        );
        assert_eq!(
            "scope:1/2/1:atomic:scope".parse::<Scope>(),
            Err(ScopeError::ScopeAtomic)
        );
    }
}
