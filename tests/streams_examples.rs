//! The Streams examples run end to end on their embedded broker and print what the seeds
//! promise.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn run_example(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} is missing: `cargo test` builds the examples", path.display());
    let state = tempfile::tempdir().unwrap();
    let output = Command::new(path)
        .args(["--state-dir", state.path().to_str().unwrap()])
        .env("FRESHET_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{name} failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn wordcount_counts_the_sample_lines() {
    let out = run_example("wordcount");
    for line in ["kafka\t3", "streams\t2", "hello\t1", "summit\t1"] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
    }
    assert!(out.contains("Sub-topology: 1"), "prints the topology:\n{out}");
}

#[test]
fn user_activity_serves_the_aggregate_through_queries() {
    let out = run_example("user_activity");
    assert!(out.contains("alice: 3 events, 2 purchases, 42.50 spent, last buy"), "{out}");
    assert!(out.contains("bob: 2 events, 0 purchases, 0.00 spent, last logout"), "{out}");
    assert!(out.contains("dave: no activity"), "{out}");
    assert!(out.contains("served by localhost:7070"), "{out}");
}
