//! The fixed scenarios at scale (`crates/kmap-check/scale/`): two CPUs, four or six tasks
//! pinned to them, an interrupt and an NMI mapping everywhere. `kmap prove` (no bound on
//! preemption) and `kmap check` (within the file's bounds, on the stateful engine, which it
//! names) agree on each: a pass under the split switch, a violation under both RFC designs.
//! Their times are figures of `cargo xtask bench --prove-only`, not asserted here.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn kmap_json(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_kmap"))
        .args(args)
        .arg("--json")
        .output()
        .expect("kmap runs");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    value
        .as_array()
        .and_then(|all| all.first().cloned())
        .unwrap_or(value)
}

#[test]
fn prove_and_check_agree_on_every_scale_scenario() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kmap-check/scale");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("the scale folder")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let file = file.to_str().unwrap();
        for (switch, verdict) in [
            ("split", "pass"),
            ("rfc-v1", "violation"),
            ("swap-after-current", "violation"),
        ] {
            let proof = kmap_json(&["prove", file, "--switch", switch]);
            let check = kmap_json(&["check", file, "--switch", switch]);
            assert_eq!(proof["verdict"], verdict, "prove {file} {switch}: {proof}");
            assert_eq!(check["verdict"], verdict, "check {file} {switch}: {check}");
            assert_eq!(check["engine"], "stateful", "{file}");
            assert!(check["states"].as_u64().unwrap() > 0, "{file}");
            if verdict == "pass" {
                assert_eq!(proof["complete"], true, "{file}");
                assert_eq!(check["complete"], true, "{file}");
            }
        }
    }
}
