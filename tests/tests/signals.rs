//! Stopping an unbounded pipeline with SIGINT: the first signal stops the
//! sources and drains what was accepted, the second exits at once.
#![cfg(unix)]

use std::time::Duration;

use dataplane_tests::{start, Running, TempDir, DEFAULT_TIMEOUT, EXIT_INTERRUPTED, EXIT_OK};

const UNBOUNDED: &str = r#"
[flow.endless.nodes.gen]
component = "generator"

[flow.endless.nodes.fwd]
component = "forward"

[flow.endless.nodes.sink]
component = "discard"

[[flow.endless.edges]]
from = { node = "gen", port = "output" }
to = { node = "fwd", port = "input" }

[[flow.endless.edges]]
from = { node = "fwd", port = "output" }
to = { node = "sink", port = "input" }
"#;

/// Starts the unbounded pipeline and returns once it is running: the
/// placement lines are printed after the signal handlers are installed, so
/// a signal sent from then on is handled, not fatal.
fn start_unbounded(dir: &TempDir) -> Running {
    let path = dir.write("endless.toml", UNBOUNDED);
    let mut run = start(&[std::ffi::OsStr::new("--config"), path.as_os_str()]);
    run.wait_for_stderr("[dataplane]   sink", DEFAULT_TIMEOUT);
    run
}

#[test]
fn sigint_drains_and_exits_cleanly() {
    let dir = TempDir::new("sigint");
    let run = start_unbounded(&dir);
    // Let elements flow for a while (how many does not matter).
    std::thread::sleep(Duration::from_millis(500));
    run.signal("INT");
    let out = run.wait();

    out.assert_code(EXIT_OK)
        .assert_no_panic()
        .assert_stderr_contains("stopped by signal")
        .assert_stderr_contains("0 slots leaked");
    let produced = out.stage("gen").sent;
    assert!(produced > 0, "the generator ran\n{}", out.dump());
    let fwd = out.stage("fwd");
    assert_eq!((fwd.received, fwd.sent), (produced, produced), "{fwd:?}");
    assert_eq!(
        out.stage("sink").received,
        produced,
        "drained: sink in == source out\n{}",
        out.dump()
    );
}

#[test]
fn a_second_sigint_exits_at_once() {
    let dir = TempDir::new("sigint2");
    let run = start_unbounded(&dir);
    run.signal("INT");
    run.signal("INT");
    let out = run.wait();
    assert!(
        matches!(out.code(), Some(EXIT_OK | EXIT_INTERRUPTED)),
        "exit status 0 (drained first) or 130 (interrupted)\n{}",
        out.dump()
    );
    out.assert_no_panic();
}

/// The harness itself: a run past its deadline is killed and fails the test
/// (this is what turns a livelock into a failure instead of a hung suite).
#[test]
#[should_panic(expected = "did not exit within")]
fn the_harness_kills_a_run_that_outlives_its_deadline() {
    let dir = TempDir::new("deadline");
    let run = start_unbounded(&dir);
    run.wait_timeout(Duration::from_millis(200));
}
