//! `dataplane top` in a real terminal: the binary runs inside a detached
//! tmux session of 80x24 against a fake control endpoint started here (a
//! `TcpListener` thread answering `GET /stats` with counters that grow by
//! 5000 per request while the uptime grows by one second, so every rate
//! is exactly 5000/s whatever the timing). The screen is read with
//! `tmux capture-pane`, keys are sent with `tmux send-keys`.
//!
//! Skipped, with a note, where tmux is not installed. Every wait is
//! bounded; no test asserts on time.
#![cfg(unix)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dataplane_tests::{binary, TempDir};

/// How long to wait for the screen to show something: generous, since a
/// loaded CI machine may be slow to start tmux and the binary.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(20);

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

macro_rules! require_tmux {
    () => {
        if !tmux_available() {
            eprintln!("note: tmux is not installed; skipping this `dataplane top` test");
            return;
        }
    };
}

/// A fake `/stats` endpoint on 127.0.0.1.
struct Endpoint {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The `n`th answer (0-based): a source and a sink, 5000 more elements each
/// time, one second more uptime, and a long-named processor in between.
fn stats_body(n: u64) -> String {
    let c = 5000 * n;
    format!(
        r#"{{"uptime_ms": {up}, "arena": {{"slots": 16384, "used": 120}}, "nodes": [
 {{"name": "gen", "component": "generator", "role": "source", "worker": 0, "received": 0, "sent": {c},
   "dropped": 0, "failed": 0, "queue_depth": 0, "queue_capacity": 0,
   "latency_p50_ns": null, "latency_p99_ns": null, "subscribers": 0, "state": "running"}},
 {{"name": "a_processor_with_a_name_longer_than_the_column", "component": "forward", "role": "processor",
   "worker": 1, "received": {c}, "sent": {c}, "dropped": 0, "failed": 0, "queue_depth": 10,
   "queue_capacity": 1024, "latency_p50_ns": null, "latency_p99_ns": null, "subscribers": 0,
   "state": "running"}},
 {{"name": "sink", "component": "discard", "role": "sink", "worker": 2, "received": {c}, "sent": {c},
   "dropped": 0, "failed": 0, "queue_depth": 3, "queue_capacity": 1024,
   "latency_p50_ns": 1500, "latency_p99_ns": 12300, "subscribers": 0, "state": "running"}}],
 "edges": [{{"from": "gen", "port": "output", "to": "sink", "depth": 3, "capacity": 1024,
   "dropped": 0, "when_full": "block"}}]}}"#,
        up = 1000 * (n + 1),
    )
}

impl Endpoint {
    /// Serves until dropped, or until it has answered `limit` requests,
    /// when it closes its port (the pipeline ended). With `token`, a
    /// request without `Authorization: Bearer <token>` gets a 401.
    fn start(limit: Option<u64>, token: Option<&'static str>) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served = AtomicU64::new(0);
        let thread = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if limit.is_some_and(|l| served.load(Ordering::Relaxed) >= l) {
                        return; // drops the listener: connections are refused
                    }
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let n = served.load(Ordering::Relaxed);
                            if answer(conn, n, token) {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Endpoint {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Answers one request; whether it was a `/stats` that got its numbers.
fn answer(mut conn: TcpStream, n: u64, token: Option<&str>) -> bool {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(k) => req.extend_from_slice(&buf[..k]),
        }
    }
    let req = String::from_utf8_lossy(&req);
    let authorized =
        token.is_none_or(|t| req.contains(&format!("\r\nAuthorization: Bearer {t}\r\n")));
    let (status, body, counted) = if !req.starts_with("GET /stats HTTP/1.1\r\n") {
        ("404 Not Found", "no such path".to_string(), false)
    } else if !authorized {
        (
            "401 Unauthorized",
            "missing or wrong token".to_string(),
            false,
        )
    } else {
        ("200 OK", stats_body(n), true)
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    counted
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `dataplane top` running in a detached tmux session on its own server
/// (a socket in a temporary directory), killed when dropped.
struct Screen {
    socket: PathBuf,
    status: PathBuf,
    pid: PathBuf,
    _dir: TempDir,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Screen {
    /// Starts `dataplane top ARGS` in an 80x24 pane. When it exits, the
    /// shell writes its exit status to a file and keeps the pane open, so
    /// the screen it left behind can still be read.
    fn start(label: &str, args: &[&str]) -> Screen {
        let dir = TempDir::new(label);
        let socket = dir.path().join("tmux.sock");
        let status = dir.path().join("status");
        let pid = dir.path().join("pid");
        // An inner shell writes its pid and becomes `dataplane top` (exec),
        // so the test knows top's pid; the outer one records the status.
        let inner = format!(
            "echo $$ > {}; exec \"$0\" top \"$@\"",
            quote(&pid.to_string_lossy())
        );
        let mut cmd = format!(
            "sh -c {} {}",
            quote(&inner),
            quote(&binary().to_string_lossy())
        );
        for a in args {
            cmd.push(' ');
            cmd.push_str(&quote(a));
        }
        cmd.push_str(&format!(
            "; echo $? > {}; sleep 60",
            quote(&status.to_string_lossy())
        ));
        let session = format!("top-{label}-{}", std::process::id());
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "80",
                "-y",
                "24",
            ])
            .args(["-s", &session, &cmd])
            .env_remove("TMUX")
            .output()
            .expect("tmux can be started");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Screen {
            socket,
            status,
            pid,
            _dir: dir,
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane's text, one line per row.
    fn capture(&self) -> String {
        self.tmux(&["capture-pane", "-p"])
    }

    fn send(&self, key: &str) {
        self.tmux(&["send-keys", key]);
    }

    /// Polls the screen until `ok` holds; panics with the last screen after
    /// `SCREEN_TIMEOUT`.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.capture();
            if ok(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the screen never showed {what}; last screen:\n{screen}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exit status of `dataplane top`, once it has exited.
    fn wait_exit(&self) -> i32 {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            if let Ok(s) = std::fs::read_to_string(&self.status) {
                if let Ok(code) = s.trim().parse() {
                    return code;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "dataplane top did not exit; last screen:\n{}",
                    self.capture()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether process `pid` still runs (a zombie does not: whoever adopted it
/// may never reap it).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.starts_with(" Z")),
        Err(_) if std::path::Path::new("/proc/self").exists() => false,
        Err(_) => Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success()),
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// The screen line of the row for `name`, if any.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.starts_with(name))
}

#[test]
fn shows_nodes_and_rates_sends_the_token_and_quits_on_q() {
    require_tmux!();
    let endpoint = Endpoint::start(None, Some("s3cret"));
    let dir = TempDir::new("top-token");
    let token = dir.write("token", "s3cret\n");
    let screen = Screen::start(
        "rates",
        &[
            "--control",
            &endpoint.addr,
            "--token-file",
            &token.to_string_lossy(),
            "--interval-ms",
            "200",
        ],
    );
    let shown = screen.wait_for("the sink's rate", |s| {
        row(s, "sink").is_some_and(|r| r.contains("5.00k"))
    });
    assert!(shown.contains("dataplane top"), "{shown}");
    assert!(shown.contains("connected"), "{shown}");
    let gen = row(&shown, "gen ").unwrap_or_else(|| panic!("a row for gen:\n{shown}"));
    assert!(gen.contains("src"), "{gen}");
    assert!(
        shown.contains("a_processor_with_a_"),
        "the long name, cut:\n{shown}"
    );
    for line in shown.lines() {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
    assert!(
        !shown.contains("a_processor_with_a_name_longer_than_the_column"),
        "names are cut to fit 80 columns:\n{shown}"
    );

    screen.send("s");
    screen.wait_for("the new sort column", |s| s.contains("sorted by OUT/s"));

    screen.send("q");
    assert_eq!(screen.wait_exit(), 0, "q quits with status 0");
    let after = screen.capture();
    assert!(
        !after.contains("IN/s"),
        "the main screen is back after quitting:\n{after}"
    );
}

#[test]
fn closing_the_terminal_ends_top() {
    require_tmux!();
    let endpoint = Endpoint::start(None, None);
    let screen = Screen::start(
        "hangup",
        &["--control", &endpoint.addr, "--interval-ms", "200"],
    );
    screen.wait_for("the sink's row", |s| row(s, "sink").is_some());
    let pid: u32 = std::fs::read_to_string(&screen.pid)
        .expect("the pid file is written before top starts")
        .trim()
        .parse()
        .expect("a pid");
    assert!(running(pid));
    // The terminal goes away under it, as when a window is closed: the
    // shell that owns it dies (without a word to its children), then the
    // tmux server, having no pane left, closes the terminal.
    let shell = screen.tmux(&["display-message", "-p", "#{pane_pid}"]);
    let killed = Command::new("kill")
        .args(["-KILL", shell.trim()])
        .status()
        .expect("kill runs");
    assert!(killed.success(), "kill -KILL {shell}");
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    while running(pid) {
        assert!(
            Instant::now() < deadline,
            "dataplane top (pid {pid}) still runs after its terminal closed"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_wrong_token_is_shown_as_401() {
    require_tmux!();
    let endpoint = Endpoint::start(None, Some("s3cret"));
    let screen = Screen::start(
        "401",
        &["--control", &endpoint.addr, "--interval-ms", "200"],
    );
    screen.wait_for("the 401", |s| s.contains("HTTP 401 Unauthorized"));
    screen.send("Escape");
    assert_eq!(screen.wait_exit(), 0, "Esc quits with status 0");
}

#[test]
fn an_unreachable_endpoint_is_shown_and_retried() {
    require_tmux!();
    // A port nobody listens on (bound, then released).
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let screen = Screen::start("unreachable", &["--control", &addr, "--interval-ms", "200"]);
    let shown = screen.wait_for("the disconnected status", |s| {
        s.contains("disconnected: connection refused") && s.contains("retrying")
    });
    assert!(shown.contains(&addr), "{shown}");
    screen.send("C-c");
    assert_eq!(screen.wait_exit(), 0, "Ctrl-C quits with status 0");
}

#[test]
fn an_ended_pipeline_keeps_its_last_numbers() {
    require_tmux!();
    // Three answers, then the port closes as a finished pipeline's would.
    let endpoint = Endpoint::start(Some(3), None);
    let screen = Screen::start(
        "ended",
        &["--control", &endpoint.addr, "--interval-ms", "200"],
    );
    let shown = screen.wait_for("the ended status", |s| s.contains("pipeline ended"));
    let sink = row(&shown, "sink").unwrap_or_else(|| panic!("the sink's row is kept:\n{shown}"));
    assert!(sink.contains("5.00k"), "its last rate is kept:\n{shown}");
    screen.send("q");
    assert_eq!(screen.wait_exit(), 0);
}

/// The real thing: `configs/live.toml` running with its control endpoint,
/// watched by `top` in tmux.
#[test]
fn watches_a_running_pipeline() {
    require_tmux!();
    let dir = TempDir::new("top-live");
    let port = dataplane_tests::free_port(false);
    let text = std::fs::read_to_string(dataplane_tests::repo_root().join("configs/live.toml"))
        .expect("configs/live.toml");
    let config = dir.write(
        "live.toml",
        &text.replace("127.0.0.1:9464", &format!("127.0.0.1:{port}")),
    );
    let mut run = dataplane_tests::start(&[std::ffi::OsStr::new("--config"), config.as_os_str()]);
    run.wait_for_stderr("[dataplane] control endpoint on", SCREEN_TIMEOUT);
    let addr = format!("127.0.0.1:{port}");
    let screen = Screen::start("live", &["--control", &addr, "--interval-ms", "300"]);
    // The generator runs at 2000/s: its row shows a rate in thousands, and
    // the sink standing in for storage a p99 once the endpoint has copied
    // its histogram (every second).
    let shown = screen.wait_for("the pipeline's rates and a sink p99", |s| {
        let rate = |name: &str| {
            row(s, name).is_some_and(|r| {
                r.split_whitespace()
                    .any(|w| w.ends_with('k') && w[..w.len() - 1].parse::<f64>().is_ok())
            })
        };
        rate("events")
            && rate("metrics-only")
            && row(s, "store").is_some_and(|r| r.contains("us") || r.contains("ms"))
    });
    for name in ["events", "metrics-only", "store", "watchers"] {
        assert!(row(&shown, name).is_some(), "no row for {name}:\n{shown}");
    }
    for line in shown.lines() {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
    screen.send("q");
    assert_eq!(screen.wait_exit(), 0, "q quits with status 0");
    run.signal("TERM");
    let out = run.wait();
    out.assert_no_panic();
    assert_eq!(out.code(), Some(0), "{}", out.dump());
}
