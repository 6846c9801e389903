//! The shipped fan-out pipeline (`configs/fanout.toml`), end to end.
//!
//! The two branches run on different workers, so the order of lines *across*
//! sinks is not deterministic; only the order within one sink is.

use dataplane_tests::{repo_root, run_config, run_with_env, Output, TempDir, EXIT_OK};

const METRIC: &str = "[metric-sink] Received metric: ";
const LOG: &str = "[log-sink] Received log: ";
const METRIC_DONE: &str = "[metric-sink] Stream complete.";
const LOG_DONE: &str = "[log-sink] Stream complete.";

/// Position of `line` in stdout; panics if it is not printed exactly once.
fn position_of(out: &Output, line: &str) -> usize {
    let hits: Vec<usize> = out
        .stdout
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == line)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected {line:?} exactly once\n{}",
        out.dump()
    );
    hits[0]
}

/// Asserts that `sink`'s data lines are exactly `expected`, in order, and
/// that its completion line `done` comes after all of them.
fn assert_sink(out: &Output, prefix: &str, expected: &[&str], done: &str) {
    let got = out.stdout_lines_with_prefix(prefix);
    let want: Vec<String> = expected.iter().map(|p| format!("{prefix}{p}")).collect();
    assert_eq!(got, want, "lines of {prefix:?}\n{}", out.dump());
    let done_at = position_of(out, done);
    for line in &want {
        assert!(
            position_of(out, line) < done_at,
            "{done:?} printed before {line:?}\n{}",
            out.dump()
        );
    }
}

#[test]
fn fanout_routes_each_type_to_its_branch() {
    let out = run_config(&repo_root().join("configs/fanout.toml"), &[]);
    out.assert_code(EXIT_OK).assert_no_panic();

    assert_eq!(
        out.stdout.lines().count(),
        6,
        "4 data lines + 2 completions\n{}",
        out.dump()
    );
    assert_sink(
        &out,
        METRIC,
        &[
            r#"{"type":"metric","name":"cpu_usage","value":72.5,"processed_by":"metrics-pipeline"}"#,
            r#"{"type":"metric","name":"mem_used","value":4096,"processed_by":"metrics-pipeline"}"#,
        ],
        METRIC_DONE,
    );
    assert_sink(
        &out,
        LOG,
        &[
            r#"{"type":"log","level":"info","message":"user login successful","processed_by":"log-pipeline"}"#,
            r#"{"type":"log","level":"warn","message":"disk usage above 80%","processed_by":"log-pipeline"}"#,
        ],
        LOG_DONE,
    );

    out.assert_stderr_contains("4 events routed by 'router': 2 to metrics, 2 to logs")
        .assert_stderr_contains("0 slots leaked");
    assert!(
        out.stderr.lines().any(|l| l.starts_with("latency")),
        "no latency header\n{}",
        out.dump()
    );

    let table = out.stage_table();
    let names: Vec<&str> = table.iter().map(|r| r.name.as_str()).collect();
    for (stage, component, role) in [
        ("source", "list", "source"),
        ("router", "route-by-field", "router"),
        ("metric-proc", "set-field", "processor"),
        ("log-proc", "set-field", "processor"),
        ("metric-sink", "console", "sink"),
        ("log-sink", "console", "sink"),
    ] {
        let row = out.stage(stage);
        assert_eq!(
            (row.component.as_str(), row.role.as_str()),
            (component, role),
            "{row:?}"
        );
        assert!(
            row.core.is_some(),
            "stage {stage} has no core in the table\n{}",
            out.dump()
        );
    }
    assert_eq!(names.len(), 6, "one row per stage: {names:?}");

    // Counts: 4 out of the source, 2 down each branch, nothing dropped.
    assert_eq!(out.stage("source").sent, 4);
    assert_eq!(out.stage("router").received, 4);
    for stage in ["metric-proc", "log-proc"] {
        let row = out.stage(stage);
        assert_eq!((row.received, row.sent), (2, 2), "{row:?}");
    }
    for stage in ["metric-sink", "log-sink"] {
        assert_eq!(out.stage(stage).received, 2);
    }
    assert!(table.iter().all(|r| r.dropped == 0), "{table:?}");
}

#[test]
fn unmatched_type_is_broadcast_to_both_sinks() {
    broadcast_unmatched(&[]);
}

/// The same without AVX2 (`DATAPLANE_NO_AVX2`): route-by-field's loop is
/// compiled twice, for AVX2 and for the baseline, and a CPU without AVX2
/// runs the second.
#[test]
fn routes_the_same_without_avx2() {
    broadcast_unmatched(&[("DATAPLANE_NO_AVX2", "1")]);
}

fn broadcast_unmatched(env: &[(&str, &str)]) {
    // fanout.toml with one more event, of a type no route names.
    let text =
        std::fs::read_to_string(repo_root().join("configs/fanout.toml")).expect("fanout.toml");
    let extra = r#"    '{"type":"trace","span":"abc"}',"#;
    let marker = r#"    '{"type":"log","level":"warn","message":"disk usage above 80%"}',"#;
    assert!(
        text.contains(marker),
        "fanout.toml changed: update this test"
    );
    let text = text.replace(marker, &format!("{marker}\n{extra}"));
    let dir = TempDir::new("broadcast");
    let config = dir.write("broadcast.toml", &text);
    let out = run_with_env(&["--config".as_ref(), config.as_os_str()], env);
    out.assert_code(EXIT_OK).assert_no_panic();

    assert_sink(
        &out,
        METRIC,
        &[
            r#"{"type":"metric","name":"cpu_usage","value":72.5,"processed_by":"metrics-pipeline"}"#,
            r#"{"type":"metric","name":"mem_used","value":4096,"processed_by":"metrics-pipeline"}"#,
            r#"{"type":"trace","span":"abc","processed_by":"metrics-pipeline"}"#,
        ],
        METRIC_DONE,
    );
    assert_sink(
        &out,
        LOG,
        &[
            r#"{"type":"log","level":"info","message":"user login successful","processed_by":"log-pipeline"}"#,
            r#"{"type":"log","level":"warn","message":"disk usage above 80%","processed_by":"log-pipeline"}"#,
            r#"{"type":"trace","span":"abc","processed_by":"log-pipeline"}"#,
        ],
        LOG_DONE,
    );
    out.assert_stderr_contains("5 events routed by 'router': 3 to metrics, 3 to logs")
        .assert_stderr_contains("0 slots leaked");
}
