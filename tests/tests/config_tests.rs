//! `dataplane test`: the `[[tests]]` written inside pipeline files. The
//! shipped ones pass; a broken expectation fails with exit status 1 and a
//! diff; a malformed test is a config error (78) located file:line:col, for
//! `test`, `validate` and `run` alike.

use std::path::{Path, PathBuf};

use dataplane_tests::{repo_root, run, Output, TempDir, EXIT_CONFIG, EXIT_OK};

/// Exit status of `dataplane test` when a test failed.
const EXIT_TEST_FAILED: i32 = 1;

fn test(path: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec!["test".as_ref(), "--config".as_ref()];
    args.push(path.as_os_str());
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    run(&args)
}

/// The filter pipeline of `configs/filter.toml`, without its tests: a list
/// source, a filter with its error port wired, two consoles.
const FILTER: &str = r#"
[flow.filter.nodes.events]
component = "list"
payloads = ['{"type":"metric","value":91.5}']

[flow.filter.nodes.hot-or-error]
component = "filter"
where = { any = [ { all = [ { field = "type", eq = "metric" }, { field = "value", gt = 50 } ] }, { field = "level", eq = "error" } ] }

[flow.filter.nodes.kept]
component = "console"
prefix = "[kept] "

[flow.filter.nodes.rejected]
component = "console"
format = "json"

[[flow.filter.edges]]
from = { node = "events" }
to = { node = "hot-or-error" }

[[flow.filter.edges]]
from = { node = "hot-or-error", port = "output" }
to = { node = "kept" }

[[flow.filter.edges]]
from = { node = "hot-or-error", port = "error" }
to = { node = "rejected" }
"#;

/// Lines in [`FILTER`] before the tests appended to it (the tests' first
/// line is this plus one).
fn filter_lines() -> usize {
    FILTER.matches('\n').count()
}

fn write_filter(dir: &TempDir, name: &str, tests: &str) -> PathBuf {
    dir.write(name, &format!("{FILTER}{tests}"))
}

fn shipped_with_tests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("configs"))
        .expect("configs/ exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| {
            std::fs::read_to_string(p)
                .expect("readable")
                .contains("[[tests]]")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn shipped_tests_pass_and_print_no_pipeline_data() {
    let files = shipped_with_tests();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in ["fanout.toml", "filter.toml"] {
        assert!(names.iter().any(|n| n == required), "{required} has tests");
    }
    for path in &files {
        let out = test(path, &[]);
        out.assert_code(EXIT_OK).assert_no_panic();
        let results: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("test "))
            .collect();
        assert!(!results.is_empty(), "{}", out.dump());
        for line in &results {
            assert!(line.ends_with(" ... ok"), "{line}\n{}", out.dump());
        }
        assert!(
            out.stdout
                .contains(&format!("{} passed, 0 failed", results.len())),
            "{}",
            out.dump()
        );
        // The sinks are captures: no console line, no JSON record.
        for line in out.stdout.lines() {
            assert!(
                line.is_empty()
                    || line.starts_with("test ")
                    || line.starts_with("running ")
                    || line.ends_with(" failed"),
                "{}: unexpected output line {line:?}",
                path.display()
            );
        }
    }
}

#[test]
fn run_and_validate_accept_a_file_with_tests() {
    let path = repo_root().join("configs/filter.toml");
    run(&["validate".as_ref(), "--config".as_ref(), path.as_os_str()])
        .assert_code(EXIT_OK)
        .assert_no_panic();
    let out = run(&["--config".as_ref(), path.as_os_str(), "--quiet".as_ref()]);
    out.assert_code(EXIT_OK);
    // The pipeline's own list ran, not a test's payloads.
    assert_eq!(
        out.stdout_lines_with_prefix("[kept] ").len(),
        4,
        "{}",
        out.dump()
    );
}

#[test]
fn a_broken_expectation_fails_with_a_diff() {
    let dir = TempDir::new("config-tests-broken");
    let path = write_filter(
        &dir,
        "broken.toml",
        r#"
[[tests]]
name = "passes"
input = { node = "hot-or-error", payloads = ['{"level":"error"}'] }
[[tests.outputs]]
node = "kept"
count = 1

[[tests]]
name = "expects the wrong metric"
input = { node = "hot-or-error", payloads = ['{"type":"metric","value":91}', '{"type":"metric","value":99}', 'nope'] }
[[tests.outputs]]
node = "kept"
payloads = ['{"type":"metric","value":91}', '{"type":"metric","value":98}']
[[tests.outputs]]
node = "rejected"
count = 2
"#,
    );
    let out = test(&path, &[]);
    out.assert_code(EXIT_TEST_FAILED).assert_no_panic();
    let n = filter_lines();
    let file = path.display();
    for needle in [
        "test passes ... ok\n".to_string(),
        format!(
            "test expects the wrong metric ... FAILED ({file}:{}:1)\n",
            n + 9
        ),
        format!(
            "  {file}:{}:1: kept: payloads differ (- expected, + actual):\n",
            n + 12
        ),
        "        {\"type\":\"metric\",\"value\":91}\n".to_string(),
        "      + {\"type\":\"metric\",\"value\":99}\n".to_string(),
        "      - {\"type\":\"metric\",\"value\":98}\n".to_string(),
        format!(
            "  {file}:{}:1: rejected: expected 2 elements, received 1:\n      + nope\n",
            n + 15
        ),
        "1 passed, 1 failed".to_string(),
    ] {
        assert!(
            out.stdout.contains(&needle),
            "stdout lacks {needle:?}\n{}",
            out.dump()
        );
    }
}

#[test]
fn the_error_port_gives_the_raw_payload_and_its_reason() {
    let dir = TempDir::new("config-tests-error-port");
    let path = write_filter(
        &dir,
        "reason.toml",
        r#"
[[tests]]
name = "reason"
input = { node = "hot-or-error", payloads = ['not json'] }
[[tests.outputs]]
node = "rejected"
payloads = ['not json']
reason = "missing field"
"#,
    );
    let out = test(&path, &[]);
    out.assert_code(EXIT_TEST_FAILED);
    assert!(
        out.stdout.contains(
            "rejected: element 1 was rejected for 'invalid JSON', not 'missing field': not json"
        ),
        "{}",
        out.dump()
    );
}

/// Each malformed test: its text (appended to [`FILTER`]) and the message
/// expected at (line within the text, column).
const MALFORMED: &[(&str, &str, (usize, usize), &str)] = &[
    (
        "unknown_node",
        "[[tests]]\nname = \"t\"\ninput = { node = \"hot\", payloads = [] }\n[[tests.outputs]]\nnode = \"kept\"\ncount = 0\n",
        (3, 18),
        "test 't': input.node: unknown node 'hot' (nodes in this file: events, hot-or-error, kept, rejected)",
    ),
    (
        "unknown_port",
        "[[tests]]\nname = \"t\"\ninput = { node = \"events\", payloads = [] }\n[[tests.outputs]]\nnode = \"hot-or-error\"\nport = \"errors\"\ncount = 0\n",
        (6, 8),
        "test 't': node 'hot-or-error' has no output port 'errors' (its output ports: output, error)",
    ),
    (
        "missing_input",
        "[[tests]]\nname = \"t\"\n[[tests.outputs]]\nnode = \"kept\"\ncount = 0\n",
        (1, 1),
        "missing field `input`",
    ),
    (
        "no_expectations",
        "[[tests]]\nname = \"t\"\ninput = { node = \"events\", payloads = [] }\n",
        (1, 1),
        "test 't' expects nothing: add [[tests.outputs]] blocks",
    ),
    (
        "empty_expectation",
        "[[tests]]\nname = \"t\"\ninput = { node = \"events\", payloads = [] }\n[[tests.outputs]]\nnode = \"kept\"\n",
        (4, 1),
        "test 't': the expectation on 'kept' checks nothing (give payloads, count, where or reason)",
    ),
    (
        "payloads_and_count",
        "[[tests]]\nname = \"t\"\ninput = { node = \"events\", payloads = [] }\n[[tests.outputs]]\nnode = \"kept\"\npayloads = []\ncount = 0\n",
        (6, 12),
        "test 't': 'kept' has both payloads (0 of them) and count = 0; the payloads already fix the count, give one of the two",
    ),
    (
        "unreachable",
        "[[tests]]\nname = \"t\"\ninput = { node = \"hot-or-error\", payloads = [] }\n[[tests.outputs]]\nnode = \"events\"\ncount = 0\n",
        (5, 8),
        "test 't': node 'events' cannot be reached from the test's input 'hot-or-error', so it would receive nothing",
    ),
    (
        "input_at_a_sink",
        "[[tests]]\nname = \"t\"\ninput = { node = \"kept\", payloads = [] }\n[[tests.outputs]]\nnode = \"kept\"\ncount = 0\n",
        (3, 18),
        "test 't': input.node 'kept' is a sink; payloads are inserted at a source",
    ),
    (
        "bad_where",
        "[[tests]]\nname = \"t\"\ninput = { node = \"events\", payloads = [] }\n[[tests.outputs]]\nnode = \"kept\"\nwhere = { field = \"v\", gt = \"high\" }\n",
        (6, 9),
        "test 't': where.gt: expected a number",
    ),
    (
        "unknown_key",
        "[[tests]]\nname = \"t\"\ninput = { node = \"events\", payloads = [] }\n[[tests.outputs]]\nnode = \"kept\"\ncuont = 1\n",
        (6, 1),
        "unknown field `cuont`, expected one of `node`, `port`, `payloads`, `ordered`, `count`, `where`, `reason`",
    ),
    (
        "duplicate_name",
        "[[tests]]\nname = \"t\"\ninput = { node = \"events\", payloads = [] }\n[[tests.outputs]]\nnode = \"kept\"\ncount = 0\n[[tests]]\nname = \"t\"\ninput = { node = \"events\", payloads = [] }\n[[tests.outputs]]\nnode = \"kept\"\ncount = 0\n",
        (8, 8),
        "duplicate test name 't' (first defined at ",
    ),
    (
        "unknown_flow",
        "[[tests]]\nname = \"t\"\nflow = \"main\"\ninput = { node = \"events\", payloads = [] }\n[[tests.outputs]]\nnode = \"kept\"\ncount = 0\n",
        (3, 8),
        "test 't': no flow named 'main' (flows in this file: filter)",
    ),
];

#[test]
fn malformed_tests_are_located_config_errors() {
    let dir = TempDir::new("config-tests-malformed");
    let n = filter_lines();
    for (name, text, (line, col), message) in MALFORMED {
        let path = write_filter(&dir, &format!("{name}.toml"), text);
        let expected = format!("{}:{}:{col}: {message}", path.display(), n + line);
        let out = test(&path, &[]);
        out.assert_code(EXIT_CONFIG).assert_no_panic();
        assert!(
            out.stderr.contains(&expected),
            "{name}: stderr lacks {expected:?}\n{}",
            out.dump()
        );
        assert!(out.stdout.is_empty(), "{name}: no test ran\n{}", out.dump());
        // `validate` reports the same problem.
        let out = run(&["validate".as_ref(), "--config".as_ref(), path.as_os_str()]);
        out.assert_code(EXIT_CONFIG);
        assert!(
            out.stderr.contains(&expected),
            "{name}: validate lacks {expected:?}\n{}",
            out.dump()
        );
    }
}

#[test]
fn flow_picks_the_tests_of_one_flow() {
    let dir = TempDir::new("config-tests-flows");
    let flow = |name: &str| {
        format!(
            r#"
[flow.{name}.nodes.{name}-src]
component = "list"
payloads = ["x"]
[flow.{name}.nodes.{name}-out]
component = "console"
[[flow.{name}.edges]]
from = {{ node = "{name}-src" }}
to = {{ node = "{name}-out" }}
[[tests]]
name = "{name} passes through"
input = {{ node = "{name}-src", payloads = ["{name}"] }}
[[tests.outputs]]
node = "{name}-out"
payloads = ["{name}"]
"#
        )
    };
    let path = dir.write("two.toml", &format!("{}{}", flow("a"), flow("b")));
    let out = test(&path, &[]);
    out.assert_code(EXIT_OK);
    assert!(out.stdout.contains("2 passed, 0 failed"), "{}", out.dump());
    let out = test(&path, &["--flow", "b"]);
    out.assert_code(EXIT_OK);
    assert!(
        out.stdout.contains("test b passes through ... ok"),
        "{}",
        out.dump()
    );
    assert!(!out.stdout.contains("test a "), "{}", out.dump());
    assert!(out.stdout.contains("1 passed, 0 failed"), "{}", out.dump());
    test(&path, &["--flow", "c"])
        .assert_code(EXIT_CONFIG)
        .assert_stderr_contains("no flow named 'c' (flows in this file: a, b)");
}
