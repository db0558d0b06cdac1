//! Running real client programs (Python SDKs, Claude Code) against the gateway in tests: whether a
//! client is installed (missing: the test says it skipped, or fails under `CI`), and running one
//! with a clean environment and a time limit.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Whether `program args` exits 0 (quietly).
pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .current_dir(tests_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Python to use (`BYOLLM_TEST_PYTHON`, else `python3`) if it imports every module in `modules`.
pub fn python_with(modules: &str) -> Option<String> {
    let python = std::env::var("BYOLLM_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    succeeds(&python, &["-c", &format!("import {modules}")]).then_some(python)
}

/// Skips (returns false) when a client is missing, except under CI where that is a failure.
pub fn available(what: &str, present: bool, install: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed but CI is set; install it with `{install}`");
    }
    eprintln!("SKIPPED: {what} is not installed (`{install}`); set CI=1 to make this a failure");
    false
}

/// Environment variables a developer's machine may carry that would redirect or authenticate a
/// client behind the test's back.
const INHERITED: &[&str] =
    &["AWS_", "ANTHROPIC_", "CLAUDE_", "OPENAI_", "BYOLLM_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"];

/// Runs `program args` in `dir` with `env` on a clean environment, killed after `limit`; returns
/// (success, stdout + stderr).
pub async fn run(program: &Path, args: &[&str], dir: &Path, env: &[(&str, &str)], limit: Duration) -> (bool, String) {
    let mut command = Command::new(program);
    command.args(args).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if INHERITED.iter().any(|prefix| name.starts_with(prefix)) {
            command.env_remove(name);
        }
    }
    command.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
    command.envs(env.iter().copied());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("could not start {}: {e}", program.display()));
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + limit;
        let timed_out = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                break true;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            if timed_out { "\nTIMED OUT\n" } else { "" }
        );
        (output.status.success() && !timed_out, text)
    })
    .await
    .unwrap()
}
