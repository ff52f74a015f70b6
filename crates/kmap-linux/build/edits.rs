//! Scripted edits of Linux's extracted code: what history did differently, or what was
//! proposed. Nothing of Linux is written here but the statements an edit names to find, move or
//! drop (and the few it writes in their place): each edit is applied to the extracted text at
//! build time, and fails with a message when its statements are not found (another kernel
//! version). Every line keeps Linux's own file and line number: a removed line becomes an empty
//! one, and an inserted statement comes with `#line` directives (its own line where it was
//! moved from, the next line's after it).

/// One step of an edit, in one function of the unit; a statement is the whole text of a line,
/// trimmed, and must occur exactly once in the function.
pub(crate) enum Step {
    /// Move `statement` to just before `before`.
    MoveBefore {
        function: &'static str,
        statement: &'static str,
        before: &'static str,
    },
    /// Drop `statement`.
    Drop {
        function: &'static str,
        statement: &'static str,
    },
    /// Replace `from` by `to` in `statement`.
    Replace {
        function: &'static str,
        statement: &'static str,
        from: &'static str,
        to: &'static str,
    },
    /// Insert `statement` (new text, labelled with the line of `after`) just after `after`.
    InsertAfter {
        function: &'static str,
        after: &'static str,
        statement: &'static str,
    },
}

/// An edit: its name (as `--edit` spells it), what it does, and its steps.
pub(crate) struct Edit {
    pub(crate) name: &'static str,
    pub(crate) what: &'static str,
    /// Whether the edited code releases in any order (the machine may then unmap below the top).
    pub(crate) any_order: bool,
    pub(crate) steps: &'static [Step],
}

/// The edits, built beside the unedited code for the layouts without guard cells or force-map:
/// history (and near misses: orderings the code must not have) and a proposal.
pub(crate) const EDITS: &[Edit] = &[
    Edit {
        name: "pop-before-clear",
        what: "2010, fixed by \"mm: fix race in kunmap_atomic()\" (20273941f212): kunmap pops \
               the index (here with its saved PTE's clearing) before it clears the PTE",
        any_order: false,
        steps: &[
            Step::MoveBefore {
                function: "kunmap_local_indexed",
                statement: "current->kmap_ctrl.pteval[kmap_local_idx()] = __pte(0);",
                before: "pte_clear(&init_mm, addr, kmap_pte);",
            },
            Step::MoveBefore {
                function: "kunmap_local_indexed",
                statement: "kmap_local_idx_pop();",
                before: "pte_clear(&init_mm, addr, kmap_pte);",
            },
        ],
    },
    Edit {
        name: "push-after-install",
        what: "not history, an ordering the code must not have: __kmap_local_pfn_prot installs \
               the PTE in the next free slot before it pushes the index",
        any_order: false,
        steps: &[
            Step::Replace {
                function: "__kmap_local_pfn_prot",
                statement: "idx = arch_kmap_local_map_idx(kmap_local_idx_push(), pfn);",
                from: "kmap_local_idx_push()",
                to: "kmap_local_idx() + KM_INCR",
            },
            Step::InsertAfter {
                function: "__kmap_local_pfn_prot",
                after: "arch_kmap_local_set_pte(&init_mm, vaddr, kmap_pte, pteval);",
                statement: "kmap_local_idx_push();",
            },
        ],
    },
    Edit {
        name: "sched-out-without-flush",
        what: "not history, an ordering the code must not have: __kmap_local_sched_out clears \
               prev's PTEs without flushing their TLB entries",
        any_order: false,
        steps: &[Step::Drop {
            function: "__kmap_local_sched_out",
            statement: "arch_kmap_local_post_unmap(addr);",
        }],
    },
    Edit {
        name: "any-order",
        what: "Oct 2023 proposal (Matthew Wilcox, untested, not merged), as the reference \
               describes it: kunmap_local_indexed unmaps the second-from-top cell too, pops \
               lazily over empty cells, and the switch drops its empty-value warnings",
        any_order: true,
        steps: &[
            Step::Replace {
                function: "kunmap_local_indexed",
                statement: "int idx;",
                from: "int idx;",
                to: "int idx, cell;",
            },
            // The top cell, or the one below it when the address is that one's.
            Step::Replace {
                function: "kunmap_local_indexed",
                statement: "idx = arch_kmap_local_unmap_idx(kmap_local_idx(), addr);",
                from: "idx = arch_kmap_local_unmap_idx(kmap_local_idx(), addr);",
                to: "cell = kmap_local_idx(); \
                     if (addr != __fix_to_virt(FIX_KMAP_BEGIN + \
                     arch_kmap_local_unmap_idx(cell, addr))) cell -= KM_INCR; \
                     idx = arch_kmap_local_unmap_idx(cell, addr);",
            },
            Step::Replace {
                function: "kunmap_local_indexed",
                statement: "current->kmap_ctrl.pteval[kmap_local_idx()] = __pte(0);",
                from: "kmap_local_idx()",
                to: "cell",
            },
            Step::Replace {
                function: "kunmap_local_indexed",
                statement: "kmap_local_idx_pop();",
                from: "kmap_local_idx_pop();",
                to: "while (current->kmap_ctrl.idx > 0 && \
                     pte_none(current->kmap_ctrl.pteval[kmap_local_idx()])) \
                     kmap_local_idx_pop();",
            },
            Step::Replace {
                function: "__kmap_local_sched_out",
                statement: "if (WARN_ON_ONCE(pte_none(pteval)))",
                from: "WARN_ON_ONCE(pte_none(pteval))",
                to: "pte_none(pteval)",
            },
            Step::Replace {
                function: "__kmap_local_sched_in",
                statement: "if (WARN_ON_ONCE(pte_none(pteval)))",
                from: "WARN_ON_ONCE(pte_none(pteval))",
                to: "pte_none(pteval)",
            },
        ],
    },
];

/// The unit as lines, each with the file and line it stands for.
struct Unit {
    lines: Vec<String>,
    /// `(file, line)` of each entry of `lines` (`None` for a directive).
    at: Vec<Option<(String, usize)>>,
}

impl Unit {
    fn new(text: &str) -> Unit {
        let mut lines = Vec::new();
        let mut at = Vec::new();
        let mut here: Option<(String, usize)> = None;
        for line in text.lines() {
            lines.push(line.to_string());
            if let Some(rest) = line.strip_prefix("#line ") {
                let mut words = rest.splitn(2, ' ');
                let number: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(1);
                let file = words.next().unwrap_or("").trim_matches('"').to_string();
                here = Some((file, number));
                at.push(None);
            } else {
                at.push(here.clone());
                if let Some((_, n)) = &mut here {
                    *n += 1;
                }
            }
        }
        Unit { lines, at }
    }

    /// The lines of `function`'s definition: from its first line to its closing `}`.
    fn function(&self, name: &str) -> Result<std::ops::Range<usize>, String> {
        let start = self
            .lines
            .iter()
            .position(|l| {
                !l.starts_with([' ', '\t', '#', '}', '/'])
                    && !l.trim_end().ends_with(';')
                    && l.contains(&format!("{name}("))
            })
            .ok_or_else(|| format!("no function {name}"))?;
        let end = start
            + self.lines[start..]
                .iter()
                .position(|l| l == "}")
                .ok_or_else(|| format!("{name} has no closing brace"))?;
        Ok(start..end)
    }

    /// The one line of `function` whose text is `statement`.
    fn statement(&self, function: &str, statement: &str) -> Result<usize, String> {
        let range = self.function(function)?;
        let found: Vec<usize> = range
            .filter(|&n| self.lines[n].trim() == statement)
            .collect();
        match found[..] {
            [n] => Ok(n),
            [] => Err(format!("{function} has no statement `{statement}`")),
            _ => Err(format!("{function} has `{statement}` more than once")),
        }
    }

    /// `#line` for line `n`.
    fn directive(&self, n: usize) -> String {
        match &self.at[n] {
            Some((file, line)) => format!("#line {line} \"{file}\""),
            None => String::new(),
        }
    }
}

/// `unit` with `edit` applied, or why it does not apply.
pub(crate) fn apply(unit: &str, edit: &Edit) -> Result<String, String> {
    let mut u = Unit::new(unit);
    // Insertions are collected by line and made at the end, so that line indices stay valid.
    let mut before: Vec<(usize, String)> = Vec::new();
    let mut after: Vec<(usize, String)> = Vec::new();
    for step in edit.steps {
        match *step {
            Step::MoveBefore {
                function,
                statement,
                before: target,
            } => {
                let from = u.statement(function, statement)?;
                let to = u.statement(function, target)?;
                let indent: String = u.lines[to]
                    .chars()
                    .take_while(|c| c.is_whitespace())
                    .collect();
                let moved = format!(
                    "{}\n{indent}{statement}\n{}",
                    u.directive(from),
                    u.directive(to)
                );
                before.push((to, moved));
                u.lines[from].clear();
            }
            Step::Drop {
                function,
                statement,
            } => {
                let n = u.statement(function, statement)?;
                u.lines[n].clear();
            }
            Step::Replace {
                function,
                statement,
                from,
                to,
            } => {
                let n = u.statement(function, statement)?;
                if !u.lines[n].contains(from) {
                    return Err(format!("`{statement}` has no `{from}`"));
                }
                u.lines[n] = u.lines[n].replacen(from, to, 1);
            }
            Step::InsertAfter {
                function,
                after: target,
                statement,
            } => {
                let n = u.statement(function, target)?;
                let indent: String = u.lines[n]
                    .chars()
                    .take_while(|c| c.is_whitespace())
                    .collect();
                let next = u.directive(n + 1);
                after.push((
                    n,
                    format!("{}\n{indent}{statement}\n{next}", u.directive(n)),
                ));
            }
        }
    }
    let mut text = String::with_capacity(unit.len() + 256);
    for (n, line) in u.lines.iter().enumerate() {
        for (_, inserted) in before.iter().filter(|(at, _)| *at == n) {
            text.push_str(inserted);
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        for (_, inserted) in after.iter().filter(|(at, _)| *at == n) {
            text.push_str(inserted);
            text.push('\n');
        }
    }
    Ok(text)
}
