//! byollm's test kit, compiled once and shared by every integration test: local fakes of the
//! services byollm talks to ([`support`]), the harness that runs the real `byollm` binary
//! ([`harness`]), the fakes a cloud gateway needs ([`cloud`]), helpers for real client programs
//! ([`clients`]), the one rule for a check that cannot run ([`not_run`]), a real Redis on loopback
//! ([`redis`]) and a counting allocator for memory bounds ([`alloc`]).
//!
//! It must never depend on the `byollm` crate: the fakes judge that code, so they keep their own
//! tables, their own IAM evaluator and their own SigV4 check. Nothing here reaches AWS, Anthropic
//! or any other provider.

pub mod alloc;
pub mod clients;
pub mod cloud;
pub mod harness;
pub mod not_run;
pub mod redis;
pub mod support;

use std::path::{Path, PathBuf};

/// The repository's root (this crate lives in `crates/testkit`).
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The repository's `tests/` directory: the client scripts and their package files.
pub fn tests_dir() -> PathBuf {
    repo_dir().join("tests")
}
