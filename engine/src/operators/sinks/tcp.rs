//! `tcp-out`: writes each element as a line to a TCP server, reconnecting
//! when the connection is lost.
//!
//! The worker never blocks on the network: writes are non-blocking, and a
//! connection attempt runs on a short-lived helper thread whose result is
//! picked up by a later batch. Failed attempts back off exponentially from
//! `reconnect_ms` to 30 s; a connection that breaks is retried after
//! `reconnect_ms`. While disconnected, lines are kept in a
//! bounded buffer; beyond it they count as failed (not delivered: the run
//! exits 74). At the end of the stream the sink waits at most `linger` to
//! deliver what is left; lines still buffered then count as failed too.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

use crate::clock::now_ns;
use crate::operators::format::{Format, LineFormat};
use crate::operators::params::params;
use crate::operators::util::resolve;
use crate::stage::{Element, Reason, Sink, StageError, StageInfo};

const MS: u64 = 1_000_000;
/// Longest wait between connection attempts: the backoff doubles from
/// `reconnect_ms` up to this.
const MAX_BACKOFF_NS: u64 = 30_000 * MS;
/// Longest a single connection attempt may take (on the helper thread).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

enum Link {
    /// Not connected; the next attempt is due at this time.
    Down { retry_at: u64 },
    /// An attempt is running on a helper thread.
    Connecting(Receiver<std::io::Result<TcpStream>>),
    /// Connected.
    Up(TcpStream),
}

/// Sends elements as lines (raw by default) to a TCP server.
pub struct TcpSink {
    target: SocketAddr,
    format: LineFormat,
    reconnect_ns: u64,
    /// The wait before the next attempt: `reconnect_ns`, doubled after each
    /// failed attempt up to [`MAX_BACKOFF_NS`], reset once connected.
    backoff_ns: u64,
    max_buffer: usize,
    linger_ns: u64,
    link: Link,
    /// Rendered lines not yet written.
    pending: Vec<u8>,
    /// Bytes at the front of `pending` already written.
    written: usize,
    /// The last write ended inside a line (a lost connection must not
    /// splice half a line onto the next one).
    mid_line: bool,
    connections: u64,
    name: String,
}

impl TcpSink {
    /// Sends to `address` in `format`.
    pub fn new(address: &str, format: LineFormat) -> Result<TcpSink, String> {
        Ok(TcpSink {
            target: resolve(address)?,
            format,
            reconnect_ns: 500 * MS,
            backoff_ns: 500 * MS,
            max_buffer: 1 << 20,
            linger_ns: 2_000 * MS,
            link: Link::Down { retry_at: 0 },
            pending: Vec::with_capacity(64 * 1024),
            written: 0,
            mid_line: false,
            connections: 0,
            name: String::new(),
        })
    }

    /// Waits `ns` between connection attempts.
    pub fn reconnect(mut self, ns: u64) -> TcpSink {
        self.reconnect_ns = ns;
        self.backoff_ns = ns;
        self
    }

    /// When the next attempt is due after one failed now; doubles the wait.
    fn next_attempt(&mut self, now: u64) -> u64 {
        let due = now + self.backoff_ns;
        self.backoff_ns = self
            .backoff_ns
            .saturating_mul(2)
            .clamp(1, MAX_BACKOFF_NS.max(self.reconnect_ns));
        due
    }

    /// Buffers at most `bytes` of undelivered lines.
    pub fn max_buffer(mut self, bytes: usize) -> TcpSink {
        self.max_buffer = bytes;
        self
    }

    /// At the end of the stream, tries to deliver for at most `ns`.
    pub fn linger(mut self, ns: u64) -> TcpSink {
        self.linger_ns = ns;
        self
    }

    fn lost(&mut self, why: &str) {
        log::warn!("{}: connection to {} lost: {why}", self.name, self.target);
        // Drop the rest of a half-written line: the server saw its start.
        if self.mid_line {
            let rest = &self.pending[self.written..];
            let cut = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |p| p + 1);
            self.written += cut;
            self.mid_line = false;
        }
        // A connection that was up and broke: try again soon.
        self.backoff_ns = self.reconnect_ns;
        self.link = Link::Down {
            retry_at: now_ns() + self.reconnect_ns,
        };
    }

    /// Moves the connection along and writes what it can; never blocks.
    fn drive(&mut self) {
        let now = now_ns();
        match &mut self.link {
            Link::Down { retry_at } if now >= *retry_at => {
                let (tx, rx) = mpsc::channel();
                let target = self.target;
                let spawned = std::thread::Builder::new()
                    .name("tcp-out-connect".to_string())
                    .spawn(move || {
                        let _ = tx.send(TcpStream::connect_timeout(&target, CONNECT_TIMEOUT));
                    });
                self.link = match spawned {
                    Ok(_) => Link::Connecting(rx),
                    Err(e) => {
                        log::warn!("{}: cannot start a connection attempt: {e}", self.name);
                        Link::Down {
                            retry_at: self.next_attempt(now),
                        }
                    }
                };
            }
            Link::Down { .. } => {}
            Link::Connecting(rx) => match rx.try_recv() {
                Err(TryRecvError::Empty) => {}
                Ok(Ok(stream)) => match stream.set_nonblocking(true) {
                    Ok(()) => {
                        let _ = stream.set_nodelay(true);
                        self.connections += 1;
                        self.backoff_ns = self.reconnect_ns;
                        log::info!("{}: connected to {}", self.name, self.target);
                        self.link = Link::Up(stream);
                    }
                    Err(e) => self.lost(&e.to_string()),
                },
                Ok(Err(e)) => {
                    log::debug!("{}: cannot connect to {}: {e}", self.name, self.target);
                    self.link = Link::Down {
                        retry_at: self.next_attempt(now),
                    };
                }
                Err(TryRecvError::Disconnected) => self.lost("connection attempt vanished"),
            },
            Link::Up(_) => {}
        }
        self.write_some();
    }

    fn write_some(&mut self) {
        let Link::Up(stream) = &mut self.link else {
            return;
        };
        let mut failure = None;
        while self.written < self.pending.len() {
            match stream.write(&self.pending[self.written..]) {
                Ok(0) => {
                    failure = Some("connection closed".to_string());
                    break;
                }
                Ok(n) => {
                    self.written += n;
                    self.mid_line = self.pending[self.written - 1] != b'\n';
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(why) = failure {
            self.lost(&why);
        }
        if self.written == self.pending.len() {
            self.pending.clear();
            self.written = 0;
        } else if self.written > self.pending.capacity() / 2 {
            self.pending.drain(..self.written);
            self.written = 0;
        }
    }

    fn undelivered_bytes(&self) -> usize {
        self.pending.len() - self.written
    }
}

impl Sink for TcpSink {
    fn init(&mut self, info: &StageInfo) -> Result<(), StageError> {
        self.name = info.name.clone();
        self.format.set_node(&info.name);
        self.drive();
        Ok(())
    }

    fn push(&mut self, element: &Element<'_>) -> Result<(), StageError> {
        if self.undelivered_bytes() >= self.max_buffer {
            let why = if matches!(self.link, Link::Up(_)) {
                "server too slow"
            } else {
                "not connected"
            };
            return Err(StageError::Failed(Reason::new(
                "send buffer full",
                format!(
                    "{why}: {} bytes buffered for {}",
                    self.max_buffer, self.target
                ),
            )));
        }
        self.format.write(element, &mut self.pending);
        Ok(())
    }

    fn end_batch(&mut self) -> Result<(), StageError> {
        self.drive();
        Ok(())
    }

    fn complete(&mut self) -> Result<(), StageError> {
        let deadline = now_ns() + self.linger_ns;
        loop {
            self.drive();
            if self.undelivered_bytes() == 0 || now_ns() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let left = self.undelivered_bytes();
        if left > 0 {
            log::warn!(
                "{}: {left} bytes not delivered to {} at the end of the stream",
                self.name,
                self.target
            );
        }
        if let Link::Up(stream) = &self.link {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }

    /// Lines still buffered (a line cut by a lost connection counts once:
    /// the server never got all of it).
    fn undelivered(&self) -> u64 {
        let rest = &self.pending[self.written..];
        let lines = rest.iter().filter(|&&b| b == b'\n').count();
        (lines + usize::from(rest.last().is_some_and(|&b| b != b'\n'))) as u64
    }
}

params! {
    /// Parameters of `tcp-out`.
    pub(crate) struct TcpSinkParams {
        /// server, e.g. "127.0.0.1:9000"
        address: String,
        /// "raw" (default), "prefix" or "json" (as for console)
        #[serde(default = "raw")]
        format: Format,
        /// text before each payload (format "prefix")
        #[serde(default)]
        prefix: String,
        /// first wait between connection attempts, doubled after each failure up to
        /// 30 s (default 500)
        #[serde(default = "default_reconnect_ms")]
        reconnect_ms: u64,
        /// undelivered bytes kept while slow or disconnected; beyond, elements are
        /// dropped (default 1 MiB)
        #[serde(default = "default_buffer")]
        buffer_bytes: usize,
        /// at the end of the stream, try this long to deliver the rest (default
        /// 2000)
        #[serde(default = "default_linger_ms")]
        linger_ms: u64,
    }
}

fn raw() -> Format {
    Format::Raw
}

fn default_reconnect_ms() -> u64 {
    500
}

fn default_buffer() -> usize {
    1 << 20
}

fn default_linger_ms() -> u64 {
    2_000
}

pub(crate) fn build(p: TcpSinkParams) -> Result<TcpSink, String> {
    Ok(
        TcpSink::new(&p.address, LineFormat::new(p.format, &p.prefix)?)?
            .reconnect(p.reconnect_ms.saturating_mul(MS))
            .max_buffer(p.buffer_bytes)
            .linger(p.linger_ms.saturating_mul(MS)),
    )
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    use super::*;
    use crate::operators::testing::Harness;

    #[test]
    fn failed_attempts_back_off_up_to_a_cap() {
        let mut sink = TcpSink::new("127.0.0.1:9", LineFormat::new(Format::Raw, "").unwrap())
            .unwrap()
            .reconnect(100 * MS);
        let waits: Vec<u64> = (0..12).map(|_| sink.next_attempt(0)).collect();
        assert_eq!(&waits[..4], &[100 * MS, 200 * MS, 400 * MS, 800 * MS]);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF_NS);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn delivers_and_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut h = Harness::new(64);
        let mut sink = TcpSink::new(&addr, LineFormat::new(Format::Raw, "").unwrap())
            .unwrap()
            .reconnect(MS);
        sink.init(&h.info()).unwrap();
        // Lines pushed before the connection exists are buffered.
        h.push(&mut sink, b"one", None).unwrap();
        sink.end_batch().unwrap();
        let (first, _) = listener.accept().unwrap();
        let mut first = BufReader::new(first);
        let mut line = String::new();
        while sink.undelivered_bytes() > 0 {
            sink.end_batch().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        first.read_line(&mut line).unwrap();
        assert_eq!(line, "one\n");
        drop(first); // the server goes away
                     // Writes fail after the peer closes; the sink reconnects.
        let mut second = None;
        listener.set_nonblocking(true).unwrap();
        for i in 0..5000 {
            h.push(&mut sink, format!("n{i}").as_bytes(), None).unwrap();
            sink.end_batch().unwrap();
            if let Ok((s, _)) = listener.accept() {
                second = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let second = second.expect("the sink reconnected");
        second.set_nonblocking(false).unwrap();
        h.push(&mut sink, b"last", None).unwrap();
        sink.complete().unwrap();
        let lines: Vec<String> = BufReader::new(second).lines().map(Result::unwrap).collect();
        assert_eq!(lines.last().map(String::as_str), Some("last"));
        assert!(
            lines.iter().all(|l| l == "last" || l.starts_with('n')),
            "{lines:?}"
        );
        assert_eq!(sink.connections, 2);
    }
}
