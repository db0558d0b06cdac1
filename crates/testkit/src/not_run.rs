//! The one rule for a check that cannot run here (a tool or client that is not installed).
//!
//! Outside CI it prints `NOT RUN: <why>` and the test passes: a developer without terraform or the
//! client SDKs can still run the suite. Under CI (`CI` set and not empty) it fails, unless its
//! reason is declared unreachable on purpose in [`DECLARED`], which `.ci/run` sets (with the
//! reason why) — then it prints `NOT RUN (declared unreachable): <why>` and passes.
//! `infra/ci.sh` applies the same rule to its terraform checks. This module never decides that a
//! check can be skipped on its own: every skip in the tests goes through [`not_run`].

/// Environment variable listing the reasons declared unreachable on purpose (comma- or
/// space-separated, e.g. `terraform`).
pub const DECLARED: &str = "BYOLLM_NOT_RUN_OK";

/// What happens to a check that cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Outside CI: a `NOT RUN` line, the test passes.
    NotRun,
    /// Under CI, the reason declared in [`DECLARED`]: a loud line, the test passes.
    DeclaredUnreachable,
    /// Under CI, undeclared: the test fails.
    Fails,
}

/// The rule itself: `ci` is whether `CI` is set (not empty), `declared` the value of [`DECLARED`].
pub fn decide(ci: bool, declared: Option<&str>, reason: &str) -> Outcome {
    if !ci {
        return Outcome::NotRun;
    }
    let listed = declared
        .unwrap_or("")
        .split(|c: char| c == ',' || c.is_whitespace())
        .any(|item| !item.is_empty() && item == reason);
    if listed { Outcome::DeclaredUnreachable } else { Outcome::Fails }
}

/// Call where a check cannot run, then return from the test. `reason` is the short name that
/// [`DECLARED`] may list (`terraform`, `boto3`, ...); `why` says what is missing and how to get it.
/// Panics under CI unless `reason` is declared.
pub fn not_run(reason: &str, why: &str) {
    let declared = std::env::var(DECLARED).ok();
    // Set and not empty, as infra/ci.sh reads it (`[ -n "${CI:-}" ]`).
    let ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
    match decide(ci, declared.as_deref(), reason) {
        Outcome::NotRun => eprintln!("NOT RUN: {why}; under CI this fails unless {DECLARED} lists `{reason}`"),
        Outcome::DeclaredUnreachable => {
            eprintln!("NOT RUN (declared unreachable): {why} [{reason} is listed in {DECLARED}]")
        }
        Outcome::Fails => panic!(
            "NOT RUN under CI: {why}; install it, or if it cannot be reached from this machine on purpose, \
             declare `{reason}` in {DECLARED} in .ci/run with the reason"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_ci_a_check_that_cannot_run_passes() {
        assert_eq!(decide(false, None, "terraform"), Outcome::NotRun);
        assert_eq!(decide(false, Some("boto3"), "terraform"), Outcome::NotRun);
    }

    #[test]
    fn under_ci_only_a_declared_reason_passes() {
        assert_eq!(decide(true, None, "terraform"), Outcome::Fails);
        assert_eq!(decide(true, Some(""), "terraform"), Outcome::Fails);
        assert_eq!(decide(true, Some("terraform"), "terraform"), Outcome::DeclaredUnreachable);
        assert_eq!(decide(true, Some("boto3, terraform"), "terraform"), Outcome::DeclaredUnreachable);
        assert_eq!(decide(true, Some("boto3 terraform"), "terraform"), Outcome::DeclaredUnreachable);
        // Whole names only: a prefix or a longer name is not a declaration.
        assert_eq!(decide(true, Some("terraform-providers"), "terraform"), Outcome::Fails);
        assert_eq!(decide(true, Some("terra"), "terraform"), Outcome::Fails);
        assert_eq!(decide(true, Some("terraform"), "boto3"), Outcome::Fails);
    }
}
