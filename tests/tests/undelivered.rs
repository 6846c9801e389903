//! Sinks fail loudly: what a sink cannot deliver is counted as `failed`,
//! the summary balances (in = dropped + failed + delivered) and the run
//! exits 74 (EX_IOERR) instead of 0.

use dataplane_tests::{free_port, run_config, TempDir, EXIT_IOERR};

#[test]
fn tcp_out_with_nobody_listening_counts_every_element_as_failed() {
    let dir = TempDir::new("nobody");
    let port = free_port(false);
    let config = format!(
        r#"
[flow.main.nodes.gen]
component = "generator"
count = 100000

[flow.main.nodes.out]
component = "tcp-out"
address = "127.0.0.1:{port}"
linger_ms = 100
reconnect_ms = 20

[[flow.main.edges]]
from = {{ node = "gen" }}
to = {{ node = "out" }}
"#
    );
    let out = run_config(&dir.write("nobody.toml", &config), &[]);
    out.assert_code(EXIT_IOERR)
        .assert_no_panic()
        .assert_stderr_contains(
            "100000 elements were not delivered by their sinks (exit status 74)",
        )
        .assert_stderr_contains("failed ");
    let sink = out.stage("out");
    assert_eq!(sink.received, 100_000, "{}", out.dump());
    assert_eq!((sink.dropped, sink.failed), (0, 100_000), "{}", out.dump());
}

#[cfg(target_os = "linux")]
#[test]
fn file_out_on_a_full_disk_counts_the_lost_batch() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let dir = TempDir::new("full");
    let config = r#"
[flow.main.nodes.gen]
component = "generator"
count = 10000

[flow.main.nodes.out]
component = "file-out"
path = "/dev/full"

[[flow.main.edges]]
from = { node = "gen" }
to = { node = "out" }
"#;
    let out = run_config(&dir.write("full.toml", config), &[]);
    out.assert_code(EXIT_IOERR).assert_no_panic();
    let sink = out.stage("out");
    // The failed sink stops the run (restart policy `never`): it received
    // what the generator sent until then.
    assert_eq!(sink.received, out.stage("gen").sent, "{}", out.dump());
    assert!(
        sink.failed > 0,
        "the batch that failed to write\n{}",
        out.dump()
    );
    assert_eq!(
        sink.dropped + sink.failed,
        sink.received,
        "every element is failed (the lost batch) or dropped (after the stage failed)\n{}",
        out.dump()
    );
}

/// With its `error` port connected, what tcp-out cannot buffer goes there
/// (routed, not failed); only what it had buffered and could not deliver
/// at the end counts as failed.
#[test]
fn tcp_out_routes_what_it_cannot_deliver_to_its_error_port() {
    let dir = TempDir::new("nobody-routed");
    let port = free_port(false);
    let rejects = dir.path().join("rejects.ndjson");
    let config = format!(
        r#"
[flow.main.nodes.gen]
component = "generator"
count = 5000

[flow.main.nodes.out]
component = "tcp-out"
address = "127.0.0.1:{port}"
linger_ms = 50
buffer_bytes = 1

[flow.main.nodes.keep]
component = "file-out"
path = "{}"

[[flow.main.edges]]
from = {{ node = "gen" }}
to = {{ node = "out" }}

[[flow.main.edges]]
from = {{ node = "out", port = "error" }}
to = {{ node = "keep" }}
"#,
        rejects.display()
    );
    let out = run_config(&dir.write("routed.toml", &config), &[]);
    out.assert_no_panic()
        .assert_stderr_contains("sent to port 'error'");
    let sink = out.stage("out");
    let routed = sink.sent;
    assert_eq!(sink.received, 5000, "{}", out.dump());
    assert_eq!(
        routed + sink.failed,
        5000,
        "routed + failed = received\n{}",
        out.dump()
    );
    assert!(routed >= 4990, "nearly everything routed\n{}", out.dump());
    let kept = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(
        kept.lines().count() as u64,
        routed,
        "the error port's sink wrote them all"
    );
    assert_eq!(out.stage("keep").received, routed);
    // The one buffered line still failed: not delivered, not routed.
    if sink.failed > 0 {
        out.assert_code(EXIT_IOERR);
    }
}
