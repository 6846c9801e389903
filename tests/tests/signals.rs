//! Stopping an unbounded pipeline with SIGINT: the first signal stops the
//! sources and drains what was accepted, the second exits at once.
#![cfg(unix)]

use std::time::Duration;

use dataplane_tests::{
    start, Running, TempDir, DEFAULT_TIMEOUT, EXIT_INTERRUPTED, EXIT_IOERR, EXIT_OK,
};

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

/// A sink that will not finish (tcp-out lingering for a peer that accepts
/// and never reads) does not hang shutdown: after SIGTERM the sources stop,
/// and `drain_timeout_ms` later the run names the stuck stage, counts what
/// it held and exits 74.
#[test]
fn a_stuck_sink_meets_the_drain_deadline() {
    let dir = TempDir::new("stuck");
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap();
    // Accept and never read (keep the connections open until the end).
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        peer.set_nonblocking(true).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < until && conns.len() < 4 {
            match peer.accept() {
                Ok((c, _)) => conns.push(c),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        conns
    });
    let config = format!(
        r#"
[engine]
drain_timeout_ms = 300

[flow.main.nodes.gen]
component = "generator"
size = 512

[flow.main.nodes.out]
component = "tcp-out"
address = "{addr}"
linger_ms = 600000

[[flow.main.edges]]
from = {{ node = "gen" }}
to = {{ node = "out" }}
"#
    );
    let path = dir.write("stuck.toml", &config);
    let mut run = start(&[std::ffi::OsStr::new("--config"), path.as_os_str()]);
    run.wait_for_stderr("[dataplane]   out", DEFAULT_TIMEOUT);
    // Let the peer's socket buffers and the sink's buffer fill.
    std::thread::sleep(Duration::from_millis(700));
    run.signal("TERM");
    let out = run.wait_timeout(Duration::from_secs(30));
    out.assert_code(EXIT_IOERR)
        .assert_no_panic()
        .assert_stderr_contains("drain deadline (300 ms) passed; still running: out")
        .assert_stderr_contains(
            "DRAIN DEADLINE: still running 300 ms after the sources stopped: out; at most ",
        );
    drop(held);
}
