//! The control endpoint of a running pipeline: Prometheus metrics checked by
//! `promtool`, subscribers with predicates on a `mux`, taps, tokens and bad
//! requests. Loopback only; every pipeline is stopped by the test (SIGTERM)
//! or ends by itself, and every read has a deadline.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use dataplane_tests::http::{self, encode, sample, Stream};
use dataplane_tests::{free_port, start, Running, TempDir, DEFAULT_TIMEOUT, EXIT_OK};

/// Starts `config` with the endpoint on a free port; returns the run and
/// the endpoint's address once it listens.
fn start_with_control(dir: &TempDir, config: &str) -> (Running, SocketAddr) {
    let port = free_port(false);
    let path = dir.write(
        "pipeline.toml",
        &config.replace("CONTROL_PORT", &port.to_string()),
    );
    let mut run = start(&[
        std::ffi::OsStr::new("--config"),
        path.as_os_str(),
        std::ffi::OsStr::new("--control"),
        std::ffi::OsStr::new(&format!("127.0.0.1:{port}")),
    ]);
    run.wait_for_stderr("[dataplane] control endpoint on", DEFAULT_TIMEOUT);
    (run, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Polls `/metrics` until `f` holds (bounded: a stuck endpoint fails the
/// test, it does not hang it).
fn wait_metrics(addr: SocketAddr, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = http::get(addr, "/metrics", None).body;
        if f(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "waited 30 s for {what}; last scrape:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn promtool() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    })
}

/// `promtool check metrics` on a scrape. CI installs promtool
/// (`scripts/test.sh`); elsewhere its absence is reported, not failed.
fn check_with_promtool(metrics: &str) {
    let Some(tool) = promtool() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI (scripts/test.sh installs it)"
        );
        eprintln!("note: promtool not installed; skipping its check");
        return;
    };
    let mut child = std::process::Command::new(tool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped `configs/live.toml`, its endpoint moved to a free port.
fn start_live(dir: &TempDir) -> (Running, SocketAddr) {
    let text =
        std::fs::read_to_string(dataplane_tests::repo_root().join("configs/live.toml")).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:9464\""));
    start_with_control(
        dir,
        &text.replace("127.0.0.1:9464", "127.0.0.1:CONTROL_PORT"),
    )
}

#[test]
fn metrics_are_valid_prometheus_and_move() {
    let dir = TempDir::new("control-metrics");
    let (run, addr) = start_live(&dir);
    let health = http::get(addr, "/health", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let first = http::get(addr, "/metrics", None);
    assert_eq!(first.status, 200);
    assert!(
        first.head.contains("text/plain; version=0.0.4"),
        "{}",
        first.head
    );
    let events_out = |m: &str| {
        sample(
            m,
            "dataplane_node_elements_total",
            r#"node="events",port="output",outcome="out""#,
        )
    };
    let before = events_out(&first.body).expect("the generator's out counter");
    // The sinks' latency is copied at the endpoint's next refresh (1 s).
    let second = wait_metrics(addr, "the counters to move and a latency summary", |m| {
        events_out(m) > Some(before)
            && sample(m, "dataplane_sink_latency_seconds_count", r#"node="store""#)
                .is_some_and(|c| c > 0.0)
    });
    check_with_promtool(&second);
    for (name, labels) in [
        (
            "dataplane_node_elements_total",
            r#"node="metrics-only",port="input",outcome="in""#,
        ),
        (
            "dataplane_node_elements_total",
            r#"node="metrics-only",port="",outcome="dropped""#,
        ),
        (
            "dataplane_node_elements_total",
            r#"node="watchers",port="input",outcome="in""#,
        ),
        (
            "dataplane_node_elements_total",
            r#"node="store",port="",outcome="failed""#,
        ),
        (
            "dataplane_edge_queue_depth",
            r#"from="events",port="output",to="metrics-only",when_full="block""#,
        ),
        (
            "dataplane_edge_dropped_total",
            r#"from="metrics-only",port="output",to="watchers",when_full="drop_oldest""#,
        ),
        (
            "dataplane_sink_latency_seconds",
            r#"node="store",quantile="0.99""#,
        ),
        ("dataplane_arena_slots", r#"state="free""#),
        ("dataplane_subscribers", r#"node="watchers""#),
        (
            "dataplane_node_running",
            r#"node="events",component="generator",role="source""#,
        ),
        ("dataplane_node_restarts_total", r#"node="events""#),
        ("dataplane_up", ""),
    ] {
        assert!(
            sample(&second, name, labels).is_some(),
            "no {name}{{{labels}}} in:\n{second}"
        );
    }
    let capacity = r#"from="metrics-only",port="output",to="watchers",when_full="drop_oldest""#;
    assert_eq!(
        sample(&second, "dataplane_edge_queue_capacity", capacity),
        Some(256.0)
    );
    let stats: serde_json::Value =
        serde_json::from_str(&http::get(addr, "/stats", None).body).unwrap();
    assert_eq!(stats["nodes"][0]["name"], "events");
    assert!(stats["nodes"][0]["sent"].as_u64().unwrap() > 0);
    assert_eq!(stats["running"], true);
    run.signal("TERM");
    let out = run.wait();
    out.assert_no_panic();
    out.assert_code(EXIT_OK);
}

/// The known sequence the subscribers test sends: `{"seq":i,"k":i%100,..}`.
fn element(i: usize) -> String {
    format!(
        "{{\"seq\":{i},\"k\":{},\"pad\":\"{}\"}}",
        i % 100,
        "x".repeat(120)
    )
}

/// Subscriber `s`'s predicate and the reference it must agree with.
fn predicate(s: usize) -> (String, Box<dyn Fn(usize) -> bool + Send>) {
    if s < 90 {
        (
            format!(r#"{{"field":"k","eq":{s}}}"#),
            Box::new(move |i| i % 100 == s),
        )
    } else {
        let below = s - 90;
        (
            format!(r#"{{"any":[{{"field":"k","eq":{s}}},{{"field":"k","lt":{below}}}]}}"#),
            Box::new(move |i| i % 100 == s || i % 100 < below),
        )
    }
}

#[test]
fn a_hundred_subscribers_get_exactly_their_elements_and_a_stuck_one_hurts_nobody() {
    const N: usize = 20_000;
    const SUBSCRIBERS: usize = 100;
    let dir = TempDir::new("control-subscribers");
    let input = free_port(false);
    let config = format!(
        r#"
[engine]
# Spare slots are what a mux's subscribers may hold while the endpoint
# catches up with a burst: room for the whole sequence.
arena = {{ slots = 65536 }}

[control]
listen = "127.0.0.1:CONTROL_PORT"
# Room for everything a reading subscriber expects (2000 at most), however
# slowly a loaded machine schedules its thread; the stuck one gets 20000.
subscriber_queue = 4096

[flow.mux.nodes.in]
component = "tcp-in"
address = "127.0.0.1:{input}"

[flow.mux.nodes.mux]
component = "mux"

[[flow.mux.edges]]
from = {{ node = "in" }}
to = {{ node = "mux" }}
"#
    );
    let (run, addr) = start_with_control(&dir, &config);

    // A client that asks and never reads, with a tiny receive buffer so its
    // queue overflows for sure.
    let stuck = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.connect(&addr.into()).unwrap();
        let mut s: TcpStream = s.into();
        s.write_all(b"GET /subscribe?node=mux HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        s
    };
    let readers: Vec<_> = (0..SUBSCRIBERS)
        .map(|s| {
            let (text, reference) = predicate(s);
            let mut stream = Stream::open(
                addr,
                &format!("/subscribe?node=mux&where={}", encode(&text)),
                None,
            );
            std::thread::spawn(move || {
                let expected: Vec<usize> = (0..N).filter(|&i| reference(i)).collect();
                let mut got = Vec::with_capacity(expected.len());
                while got.len() < expected.len() {
                    let Some(line) = stream.line() else { break };
                    let v: serde_json::Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("subscriber {s}: not JSON ({e}): {line}"));
                    got.push(v["seq"].as_u64().unwrap() as usize);
                }
                (s, expected, got)
            })
        })
        .collect();
    wait_metrics(addr, "101 subscribers", |m| {
        sample(m, "dataplane_subscribers", r#"node="mux""#) == Some((SUBSCRIBERS + 1) as f64)
    });

    let mut feed = TcpStream::connect(("127.0.0.1", input)).unwrap();
    let mut text = String::new();
    for i in 0..N {
        text.push_str(&element(i));
        text.push('\n');
    }
    feed.write_all(text.as_bytes()).unwrap();
    drop(feed);

    for r in readers {
        let (s, expected, got) = r.join().expect("a subscriber thread");
        assert_eq!(got.len(), expected.len(), "subscriber {s}: count");
        assert!(
            got == expected,
            "subscriber {s}: not exactly its elements in order"
        );
    }
    // The 100 left after reading; the stuck one is still attached and lost
    // elements (counted); nobody else lost any.
    let m = wait_metrics(addr, "the 100 to be removed", |m| {
        sample(m, "dataplane_subscribers", r#"node="mux""#) == Some(1.0)
    });
    assert_eq!(
        sample(
            &m,
            "dataplane_node_elements_total",
            r#"node="mux",port="input",outcome="in""#
        ),
        Some(N as f64)
    );
    let dropped = sample(
        &m,
        "dataplane_subscriber_elements_total",
        r#"node="mux",outcome="dropped""#,
    )
    .unwrap();
    assert!(dropped > 0.0, "the stuck subscriber lost nothing?\n{m}");
    assert!(
        dropped <= N as f64,
        "only the stuck subscriber may lose elements:\n{m}"
    );
    drop(stuck);
    wait_metrics(addr, "the stuck subscriber to be removed", |m| {
        sample(m, "dataplane_subscribers", r#"node="mux""#) == Some(0.0)
    });
    run.signal("TERM");
    let out = run.wait();
    out.assert_no_panic();
    // Exit 0: in particular no arena slot leaked.
    out.assert_code(EXIT_OK);
}

const TAPPED: &str = r#"
[control]
listen = "127.0.0.1:CONTROL_PORT"
max_subscribers = 2
token_file = "TOKEN_FILE"

[flow.t.nodes.gen]
component = "generator"
template = '{"seq":{seq},"k":"{pick:a|b|c}"}'
rate = 20000

[flow.t.nodes.keep]
component = "filter"
where = { field = "k", ne = "c" }

[flow.t.nodes.out]
component = "discard"

[[flow.t.edges]]
from = { node = "gen" }
to = { node = "keep" }

[[flow.t.edges]]
from = { node = "keep" }
to = { node = "out" }
"#;

fn tap(
    addr: SocketAddr,
    args: &[&str],
    token_file: Option<&std::path::Path>,
) -> std::process::Output {
    let mut cmd = std::process::Command::new(dataplane_tests::binary());
    cmd.arg("tap")
        .arg("--control")
        .arg(addr.to_string())
        .args(args);
    if let Some(f) = token_file {
        cmd.arg("--token-file").arg(f);
    }
    cmd.output().expect("run dataplane tap")
}

#[test]
fn tap_prints_a_port_and_the_endpoint_refuses_what_it_must() {
    let dir = TempDir::new("control-tap");
    let token = dir.write("token", "s3cret-token\n");
    let (run, addr) = start_with_control(
        &dir,
        &TAPPED.replace("TOKEN_FILE", &token.display().to_string()),
    );

    // `tap` with the token: the generator's b elements, consecutive.
    let out = tap(
        addr,
        &[
            "gen",
            "--limit",
            "5",
            "--where",
            r#"{"field":"k","eq":"b"}"#,
        ],
        Some(&token),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seqs: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["k"], "b", "{l}");
            v["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), 5);
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 3),
        "b is every third element: {seqs:?}"
    );
    // NODE.PORT form.
    let out = tap(addr, &["keep.output", "--limit", "2"], Some(&token));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);

    // Refusals, each with its reason and exit status.
    let out = tap(addr, &["gen", "--limit", "1"], None);
    assert_eq!(
        out.status.code(),
        Some(77),
        "no token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tap(addr, &["nope"], Some(&token));
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node 'nope' (nodes: gen, keep, out)"));
    let out = tap(addr, &["keep.error"], Some(&token));
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not connected"));
    let out = tap(addr, &["gen", "--where", "{"], Some(&token));
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad predicate"));
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port(false)));
    let out = tap(closed, &["gen"], None);
    assert_eq!(out.status.code(), Some(69));

    // Open paths need no token; /tap does.
    assert_eq!(http::get(addr, "/health", None).status, 200);
    assert_eq!(http::get(addr, "/metrics", None).status, 200);
    assert_eq!(http::get(addr, "/tap?node=gen", None).status, 401);
    assert_eq!(http::get(addr, "/tap?node=gen", Some("wrong")).status, 401);

    // Two streams at most (max_subscribers = 2); the third gets 503, and a
    // garbage request or an oversized head disturbs neither stream.
    let tok = Some("s3cret-token");
    let mut a = Stream::open(addr, "/tap?node=gen", tok);
    let mut b = Stream::open(addr, "/tap?node=keep", tok);
    assert_eq!(http::get(addr, "/tap?node=gen", tok).status, 503);
    assert_eq!(http::raw(addr, b"\x16\x03\x01 garbage\r\n\r\n").status, 400);
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    huge.resize(64 * 1024, b'a');
    assert_eq!(http::raw(addr, &huge).status, 431);
    assert_eq!(
        http::raw(addr, b"POST /metrics HTTP/1.1\r\n\r\n").status,
        405
    );
    assert_eq!(http::get(addr, "/nope", None).status, 404);
    for s in [&mut a, &mut b] {
        for _ in 0..3 {
            let line = s.line().expect("the stream goes on");
            serde_json::from_str::<serde_json::Value>(&line).unwrap();
        }
    }
    drop((a, b));
    wait_metrics(addr, "the taps to be removed", |m| {
        sample(m, "dataplane_subscribers", r#"node="gen""#) == Some(0.0)
            && sample(m, "dataplane_subscribers", r#"node="keep""#) == Some(0.0)
    });
    run.signal("TERM");
    let out = run.wait();
    out.assert_no_panic();
    out.assert_code(EXIT_OK);
}

#[test]
fn a_subscriber_gets_the_end_of_a_finite_stream_then_its_end() {
    let dir = TempDir::new("control-finite");
    let config = r#"
[flow.f.nodes.src]
component = "tcp-in"
address = "127.0.0.1:INPUT_PORT"
max_elements = 300

[flow.f.nodes.mux]
component = "mux"

[[flow.f.edges]]
from = { node = "src" }
to = { node = "mux" }
"#;
    let input = free_port(false);
    let (run, addr) = start_with_control(&dir, &config.replace("INPUT_PORT", &input.to_string()));
    let mut s = Stream::open(addr, "/subscribe?node=mux", None);
    wait_metrics(addr, "the subscriber", |m| {
        sample(m, "dataplane_subscribers", r#"node="mux""#) == Some(1.0)
    });
    let mut feed = TcpStream::connect(("127.0.0.1", input)).unwrap();
    for i in 0..300 {
        // Not JSON: each arrives as a JSON string.
        writeln!(feed, "line {i}").unwrap();
    }
    drop(feed);
    let mut got = Vec::new();
    while let Some(line) = s.line() {
        got.push(line);
    }
    let expected: Vec<String> = (0..300).map(|i| format!("\"line {i}\"")).collect();
    assert_eq!(got, expected);
    let out = run.wait();
    out.assert_no_panic();
    out.assert_code(EXIT_OK);
}
