//! `tcp-in`: a TCP listener; every client sends newline-delimited elements.
//!
//! Everything is non-blocking: the listener is polled for new clients once
//! per round over the connections, and each connection is read in chunks
//! of up to 64 KiB into its own line buffer (see `lines`). Clients are
//! served in turn, one read each, so a fast client cannot starve the
//! others. A client that disconnects, sends garbage or an over-long line
//! affects only its own data: the run goes on.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};

use serde::Deserialize;

use crate::clock::now_ns;
use crate::operators::lines::{too_long, write_line, LineBuffer, Next, READ_BUFFER};
use crate::operators::udp::listen_address;
use crate::stage::{Pull, Reason, SlotWriter, Source, StageError, StageInfo};

const MS: u64 = 1_000_000;

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    lines: LineBuffer,
    closed: bool,
}

/// Listens on a TCP address; each line from any client is an element.
/// Finishes after `max_elements`, or once no client sent data or connected
/// for `idle_timeout`, or when stopped.
pub struct TcpSource {
    listener: TcpListener,
    local: SocketAddr,
    conns: Vec<Conn>,
    next: usize,
    max_connections: usize,
    max_elements: Option<u64>,
    idle_timeout_ns: Option<u64>,
    emitted: u64,
    last_activity_ns: u64,
    name: String,
}

impl TcpSource {
    /// Binds `address` (non-blocking).
    pub fn bind(address: &str) -> Result<TcpSource, String> {
        let addr = listen_address(address)?;
        let listener = TcpListener::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the listener non-blocking: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        Ok(TcpSource {
            listener,
            local,
            conns: Vec::new(),
            next: 0,
            max_connections: 64,
            max_elements: None,
            idle_timeout_ns: None,
            emitted: 0,
            last_activity_ns: 0,
            name: String::new(),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves at most `n` clients at once (more wait in the backlog).
    pub fn max_connections(mut self, n: usize) -> TcpSource {
        self.max_connections = n.max(1);
        self
    }

    /// Finishes after `n` elements.
    pub fn max_elements(mut self, n: u64) -> TcpSource {
        self.max_elements = Some(n);
        self
    }

    /// Finishes after `ns` with no data and no new client.
    pub fn idle_timeout(mut self, ns: u64) -> TcpSource {
        self.idle_timeout_ns = Some(ns);
        self
    }

    fn accept_new(&mut self) {
        while self.conns.len() < self.max_connections {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if let Err(e) = stream.set_nonblocking(true) {
                        log::warn!("{}: dropping client {peer}: {e}", self.name);
                        continue;
                    }
                    log::debug!("{}: client {peer} connected", self.name);
                    self.last_activity_ns = now_ns();
                    self.conns.push(Conn {
                        stream,
                        peer,
                        lines: LineBuffer::new(READ_BUFFER),
                        closed: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // E.g. out of file descriptors: try again later.
                    log::warn!("{}: accept failed: {e}", self.name);
                    break;
                }
            }
        }
    }
}

impl Source for TcpSource {
    fn init(&mut self, info: &StageInfo) -> Result<(), StageError> {
        self.name = info.name.clone();
        log::info!("{}: listening on tcp {}", info.name, self.local);
        self.last_activity_ns = now_ns();
        Ok(())
    }

    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.max_elements.is_some_and(|m| self.emitted >= m) {
            return Ok(Pull::Done);
        }
        // One round: each connection gets a look (its buffered lines, then
        // one read); new clients are accepted at the start of a round.
        let mut looked = 0;
        loop {
            if self.next >= self.conns.len() {
                self.conns.retain(|c| !c.closed);
                self.next = 0;
                if looked > 0 && looked >= self.conns.len() {
                    break;
                }
                self.accept_new();
                if self.conns.is_empty() {
                    break;
                }
            }
            let i = self.next;
            match self.conns[i].lines.next_line() {
                Next::Line(line) => {
                    self.emitted += 1;
                    write_line(slot, line)?;
                    return Ok(Pull::Ready);
                }
                Next::TooLong(n) => return Err(too_long(n)),
                Next::NeedMore => {}
            }
            looked += 1;
            let conn = &mut self.conns[i];
            if conn.closed {
                self.next += 1;
                continue;
            }
            match conn.stream.read(conn.lines.spare()) {
                Ok(0) => {
                    log::debug!("{}: client {} disconnected", self.name, conn.peer);
                    conn.closed = true;
                    self.next += 1;
                    if let Some(rest) = conn.lines.take_rest() {
                        // Its last line, not newline-terminated.
                        self.emitted += 1;
                        write_line(slot, rest)?;
                        return Ok(Pull::Ready);
                    }
                }
                Ok(n) => {
                    conn.lines.filled(n);
                    self.last_activity_ns = 0; // stamped lazily, when idle
                                               // Serve this connection's lines before moving on.
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.next += 1,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    conn.closed = true;
                    self.next += 1;
                    return Err(StageError::Rejected(Reason::new(
                        "connection error",
                        format!("{}: {e}", conn.peer),
                    )));
                }
            }
        }
        let now = now_ns();
        if self.last_activity_ns == 0 {
            self.last_activity_ns = now;
        }
        match self.idle_timeout_ns {
            Some(t) if now - self.last_activity_ns >= t => Ok(Pull::Done),
            _ => Ok(Pull::Pending),
        }
    }

    fn teardown(&mut self) {
        self.conns.clear();
    }
}

/// Parameters of `tcp-in`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TcpSourceParams {
    address: String,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    max_elements: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

fn default_max_connections() -> usize {
    64
}

pub(crate) fn build(p: TcpSourceParams) -> Result<TcpSource, String> {
    let mut s = TcpSource::bind(&p.address)?.max_connections(p.max_connections);
    if let Some(m) = p.max_elements {
        s = s.max_elements(m);
    }
    if let Some(ms) = p.idle_timeout_ms {
        s = s.idle_timeout(ms.saturating_mul(MS));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::operators::testing::{strings, Harness};

    #[test]
    fn many_clients_garbage_and_disconnects() {
        let mut h = Harness::new(64);
        let mut src = TcpSource::bind("127.0.0.1:0")
            .unwrap()
            .idle_timeout(300 * MS);
        src.init(&h.info()).unwrap();
        let addr = src.local_addr();
        let mut a = TcpStream::connect(addr).unwrap();
        let mut b = TcpStream::connect(addr).unwrap();
        a.write_all(b"{\"c\":\"a\",\"n\":1}\n\xff\xfe garbage\n")
            .unwrap();
        b.write_all(b"{\"c\":\"b\",\"n\":1}\n").unwrap();
        b.write_all(&[b'y'; 70_000]).unwrap(); // longer than the read buffer
        b.write_all(b"\n{\"c\":\"b\",\"n\":2}\n").unwrap();
        a.write_all(b"{\"c\":\"a\",\"n\":2}").unwrap(); // no newline, then gone
        drop(a);
        let (got, errors) = h.pull_all(&mut src, 100, 5000);
        let mut got = strings(&got);
        got.sort();
        assert_eq!(
            got,
            [
                "{\"c\":\"a\",\"n\":1}",
                "{\"c\":\"a\",\"n\":2}",
                "{\"c\":\"b\",\"n\":1}",
                "{\"c\":\"b\",\"n\":2}",
                "\u{fffd}\u{fffd} garbage",
            ]
        );
        assert!(matches!(&errors[..], [StageError::Rejected(r)] if r.kind == "payload too large"));
        drop(b);
        assert_eq!(h.pull(&mut src).0, Ok(Pull::Done), "idle timeout");
    }
}
