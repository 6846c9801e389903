//! The shipped operator examples (`configs/*.toml`), end to end: each runs
//! the real binary and checks exactly what came out. Sinks on different
//! workers print concurrently, so lines are compared per sink (by prefix or
//! by content), in order.

use std::time::Duration;

use dataplane_tests::{
    adapt_config, repo_root, run_config, start_with_stdin, Output, TempDir, EXIT_OK,
};

fn run_shipped(name: &str) -> Output {
    let out = run_config(&repo_root().join("configs").join(name), &[]);
    out.assert_code(EXIT_OK)
        .assert_no_panic()
        .assert_stderr_contains("0 slots leaked");
    out
}

fn lines_with<'a>(out: &'a Output, prefix: &str) -> Vec<&'a str> {
    out.stdout_lines_with_prefix(prefix)
        .into_iter()
        .map(|l| &l[prefix.len()..])
        .collect()
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
}

#[test]
fn filter_keeps_matches_and_diverts_bad_json() {
    let out = run_shipped("filter.toml");
    assert_eq!(
        lines_with(&out, "[kept] "),
        [
            r#"{"type":"metric","name":"cpu","value":91.5}"#,
            r#"{"type":"log","level":"error","message":"disk failed"}"#,
            r#"{"type":"metric","name":"mem","value":"75"}"#,
            r#"{"type":"log","message":"no level","alert":true}"#,
        ]
    );
    let rejected = lines_with(&out, "{");
    assert_eq!(rejected.len(), 1, "{}", out.dump());
    let r = json(&format!("{{{}", rejected[0]));
    assert_eq!(r["reason"], "invalid JSON");
    assert_eq!(r["payload"], "this is not JSON");
    assert_eq!(r["node"], "rejected");
    assert_eq!(r["seq"], 4);
    let f = out.stage("hot-or-error");
    assert_eq!((f.received, f.sent, f.dropped), (7, 5, 2), "{f:?}");
    out.assert_stderr_contains("dropped 2 x filtered")
        .assert_stderr_contains("sent to port 'error' 1 x invalid JSON");
}

#[test]
fn fields_are_renamed_removed_and_set() {
    let out = run_shipped("fields.toml");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            r#"{"server":"web-1","cpu":72.5,"env":"prod"}"#,
            r#"{"server":"web-2","cpu":10,"env":"prod"}"#,
            r#"{"cpu":5,"env":"prod"}"#,
        ]
    );
}

#[test]
fn dedupe_and_sample_are_exact() {
    let out = run_shipped("dedupe_sample.toml");
    let users = ["ann", "bob", "cat", "dan", "eve", "fay", "gus"];
    let want_first: Vec<String> = users
        .iter()
        .enumerate()
        .map(|(i, u)| format!(r#"{{"seq":{i},"user":"{u}"}}"#))
        .collect();
    assert_eq!(lines_with(&out, "[first] "), want_first);
    let want_samples: Vec<String> = (0..10)
        .map(|k| {
            let seq = k * 1000;
            format!(r#"{{"seq":{seq},"user":"{}"}}"#, users[seq % 7])
        })
        .collect();
    assert_eq!(lines_with(&out, "[sample] "), want_samples);
    let d = out.stage("first-per-user");
    assert_eq!((d.received, d.sent, d.dropped), (10_000, 7, 9_993));
    let s = out.stage("one-in-1000");
    assert_eq!((s.received, s.sent, s.dropped), (10_000, 10, 9_990));
}

#[test]
fn rate_limit_delays_without_loss_and_sheds_per_key() {
    let out = run_shipped("rate_limit.toml");
    let paced: Vec<String> = (0..40).map(|i| format!(r#"{{"seq":{i}}}"#)).collect();
    assert_eq!(lines_with(&out, "[paced] "), paced, "all, in order");
    let limit = out.stage("limit");
    assert_eq!((limit.received, limit.sent, limit.dropped), (40, 40, 0));
    // Drop mode: each of 3 hosts gets its burst of 5 at least; how many more
    // depends on how long the run takes, so only bounds are checked.
    let shed = out.stage("per-host");
    assert_eq!(shed.received, 100_000);
    assert_eq!(shed.sent + shed.dropped, 100_000);
    assert!(shed.sent >= 15, "{shed:?}");
    assert!(shed.dropped > 0, "{shed:?}");
}

/// The known answer: 10000 elements, "k" cycling a..d, "v" = seq; every
/// 1000 elements one line per key with exact count/sum/min/max/avg.
#[test]
fn count_window_aggregates_are_exact() {
    let out = run_shipped("window.toml");
    let mut want = Vec::new();
    for w in 0..10u64 {
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            let vs: Vec<u64> = (w * 1000..(w + 1) * 1000)
                .filter(|s| s % 4 == i as u64)
                .collect();
            let sum: u64 = vs.iter().sum();
            let avg = sum as f64 / vs.len() as f64;
            want.push(format!(
                r#"{{"k":"{k}","start":{},"end":{},"count":{},"sum":{sum},"min":{},"max":{},"avg":{avg}}}"#,
                w * 1000,
                (w + 1) * 1000,
                vs.len(),
                vs[0],
                vs[vs.len() - 1],
            ));
        }
    }
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), want);
    let w = out.stage("per-1000");
    assert_eq!((w.received, w.sent), (10_000, 40));
}

/// A sliding time window of two panes puts every tick in exactly two
/// windows (the partial ones at both ends included), whatever the timing.
#[test]
fn time_window_over_ticker_counts_every_tick_twice() {
    let out = run_shipped("window_time.toml");
    let windows: Vec<serde_json::Value> = lines_with(&out, "[window] ")
        .into_iter()
        .map(json)
        .collect();
    assert!(windows.len() >= 2, "{}", out.dump());
    let count: u64 = windows.iter().map(|w| w["count"].as_u64().unwrap()).sum();
    let sum: u64 = windows.iter().map(|w| w["sum"].as_u64().unwrap()).sum();
    assert_eq!(count, 2 * 50, "{}", out.dump());
    assert_eq!(sum, 2 * (0..50).sum::<u64>());
    for w in &windows {
        let (s, e) = (w["start"].as_u64().unwrap(), w["end"].as_u64().unwrap());
        assert_eq!(e - s, 200);
        assert_eq!(s % 100, 0, "aligned on the slide");
    }
    assert_eq!(out.stage("ticks").sent, 50);
}

#[test]
fn routers_partition_spread_and_copy() {
    let out = run_shipped("routers.toml");
    let ev = |seq: u32, user: &str| format!(r#"{{"seq":{seq},"user":"{user}"}}"#);
    // ann -> p0 (broadcast to both), cat/joe -> p1 (round robin), lee -> p2.
    let ann = vec![ev(0, "ann"), ev(4, "ann"), ev(8, "ann")];
    assert_eq!(lines_with(&out, "[p0 one] "), ann);
    assert_eq!(lines_with(&out, "[p0 two] "), ann);
    assert_eq!(
        lines_with(&out, "[p1 left] "),
        [ev(1, "cat"), ev(5, "cat"), ev(9, "cat")]
    );
    assert_eq!(
        lines_with(&out, "[p1 right] "),
        [ev(3, "joe"), ev(7, "joe"), ev(11, "joe")]
    );
    assert_eq!(
        lines_with(&out, "[p2] "),
        [ev(2, "lee"), ev(6, "lee"), ev(10, "lee")]
    );
    out.assert_stderr_contains("12 events routed by 'by-user': 3 to p0, 6 to p1, 3 to p2")
        .assert_stderr_contains("3 events routed by 'copy': 3 to one, 3 to two")
        .assert_stderr_contains("6 events routed by 'spread': 3 to left, 3 to right");
}

#[test]
fn fan_in_merges_both_sources_in_order() {
    let out = run_shipped("fanin.toml");
    let lines: Vec<serde_json::Value> = out.stdout.lines().map(json).collect();
    assert_eq!(lines.len(), 10);
    for src in ["metrics", "logs"] {
        let seqs: Vec<u64> = lines
            .iter()
            .filter(|l| l["src"] == src)
            .map(|l| {
                assert_eq!(l["merged"], true);
                l["seq"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4], "{src} in order");
    }
    assert_eq!(out.stage("tag").received, 10);
}

#[test]
fn files_in_routed_to_files_out() {
    let dir = TempDir::new("files");
    let target = |name: &str| dir.path().join(name).display().to_string();
    let (m, l, r) = (
        target("metrics.ndjson"),
        target("logs.ndjson"),
        target("rejects.ndjson"),
    );
    // Stale content: the sinks truncate (append = false).
    std::fs::write(&m, "stale\n").unwrap();
    let path = adapt_config(
        &dir,
        "files.toml",
        &[
            ("/tmp/dataplane-metrics.ndjson", &m),
            ("/tmp/dataplane-logs.ndjson", &l),
            ("/tmp/dataplane-rejects.ndjson", &r),
        ],
    );
    let out = run_config(&path, &[]);
    out.assert_code(EXIT_OK).assert_no_panic();
    let read = |p: &str| std::fs::read_to_string(p).unwrap();
    assert_eq!(
        read(&m),
        "{\"type\":\"metric\",\"name\":\"cpu_usage\",\"value\":72.5}\n\
         {\"type\":\"metric\",\"name\":\"mem_used\",\"value\":4096}\n\
         {\"type\":\"metric\",\"name\":\"net_rx\",\"value\":1200}\n"
    );
    assert_eq!(
        read(&l),
        "{\"type\":\"log\",\"level\":\"info\",\"message\":\"user login successful\"}\n\
         {\"type\":\"log\",\"level\":\"warn\",\"message\":\"disk usage above 80%\"}\n"
    );
    let rejects = read(&r);
    assert_eq!(rejects.lines().count(), 1);
    let rec = json(rejects.trim_end());
    assert_eq!(rec["reason"], "invalid JSON");
    assert_eq!(rec["payload"], "this line is not JSON");
    assert_eq!(rec["content_type"], "text");
    out.assert_stderr_contains("5 events routed by 'route': 3 to metrics, 2 to logs, 1 to error")
        .assert_stderr_contains("dropped 1 x no route");
    // 7 non-empty lines read.
    assert_eq!(out.stage("read").sent, 7);
}

#[test]
fn stdin_lines_are_filtered() {
    let path = repo_root().join("configs/stdin.toml");
    let mut input = Vec::new();
    for i in 0..1000 {
        let level = ["error", "info", "warn", "debug"][i % 4];
        input.extend_from_slice(format!("{{\"level\":\"{level}\",\"n\":{i}}}\n").as_bytes());
        if i % 100 == 0 {
            input.extend_from_slice(b"\xff garbage\r\n\n");
        }
    }
    input.extend_from_slice(b"{\"level\":\"error\",\"n\":\"last, no newline\"}");
    let run = start_with_stdin(&[std::ffi::OsStr::new("--config"), path.as_os_str()], input);
    let out = run.wait_timeout(Duration::from_secs(60));
    out.assert_code(EXIT_OK).assert_no_panic();
    let mut want: Vec<String> = (0..1000)
        .filter(|i| i % 4 == 0 || i % 4 == 2)
        .map(|i| {
            let level = ["error", "info", "warn", "debug"][i % 4];
            format!("{{\"level\":\"{level}\",\"n\":{i}}}")
        })
        .collect();
    want.push("{\"level\":\"error\",\"n\":\"last, no newline\"}".to_string());
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), want);
    let f = out.stage("important");
    assert_eq!(f.received, 1000 + 10 + 1);
    out.assert_stderr_contains("dropped 10 x invalid JSON");
}

/// Bad data never stops a stage: invalid JSON, a missing field, a non-number
/// and an oversized payload through every JSON operator, each with its
/// error port wired to a JSON console that shows the reason.
#[test]
fn bad_data_is_rejected_with_reasons() {
    let dir = TempDir::new("bad-data");
    let config = r#"
[engine]
ring_capacity = 64
arena = { slots = 1024, slot_size = 256 }

[flow.bad.nodes.src]
component = "list"
payloads = [
    '{"k":"a","v":1}',
    'not json',
    '{"v":2}',
    '{"k":"b","v":"high"}',
    '{"k":"c","v":3}',
]

[flow.bad.nodes.big]
component = "generator"
count = 3
size = 300

[flow.bad.nodes.window]
component = "window"
size = 2
key = "k"
field = "v"
aggregates = ["sum"]

[flow.bad.nodes.hash]
component = "route-by-hash"
field = "k"
ports = ["only"]

[flow.bad.nodes.errors]
component = "console"
format = "json"

[flow.bad.nodes.out]
component = "console"
prefix = "[out] "

[flow.bad.nodes.sink-big]
component = "discard"

[[flow.bad.edges]]
from = { node = "src" }
to = { node = "hash" }

[[flow.bad.edges]]
from = { node = "hash", port = "only" }
to = { node = "window" }

[[flow.bad.edges]]
from = { node = "window" }
to = { node = "out" }

[[flow.bad.edges]]
from = { node = "hash", port = "error" }
to = { node = "errors" }

[[flow.bad.edges]]
from = { node = "window", port = "error" }
to = { node = "errors" }

[[flow.bad.edges]]
from = { node = "big" }
to = { node = "sink-big" }
"#;
    let out = run_config(&dir.write("bad.toml", config), &[]);
    out.assert_code(EXIT_OK).assert_no_panic();
    assert_eq!(
        lines_with(&out, "[out] "),
        [
            r#"{"k":"a","start":0,"end":2,"sum":1}"#,
            r#"{"k":"c","start":0,"end":2,"sum":3}"#
        ]
    );
    let mut reasons: Vec<(String, String)> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let r = json(l);
            (
                r["reason"].as_str().unwrap().to_string(),
                r["payload"].to_string(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("invalid JSON".to_string(), "\"not json\"".to_string()),
            ("missing field".to_string(), r#"{"v":2}"#.to_string()),
            (
                "not a number".to_string(),
                r#"{"k":"b","v":"high"}"#.to_string()
            ),
        ]
    );
    // Too large for a slot: the source counts it and goes on.
    let big = out.stage("big");
    assert_eq!((big.sent, big.dropped), (0, 3), "{big:?}");
    out.assert_stderr_contains("dropped 3 x payload too large");
}

/// Operator parameters are checked before anything runs: a wrong one is a
/// config error (exit 78) naming the node and what is wrong.
#[test]
fn operator_parameter_errors_are_config_errors() {
    let dir = TempDir::new("bad-params");
    let cases: &[(&str, &str, &str)] = &[
        (
            "filter",
            r#"where = { field = "a", gtt = 1 }"#,
            "unknown test 'gtt'",
        ),
        (
            "filter",
            r#"wher = { field = "a", gt = 1 }"#,
            "unknown field `wher`",
        ),
        (
            "window",
            r#"kind = "sliding""#,
            "give exactly one of size (elements) or size_ms (time)",
        ),
        (
            "window",
            "size = 10\naggregates = [\"sum\"]",
            "need a 'field'",
        ),
        ("rate-limit", "rate = 0", "rate must be a positive number"),
        (
            "rate-limit",
            "rate = 5\nmode = \"queue\"",
            "unknown variant `queue`",
        ),
        ("dedupe", "window_ms = 0", "must be positive"),
        ("sample", "every = 0", "every must be at least 1"),
        ("rename-field", r#"from = "a""#, "missing field `to`"),
        ("remove-field", "fields = []", "name 1 to 16 fields"),
    ];
    for (component, params, message) in cases {
        let config = format!(
            "[flow.f.nodes.src]\ncomponent = \"list\"\npayloads = ['{{}}']\n\n\
             [flow.f.nodes.op]\ncomponent = \"{component}\"\n{params}\n\n\
             [flow.f.nodes.out]\ncomponent = \"discard\"\n\n\
             [[flow.f.edges]]\nfrom = {{ node = \"src\" }}\nto = {{ node = \"op\" }}\n\n\
             [[flow.f.edges]]\nfrom = {{ node = \"op\" }}\nto = {{ node = \"out\" }}\n"
        );
        let out = run_config(&dir.write("bad.toml", &config), &[]);
        out.assert_code(dataplane_tests::EXIT_CONFIG)
            .assert_stderr_contains(&format!("node 'op' ({component})"))
            .assert_stderr_contains(message);
    }
    let sinks: &[(&str, &str, &str)] = &[
        (
            "file-out",
            r#"path = "/no/such/dir/out.txt""#,
            "directory /no/such/dir does not exist",
        ),
        (
            "console",
            "format = \"raw\"\nprefix = \"> \"",
            "prefix only applies",
        ),
        (
            "udp-out",
            r#"address = "not an address""#,
            "address 'not an address'",
        ),
        ("tcp-out", r#"address = "127.0.0.1""#, "address '127.0.0.1'"),
    ];
    let sources: &[(&str, &str, &str)] = &[
        (
            "udp-in",
            r#"address = "127.0.0.1:99999""#,
            "address '127.0.0.1:99999'",
        ),
        (
            "file-in",
            r#"path = "/no/such/file""#,
            "is not a readable file",
        ),
        ("ticker", "interval_ms = 0", "interval_ms must be positive"),
        (
            "generator",
            r#"template = "{rand:0}""#,
            "{rand:N} with N a positive integer",
        ),
    ];
    for (component, params, message) in sinks {
        let config = format!(
            "[flow.f.nodes.src]\ncomponent = \"list\"\npayloads = ['{{}}']\n\n\
             [flow.f.nodes.op]\ncomponent = \"{component}\"\n{params}\n\n\
             [[flow.f.edges]]\nfrom = {{ node = \"src\" }}\nto = {{ node = \"op\" }}\n"
        );
        let out = run_config(&dir.write("bad.toml", &config), &[]);
        out.assert_code(dataplane_tests::EXIT_CONFIG)
            .assert_stderr_contains(message);
    }
    for (component, params, message) in sources {
        let config = format!(
            "[flow.f.nodes.op]\ncomponent = \"{component}\"\n{params}\n\n\
             [flow.f.nodes.out]\ncomponent = \"discard\"\n\n\
             [[flow.f.edges]]\nfrom = {{ node = \"op\" }}\nto = {{ node = \"out\" }}\n"
        );
        let out = run_config(&dir.write("bad.toml", &config), &[]);
        out.assert_code(dataplane_tests::EXIT_CONFIG)
            .assert_stderr_contains(message);
    }
}

/// `follow = true`: lines appended while the pipeline runs are read too,
/// and the source finishes once the file has been quiet for the idle
/// timeout.
#[test]
fn followed_file_picks_up_appended_lines() {
    use std::io::Write;
    let dir = TempDir::new("follow");
    let input = dir.path().join("events.ndjson");
    std::fs::copy(repo_root().join("configs/data/events.ndjson"), &input).unwrap();
    let target = |name: &str| dir.path().join(name).display().to_string();
    let (m, l, r) = (target("m.ndjson"), target("l.ndjson"), target("r.ndjson"));
    let path = adapt_config(
        &dir,
        "files.toml",
        &[
            ("configs/data/events.ndjson", &input.display().to_string()),
            ("follow = false", "follow = true\nidle_timeout_ms = 1500"),
            ("/tmp/dataplane-metrics.ndjson", &m),
            ("/tmp/dataplane-logs.ndjson", &l),
            ("/tmp/dataplane-rejects.ndjson", &r),
        ],
    );
    let mut run = dataplane_tests::start(&[std::ffi::OsStr::new("--config"), path.as_os_str()]);
    run.wait_for_stderr("[dataplane] running", dataplane_tests::DEFAULT_TIMEOUT);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        // Written in two pieces: a line is taken only once it is complete.
        f.write_all(br#"{"type":"metric","name":"late","#).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        f.write_all(format!("\"value\":{i}}}\n").as_bytes())
            .unwrap();
        f.flush().unwrap();
    }
    let out = run.wait();
    out.assert_code(EXIT_OK).assert_no_panic();
    let metrics = std::fs::read_to_string(&m).unwrap();
    let late: Vec<&str> = metrics.lines().filter(|l| l.contains("late")).collect();
    let want: Vec<String> = (0..5)
        .map(|i| format!("{{\"type\":\"metric\",\"name\":\"late\",\"value\":{i}}}"))
        .collect();
    assert_eq!(late, want, "{}", out.dump());
    assert_eq!(metrics.lines().count(), 3 + 5);
    assert_eq!(out.stage("read").sent, 7 + 5);
}
