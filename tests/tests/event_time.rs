//! Event time end to end: out-of-order input gives per-window counts and
//! sums equal to a reference computed here; late elements are counted and
//! reach the `late` port; two sources at different rates merge on the
//! least watermark; an idle source does not stall the windows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dataplane_tests::{run_config, start, TempDir, EXIT_OK};

const BASE_MS: u64 = 1_700_000_000_000;

/// (key, window start) -> (count, sum).
type Windows = BTreeMap<(String, u64), (u64, u64)>;

/// Readings `i` in `range`, `step_ms` apart, jittered back by up to 1.5 s
/// (within the 2 s bound); every 997th is a minute behind (late).
fn readings(
    range: std::ops::Range<u64>,
    step_ms: u64,
    sensors: &str,
    with_late: bool,
) -> (String, Windows, u64) {
    let mut text = String::new();
    let mut reference = Windows::new();
    let mut late = 0;
    for i in range {
        let jitter = (i * 7919) % 1500;
        let far_behind = with_late && i > 1000 && i % 997 == 500;
        let ts = BASE_MS + i * step_ms - if far_behind { 60_000 } else { jitter };
        let key = format!("{sensors}{}", i % 3);
        let value = i % 7;
        let _ = writeln!(text, r#"{{"ts":{ts},"sensor":"{key}","value":{value}}}"#);
        if far_behind {
            late += 1;
        } else {
            let w = reference.entry((key, ts / 10_000 * 10_000)).or_default();
            w.0 += 1;
            w.1 += value;
        }
    }
    (text, reference, late)
}

fn parse(out: &str) -> Windows {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON result");
            let end = v["end"].as_u64().unwrap();
            let start = v["start"].as_u64().unwrap();
            assert_eq!(end - start, 10_000, "{l}");
            (
                (v["sensor"].as_str().unwrap().to_string(), start),
                (
                    v["count"].as_u64().unwrap(),
                    v["sum"].as_f64().unwrap() as u64,
                ),
            )
        })
        .collect()
}

const WINDOW: &str = r#"
[flow.f.nodes.win]
component = "window"
time = "event"
size_ms = 10000
key = "sensor"
field = "value"
aggregates = ["count", "sum"]

[flow.f.nodes.out]
component = "file-out"
path = "OUT"

[flow.f.nodes.late]
component = "file-out"
path = "LATE"

[[flow.f.edges]]
from = { node = "win" }
to = { node = "out" }

[[flow.f.edges]]
from = { node = "win", port = "late" }
to = { node = "late" }
"#;

fn source(name: &str, path: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[flow.f.nodes.{name}]
component = "file-in"
path = "{}"
event_time = {{ field = "ts", unit = "ms" }}
watermark = {{ max_out_of_orderness_ms = 2000 {extra} }}
{}
[[flow.f.edges]]
from = {{ node = "{name}" }}
to = {{ node = "win" }}
"#,
        path.display(),
        if extra.contains("idle") {
            "follow = true"
        } else {
            ""
        }
    )
}

fn pipeline(dir: &TempDir, sources: &str) -> (PathBuf, PathBuf, PathBuf) {
    let out = dir.path().join("out.jsonl");
    let late = dir.path().join("late.jsonl");
    let text = format!(
        "{sources}{}",
        WINDOW
            .replace("OUT", &out.display().to_string())
            .replace("LATE", &late.display().to_string())
    );
    (dir.write("pipeline.toml", &text), out, late)
}

#[test]
fn out_of_order_input_matches_the_reference_and_late_elements_are_counted() {
    let dir = TempDir::new("event-time");
    let (text, reference, late) = readings(0..50_000, 10, "s", true);
    let input = dir.write("in.jsonl", &text);
    let (cfg, out, late_out) = pipeline(&dir, &source("src", &input, ""));
    let run = run_config(&cfg, &[]);
    run.assert_code(EXIT_OK).assert_no_panic();
    let got = parse(&std::fs::read_to_string(out).unwrap());
    assert!(
        got == reference,
        "{} windows, {} expected",
        got.len(),
        reference.len()
    );
    let late_lines = std::fs::read_to_string(late_out).unwrap();
    assert_eq!(late_lines.lines().count() as u64, late);
    assert!(late > 0);
    assert!(
        run.stderr.contains(&format!("{late} x late elements")),
        "{}",
        run.stderr
    );
}

#[test]
fn two_sources_at_different_rates_merge_on_the_least_watermark() {
    let dir = TempDir::new("event-time-fanin");
    // One source covers 500 s in 50 000 readings, the other the same time
    // span in 5 000: neither may close windows the other still fills. (No
    // late readings here: which are late depends on how far one source's
    // reading runs ahead of the other's.)
    let (a, ref_a, late_a) = readings(0..50_000, 10, "a", false);
    let (b, ref_b, late_b) = readings(0..5_000, 100, "b", false);
    let (pa, pb) = (dir.write("a.jsonl", &a), dir.write("b.jsonl", &b));
    let sources = format!("{}{}", source("fast", &pa, ""), source("slow", &pb, ""));
    let (cfg, out, late_out) = pipeline(&dir, &sources);
    run_config(&cfg, &[]).assert_code(EXIT_OK).assert_no_panic();
    let mut reference = ref_a;
    reference.extend(ref_b);
    let got = parse(&std::fs::read_to_string(out).unwrap());
    let wrong: Vec<_> = reference
        .iter()
        .filter(|(k, v)| got.get(k) != Some(v))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty() && got.len() == reference.len(),
        "first windows that differ from the reference: {wrong:?}"
    );
    let late = std::fs::read_to_string(late_out).unwrap().lines().count() as u64;
    assert_eq!(late, late_a + late_b);
}

#[test]
fn an_idle_source_does_not_stall_the_windows() {
    let dir = TempDir::new("event-time-idle");
    let (text, reference, _) = readings(0..20_000, 10, "s", false);
    let busy = dir.write("busy.jsonl", &text);
    // Followed and empty: it never ends and never sends data.
    let quiet = dir.write("quiet.jsonl", "");
    let sources = format!(
        "{}{}",
        source("busy", &busy, ""),
        source("quiet", &quiet, ", idle_timeout_ms = 200")
    );
    let (cfg, out, _) = pipeline(&dir, &sources);
    let running = start(&["--config".as_ref(), cfg.as_os_str()]);
    // Every window the busy source's watermark has passed closes while the
    // quiet one idles (all but the last few, which close at the end).
    let closed_before_end = reference.len() - 3 * 3;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while Instant::now() < deadline {
        got = std::fs::read_to_string(&out)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if got >= closed_before_end {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    running.signal("TERM");
    let done = running.wait_timeout(Duration::from_secs(30));
    assert!(
        got >= closed_before_end,
        "only {got} of {closed_before_end} windows closed while a source idled; stderr:\n{}",
        done.stderr
    );
    let got = parse(&std::fs::read_to_string(&out).unwrap());
    assert!(
        got == reference,
        "{} windows, {} expected",
        got.len(),
        reference.len()
    );
}

#[test]
fn an_element_without_a_readable_timestamp_goes_to_the_sources_error_port() {
    let dir = TempDir::new("event-time-error");
    let input = dir.write(
        "in.jsonl",
        "{\"ts\":1000,\"sensor\":\"a\",\"value\":1}\n{\"sensor\":\"a\",\"value\":2}\n{\"ts\":\"soon\",\"sensor\":\"a\",\"value\":3}\n{\"ts\":2000,\"sensor\":\"a\",\"value\":4}\n",
    );
    let errors = dir.path().join("errors.jsonl");
    let sources = format!(
        "{}\n[flow.f.nodes.bad]\ncomponent = \"file-out\"\npath = \"{}\"\nformat = \"json\"\n\n[[flow.f.edges]]\nfrom = {{ node = \"src\", port = \"error\" }}\nto = {{ node = \"bad\" }}\n",
        source("src", &input, ""),
        errors.display()
    );
    let (cfg, out, _) = pipeline(&dir, &sources);
    run_config(&cfg, &[]).assert_code(EXIT_OK).assert_no_panic();
    let bad = std::fs::read_to_string(&errors).unwrap();
    assert_eq!(bad.lines().count(), 2, "{bad}");
    assert!(bad.contains("no event time"), "{bad}");
    let got = parse(&std::fs::read_to_string(out).unwrap());
    assert_eq!(got.get(&("a".to_string(), 0)), Some(&(2, 5)));
}

#[test]
fn event_time_config_errors_are_clear() {
    let dir = TempDir::new("event-time-config");
    let input = dir.write("in.jsonl", "{\"ts\":1}\n");
    // A window in event time behind a source that declares none.
    let plain = format!(
        "[flow.f.nodes.src]\ncomponent = \"file-in\"\npath = \"{}\"\n\n[[flow.f.edges]]\nfrom = {{ node = \"src\" }}\nto = {{ node = \"win\" }}\n",
        input.display()
    );
    let (cfg, _, _) = pipeline(&dir, &plain);
    run_config(&cfg, &[])
        .assert_code(dataplane_tests::EXIT_CONFIG)
        .assert_stderr_contains("declare no event_time");
    // A watermark without event_time, and a bad unit.
    let bad = format!(
        "[flow.f.nodes.src]\ncomponent = \"file-in\"\npath = \"{}\"\nwatermark = {{ max_out_of_orderness_ms = 5 }}\n\n[flow.f.nodes.src2]\ncomponent = \"file-in\"\npath = \"{}\"\nevent_time = {{ field = \"ts\", unit = \"minutes\" }}\n\n[[flow.f.edges]]\nfrom = {{ node = \"src\" }}\nto = {{ node = \"win\" }}\n\n[[flow.f.edges]]\nfrom = {{ node = \"src2\" }}\nto = {{ node = \"win\" }}\n",
        input.display(),
        input.display()
    );
    let (cfg, _, _) = pipeline(&dir, &bad);
    run_config(&cfg, &[])
        .assert_code(dataplane_tests::EXIT_CONFIG)
        .assert_stderr_contains("watermark needs event_time")
        .assert_stderr_contains("unknown variant `minutes`");
}
