//! `dataplane top`: a terminal view of a running pipeline, refreshed every
//! interval from its control endpoint's `GET /stats`.
//!
//! A poller thread fetches and parses `/stats` ([`http`], [`model::Stats`])
//! and hands each outcome to the main thread over a channel, so a slow or
//! dead endpoint never delays a key press. The main thread owns the
//! terminal: it folds outcomes and keys into an [`app::App`] (rates from
//! two successive snapshots, the sort order, the connection state) and
//! draws it with [`view::render`]. The terminal is put back (raw mode off,
//! main screen, cursor shown) on every way out: return, error and panic.

pub mod app;
pub mod http;
pub mod model;
pub mod view;

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event};
use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use app::{Action, App, Fetched};
use http::Client;

/// `dataplane top`'s options (also its command-line arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The pipeline's control endpoint, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub control: String,
    /// Send `Authorization: Bearer <token>` with the token read from PATH (trimmed).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Milliseconds between refreshes.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(50..=3_600_000))]
    pub interval_ms: u64,
}

/// Runs the view until the user quits (`q`, Esc, Ctrl-C) or a SIGINT,
/// SIGTERM or SIGHUP arrives. Fails when the token file cannot be read or
/// standard output is not a terminal.
pub fn run(opts: &Options) -> io::Result<()> {
    let token = match &opts.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    if !io::stdout().is_terminal() {
        return Err(io::Error::other(
            "dataplane top draws on a terminal; standard output is not one",
        ));
    }
    let interval = Duration::from_millis(opts.interval_ms);
    // A poll may take at most the interval (and never less than a second,
    // so a loaded machine is not called dead).
    let client = Client::new(&opts.control, token, interval.max(Duration::from_secs(1)));
    let mut app = App::new(client.authority(), interval);
    let polls = spawn_poller(client, interval)?;

    // In raw mode Ctrl-C is a key, not a signal; a signal from elsewhere
    // (kill, a closing terminal) must still leave through the guard.
    let signalled = Arc::new(AtomicBool::new(false));
    let mut handlers = Vec::new();
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        handlers.push(signal_hook::flag::register(sig, Arc::clone(&signalled))?);
    }
    let result = draw_until_quit(&mut app, &polls, &signalled);
    for id in handlers {
        signal_hook::low_level::unregister(id);
    }
    result
}

/// Owns the terminal from raw mode on; every return restores it.
fn draw_until_quit(
    app: &mut App,
    polls: &mpsc::Receiver<(Fetched, Instant)>,
    signalled: &AtomicBool,
) -> io::Result<()> {
    let _restore = TerminalGuard::enter()?;
    let mut term = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    term.clear()?;
    let mut dirty = true;
    while !signalled.load(Ordering::Relaxed) {
        while let Ok((fetched, at)) = polls.try_recv() {
            app.on_fetch(fetched, at);
            dirty = true;
        }
        if dirty {
            term.draw(|f| view::render(f, app))?;
            dirty = false;
        }
        // Short enough that a new snapshot shows promptly, long enough to
        // cost nothing.
        if event::poll(Duration::from_millis(50))? {
            match event::read()? {
                Event::Key(key) => match app.on_key(key) {
                    Action::Quit => return Ok(()),
                    Action::Redraw => dirty = true,
                    Action::None => {}
                },
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
    Ok(())
}

/// The token in `path`, without surrounding whitespace (a trailing newline).
fn read_token(path: &std::path::Path) -> io::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read token file {}: {e}", path.display()),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("token file {} is empty", path.display()),
        ));
    }
    Ok(token.to_string())
}

/// Polls `/stats` every `interval` on its own thread until the receiver
/// goes away.
fn spawn_poller(
    client: Client,
    interval: Duration,
) -> io::Result<mpsc::Receiver<(Fetched, Instant)>> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("top-poller".into())
        .spawn(move || {
            let mut next = Instant::now();
            loop {
                let fetched = fetch(&client);
                if tx.send((fetched, Instant::now())).is_err() {
                    return;
                }
                next += interval;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else {
                    // Behind (a slow endpoint): do not try to catch up.
                    next = now;
                }
            }
        })?;
    Ok(rx)
}

/// One poll: GET and parse.
pub fn fetch(client: &Client) -> Fetched {
    match client.get("/stats") {
        Ok(body) => match serde_json::from_slice(&body) {
            Ok(stats) => Fetched::Stats(stats),
            Err(e) => Fetched::Failed {
                message: format!("bad /stats body: {e}"),
                refused: false,
            },
        },
        Err(e) => Fetched::Failed {
            message: e.to_string(),
            refused: e.is_refused(),
        },
    }
}

/// Raw mode and the alternate screen while alive; the normal terminal back
/// when dropped or when anything panics.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            hook(info);
        }));
        terminal::enable_raw_mode()?;
        // From here on, an error still restores (the guard exists).
        let guard = TerminalGuard;
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Best effort: each step is tried even when an earlier one failed.
fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let mut out = io::stdout();
    let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn reads_and_trims_the_token() {
        let dir = std::env::temp_dir().join(format!("dataplane-top-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "  s3cret\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_token(&path)
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        let missing = dir.join("missing");
        let e = read_token(&missing).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("cannot read token file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fetch_parses_stats_and_reports_bad_bodies() {
        for (body, ok) in [(&b"{\"uptime_ms\": 7}"[..], true), (b"[1, 2", false)] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let server = thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut b = [0u8; 4096];
                let _ = s.read(&mut b).unwrap();
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(body).unwrap();
            });
            let got = fetch(&Client::new(&addr, None, Duration::from_secs(5)));
            server.join().unwrap();
            match got {
                Fetched::Stats(s) => assert!(ok && s.uptime_ms == 7),
                Fetched::Failed { message, refused } => {
                    assert!(!ok && !refused, "{message}");
                    assert!(message.starts_with("bad /stats body"), "{message}");
                }
            }
        }
    }
}
