//! `tcp-in`: a TCP listener; every client sends newline-delimited elements.
//!
//! Everything is non-blocking and served in rounds. A round starts with one
//! `epoll_wait` (zero timeout) that names the sockets with something to
//! read: the listener when clients are waiting to be accepted, and the
//! clients that sent data or hung up. So new clients are accepted every
//! round however many are connected, and a client that sends nothing costs
//! nothing: no read, and no read buffer (buffers are lent to a client only
//! while it has bytes buffered). Each ready client gets one read of up to
//! 64 KiB into its line buffer (see `lines`) and its complete lines are
//! sent before the next client's turn, so a fast client cannot starve the
//! others and a slow one (a partial line, a stalled sender) holds up no
//! one. At most `max_connections` clients are served at once; a client
//! beyond that is accepted and closed at once, and counted as a dropped
//! "connection refused (max_connections)". A client that disconnects, sends
//! garbage or an over-long line affects only its own data: the run goes on.

use std::collections::VecDeque;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use serde::Deserialize;

use crate::clock::now_ns;
use crate::operators::lines::{too_long, write_line, LineBuffer, Next, READ_BUFFER};
use crate::operators::udp::listen_address;
use crate::stage::{Pull, Reason, SlotWriter, Source, StageError, StageInfo};

const MS: u64 = 1_000_000;

/// Ready sockets one round serves at most. Epoll is level-triggered and
/// queues the sockets it reported behind those it did not, so the rest come
/// first in the next round.
const EVENTS_PER_ROUND: usize = 256;

/// Clients accepted (or refused) per round at most, so that a burst of new
/// clients does not hold up the data of those already connected.
const ACCEPTS_PER_ROUND: usize = 256;

/// Clients the kernel queues for `accept` (it caps this at
/// `net.core.somaxconn`). The standard library listens with 128: a thousand
/// clients connecting at once overflowed it between two rounds, and the
/// kernel dropped their handshakes, so they retried only after 1 s, 3 s...
/// (measured: the last connected 3 s late).
const BACKLOG: libc::c_int = 4096;

/// Idle read buffers kept for reuse (64 KiB each); more are freed.
const SPARE_BUFFERS: usize = 16;

/// The epoll token of the listener; a client's token is its index.
const LISTENER: u64 = u64::MAX;

/// The reason a client over `max_connections` is counted under.
const REFUSED: &str = "connection refused (max_connections)";

/// An epoll instance over the listener and the clients.
struct Poller {
    fd: OwnedFd,
}

impl Poller {
    fn new() -> std::io::Result<Poller> {
        // SAFETY: takes no pointers; returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller { fd })
    }

    /// Watches `fd` for reading, reported with `token`. Closing the socket
    /// removes it (its descriptor is never duplicated).
    fn add(&self, fd: RawFd, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `event` is valid for the call (the kernel copies it) and
        // `fd` is an open socket.
        let r =
            unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Fills `events` with the ready sockets, without waiting; returns how
    /// many.
    fn ready(&self, events: &mut [libc::epoll_event]) -> std::io::Result<usize> {
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is valid for writes of `max` entries for the
        // whole call, and the zero timeout makes it return at once.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, 0) };
        match usize::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => match std::io::Error::last_os_error() {
                e if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
                e => Err(e),
            },
        }
    }
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Lent from the spare buffers while bytes of this client are buffered.
    lines: Option<LineBuffer>,
    /// The client hung up: send what is buffered, then close.
    eof: bool,
}

/// Listens on a TCP address; each line from any client is an element.
/// Finishes after `max_elements`, or once no client sent data or connected
/// for `idle_timeout`, or when stopped.
pub struct TcpSource {
    listener: TcpListener,
    local: SocketAddr,
    poller: Poller,
    /// Clients by token; `None` is a free token, reused first.
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    /// This round: the sockets the last `epoll_wait` reported, and the next
    /// one to serve.
    events: Box<[libc::epoll_event]>,
    ready: usize,
    next_event: usize,
    /// The client whose buffered lines are being sent.
    serving: Option<usize>,
    spare: Vec<LineBuffer>,
    /// Refused clients and failed connections not reported yet: `pull`
    /// returns one each as a rejection.
    problems: VecDeque<Reason>,
    accept_failing: bool,
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
        // SAFETY: a valid listening socket; `listen` again only changes the
        // length of its accept queue.
        if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
            log::warn!(
                "cannot lengthen the accept queue of {local}: {}",
                std::io::Error::last_os_error()
            );
        }
        let poller = Poller::new().map_err(|e| format!("cannot create an epoll instance: {e}"))?;
        poller
            .add(listener.as_raw_fd(), LISTENER)
            .map_err(|e| format!("cannot watch the listener: {e}"))?;
        Ok(TcpSource {
            listener,
            local,
            poller,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_ROUND]
                .into_boxed_slice(),
            ready: 0,
            next_event: 0,
            serving: None,
            spare: Vec::new(),
            problems: VecDeque::new(),
            accept_failing: false,
            max_connections: default_max_connections(),
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

    /// Serves at most `n` clients at once (default 1024). One more is
    /// accepted and closed at once, and counted as a dropped "connection
    /// refused (max_connections)". Each client holds a file descriptor:
    /// the process's limit (`ulimit -n`) must leave room for them.
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

    /// Accepts the waiting clients (up to a round's share): registers them,
    /// or refuses them past `max_connections`.
    fn accept_new(&mut self) {
        for _ in 0..ACCEPTS_PER_ROUND {
            let (stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. out of file descriptors: the client waits in the
                    // backlog and the next round tries again.
                    if !self.accept_failing {
                        log::warn!("{}: accept failed (retrying): {e}", self.name);
                        self.accept_failing = true;
                    }
                    return;
                }
            };
            self.accept_failing = false;
            self.last_activity_ns = 0;
            if self.open >= self.max_connections {
                log::debug!("{}: client {peer} refused", self.name);
                self.problems.push_back(Reason::new(
                    REFUSED,
                    format!("{peer}: {} clients connected already", self.open),
                ));
                continue; // dropping `stream` closes it
            }
            let token = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let watched = stream
                .set_nonblocking(true)
                .and_then(|()| self.poller.add(stream.as_raw_fd(), token as u64));
            if let Err(e) = watched {
                self.free.push(token);
                self.problems
                    .push_back(Reason::new("connection error", format!("{peer}: {e}")));
                continue;
            }
            log::debug!("{}: client {peer} connected", self.name);
            self.conns[token] = Some(Conn {
                stream,
                peer,
                lines: None,
                eof: false,
            });
            self.open += 1;
        }
    }

    /// One read from client `i` (reported ready); on data or end of stream
    /// its lines are served next.
    fn read(&mut self, i: usize) -> Result<(), StageError> {
        // A client closed earlier in this round has nothing to read.
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return Ok(());
        };
        let spare = &mut self.spare;
        let lines = conn
            .lines
            .get_or_insert_with(|| spare.pop().unwrap_or_else(|| LineBuffer::new(READ_BUFFER)));
        match conn.stream.read(lines.spare()) {
            Ok(0) => {
                log::debug!("{}: client {} disconnected", self.name, conn.peer);
                conn.eof = true;
                self.serving = Some(i);
            }
            Ok(n) => {
                lines.filled(n);
                self.last_activity_ns = 0; // stamped lazily, when idle
                self.serving = Some(i);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                // Nothing after all; epoll reports it again if need be.
                self.serving = Some(i);
            }
            Err(e) => {
                let peer = conn.peer;
                self.close(i);
                return Err(StageError::Rejected(Reason::new(
                    "connection error",
                    format!("{peer}: {e}"),
                )));
            }
        }
        Ok(())
    }

    /// Sends the next buffered line of client `i`; `None` once it has none
    /// (then a closed client is gone and an idle buffer is given back).
    fn serve(&mut self, i: usize, slot: &mut SlotWriter<'_>) -> Option<Result<Pull, StageError>> {
        let conn = self.conns[i].as_mut().expect("a served client is open");
        let lines = conn.lines.as_mut()?;
        match lines.next_line() {
            Next::Line(line) => {
                self.emitted += 1;
                return Some(write_line(slot, line).map(|()| Pull::Ready));
            }
            Next::TooLong(n) => return Some(Err(too_long(n))),
            Next::NeedMore => {}
        }
        if conn.eof {
            // Its last line, not newline-terminated.
            let rest = lines.take_rest().map(|line| {
                self.emitted += 1;
                write_line(slot, line).map(|()| Pull::Ready)
            });
            self.close(i);
            return rest;
        }
        if lines.is_empty() {
            let lines = conn.lines.take().expect("checked above");
            self.give_back(lines);
        }
        None
    }

    fn give_back(&mut self, mut lines: LineBuffer) {
        if self.spare.len() < SPARE_BUFFERS {
            let _ = lines.take_rest(); // empties it for the next client
            self.spare.push(lines);
        }
    }

    /// Closes client `i` (its buffered bytes, if any, are discarded).
    fn close(&mut self, i: usize) {
        if let Some(conn) = self.conns[i].take() {
            self.open -= 1;
            self.free.push(i);
            if let Some(lines) = conn.lines {
                self.give_back(lines);
            }
        }
        if self.serving == Some(i) {
            self.serving = None;
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
        // Refusals are counted even when the source is done.
        if let Some(reason) = self.problems.pop_front() {
            return Err(StageError::Rejected(reason));
        }
        if self.max_elements.is_some_and(|m| self.emitted >= m) {
            return Ok(Pull::Done);
        }
        // Go on with the round: the client being served, then the next
        // ready socket; when the round is over, start one more (one
        // `epoll_wait` per call at most).
        let mut polled = false;
        loop {
            if let Some(i) = self.serving {
                if let Some(pulled) = self.serve(i, slot) {
                    return pulled;
                }
                self.serving = None;
            }
            if self.next_event < self.ready {
                let token = self.events[self.next_event].u64;
                self.next_event += 1;
                if token == LISTENER {
                    self.accept_new();
                    if let Some(reason) = self.problems.pop_front() {
                        return Err(StageError::Rejected(reason));
                    }
                } else {
                    self.read(token as usize)?;
                }
                continue;
            }
            if polled {
                break;
            }
            polled = true;
            self.next_event = 0;
            self.ready = self
                .poller
                .ready(&mut self.events)
                .map_err(|e| StageError::Fatal(format!("epoll_wait failed: {e}")))?;
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
        self.open = 0;
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
    1024
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

    /// A client that sends nothing, or half a line, holds up no one: new
    /// clients are accepted and served while it stays connected.
    #[test]
    fn accepts_while_clients_stay_connected() {
        let mut h = Harness::new(64);
        let mut src = TcpSource::bind("127.0.0.1:0").unwrap();
        src.init(&h.info()).unwrap();
        let addr = src.local_addr();
        let _silent = TcpStream::connect(addr).unwrap();
        let mut partial = TcpStream::connect(addr).unwrap();
        partial.write_all(b"{\"half\":").unwrap();
        let (got, errors) = h.pull_all(&mut src, 1, 50);
        assert!(got.is_empty() && errors.is_empty());
        assert_eq!(src.open, 2);
        let mut got = Vec::new();
        for i in 0..3 {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(format!("{{\"c\":{i}}}\n").as_bytes()).unwrap();
            let (lines, errors) = h.pull_all(&mut src, 1, 5000);
            assert!(errors.is_empty(), "{errors:?}");
            got.extend(strings(&lines));
        }
        assert_eq!(got, ["{\"c\":0}", "{\"c\":1}", "{\"c\":2}"]);
        partial.write_all(b"1}\n").unwrap();
        let (lines, _) = h.pull_all(&mut src, 1, 5000);
        assert_eq!(strings(&lines), ["{\"half\":1}"]);
    }

    /// Past `max_connections` a client is closed at once and counted (one
    /// rejection each); a freed place is taken by the next client.
    #[test]
    fn refuses_and_counts_clients_past_max_connections() {
        let mut h = Harness::new(64);
        let mut src = TcpSource::bind("127.0.0.1:0").unwrap().max_connections(2);
        src.init(&h.info()).unwrap();
        let addr = src.local_addr();
        let mut clients: Vec<TcpStream> = (0..3)
            .map(|i| {
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(format!("{{\"c\":{i}}}\n").as_bytes()).unwrap();
                c
            })
            .collect();
        let (got, errors) = h.pull_all(&mut src, 2, 5000);
        let mut got = strings(&got);
        got.sort();
        assert_eq!(got, ["{\"c\":0}", "{\"c\":1}"], "the first two");
        assert!(
            matches!(&errors[..], [StageError::Rejected(r)] if r.kind == REFUSED),
            "{errors:?}"
        );
        // The refused client sees its connection closed.
        let mut refused = clients.pop().unwrap();
        refused
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0; 8];
        match refused.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
        // One leaves; the next is served.
        drop(clients.remove(0));
        let (got, errors) = h.pull_all(&mut src, 1, 50);
        assert!(got.is_empty() && errors.is_empty());
        assert_eq!(src.open, 1);
        let mut next = TcpStream::connect(addr).unwrap();
        next.write_all(b"{\"c\":3}\n").unwrap();
        let (got, errors) = h.pull_all(&mut src, 1, 5000);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(strings(&got), ["{\"c\":3}"]);
    }

    /// Read buffers are lent only while a client has bytes buffered.
    #[test]
    fn idle_clients_hold_no_buffer() {
        let mut h = Harness::new(64);
        let mut src = TcpSource::bind("127.0.0.1:0").unwrap();
        src.init(&h.info()).unwrap();
        let addr = src.local_addr();
        let mut clients: Vec<TcpStream> =
            (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("{i}\n").as_bytes()).unwrap();
        }
        clients[0].write_all(b"unfinished").unwrap();
        let (got, _) = h.pull_all(&mut src, 20, 5000);
        assert_eq!(got.len(), 20);
        let (more, _) = h.pull_all(&mut src, 1, 50);
        assert!(more.is_empty());
        let holding = src.conns.iter().flatten().filter(|c| c.lines.is_some());
        assert_eq!(holding.count(), 1, "only the unfinished line's client");
        assert!(src.spare.len() <= SPARE_BUFFERS);
    }
}
