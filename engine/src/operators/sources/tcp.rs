//! `tcp-in`: a TCP listener; every client sends newline-delimited elements.
//!
//! Everything is non-blocking and served in rounds. A round starts with one
//! poll (`mio`, zero timeout) that names the sockets with something new to
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
//!
//! The poll is edge-triggered: a socket is reported once when data arrives,
//! not again while data is left unread. So a client stays on the `readable`
//! list, served one read per round, until a read finds nothing
//! (`WouldBlock`), and the listener is accepted from every round until
//! `accept` finds no one waiting.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::clock::now_ns;
use crate::operators::lines::{LineBuffer, Next, READ_BUFFER};
use crate::operators::open::OpenAtInit;
use crate::operators::params::params;
use crate::operators::util::resolve;
use crate::stage::{Pull, Reason, SlotWriter, Source, StageError, StageInfo};

const MS: u64 = 1_000_000;

/// Events one poll returns at most; the kernel keeps the others for the
/// next poll.
const EVENTS_PER_POLL: usize = 256;

/// Reads one round makes at most: the clients on the `readable` list
/// beyond are served first in the next round.
const READS_PER_ROUND: usize = 256;

/// Clients accepted (or refused) per round at most, so that a burst of new
/// clients does not hold up the data of those already connected.
const ACCEPTS_PER_ROUND: usize = 256;

/// Clients the kernel queues for `accept` (it caps this at
/// `net.core.somaxconn`). The standard library and `mio` listen with 128: a
/// thousand clients connecting at once overflowed it between two rounds,
/// and the kernel dropped their handshakes, so they retried only after 1 s,
/// 3 s... (measured: the last connected 3 s late; `tests/tcp_clients.rs`
/// takes 3 to 5 s with 128, 0.2 s with this).
const BACKLOG: i32 = 4096;

/// Idle read buffers kept for reuse (64 KiB each); more are freed.
const SPARE_BUFFERS: usize = 16;

/// The poll token of the listener; a client's token is its index.
const LISTENER: Token = Token(usize::MAX);

/// The reason a client over `max_connections` is counted under.
const REFUSED: &str = "connection refused (max_connections)";

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Lent from the spare buffers while bytes of this client are buffered.
    lines: Option<LineBuffer>,
    /// The client hung up: send what is buffered, then close.
    eof: bool,
    /// On the `readable` list: it may have bytes not read yet.
    readable: bool,
}

/// Listens on a TCP address; each line from any client is an element.
/// Finishes after `max_elements`, or once no client sent data or connected
/// for `idle_timeout`, or when stopped.
pub struct TcpSource {
    listener: TcpListener,
    local: SocketAddr,
    poll: Poll,
    events: Events,
    /// Clients may be waiting to be accepted: set by the listener's event,
    /// cleared once `accept` finds no one.
    accepting: bool,
    /// Clients by token; `None` is a free token, reused first.
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    /// Clients reported readable and not yet read to `WouldBlock`, in the
    /// order they are served; each appears once (see `Conn::readable`).
    readable: VecDeque<usize>,
    /// How many at the front of `readable` this round still reads.
    round_left: usize,
    /// The client whose buffered lines are being sent.
    serving: Option<usize>,
    spare: Vec<LineBuffer>,
    /// Refused clients and failed connections not reported yet: `pull`
    /// returns one each as a rejection.
    problems: VecDeque<Reason>,
    /// Done: only the counts of what was left unread remain to report.
    closing: bool,
    accept_failing: bool,
    max_connections: usize,
    max_elements: Option<u64>,
    idle_timeout_ns: Option<u64>,
    emitted: u64,
    last_activity_ns: u64,
    name: String,
}

/// A non-blocking listener on `addr` with a [`BACKLOG`]-long accept queue
/// (`std` and `mio` have no way to ask for more than 128).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As `std` and `mio` do: a restarted run can bind again at once.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

impl TcpSource {
    /// Binds `address` (non-blocking).
    pub fn bind(address: &str) -> Result<TcpSource, String> {
        let addr = resolve(address)?;
        let mut listener = listen(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let poll = Poll::new().map_err(|e| format!("cannot create a poller: {e}"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| format!("cannot watch the listener: {e}"))?;
        Ok(TcpSource {
            listener,
            local,
            poll,
            events: Events::with_capacity(EVENTS_PER_POLL),
            accepting: false,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            readable: VecDeque::new(),
            round_left: 0,
            serving: None,
            spare: Vec::new(),
            problems: VecDeque::new(),
            closing: false,
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

    /// Starts a round: one poll without waiting puts the clients it reports
    /// on the `readable` list (behind those still there), then the waiting
    /// clients are accepted.
    fn start_round(&mut self) -> Result<(), StageError> {
        match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => self.events.clear(),
            Err(e) => return Err(StageError::Fatal(format!("poll failed: {e}"))),
        }
        for event in &self.events {
            if event.token() == LISTENER {
                self.accepting = true;
                continue;
            }
            let i = event.token().0;
            if let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) {
                if !conn.readable {
                    conn.readable = true;
                    self.readable.push_back(i);
                }
            }
        }
        self.round_left = self.readable.len().min(READS_PER_ROUND);
        if self.accepting {
            self.accept_new();
        }
        Ok(())
    }

    /// Accepts the waiting clients (up to a round's share): registers them,
    /// or refuses them past `max_connections`.
    fn accept_new(&mut self) {
        for _ in 0..ACCEPTS_PER_ROUND {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.accepting = false;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
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
            // Data it sent already is reported by the next poll.
            let watched =
                self.poll
                    .registry()
                    .register(&mut stream, Token(token), Interest::READABLE);
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
                readable: false,
            });
            self.open += 1;
        }
    }

    /// One read from the next client on the `readable` list; its lines are
    /// served next. It stays on the list (at the back) while reads find
    /// data.
    fn read_next(&mut self) -> Result<(), StageError> {
        let Some(i) = self.readable.pop_front() else {
            return Ok(());
        };
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return Ok(());
        };
        conn.readable = false;
        let spare = &mut self.spare;
        let lines = conn
            .lines
            .get_or_insert_with(|| spare.pop().unwrap_or_else(|| LineBuffer::new(READ_BUFFER)));
        self.serving = Some(i);
        match conn.stream.read(lines.spare()) {
            Ok(0) => {
                log::debug!("{}: client {} disconnected", self.name, conn.peer);
                conn.eof = true;
            }
            Ok(n) => {
                lines.filled(n);
                self.last_activity_ns = 0; // stamped lazily, when idle
                                           // More may be waiting, and no new event would say so.
                conn.readable = true;
                self.readable.push_back(i);
            }
            // Read out: the next event says when more comes.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                conn.readable = true;
                self.readable.push_back(i);
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
        match lines.write_next(slot, &mut self.emitted) {
            Ok(true) => return Some(Ok(Pull::Ready)),
            Ok(false) => {}
            Err(e) => return Some(Err(e)),
        }
        if conn.eof {
            // Its last line, not newline-terminated.
            let rest = match lines.write_rest(slot, &mut self.emitted) {
                Ok(true) => Some(Ok(Pull::Ready)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            };
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
        if let Some(mut conn) = self.conns[i].take() {
            // Its token is reused by the next client: no stale entry may
            // stay on the list.
            if conn.readable {
                if let Some(at) = self.readable.iter().position(|&j| j == i) {
                    self.readable.remove(at);
                    if at < self.round_left {
                        self.round_left -= 1;
                    }
                }
            }
            // Closing the socket would also end its registration; this
            // does not depend on the platform.
            let _ = self.poll.registry().deregister(&mut conn.stream);
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

impl TcpSource {
    /// The source is done: what clients sent that was never read into an
    /// element (complete lines past `max_elements`, an unterminated last
    /// line) is counted as dropped, one reason per line, on the next pulls;
    /// then `Done`.
    fn finish_reading(&mut self, why: &'static str) -> Result<Pull, StageError> {
        self.closing = true;
        for conn in self.conns.iter_mut().flatten() {
            let Some(lines) = conn.lines.as_mut() else {
                continue;
            };
            while let Next::Line(_) | Next::TooLong(_) = lines.next_line() {
                self.problems.push_back(Reason::new(
                    "not read: source finished",
                    format!("{why}; from {}", conn.peer),
                ));
            }
            if lines.take_rest().is_some() {
                self.problems.push_back(Reason::new(
                    "incomplete line at end of run",
                    format!("{why}; from {}", conn.peer),
                ));
            }
        }
        match self.problems.pop_front() {
            Some(reason) => Err(StageError::Rejected(reason)),
            None => Ok(Pull::Done),
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
        if self.closing {
            return Ok(Pull::Done);
        }
        if self.max_elements.is_some_and(|m| self.emitted >= m) {
            return self.finish_reading("max_elements reached");
        }
        // Go on with the round: the client being served, then the next
        // read; when the round is over, start one more (one poll per call
        // at most).
        let mut polled = false;
        loop {
            if let Some(i) = self.serving {
                if let Some(pulled) = self.serve(i, slot) {
                    return pulled;
                }
                self.serving = None;
            }
            if self.round_left > 0 {
                self.round_left -= 1;
                self.read_next()?;
                continue;
            }
            if polled {
                break;
            }
            polled = true;
            self.start_round()?;
            if let Some(reason) = self.problems.pop_front() {
                return Err(StageError::Rejected(reason));
            }
        }
        let now = now_ns();
        if self.last_activity_ns == 0 {
            self.last_activity_ns = now;
        }
        match self.idle_timeout_ns {
            Some(t) if now - self.last_activity_ns >= t => self.finish_reading("idle timeout"),
            _ => Ok(Pull::Pending),
        }
    }

    fn teardown(&mut self) {
        self.conns.clear();
        self.readable.clear();
        self.round_left = 0;
        self.serving = None;
        self.open = 0;
    }
}

params! {
    /// Parameters of `tcp-in`.
    pub(crate) struct TcpSourceParams {
        /// address to bind, e.g. "127.0.0.1:9000"
        address: String,
        /// clients served at once (default 1024); one more is accepted, closed and
        /// counted as dropped (connection refused)
        #[serde(default = "default_max_connections")]
        max_connections: usize,
        /// finish after this many elements
        max_elements: Option<u64>,
        /// finish after this long with no data and no new client (default: until
        /// stopped)
        idle_timeout_ms: Option<u64>,
    }
}

fn default_max_connections() -> usize {
    1024
}

/// `tcp-in`: the address is checked now, bound in `init`.
pub(crate) fn build(p: TcpSourceParams) -> Result<OpenAtInit<TcpSource>, String> {
    resolve(&p.address)?;
    Ok(OpenAtInit::new(move || {
        let mut s = TcpSource::bind(&p.address)?.max_connections(p.max_connections);
        if let Some(m) = p.max_elements {
            s = s.max_elements(m);
        }
        if let Some(ms) = p.idle_timeout_ms {
            s = s.idle_timeout(ms.saturating_mul(MS));
        }
        Ok(s)
    }))
}

#[cfg(test)]
mod tests;
