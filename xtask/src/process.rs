//! Running the programs xtask drives (cargo, QEMU, the `kmap` binary, valgrind…), and what
//! every task shares: the workspace's root, copying a tree, installing a missing tool, a
//! command with a time limit and its output captured, and how xtask speaks (`say!`: every line
//! starts with `xtask: `, on standard error while a task's standard output is JSON).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Set while standard output carries a JSON document (`cargo xtask kernel --json`).
static QUIET_STDOUT: AtomicBool = AtomicBool::new(false);

/// Send what xtask says to standard error from now on, keeping standard output for JSON.
pub fn stdout_for_json() {
    QUIET_STDOUT.store(true, Ordering::Relaxed);
}

/// One line of xtask's own output, `xtask: ` first.
pub fn say(args: std::fmt::Arguments) {
    if QUIET_STDOUT.load(Ordering::Relaxed) {
        eprintln!("xtask: {args}");
    } else {
        println!("xtask: {args}");
    }
}

/// A line another program printed, shown indented as its (`  | line`).
pub fn echo(line: &str) {
    if QUIET_STDOUT.load(Ordering::Relaxed) {
        eprintln!("  | {line}");
    } else {
        println!("  | {line}");
    }
}

/// `say!("…")`: a line of xtask's output (see `process::say`).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::process::say(format_args!($($arg)*)) };
}

/// Why a program xtask ran did not do its job.
#[derive(Debug, Error)]
pub enum CommandError {
    /// It could not be started (not installed, not executable).
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// It ran and exited with a failure; `stderr` is the end of what it printed there, when
    /// xtask captured it (empty when it went to the terminal).
    #[error("`{command}` failed ({status}){}", indented(stderr))]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    /// Waiting for it, or reading its output, failed.
    #[error("lost track of `{command}`")]
    Wait {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// `text` on lines of its own after a colon, or nothing when it is empty.
fn indented(text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", text.trim_end())
    }
}

/// A tool xtask needs is missing, and could not be installed.
#[derive(Debug, Error)]
#[error("{tool} is not installed; install it with: {command}")]
pub struct ToolError {
    pub tool: String,
    /// The command that installs it.
    pub command: String,
}

/// A file or folder xtask could not read, write or copy.
#[derive(Debug, Error)]
#[error("cannot {action} {}", path.display())]
pub struct FileError {
    /// What xtask was doing: "read", "write", "copy", "remove", "create".
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    pub fn new(action: &'static str, path: &Path, source: std::io::Error) -> FileError {
        FileError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The workspace's root folder (xtask's parent).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}

/// The cargo that runs xtask (`CARGO`), or the one on the PATH.
pub fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Run `cargo ARGS` in `dir` with the extra environment `env`, failing on a non-zero exit.
pub fn cargo(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<(), CommandError> {
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    let command = format!("{}cargo {}", shown.concat(), args.join(" "));
    say!("({}) {command}", dir.display());
    let status = Command::new(cargo_program())
        .envs(env.iter().copied())
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(CommandError::Failed {
            command,
            status,
            stderr: String::new(),
        })
    }
}

/// The standard output of `command`, which must succeed.
pub fn output_of(mut command: Command) -> Result<std::process::Output, CommandError> {
    let shown = shown(&command);
    let output = command.output().map_err(|source| CommandError::Spawn {
        command: shown.clone(),
        source,
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(CommandError::Failed {
            command: shown,
            status: output.status,
            stderr: tail(&String::from_utf8_lossy(&output.stderr), 20),
        })
    }
}

/// A command as a person would type it.
pub fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Make sure `tool` is on the PATH: install Debian's `package` when it is missing and this runs
/// as root with apt-get, else fail with the exact command to run.
pub fn ensure_tool(tool: &str, package: &str) -> Result<(), ToolError> {
    ensure(&format!("command -v {tool}"), tool, package)
}

/// Make sure `what` is here, as the shell command `check` tells (it succeeds): install Debian's
/// `package` when it is not and this runs as root with apt-get, else fail with the exact
/// command to run.
pub fn ensure(check: &str, what: &str, package: &str) -> Result<(), ToolError> {
    let succeeds = |command: &str| {
        Command::new("sh")
            .args(["-c", command])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let present = || succeeds(check);
    if present() {
        return Ok(());
    }
    let command = format!("apt-get install -y --no-install-recommends {package}");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root && succeeds("command -v apt-get") {
        say!("{what} is missing: {command}");
        let install = |cmd: &str| {
            Command::new("sh")
                .args(["-c", cmd])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install(&command) {
            install("apt-get update");
            install(&command);
        }
        if present() {
            return Ok(());
        }
    }
    Err(ToolError {
        tool: what.into(),
        command,
    })
}

/// Copy the file or folder `from` to `to`, folders whole.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), FileError> {
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| FileError::new("create", to, e))?;
        let entries = std::fs::read_dir(from).map_err(|e| FileError::new("read", from, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FileError::new("read", from, e))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| FileError::new("create", parent, e))?;
        }
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| FileError::new("copy", from, e))
    }
}

/// A file's text.
pub fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| FileError::new("read", path, e))
}

/// Write `text` to a file.
pub fn write(path: &Path, text: &str) -> Result<(), FileError> {
    std::fs::write(path, text).map_err(|e| FileError::new("write", path, e))
}

/// What a command did.
pub struct Ran {
    /// The exit code; `None` when it was killed (by a signal, or at its time limit).
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Run `command` to its end or to `limit`, whichever comes first, with its output captured.
pub fn run_limited(mut command: Command, limit: Duration) -> Result<Ran, CommandError> {
    let shown = shown(&command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().map_err(|source| CommandError::Spawn {
        command: shown.clone(),
        source,
    })?;
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
    let lost = |source| CommandError::Wait {
        command: shown.clone(),
        source,
    };
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(lost)? {
            break status;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().map_err(lost)?;
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

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
