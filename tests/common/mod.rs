//! Helpers shared by the integration tests (each test file is its own crate and uses a part).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lifostore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// xorshift64: a small deterministic generator for randomized tests (seed printed by callers).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Re-runs this test binary's `child_test` once per spec, in parallel, with `env_var` set to the
/// spec; waits for all, asserts they succeeded, and returns every id they printed as
/// `POPPED <id>`.
pub fn run_children(child_test: &str, env_var: &str, specs: &[String]) -> Vec<u64> {
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = specs
        .iter()
        .map(|spec| {
            Command::new(&exe)
                .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
                .env(env_var, spec)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut popped = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("child output");
        assert!(out.status.success(), "a child process failed");
        popped.extend(popped_ids(&String::from_utf8_lossy(&out.stdout)));
    }
    popped
}

/// The ids printed as `POPPED <id>`. libtest may print "test name ... " before a child's first
/// line, so the marker is searched for, not expected at the line start.
pub fn popped_ids(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|line| line.find("POPPED ").map(|pos| &line[pos + 7..]))
        .map(|id| id.trim().parse().expect("POPPED id"))
        .collect()
}
