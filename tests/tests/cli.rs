//! The CLI around a run: latency targets and their exit status, the JSON
//! report, the HDR interval log, and the validate / graph / list commands.

use dataplane_tests::{repo_root, run, run_config, TempDir, EXIT_CONFIG, EXIT_OK};

/// A missed latency target: the run itself succeeds, the exit status is 3,
/// and the summary names the target.
const EXIT_TARGET_MISSED: i32 = 3;

fn targets_config(dir: &TempDir, p50: &str) -> std::path::PathBuf {
    dir.write(
        "targets.toml",
        &format!(
            r#"
[flow.f]
[flow.f.targets]
p50 = "{p50}"
[flow.f.nodes.gen]
component = "generator"
count = 2000
[flow.f.nodes.out]
component = "discard"
targets = {{ max = "3600s" }}
[[flow.f.edges]]
from = {{ node = "gen" }}
to = {{ node = "out" }}
"#
        ),
    )
}

#[test]
fn missed_target_exits_3_and_met_target_exits_0() {
    let dir = TempDir::new("targets");
    // Nothing crosses a ring in 1 ns: always missed.
    let out = run_config(&targets_config(&dir, "1ns"), &[]);
    out.assert_code(EXIT_TARGET_MISSED)
        .assert_no_panic()
        .assert_stderr_contains("MISSED")
        .assert_stderr_contains("latency target missed (exit status 3)");
    // An hour is always met.
    let out = run_config(&targets_config(&dir, "3600s"), &[]);
    out.assert_code(EXIT_OK).assert_stderr_contains("met");
}

#[test]
fn bad_targets_are_config_errors() {
    let dir = TempDir::new("bad-targets");
    let path = dir.write(
        "bad.toml",
        r#"
[flow.f.targets]
p42x = "1ms"
p99 = "12 parsecs"
[flow.f.nodes.gen]
component = "generator"
count = 1
targets = { p99 = "1ms" }
[flow.f.nodes.out]
component = "discard"
[[flow.f.edges]]
from = { node = "gen" }
to = { node = "out" }
"#,
    );
    run_config(&path, &[])
        .assert_code(EXIT_CONFIG)
        .assert_no_panic()
        .assert_stderr_contains("unknown latency statistic 'p42x'")
        .assert_stderr_contains("unknown unit 'parsecs'")
        .assert_stderr_contains("node 'gen' is a source; latency targets belong on sinks");
}

#[test]
fn json_report_and_histogram_log() {
    let dir = TempDir::new("report");
    let report = dir.path().join("report.json");
    let hlog = dir.path().join("latency.hlog");
    let config = repo_root().join("configs/latency-targets.toml");
    let out = run(&[
        "--config",
        config.to_str().unwrap(),
        "--quiet",
        "--report",
        report.to_str().unwrap(),
        "--histograms",
        hlog.to_str().unwrap(),
    ]);
    // Whether the targets are met depends on how busy the machine is (a
    // loaded CI runner can stall a worker past `max`), so either outcome
    // is accepted; the exit status must agree with the report.
    out.assert_no_panic();
    let code = out.code();
    assert!(
        code == Some(EXIT_OK) || code == Some(EXIT_TARGET_MISSED),
        "the run itself must succeed\n{}",
        out.stderr
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["success"], true);
    assert_eq!(
        json["targets_met"],
        code == Some(EXIT_OK),
        "exit 3 exactly when a target was missed"
    );
    assert_eq!(json["produced"], 20_000);
    assert_eq!(json["arena"]["leaked"], 0);
    let stages = json["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["gen", "tag", "route", "metrics-out", "logs-out"]);
    let sink = &stages[3];
    assert_eq!(sink["received"], 10_000);
    assert_eq!(sink["latency"]["count"], 10_000);
    assert!(
        sink["latency"]["p99_ns"].as_u64().unwrap() >= sink["latency"]["p50_ns"].as_u64().unwrap()
    );
    assert!(
        sink["service"]["count"].as_u64().unwrap() > 0,
        "stage metrics are on in this config"
    );
    assert_eq!(stages[2]["ports"]["metrics"], 10_000);
    let targets = json["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 5);
    assert!(targets.iter().all(|t| t["limit_ns"].as_u64().is_some()));

    let log = std::fs::read_to_string(&hlog).unwrap();
    assert!(log.contains("#[StartTime: "));
    for tag in [
        "metrics-out.latency",
        "logs-out.latency",
        "gen.service",
        "route.arrival",
    ] {
        assert!(
            log.contains(&format!("Tag={tag},")),
            "missing {tag} in\n{log}"
        );
    }
}

#[test]
fn validate_graph_and_list() {
    let fanout = repo_root().join("configs/fanout.toml");
    let fanout = fanout.to_str().unwrap();

    let out = run(&["validate", "--config", fanout]);
    out.assert_code(EXIT_OK);
    assert!(out.stdout.contains("valid (6 stages"), "{}", out.dump());
    assert!(out.stdout.contains("metric-proc"));

    let bad = repo_root().join("configs/invalid/multiple_errors.toml");
    run(&["validate", "--config", bad.to_str().unwrap()])
        .assert_code(EXIT_CONFIG)
        .assert_stderr_contains("unknown component 'frobnicate'");

    let dot = run(&["graph", "--config", fanout]);
    dot.assert_code(EXIT_OK);
    assert!(dot.stdout.starts_with("digraph pipeline {"));
    assert!(
        dot.stdout
            .contains(r#""router" -> "metric-proc" [label="metrics -> input"#),
        "{}",
        dot.stdout
    );
    assert!(dot.stdout.trim_end().ends_with('}'));

    let mermaid = run(&["graph", "--config", fanout, "--format", "mermaid"]);
    mermaid.assert_code(EXIT_OK);
    assert!(mermaid.stdout.starts_with("flowchart LR"));
    assert!(mermaid.stdout.contains("-- \"logs\" -->"));

    let list = run(&["list"]);
    list.assert_code(EXIT_OK);
    for name in [
        "generator",
        "list",
        "route-by-field",
        "set-field",
        "forward",
        "console",
        "discard",
    ] {
        assert!(
            list.stdout.contains(name),
            "list lacks {name}:\n{}",
            list.stdout
        );
    }
    assert!(list
        .stdout
        .contains("processors (in: input; out: output, error (optional))"));
    // Kafka's components, each with every parameter.
    for (component, params) in [
        (
            "kafka-in",
            &[
                "brokers",
                "topics",
                "group_id",
                "start",
                "session_timeout_ms",
                "commit_interval_ms",
                "metadata",
                "max_elements",
                "librdkafka_options",
            ][..],
        ),
        (
            "kafka-out",
            &[
                "brokers",
                "topic",
                "key_field",
                "compression",
                "acks",
                "idempotent",
                "linger_ms",
                "flush_timeout_ms",
                "librdkafka_options",
            ][..],
        ),
    ] {
        let block: Vec<&str> = list
            .stdout
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(&format!("{component} ")))
            .skip(1)
            .take_while(|l| l.starts_with("      "))
            .collect();
        for p in params {
            assert!(
                block
                    .iter()
                    .any(|l| l.trim_start().starts_with(&format!("{p} "))),
                "{component} lacks {p} in `dataplane list`: {block:?}"
            );
        }
    }
}

/// Logs go to stderr only: a run's stdout is exactly its data.
#[test]
fn stdout_is_data_only() {
    let fanout = repo_root().join("configs/fanout.toml");
    let out = run(&["--config", fanout.to_str().unwrap(), "--log", "debug"]);
    out.assert_code(EXIT_OK);
    assert!(out
        .stdout
        .lines()
        .all(|l| l.starts_with("[metric-sink] ") || l.starts_with("[log-sink] ")));
}

/// `validate` and `graph` check a pipeline without taking the ports of a
/// running instance of it (they bind an ephemeral port of the same address).
#[test]
fn validate_does_not_steal_a_running_pipelines_port() {
    use dataplane_tests::{adapt_config, free_port, start};
    use std::time::Duration;

    let dir = TempDir::new("validate-port");
    let port = free_port(true).to_string();
    let config = adapt_config(&dir, "udp.toml", &[("9000", &port)]);
    let config = config.to_str().unwrap();
    let mut running = start(&["--config", config]);
    running.wait_for_stderr("[dataplane] running", Duration::from_secs(60));

    // The port really is held: a second run cannot bind it, and says
    // which node and which address, as a config error; nothing runs.
    run(&["--config", config])
        .assert_code(EXIT_CONFIG)
        .assert_stderr_contains(&format!("node 'listen': cannot bind 127.0.0.1:{port}"))
        .assert_stderr_contains("invalid pipeline: 1 error");

    let out = run(&["validate", "--config", config]);
    out.assert_code(EXIT_OK).assert_no_panic();
    assert!(out.stdout.contains("valid ("), "{}", out.dump());
    run(&["graph", "--config", config]).assert_code(EXIT_OK);

    running.signal("INT");
    running
        .wait_timeout(Duration::from_secs(60))
        .assert_code(EXIT_OK);
}

/// `dataplane list | head -1`: a reader that closes the pipe early is not
/// an error (no panic, no backtrace, exit 0), for every printing command.
#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    let fanout = repo_root().join("configs/fanout.toml");
    let fanout = fanout.to_str().unwrap();
    for args in [
        vec!["list"],
        vec!["validate", "--config", fanout],
        vec!["graph", "--config", fanout],
    ] {
        let mut child = std::process::Command::new(dataplane_tests::binary())
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start dataplane");
        // Close the read end before the command writes.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait for dataplane");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(EXIT_OK), "{args:?}: {stderr}");
    }
}

/// The README's component reference is what `dataplane list --format
/// markdown` prints: both come from the components' parameter structs, and
/// this fails when the README was not regenerated after one changed
/// (`scripts/readme-components.sh` rewrites it).
#[test]
fn the_readme_component_reference_matches_list() {
    let out = run(&["list", "--format", "markdown"]);
    out.assert_code(EXIT_OK).assert_no_panic();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = readme
        .split_once("<!-- components:start -->\n")
        .and_then(|(_, rest)| rest.split_once("<!-- components:end -->"))
        .map(|(section, _)| section.trim_end())
        .expect("README.md has the components:start / components:end markers");
    if section != out.stdout.trim_end() {
        let first = section
            .lines()
            .zip(out.stdout.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "README.md's component reference differs from `dataplane list --format markdown` \
             (first at line {} of the section: README {:?}, list {:?}); run scripts/readme-components.sh",
            first + 1,
            section.lines().nth(first),
            out.stdout.lines().nth(first)
        );
    }
    // Every component of the text listing is in the reference.
    let text = run(&["list"]);
    for line in text
        .stdout
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
    {
        let name = line.split_whitespace().next().expect("a component name");
        assert!(
            section.contains(&format!("**`{name}`**")),
            "{name} missing from README"
        );
    }
}
