//! Reading `[[tests]]` blocks (what a test resolves to, and the located
//! errors of bad ones) and running them in process.

use crate::operators::Registry;
use crate::testing::{check_str, load_str, Failure, TestResult};
use crate::topology::test_spec::{resolve, Expected};

/// A file-in source, a router, a processor on one branch, and file-out
/// sinks. The file holds metrics (a test that read it would receive more
/// than its own payloads), the sinks' files must not appear.
const PIPELINE: &str = r#"
[flow.main.nodes.read]
component = "file-in"
path = "../configs/data/events.ndjson"

[flow.main.nodes.route]
component = "route-by-field"
field = "type"
routes = { metric = "metrics", log = "logs" }
unmatched = "drop"

[flow.main.nodes.tag]
component = "set-field"
field = "seen"
value = true

[flow.main.nodes.metrics-out]
component = "file-out"
path = "{dir}/dataplane-unit-test-metrics.ndjson"

[flow.main.nodes.logs-out]
component = "file-out"
path = "{dir}/dataplane-unit-test-logs.ndjson"

[[flow.main.edges]]
from = { node = "read" }
to = { node = "route" }

[[flow.main.edges]]
from = { node = "route", port = "metrics" }
to = { node = "tag" }

[[flow.main.edges]]
from = { node = "tag" }
to = { node = "metrics-out" }

[[flow.main.edges]]
from = { node = "route", port = "logs" }
to = { node = "logs-out" }
"#;

fn pipeline() -> String {
    PIPELINE.replace("{dir}", &std::env::temp_dir().display().to_string())
}

fn with_tests(tests: &str) -> String {
    format!("{}\n{tests}", pipeline())
}

/// `t.toml:LINE:COL` of a line of the `tests` text given to `with_tests`
/// (its first line is 1).
fn at(line: usize, col: usize) -> String {
    format!(
        "t.toml:{}:{col}",
        pipeline().matches('\n').count() + 1 + line
    )
}

/// The located errors of `tests`, as printed.
fn errors(tests: &str) -> Vec<String> {
    let text = with_tests(tests);
    check_str(&text, "t.toml", &Registry::builtin())
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn run(tests: &str) -> Vec<TestResult> {
    let registry = Registry::builtin();
    let suite = load_str(&with_tests(tests), "t.toml", &registry, None)
        .unwrap_or_else(|e| panic!("the tests are valid: {e}"));
    let mut results = Vec::new();
    suite.run(&registry, |r| results.push(r.clone()));
    results
}

#[test]
fn a_test_resolves_to_the_reachable_part_of_its_flow() {
    let text = with_tests(
        r#"
[[tests]]
name = "metrics"
input = { node = "route", payloads = ['{"type":"metric"}', { type = "log" }] }
[[tests.outputs]]
node = "route"
count = 1
[[tests.outputs]]
node = "metrics-out"
payloads = [{ type = "metric", seen = true }]
"#,
    );
    let cases = resolve(&text, "t.toml", &Registry::builtin()).unwrap_or_else(|e| panic!("{e:?}"));
    let [case] = &cases[..] else {
        panic!("one case")
    };
    assert_eq!(case.flow, "main");
    assert_eq!(case.input, "route");
    assert_eq!(
        case.payloads,
        [
            br#"{"type":"metric"}"#.to_vec(),
            br#"{"type":"log"}"#.to_vec()
        ]
    );
    let nodes: Vec<&str> = case.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        nodes,
        ["route", "tag", "metrics-out", "logs-out"],
        "not 'read'"
    );
    assert_eq!(case.edges.len(), 3);
    // A router's default port is its first; a sink has none.
    assert_eq!(case.expects[0].target(), "route.metrics");
    assert_eq!(case.expects[1].target(), "metrics-out");
    assert_eq!(
        case.expects[1].payloads,
        Some(vec![Expected::Json(
            serde_json::json!({"type": "metric", "seen": true})
        )])
    );
}

#[test]
fn a_file_without_tests_has_nothing_to_check() {
    assert!(errors("").is_empty());
}

#[test]
fn bad_tests_are_located_errors() {
    assert_eq!(
        errors(
            r#"
[[tests]]
name = "bad"
input = { node = "rout", payloads = [] }
[[tests.outputs]]
node = "tag"
port = "out"
count = 1
[[tests.outputs]]
node = "read"
payloads = ["x"]
count = 1
[[tests.outputs]]
node = "logs-out"
"#
        ),
        [
            format!("{}: test 'bad': input.node: unknown node 'rout' (nodes in this file: logs-out, metrics-out, read, route, tag)", at(4, 18)),
            format!("{}: test 'bad': node 'tag' has no output port 'out' (its output ports: output, error)", at(7, 8)),
            format!("{}: test 'bad': 'read' has both payloads (1 of them) and count = 1; the payloads already fix the count, give one of the two", at(11, 12)),
            format!("{}: test 'bad': the expectation on 'logs-out' checks nothing (give payloads, count, where or reason)", at(13, 1)),
        ]
    );
    let unreachable = errors(
        r#"
[[tests]]
name = "logs only"
input = { node = "tag", payloads = ["{}"] }
[[tests.outputs]]
node = "logs-out"
count = 0
"#,
    );
    assert_eq!(
        unreachable,
        [format!("{}: test 'logs only': node 'logs-out' cannot be reached from the test's input 'tag', so it would receive nothing", at(6, 8))]
    );
    let no_outputs = errors(
        r#"
[[tests]]
name = "nothing"
input = { node = "read", payloads = ["{}"] }
"#,
    );
    assert_eq!(
        no_outputs,
        [format!("{}: test 'nothing' expects nothing: add [[tests.outputs]] blocks naming a node and its payloads, count, where or reason", at(2, 1))]
    );
    // Structure is serde's to check: the first problem, located.
    assert_eq!(
        errors("[[tests]]\nname = \"x\"\n[[tests.outputs]]\nnode = \"tag\"\ncount = 1\n"),
        [format!("{}: missing field `input`", at(1, 1))]
    );
    assert_eq!(
        errors("[[tests]]\nname = \"x\"\ninput = { node = \"tag\", payloads = [] }\nexpect = 1\n"),
        [format!(
            "{}: unknown field `expect`, expected one of `name`, `flow`, `input`, `outputs`",
            at(4, 1)
        )]
    );
}

#[test]
fn passing_tests_open_no_real_source_or_sink() {
    let results = run(r#"
[[tests]]
name = "through the source"
input = { node = "read", payloads = ['{"type":"metric","v":1}', '{"type":"log"}', '{"type":"trace"}'] }
[[tests.outputs]]
node = "metrics-out"
payloads = ['{"type":"metric","v":1,"seen":true}']
[[tests.outputs]]
node = "logs-out"
payloads = ['{"type":"log"}']

[[tests]]
name = "the error port"
input = { node = "route", payloads = ['oops', '{"type":"log"}'] }
[[tests.outputs]]
node = "route"
port = "error"
payloads = ['oops']
reason = "invalid JSON"
[[tests.outputs]]
node = "route"
port = "logs"
count = 1
where = { field = "type", eq = "log" }
"#);
    for r in &results {
        assert!(r.passed(), "{r}");
    }
    assert_eq!(results.len(), 2);
    for sink in ["metrics", "logs"] {
        let file = std::env::temp_dir().join(format!("dataplane-unit-test-{sink}.ndjson"));
        assert!(!file.exists(), "{} was written", file.display());
    }
}

#[test]
fn failing_tests_say_what_differs() {
    let results = run(r#"
[[tests]]
name = "wrong"
input = { node = "route", payloads = ['{"type":"metric","v":1}', '{"type":"metric","v":2}'] }
[[tests.outputs]]
node = "tag"
payloads = ['{"type":"metric","v":1,"seen":true}', '{"type":"metric","v":3,"seen":true}']
[[tests.outputs]]
node = "metrics-out"
count = 3
where = { field = "v", lt = 2 }
"#);
    let [r] = &results[..] else {
        panic!("one result")
    };
    assert!(!r.passed());
    assert!(matches!(r.failures[0], Failure::Payloads { .. }));
    let expected = format!(
        "test wrong ... FAILED ({})
  {}: tag.output: payloads differ (- expected, + actual):
        {{\"type\":\"metric\",\"v\":1,\"seen\":true}}
      + {{\"type\":\"metric\",\"v\":2,\"seen\":true}}
      - {{\"type\":\"metric\",\"v\":3,\"seen\":true}}
  {}: metrics-out: expected 3 elements, received 2:
      + {{\"type\":\"metric\",\"v\":1,\"seen\":true}}
      + {{\"type\":\"metric\",\"v\":2,\"seen\":true}}
  {}: metrics-out: element 2 does not satisfy `where`: {{\"type\":\"metric\",\"v\":2,\"seen\":true}}
",
        at(2, 1),
        at(5, 1),
        at(8, 1),
        at(8, 1)
    );
    assert_eq!(r.to_string(), expected);
}

#[test]
fn each_test_starts_from_fresh_stages() {
    // A dedupe remembers keys: built once for both tests, the second would
    // see nothing.
    let text = r#"
[flow.d.nodes.src]
component = "list"
payloads = ["{}"]
[flow.d.nodes.once]
component = "dedupe"
field = "k"
window_ms = 60000
[flow.d.nodes.out]
component = "console"
[[flow.d.edges]]
from = { node = "src" }
to = { node = "once" }
[[flow.d.edges]]
from = { node = "once" }
to = { node = "out" }

[[tests]]
name = "first"
input = { node = "once", payloads = ['{"k":1}', '{"k":1}'] }
[[tests.outputs]]
node = "out"
count = 1

[[tests]]
name = "second"
input = { node = "once", payloads = ['{"k":1}'] }
[[tests.outputs]]
node = "out"
count = 1
"#;
    let registry = Registry::builtin();
    let suite = load_str(text, "d.toml", &registry, None).expect("valid");
    assert_eq!(suite.names().collect::<Vec<_>>(), ["first", "second"]);
    let summary = suite.run(&registry, |r| assert!(r.passed(), "{r}"));
    assert_eq!((summary.passed, summary.failed), (2, 0));
    // --flow keeps that flow's tests.
    let other = load_str(text, "d.toml", &registry, Some("d")).expect("valid");
    assert_eq!(other.len(), 2);
}
