//! Every config in `configs/invalid/` is rejected with exit status 78 and a
//! message that names what is wrong and where.
//!
//! The directory is iterated: a new file there fails this test until its
//! expected messages are added to [`EXPECTED`].

use std::collections::BTreeSet;
use std::path::PathBuf;

use dataplane_tests::{repo_root, run, run_config, EXIT_CONFIG, EXIT_NOINPUT};

/// File name -> substrings its stderr must contain (each one a separate
/// reported problem or a part of one).
const EXPECTED: &[(&str, &[&str])] = &[
    ("toml_syntax.toml", &["toml_syntax.toml:3:18: ", "invalid basic string"]),
    (
        "unknown_component.toml",
        &["unknown_component.toml:6:1: node 'sink' (dicsard): unknown component 'dicsard' (known: "],
    ),
    (
        "unknown_node.toml",
        &["unknown_node.toml:16:1: edge fwd.output -> sinc.input: unknown node 'sinc'"],
    ),
    (
        "unknown_port.toml",
        &["unknown_port.toml:21:1: edge router.metric -> metric-sink.input: node 'router' has no output port 'metric' (its output ports: metrics, logs, error)"],
    ),
    (
        "duplicate_name.toml",
        &["duplicate_name.toml:9:1: invalid table header: duplicate key `sink` in table `flow.main.nodes`"],
    ),
    (
        "duplicate_node_across_flows.toml",
        &["duplicate_node_across_flows.toml:17:1: duplicate node name 'sink' (first defined at ", "duplicate_node_across_flows.toml:6:1)"],
    ),
    (
        "bad_when_full.toml",
        &["bad_when_full.toml:12:13: unknown when_full 'drop_latest' (expected block, drop_newest or drop_oldest)"],
    ),
    (
        "cycle.toml",
        &["cycle.toml:6:1: the graph has a cycle: second -> first -> second (pipelines must be acyclic)"],
    ),
    (
        "source_with_input.toml",
        &["source_with_input.toml:13:1: edge other.output -> source.input: source 'source' cannot have inputs"],
    ),
    (
        "sink_with_output.toml",
        &["sink_with_output.toml:16:1: edge sink.output -> after.input: sink 'sink' has no output port 'output'; a sink's only output is its optional 'error' port"],
    ),
    (
        "unconnected_output.toml",
        &["unconnected_output.toml:6:1: output port 'router.logs' is not connected"],
    ),
    (
        "wrong_direction.toml",
        &[
            "wrong_direction.toml:13:1: edge source.output -> fwd.output: 'fwd.output' is an output port; an edge must end at an input port",
            "wrong_direction.toml:17:1: edge fwd.input -> sink.input: 'fwd.input' is an input port",
        ],
    ),
    (
        "bad_core.toml",
        &["bad_core.toml:6:1: node 'sink' asks for core 999, which is not available (usable cores: "],
    ),
    (
        "bad_param.toml",
        &["bad_param.toml:6:1: node 'router' (route-by-field): unknown field `feild`, expected one of `field`"],
    ),
    (
        "bad_wait.toml",
        &["bad_wait.toml:3:8: engine.wait: unknown wait strategy 'spinny' (expected busy-spin, yield or park)"],
    ),
    (
        "arena_too_small.toml",
        &["arena_too_small.toml: engine.arena.slots: 16 slots cannot hold what the rings may carry: this topology needs at least "],
    ),
    (
        "out_of_bounds.toml",
        &[
            "out_of_bounds.toml: engine.arena: slot_size 1099511627776 is larger than the largest slot, 67108864 bytes (64 MiB)",
            "out_of_bounds.toml: engine: batch 1000000000 is larger than the largest batch, 65536",
            "out_of_bounds.toml: engine: ring_capacity 1099511627776 is larger than the largest ring, 4194304 handles",
        ],
    ),
    (
        "arena_too_large.toml",
        &[
            "arena_too_large.toml: engine.arena.slots: at most 2147483647 slots (ring indices keep one bit to mark control elements)",
            "arena_too_large.toml: engine.arena: the arena would take about ",
            " of memory is available; lower slots, slot_size or the ring capacities",
        ],
    ),
    ("no_flow.toml", &["no_flow.toml: no flow defined (expected a [flow.NAME] table)"]),
    (
        "bad_tests.toml",
        &[
            "bad_tests.toml:26:8: test 'forwarded': node 'fwd' has no output port 'outptu' (its output ports: output, error)",
            "bad_tests.toml:29:1: test 'forwarded': the expectation on 'sink' checks nothing (give payloads, count, where or reason)",
        ],
    ),
    (
        "multiple_errors.toml",
        &[
            "engine.wait: unknown wait strategy 'spinny'",
            "multiple_errors.toml:15:1: node 'proc' (frobnicate): unknown component 'frobnicate'",
            "multiple_errors.toml:18:1: node 'router' (route-by-field): unknown field `feild`",
            "multiple_errors.toml:23:1: node 'sink' asks for core 999, which is not available",
            "multiple_errors.toml:47:1: edge loop-b.out -> nowhere.input: unknown node 'nowhere'",
            "the graph has a cycle: loop-b -> loop-a -> loop-b",
        ],
    ),
];

fn invalid_dir() -> PathBuf {
    repo_root().join("configs/invalid")
}

#[test]
fn every_invalid_config_is_rejected_with_its_message() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(invalid_dir())
        .expect("configs/invalid/ exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();

    let on_disk: BTreeSet<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(f, _)| f.to_string()).collect();
    let untested: Vec<&String> = on_disk.difference(&expected).collect();
    let missing: Vec<&String> = expected.difference(&on_disk).collect();
    assert!(
        untested.is_empty(),
        "configs/invalid/ files with no entry in EXPECTED: {untested:?}"
    );
    assert!(
        missing.is_empty(),
        "EXPECTED names files not in configs/invalid/: {missing:?}"
    );

    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let out = run_config(path, &[]);
        out.assert_code(EXIT_CONFIG).assert_no_panic();
        assert!(
            out.stdout.is_empty(),
            "{name}: nothing may run\n{}",
            out.dump()
        );
        assert!(
            out.stderr.starts_with("invalid pipeline: "),
            "{name}: stderr must start with the error count\n{}",
            out.dump()
        );
        let (_, wanted) = EXPECTED
            .iter()
            .find(|(f, _)| *f == name)
            .expect("checked above");
        for needle in *wanted {
            assert!(
                out.stderr.contains(needle),
                "{name}: stderr lacks {needle:?}\n{}",
                out.dump()
            );
        }
    }
}

#[test]
fn every_invalid_config_says_what_is_wrong_in_a_leading_comment() {
    for entry in std::fs::read_dir(invalid_dir()).expect("configs/invalid/ exists") {
        let path = entry.expect("a directory entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(
            text.starts_with("# Invalid"),
            "{} must start with a `# Invalid: ...` comment",
            path.display()
        );
    }
}

#[test]
fn the_error_count_matches_the_listed_errors() {
    let out = run_config(&invalid_dir().join("multiple_errors.toml"), &[]);
    out.assert_code(EXIT_CONFIG);
    let first = out.stderr.lines().next().unwrap_or_default();
    let n: usize = first
        .strip_prefix("invalid pipeline: ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no error count in {first:?}"));
    let listed = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("  error: "))
        .count();
    assert_eq!(n, listed, "{}", out.stderr);
    assert!(n >= 6, "all six mistakes are reported\n{}", out.stderr);
}

#[test]
fn a_missing_config_file_exits_66() {
    let path = repo_root().join("configs/invalid/does-not-exist.toml");
    let out = run_config(&path, &[]);
    out.assert_code(EXIT_NOINPUT)
        .assert_no_panic()
        .assert_stderr_contains("cannot read config file")
        .assert_stderr_contains("does-not-exist.toml");
}

#[test]
fn an_unknown_flow_name_is_a_config_error() {
    let out = run(&["--config", "configs/fanout.toml", "--flow", "nope"]);
    out.assert_code(EXIT_CONFIG)
        .assert_no_panic()
        .assert_stderr_contains("no flow named 'nope' (flows in this file: main)");
}

/// A misspelt component name gets the nearest known one as a hint.
#[test]
fn a_misspelt_component_gets_a_hint() {
    run(&[
        "validate",
        "--config",
        invalid_dir()
            .join("unknown_component.toml")
            .to_str()
            .unwrap(),
    ])
    .assert_code(EXIT_CONFIG)
    .assert_stderr_contains("did you mean 'discard'?");
}

/// Each error has a kind, counted in the summary line, and where a likely
/// fix is known, a hint on the line under it.
#[test]
fn errors_are_counted_by_kind_and_typos_get_hints() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("toml_syntax.toml", "1 error (1 syntax)", None),
        ("no_flow.toml", "1 error (1 structure)", None),
        (
            "unknown_component.toml",
            "1 error (1 name)",
            Some("    hint: did you mean 'discard'?"),
        ),
        (
            "unknown_node.toml",
            "2 errors (1 name, 1 port)",
            Some("    hint: did you mean 'sink'?"),
        ),
        (
            "unknown_port.toml",
            "2 errors (2 port)",
            Some("    hint: did you mean 'metrics'?"),
        ),
        (
            "bad_param.toml",
            "(1 parameter)",
            Some("    hint: did you mean 'field'?"),
        ),
        ("cycle.toml", "1 error (1 cycle)", None),
        ("out_of_bounds.toml", "4 errors (4 bound)", None),
        ("bad_tests.toml", "(2 test)", None),
    ];
    for (file, summary, hint) in cases {
        let out = run(&[
            "validate",
            "--config",
            invalid_dir().join(file).to_str().unwrap(),
        ]);
        out.assert_code(EXIT_CONFIG).assert_no_panic();
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("invalid pipeline: ") && first.contains(summary),
            "{file}: expected {summary:?} in the summary line\n{}",
            out.stderr
        );
        if let Some(hint) = hint {
            // The hint sits right under the error it belongs to.
            let lines: Vec<&str> = out.stderr.lines().collect();
            let at = lines
                .iter()
                .position(|l| l == hint)
                .unwrap_or_else(|| panic!("{file}: no line {hint:?}\n{}", out.stderr));
            assert!(
                lines[at - 1].starts_with("  error: "),
                "{file}: the hint follows its error\n{}",
                out.stderr
            );
        }
    }
}
