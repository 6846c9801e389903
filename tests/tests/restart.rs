//! Restart policies end to end: the shipped `configs/chaos.toml` recovers
//! from its injected panics and exits 0; with policy `never`, or past
//! `max_restarts`, the run stops, names the stage and exits 70. No panic
//! message of the default hook reaches stderr.

use dataplane_tests::{repo_root, run_config, TempDir, EXIT_OK, EXIT_SOFTWARE};

/// An unbounded generator into a `chaos` node with `restart`, into discard.
fn unbounded(restart: &str) -> String {
    format!(
        r#"
[flow.f.nodes.gen]
component = "generator"

[flow.f.nodes.crash]
component = "chaos"
panic_every = 500
{restart}

[flow.f.nodes.out]
component = "discard"

[[flow.f.edges]]
from = {{ node = "gen" }}
to = {{ node = "crash" }}

[[flow.f.edges]]
from = {{ node = "crash" }}
to = {{ node = "out" }}
"#
    )
}

#[test]
fn shipped_chaos_config_recovers_and_succeeds() {
    let out = run_config(&repo_root().join("configs/chaos.toml"), &[]);
    out.assert_code(EXIT_OK)
        .assert_no_panic()
        .assert_stderr_contains("restarted 10 x")
        .assert_stderr_contains(
            "failed 10 x stage restarted (first: panic: chaos: injected panic at element 1000",
        )
        .assert_stderr_contains(
            "[dataplane] 10 stage restarts; 10 elements lost with the failed stages",
        );
    let crash = out.stage("crash");
    assert_eq!(
        (crash.received, crash.sent, crash.failed),
        (10_000, 9_990, 10)
    );
    assert_eq!(out.stage("out").received, 9_990);
}

#[test]
fn policy_never_stops_the_run_and_names_the_stage() {
    let dir = TempDir::new("restart-never");
    let path = dir.write("never.toml", &unbounded(""));
    let out = run_config(&path, &[]);
    out.assert_code(EXIT_SOFTWARE)
        .assert_no_panic()
        .assert_stderr_contains("(stopped: a stage failed, drained)")
        .assert_stderr_contains(
            "[dataplane] stage 'crash' failed: panic: chaos: injected panic at element 500",
        );
    assert_eq!(out.stage("crash").sent, 499);
}

#[test]
fn giving_up_after_max_restarts_stops_the_run() {
    let dir = TempDir::new("restart-give-up");
    let path = dir.write(
        "give-up.toml",
        &unbounded(
            r#"restart = { policy = "on-failure", max_restarts = 2, backoff_ms = 1, max_backoff_ms = 2 }"#,
        ),
    );
    let out = run_config(&path, &[]);
    out.assert_code(EXIT_SOFTWARE)
        .assert_no_panic()
        .assert_stderr_contains("restarted 2 x")
        .assert_stderr_contains(
            "[dataplane] stage 'crash' failed after 2 restarts in 60000 ms: panic: chaos: injected panic at element 1500",
        );
    let crash = out.stage("crash");
    assert_eq!(crash.failed, 2);
    assert_eq!(crash.received, crash.sent + crash.dropped + crash.failed);
}

#[test]
fn a_bad_restart_table_is_a_config_error() {
    let dir = TempDir::new("restart-bad");
    let path = dir.write(
        "bad.toml",
        &unbounded(r#"restart = { policy = "sometimes", backoff_ms = 5, max_backoff_ms = 1 }"#),
    );
    let out = run_config(&path, &[]);
    out.assert_code(dataplane_tests::EXIT_CONFIG)
        .assert_stderr_contains("node 'crash' restart: unknown restart policy 'sometimes'")
        .assert_stderr_contains(
            "node 'crash' restart: backoff_ms = 5 is larger than max_backoff_ms = 1",
        );
}
