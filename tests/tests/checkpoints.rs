//! Checkpoints end to end: a `file-in -> dedupe -> window (event time) ->
//! file-out` pipeline killed with SIGKILL at random moments and started
//! again produces a file byte-identical to an uninterrupted run; a
//! checkpoint of another pipeline shape is refused unless `--fresh`;
//! `dataplane checkpoints` lists what the directory holds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dataplane_tests::{run, run_config, start, TempDir, EXIT_CONFIG, EXIT_OK};

const ELEMENTS: u64 = 1_000_000;
const BASE_MS: u64 = 1_700_000_000_000;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `ELEMENTS` readings, out of order within 500 ms, every 50th a repeat of
/// the one before (dedupe drops it), and now and then one ten minutes
/// behind (late, whatever the batching: far past any open window).
fn input(dir: &TempDir) -> PathBuf {
    let mut rng = Rng(7);
    let mut text = String::with_capacity(64 * ELEMENTS as usize);
    for i in 0..ELEMENTS {
        let mut ts = BASE_MS + i - rng.next() % 500;
        if i > 20_000 && i % 9973 == 77 {
            ts = BASE_MS + i - 600_000;
        }
        let id = if i % 50 == 0 && i > 0 { i - 1 } else { i };
        let _ = writeln!(
            text,
            r#"{{"id":{id},"ts":{ts},"sensor":"s{}","value":{}}}"#,
            i % 5,
            i % 11
        );
    }
    dir.write("readings.jsonl", &text)
}

fn config(dir: &TempDir, input: &Path, out: &str, state: &str) -> PathBuf {
    dir.write(
        &format!("{out}.toml"),
        &format!(
            r#"
[engine]
checkpoint = {{ dir = "{state}", interval_ms = 100 }}

[flow.f.nodes.src]
component = "file-in"
path = "{input}"
event_time = {{ field = "ts", unit = "ms" }}
watermark = {{ max_out_of_orderness_ms = 1000 }}

[flow.f.nodes.dedupe]
component = "dedupe"
field = "id"
window_ms = 3600000
max_keys = 2000000

[flow.f.nodes.win]
component = "window"
time = "event"
size_ms = 1000
key = "sensor"
field = "value"
aggregates = ["count", "sum"]

[flow.f.nodes.out]
component = "file-out"
path = "{out}"

[[flow.f.edges]]
from = {{ node = "src" }}
to = {{ node = "dedupe" }}

[[flow.f.edges]]
from = {{ node = "dedupe" }}
to = {{ node = "win" }}

[[flow.f.edges]]
from = {{ node = "win" }}
to = {{ node = "out" }}
"#,
            input = input.display(),
            out = dir.path().join(out).display(),
            state = dir.path().join(state).display(),
        ),
    )
}

#[test]
fn killed_at_random_moments_and_resumed_the_output_is_byte_identical() {
    let dir = TempDir::new("crash");
    let input = input(&dir);

    let reference_cfg = config(&dir, &input, "reference.out", "reference-state");
    let t0 = Instant::now();
    run_config(&reference_cfg, &["--fresh"]).assert_code(EXIT_OK);
    let full = t0.elapsed();
    let reference = std::fs::read(dir.path().join("reference.out")).unwrap();
    assert!(
        reference.len() > 100_000,
        "the reference run wrote {} bytes",
        reference.len()
    );

    let mut rng = Rng(2026);
    let mut killed_mid_run = 0;
    for trial in 0..10 {
        let out = format!("trial-{trial}.out");
        let state = format!("trial-{trial}-state");
        let cfg = config(&dir, &input, &out, &state);
        // Kill somewhere in the run (how long a run takes here was just
        // measured; the moments are spread over it).
        let at = full.mul_f64((rng.next() % 1000) as f64 / 1000.0);
        let running = start(&[
            "--config".as_ref(),
            cfg.as_os_str(),
            "--fresh".as_ref(),
            "--quiet".as_ref(),
        ]);
        std::thread::sleep(at);
        running.signal("KILL");
        let killed = running.wait_timeout(Duration::from_secs(30));
        if killed.code().is_none() {
            killed_mid_run += 1;
        }
        // Started again: resumes from the last checkpoint (or from the
        // beginning when none completed), and runs to the end.
        let resumed = run_config(&cfg, &["--quiet"]);
        resumed.assert_code(EXIT_OK);
        let got = std::fs::read(dir.path().join(&out)).unwrap();
        assert!(
            got == reference,
            "trial {trial} (killed after {at:?}): {} bytes, the uninterrupted run {} bytes; stderr:\n{}",
            got.len(),
            reference.len(),
            resumed.stderr
        );
    }
    assert!(
        killed_mid_run >= 5,
        "only {killed_mid_run} of 10 kills landed while the pipeline ran"
    );
}

#[test]
fn a_checkpoint_of_another_shape_is_refused_unless_fresh() {
    let dir = TempDir::new("shape");
    let data = dir.write(
        "in.jsonl",
        "{\"ts\":1,\"id\":1,\"sensor\":\"a\",\"value\":1}\n",
    );
    let cfg = config(&dir, &data, "a.out", "state");
    run_config(&cfg, &[]).assert_code(EXIT_OK);
    // Same directory, another pipeline: a node renamed.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("flow.f.nodes.out]", "flow.f.nodes.sink]")
        .replace("node = \"out\"", "node = \"sink\"");
    let changed = dir.write("changed.toml", &text);
    run_config(&changed, &[])
        .assert_code(EXIT_CONFIG)
        .assert_stderr_contains("another shape")
        .assert_stderr_contains("--fresh");
    run_config(&changed, &["--fresh"]).assert_code(EXIT_OK);
}

#[test]
fn checkpoints_lists_the_directory() {
    let dir = TempDir::new("list");
    let data = dir.write(
        "in.jsonl",
        "{\"ts\":1,\"id\":1,\"sensor\":\"a\",\"value\":1}\n",
    );
    let cfg = config(&dir, &data, "a.out", "state");
    let none = run(&["checkpoints".as_ref(), "--config".as_ref(), cfg.as_os_str()]);
    none.assert_code(EXIT_OK);
    assert!(none.stdout.contains("no checkpoints"), "{}", none.stdout);
    run_config(&cfg, &[]).assert_code(EXIT_OK);
    let listed = run(&["checkpoints".as_ref(), "--config".as_ref(), cfg.as_os_str()]);
    listed.assert_code(EXIT_OK);
    assert!(listed.stdout.contains("checkpoint 1 "), "{}", listed.stdout);
    for node in ["src", "dedupe", "win", "out"] {
        assert!(listed.stdout.contains(node), "{}", listed.stdout);
    }
}

#[test]
fn with_checkpoints_a_restarted_stage_replays_and_every_element_gets_through_once() {
    let dir = TempDir::new("replay");
    let mut text = String::new();
    for i in 0..400_000u64 {
        let _ = writeln!(
            text,
            r#"{{"seq":{i},"pad":"................................"}}"#
        );
    }
    let input = dir.write("in.jsonl", &text);
    let out = dir.path().join("out.jsonl");
    let cfg = dir.write(
        "replay.toml",
        &format!(
            r#"
[engine]
checkpoint = {{ dir = "{state}", interval_ms = 10 }}

[flow.f.nodes.src]
component = "file-in"
path = "{input}"

[flow.f.nodes.replay-crash]
component = "chaos"
panic_every = 100000
restart = {{ policy = "on-failure", backoff_ms = 1, max_backoff_ms = 10, max_restarts = 100 }}

[flow.f.nodes.out]
component = "file-out"
path = "{out}"
append = false

[[flow.f.edges]]
from = {{ node = "src" }}
to = {{ node = "replay-crash" }}

[[flow.f.edges]]
from = {{ node = "replay-crash" }}
to = {{ node = "out" }}
"#,
            state = dir.path().join("state").display(),
            input = input.display(),
            out = out.display(),
        ),
    );
    let run = run_config(&cfg, &["--fresh"]);
    run.assert_code(EXIT_OK).assert_no_panic();
    assert!(
        run.stderr
            .contains("replays the pipeline from its last checkpoint"),
        "{}",
        run.stderr
    );
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(
        got == text,
        "{} lines out of {}",
        got.lines().count(),
        text.lines().count()
    );
}

#[test]
fn checkpoints_refuse_edges_that_drop() {
    let dir = TempDir::new("ckpt-drop");
    let data = dir.write(
        "in.jsonl",
        "{\"ts\":1,\"id\":1,\"sensor\":\"a\",\"value\":1}\n",
    );
    let cfg = config(&dir, &data, "a.out", "state");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "to = { node = \"dedupe\" }",
        "to = { node = \"dedupe\" }\nwhen_full = \"drop_oldest\"",
        1,
    );
    let dropping = dir.write("dropping.toml", &text);
    run_config(&dropping, &[])
        .assert_code(EXIT_CONFIG)
        .assert_stderr_contains("checkpoints need every edge to block");
}
