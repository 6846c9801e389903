//! Helpers for the end-to-end tests in `tests/tests/`: they run the real
//! `dataplane` binary, as a user would, and look at its exit status, stdout
//! and stderr.
//!
//! The binary lives in another package of the workspace, so Cargo gives no
//! `CARGO_BIN_EXE_dataplane` here. [`binary`] finds it in the target
//! directory the test itself was built into (`target/<profile>/`), and
//! builds it with the same profile when it is missing. Set `DATAPLANE_BIN`
//! to test some other build.
//!
//! Every run has a deadline ([`DEFAULT_TIMEOUT`]): a hung pipeline is
//! killed and the test fails with whatever it printed. The deadline is a
//! guard against livelock, not a measurement; no test asserts on time.

pub mod http;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a run may take before it is killed and the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Exit status: the pipeline ran and every stage succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit status: the config file could not be read (EX_NOINPUT).
pub const EXIT_NOINPUT: i32 = 66;
/// Exit status: a stage failed, a worker panicked or slots leaked (EX_SOFTWARE).
pub const EXIT_SOFTWARE: i32 = 70;
/// Exit status: elements were left undelivered (EX_IOERR).
pub const EXIT_IOERR: i32 = 74;
/// Exit status: the config is invalid (EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;
/// Exit status: a second signal stopped the run before the drain finished.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The workspace root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The `dataplane` binary to test, built on first use if it is missing.
///
/// A test executable lives in `target/<profile>/deps/`; the binary is
/// `target/<profile>/dataplane`. When it is absent it is built with
/// `cargo build -p dataplane-engine --bin dataplane`, adding `--release` when
/// the tests themselves were built in release (the profile directory is
/// named `release`).
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("DATAPLANE_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps/");
        let path = profile_dir.join(format!("dataplane{}", std::env::consts::EXE_SUFFIX));
        if !path.is_file() {
            build(profile_dir);
            assert!(
                path.is_file(),
                "cargo built dataplane, yet {} does not exist",
                path.display()
            );
        }
        path
    })
}

/// Builds the binary into `profile_dir` (`<target dir>/<profile>`).
fn build(profile_dir: &Path) {
    let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root())
        .args([
            "build",
            "-p",
            "dataplane-engine",
            "--bin",
            "dataplane",
            "--target-dir",
        ])
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .expect("cargo can be started to build dataplane");
    assert!(status.success(), "building dataplane failed: {status}");
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Output {
    /// How the process ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to stderr (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// The exit code, or `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics, showing both streams, unless the exit code is `expected`.
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(expected),
            "unexpected exit status {}\n{}",
            self.status,
            self.dump()
        );
        self
    }

    /// Panics, showing both streams, unless stderr contains `needle`.
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.dump()
        );
        self
    }

    /// Panics if either stream shows a Rust panic or a backtrace hint.
    pub fn assert_no_panic(&self) -> &Self {
        for text in [&self.stdout, &self.stderr] {
            for bad in ["panicked", "RUST_BACKTRACE"] {
                assert!(
                    !text.contains(bad),
                    "output mentions {bad:?}\n{}",
                    self.dump()
                );
            }
        }
        self
    }

    /// Stdout lines that start with `prefix`, in the order printed.
    pub fn stdout_lines_with_prefix(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }

    /// The per-stage table of the summary on stderr.
    pub fn stage_table(&self) -> Vec<StageRow> {
        parse_stage_table(&self.stderr)
    }

    /// The table row of stage `name`; panics if it has none.
    pub fn stage(&self, name: &str) -> StageRow {
        self.stage_table()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row for stage {name:?} in the summary\n{}", self.dump()))
    }

    /// Both streams, labelled, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "--- status: {}\n--- stdout:\n{}--- stderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// One row of the per-stage table in the run summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageRow {
    /// Stage (node) name.
    pub name: String,
    /// Component it was built from.
    pub component: String,
    /// `source`, `router`, `processor` or `sink`.
    pub role: String,
    /// Core id it ran on (`None` when the table shows `-`).
    pub core: Option<usize>,
    /// Worker index.
    pub worker: usize,
    /// Elements received (`in`).
    pub received: u64,
    /// Elements sent (`out`).
    pub sent: u64,
    /// Elements dropped.
    pub dropped: u64,
    /// Elements a sink could not deliver.
    pub failed: u64,
}

/// Parses the rows after the `stage  component  role ...` header, up to
/// the `latency` header or the end. Indented detail lines are skipped.
pub fn parse_stage_table(stderr: &str) -> Vec<StageRow> {
    let mut lines = stderr.lines().skip_while(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        !words.starts_with(&["stage", "component", "role", "core"])
    });
    assert!(
        lines.next().is_some(),
        "no stage table in stderr:\n{stderr}"
    );
    let mut rows = Vec::new();
    for line in lines {
        if line.starts_with("latency") || line.trim().is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with("edge ") || line.starts_with("DRAIN") {
            continue; // "dropped N x reason" or "FAILED: ..." under a row; edges
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 9, "unexpected stage table row: {line:?}");
        let num = |s: &str| -> u64 {
            s.parse()
                .unwrap_or_else(|_| panic!("not a number: {s:?} in {line:?}"))
        };
        rows.push(StageRow {
            name: f[0].to_string(),
            component: f[1].to_string(),
            role: f[2].to_string(),
            core: f[3].parse().ok(),
            worker: num(f[4]) as usize,
            received: num(f[5]),
            sent: num(f[6]),
            dropped: num(f[7]),
            failed: num(f[8]),
        });
    }
    rows
}

/// A running `dataplane` process whose output is being collected.
pub struct Running {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// Starts the binary with `args`, run from the workspace root.
pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Running {
    spawn(args, None, &[])
}

/// Runs the binary with `args` and the environment variables `env` set,
/// to completion (with the [`DEFAULT_TIMEOUT`]).
pub fn run_with_env<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    spawn(args, None, env).wait()
}

/// Starts the binary; with `input`, a thread writes it to stdin and closes
/// it; `env`: variables to set.
fn spawn<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    input: Option<Vec<u8>>,
    env: &[(&str, &str)],
) -> Running {
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(repo_root())
        .env_remove("DATAPLANE_LOG")
        .env_remove("DATAPLANE_NO_AVX2")
        .envs(env.iter().copied())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let mut out = child.stdout.take().expect("stdout is piped");
    let stdout = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    // Stderr is shared while the process runs, so a test can wait for a line.
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let mut err = child.stderr.take().expect("stderr is piped");
    let sink = Arc::clone(&stderr);
    let stderr_reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = err.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .expect("stderr buffer")
                .extend_from_slice(&chunk[..n]);
        }
    });
    Running {
        child,
        stdout: Some(stdout),
        stderr,
        stderr_reader: Some(stderr_reader),
    }
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stderr written so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr buffer")).into_owned()
    }

    /// Waits until stderr contains `needle`; panics if the process exits or
    /// `timeout` passes first.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr_so_far().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "dataplane exited ({status}) before printing {needle:?}; stderr:\n{}",
                    self.stderr_so_far()
                );
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "dataplane did not print {needle:?} within {timeout:?}; stderr:\n{}",
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal (a name `kill` knows, e.g. `INT`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("`kill` can be run");
        assert!(
            status.success(),
            "kill -{name} {} failed: {status}",
            self.pid()
        );
    }

    /// Waits for the process to exit, killing it and failing the test if it
    /// takes longer than `timeout`.
    pub fn wait_timeout(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let out = self.collect_streams();
                    panic!(
                        "dataplane did not exit within {timeout:?} and was killed\n--- stdout:\n{}--- stderr:\n{}",
                        out.0, out.1
                    );
                }
                Err(e) => panic!("cannot wait for dataplane: {e}"),
            }
        };
        let (stdout, stderr) = self.collect_streams();
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Waits with the [`DEFAULT_TIMEOUT`].
    pub fn wait(self) -> Output {
        self.wait_timeout(DEFAULT_TIMEOUT)
    }

    fn collect_streams(&mut self) -> (String, String) {
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        let stderr = self.stderr.lock().expect("stderr buffer").clone();
        (
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        )
    }
}

/// Runs the binary with `args` to completion (with the [`DEFAULT_TIMEOUT`]).
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    start(args).wait()
}

/// Runs the binary on the config file at `path`, with any `extra` arguments.
pub fn run_config(path: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec!["--config".as_ref(), path.as_os_str()];
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    run(&args)
}

/// A directory under [`std::env::temp_dir`], removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl Drop for Running {
    /// A test that fails before waiting must not leave the process running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl TempDir {
    /// Creates a fresh directory whose name contains `label`.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("dataplane-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The core ids the engine may use on this machine, as it reports them.
///
/// Asks the binary itself: a config pinning a node to an absurd core is
/// rejected with `usable cores: 0, 1, ...`, the engine's own view of the
/// process's CPU affinity.
pub fn usable_cores() -> Vec<usize> {
    static CORES: OnceLock<Vec<usize>> = OnceLock::new();
    CORES
        .get_or_init(|| {
            let dir = TempDir::new("cores");
            let path = dir.write(
                "probe.toml",
                r#"
[flow.probe.nodes.src]
component = "list"
payloads = ["x"]
core = 1000000

[flow.probe.nodes.out]
component = "discard"

[[flow.probe.edges]]
from = { node = "src" }
to = { node = "out" }
"#,
            );
            let out = run_config(&path, &[]);
            out.assert_code(EXIT_CONFIG);
            let list = out
                .stderr
                .split("usable cores: ")
                .nth(1)
                .and_then(|rest| rest.split(')').next())
                .unwrap_or_else(|| {
                    panic!("no usable core list in the probe's error\n{}", out.dump())
                });
            list.split(", ")
                .map(|c| c.trim().parse().expect("a core id"))
                .collect()
        })
        .clone()
}

/// A loopback port that was free a moment ago (bound to port 0, then
/// released): good enough for tests that start a server on it right away.
pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port on 127.0.0.1")
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free TCP port on 127.0.0.1")
            .port()
    }
}

/// A shipped config (`configs/<name>`) with each `(from, to)` replacement
/// applied, written into `dir`; panics if a `from` does not occur, so a test
/// notices when the config it adapts changes.
pub fn adapt_config(dir: &TempDir, name: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let path = repo_root().join("configs").join(name);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "{} does not contain {from:?}",
            path.display()
        );
        text = text.replace(from, to);
    }
    dir.write(name, &text)
}

/// Starts the binary with `args` and `input` on its stdin (written by a
/// thread, then closed).
pub fn start_with_stdin<S: AsRef<std::ffi::OsStr>>(args: &[S], input: Vec<u8>) -> Running {
    spawn(args, Some(input), &[])
}

/// A Python 3 helper process (test clients and servers for the network
/// operators: a real peer, not the engine talking to itself).
pub struct Python {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
}

impl Python {
    /// Runs `script` with `python3 -c`, passing `args`; its stdout is
    /// collected (see [`Python::wait`]), its stderr inherited.
    pub fn start(script: &str, args: &[&str]) -> Python {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3: {e}"));
        let mut out = child.stdout.take().expect("stdout is piped");
        let stdout = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        Python {
            child,
            stdout: Some(stdout),
        }
    }

    /// Waits (at most `timeout`) for the script to exit successfully and
    /// returns its stdout.
    pub fn wait(mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    let out = self
                        .stdout
                        .take()
                        .and_then(|h| h.join().ok())
                        .unwrap_or_default();
                    let out = String::from_utf8_lossy(&out).into_owned();
                    assert!(
                        status.success(),
                        "python3 failed ({status}); stdout:\n{out}"
                    );
                    return out;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    panic!("python3 did not finish within {timeout:?}");
                }
                Err(e) => panic!("cannot wait for python3: {e}"),
            }
        }
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
