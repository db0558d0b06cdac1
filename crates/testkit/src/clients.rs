//! Running real client programs (Python SDKs, Claude Code) against the gateway in tests: whether a
//! client is installed (missing: [`crate::not_run`] decides), and running one with a clean
//! environment and a time limit. Never decides on its own that a missing client is fine.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::tests_dir;

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

/// Whether a client is present; when it is not, [`crate::not_run::not_run`] with `reason` (the name
/// `BYOLLM_NOT_RUN_OK` may list) says so, or fails the test under CI, and this returns false.
pub fn available(reason: &str, what: &str, present: bool, install: &str) -> bool {
    if !present {
        crate::not_run::not_run(reason, &format!("{what} is not installed (`{install}`)"));
    }
    present
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
