//! The kernel's files and which of them each one uses, to keep its layout a set of rooms a
//! newcomer can change one at a time: no circle of more than two files through `use crate::…`,
//! `crate::…` and `super::…` paths (two files that use each other, as a module and its child,
//! are allowed). A test, not a tool: a path is resolved to the deepest file its leading
//! segments name, `arch::NAME` through the re-export of `arch/mod.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`["arch", "x86_64", "apic"]`) → file, relative to `src/`.
type Files = BTreeMap<Vec<String>, String>;

fn files(src: &Path) -> Files {
    let mut files = Files::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(src)
                    .expect("under src")
                    .with_extension("");
                let mut module: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if module.last().is_some_and(|m| m == "mod" || m == "main") {
                    module.pop();
                }
                let file = path.strip_prefix(src).expect("under src");
                files.insert(module, file.to_string_lossy().into_owned());
            }
        }
    }
    files
}

/// The file a path names: the deepest one its leading segments reach (`arch::X` also through
/// `arch/x86_64/X`, the re-export).
fn resolve(files: &Files, path: &[String]) -> String {
    let mut at: Vec<String> = Vec::new();
    for segment in path {
        let mut next = at.clone();
        next.push(segment.clone());
        if files.contains_key(&next) {
            at = next;
            continue;
        }
        let mut through = at.clone();
        through.extend(["x86_64".to_string(), segment.clone()]);
        if at == ["arch"] && files.contains_key(&through) {
            at = through;
            continue;
        }
        break;
    }
    files[&at].clone()
}

fn words(text: &str) -> Vec<String> {
    text.split("::").map(|s| s.trim().to_string()).collect()
}

/// The paths a file's text uses, as module paths from the crate root.
fn paths(module: &[String], text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for (at, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if at > 0 && code[..at].ends_with(ident) {
            continue;
        }
        let rest = &code[at..];
        let end = rest
            .find(|c: char| !(ident(c) || c == ':'))
            .unwrap_or(rest.len());
        let mut path = words(rest[..end].trim_end_matches(':'));
        let base: Vec<String> = if path[0] == "crate" {
            Vec::new()
        } else {
            let ups = path.iter().take_while(|s| *s == "super").count();
            module[..module.len().saturating_sub(ups)].to_vec()
        };
        path.retain(|s| s != "crate" && s != "super");
        // `use crate::a::{b, c::d}`: each item of the braces.
        if rest[end..].starts_with('{') {
            let inside = &rest[end + 1..rest.find('}').unwrap_or(rest.len())];
            for item in inside.split(',') {
                let mut full = base.clone();
                full.extend(path.clone());
                full.extend(words(item.split_whitespace().next().unwrap_or("")));
                found.push(full);
            }
        } else {
            let mut full = base;
            full.extend(path);
            found.push(full);
        }
    }
    // Child modules named by a relative path (`pool::init()`).
    for line in code.lines() {
        let line = line.trim_start().trim_start_matches("pub ");
        if let Some(child) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';'))
            && code.contains(&format!("{child}::"))
        {
            let mut full = module.to_vec();
            full.push(child.to_string());
            found.push(full);
        }
    }
    found
}

/// Every file's uses, as files.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = files(src);
    let mut graph = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(src.join(file)).expect("a source file");
        let uses: BTreeSet<String> = paths(module, &text)
            .iter()
            .map(|p| resolve(&files, p))
            .filter(|f| f != file)
            .collect();
        graph.insert(file.clone(), uses);
    }
    graph
}

/// The circles of more than two files, each once (from its smallest file).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        let last = path.last().expect("a path").clone();
        for next in &graph[&last] {
            if next == start && path.len() > 2 {
                found.push(path.clone());
            } else if next.as_str() > start && !path.contains(next) {
                path.push(next.clone());
                walk(graph, start, path, found);
                path.pop();
            }
        }
    }
    let mut found = Vec::new();
    for start in graph.keys() {
        walk(graph, start, &mut vec![start.clone()], &mut found);
    }
    found
}

#[test]
fn the_kernels_files_use_each_other_in_no_circle_of_more_than_two() {
    let src = crate::process::workspace_root().join("kernel/src");
    let graph = graph(&src);
    assert!(graph.len() > 20, "{graph:?}");
    // The graph is real: the scheduler uses the platform, which uses the scheduler.
    assert!(graph["sched.rs"].contains("platform.rs"));
    assert!(graph["platform.rs"].contains("sched.rs"));
    assert!(graph["dispatch.rs"].contains("arch/x86_64/apic.rs"));
    let circles = circles(&graph);
    assert!(
        circles.is_empty(),
        "circles of more than two files: {}",
        circles
            .iter()
            .map(|c| c.join(" -> "))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[test]
fn a_circle_of_three_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c", "a"]),
        ("c", &["a"]),
        ("d", &[]),
    ]
    .into_iter()
    .map(|(f, uses)| (f.to_string(), uses.iter().map(|u| u.to_string()).collect()))
    .collect();
    assert_eq!(
        circles(&graph),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
}
