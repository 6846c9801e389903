//! The control endpoint's event loop: one thread, non-blocking sockets
//! (`mio`), every client served in turn. Nothing here runs on a stage's
//! worker; workers only publish counters and fill tap logs.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::observe::{LiveHandle, LiveView};
use crate::operators::Filter;
use crate::stage::Role;

use super::http::{self, HeadError, Request};
use super::prometheus::SubscriberCounts;
use super::subscribers::{Feed, Hub, Subscription};
use super::{prometheus, stats, ControlSettings};

const LISTENER: Token = Token(0);
pub(super) const WAKER: Token = Token(1);
/// How often the loop wakes without events: moves tapped elements to their
/// subscribers at least this often.
const TICK: Duration = Duration::from_millis(10);
/// Chunks per point handed out between two polls.
const ROUNDS: usize = 256;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes handed to the kernel per write: on a machine whose cores run
/// workers, a long write (copying, and loopback delivery done in the
/// writer's context) is a stretch a waking worker cannot preempt.
const WRITE_AT_ONCE: usize = 16 * 1024;
/// Kernel send buffer asked for per stream.
const STREAM_SNDBUF: usize = 256 * 1024;
/// Output a stream may have pending before its queue stops draining into it.
const STREAM_PENDING: usize = 256 * 1024;
/// How often sinks are asked for a fresh latency histogram.
const LATENCY_EVERY: Duration = Duration::from_secs(1);
/// After the run, how long streams get to deliver what is left.
pub(super) const LINGER: Duration = Duration::from_secs(2);
/// Connections still sending their request beyond the subscriber limit.
const EXTRA_CONNECTIONS: usize = 64;

enum Kind {
    /// Reading the request head.
    Head,
    /// Writing a whole response, then closing.
    Reply,
    /// Streaming NDJSON to a subscriber.
    Stream,
}

struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    opened: Instant,
    kind: Kind,
    /// A request that came before the run published its view: answered
    /// as soon as it does (the endpoint starts just before the run).
    waiting: Option<Request>,
}

impl Conn {
    fn pending(&self) -> usize {
        self.out.len() - self.written
    }

    fn reply(&mut self, bytes: Vec<u8>) {
        self.out = bytes;
        self.written = 0;
        self.kind = Kind::Reply;
    }
}

pub(super) struct Server {
    pub(super) poll: Poll,
    pub(super) listener: TcpListener,
    conns: HashMap<usize, Conn>,
    next: usize,
    hub: Hub,
    live: LiveHandle,
    token: Option<String>,
    max_subscribers: usize,
    last_latency: Instant,
}

impl Server {
    pub(super) fn new(
        poll: Poll,
        listener: TcpListener,
        settings: &ControlSettings,
        token: Option<String>,
        live: LiveHandle,
    ) -> Server {
        Server {
            poll,
            listener,
            conns: HashMap::new(),
            next: 2,
            hub: Hub::new(settings.subscriber_queue),
            live,
            token,
            max_subscribers: settings.max_subscribers,
            last_latency: Instant::now(),
        }
    }

    /// Serves until `stop` is raised, then lets streams deliver what is
    /// left for at most [`LINGER`] and ends them.
    pub(super) fn run(
        mut self,
        stop: Arc<AtomicBool>,
        _waker: Arc<Waker>,
    ) -> BTreeMap<String, SubscriberCounts> {
        let mut events = Events::with_capacity(256);
        let mut stopping: Option<Instant> = None;
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(TICK)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("control endpoint: poll failed: {e}");
                    break;
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(t);
                        }
                    }
                }
            }
            self.answer_waiting();
            self.refresh_latency();
            if let Some(view) = self.live.get() {
                for n in &view.nodes {
                    if let Some(mux) = &n.mux {
                        self.hub.sweep(mux, &view.arena);
                    }
                }
            }
            let end_all = stopping.is_some_and(|t| t.elapsed() >= LINGER);
            // One chunk per point at a time, written out before the next.
            for _ in 0..ROUNDS {
                let more = self.hub.pump();
                self.feed_streams(end_all);
                self.write_all();
                if !more {
                    break;
                }
            }
            self.expire_heads();
            if stopping.is_none() && stop.load(Ordering::Acquire) {
                stopping = Some(Instant::now());
            }
            if let Some(t) = stopping {
                let streaming = self
                    .conns
                    .values()
                    .any(|c| matches!(c.kind, Kind::Stream) || c.pending() > 0);
                if !streaming || t.elapsed() >= LINGER + Duration::from_millis(200) {
                    break;
                }
            }
        }
        self.hub.charge_unseen();
        for id in self.conns.keys().copied().collect::<Vec<_>>() {
            self.close(id);
        }
        self.hub.counts().clone()
    }

    fn view(&self) -> Option<Arc<LiveView>> {
        self.live.get().cloned()
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let id = self.next;
                    self.next += 1;
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(id),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("control endpoint: cannot register a client: {e}");
                        continue;
                    }
                    let mut conn = Conn {
                        stream,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        written: 0,
                        opened: Instant::now(),
                        kind: Kind::Head,
                        waiting: None,
                    };
                    if self.conns.len() >= self.max_subscribers + EXTRA_CONNECTIONS {
                        conn.reply(http::error(503, "too many connections"));
                    }
                    self.conns.insert(id, conn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, say: try again at the next event.
                    log::warn!("control endpoint: accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads what a client sent: a request head, or (afterwards) nothing
    /// but its leaving.
    fn read(&mut self, id: usize) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut closed = false;
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    if matches!(conn.kind, Kind::Head) {
                        conn.inbuf.extend_from_slice(&buf[..n]);
                        if conn.inbuf.len() > http::MAX_HEAD {
                            break;
                        }
                    }
                    // Anything sent after the head is ignored.
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if matches!(conn.kind, Kind::Head) && !conn.inbuf.is_empty() {
            match http::parse_head(&conn.inbuf) {
                Ok(req) => self.route(id, req),
                Err(HeadError::Partial) => {}
                Err(HeadError::TooLarge) => {
                    self.respond(id, http::error(431, "request head too large"))
                }
                Err(HeadError::Malformed(m)) => {
                    self.respond(id, http::error(400, &format!("bad request: {m}")))
                }
            }
        }
        if closed {
            // A subscriber that left is removed now; a reply still owed is
            // written (the client may only have closed its sending side)
            // and the connection closes after it.
            let replying = self
                .conns
                .get(&id)
                .is_some_and(|c| matches!(c.kind, Kind::Reply));
            if !replying {
                self.close(id);
            }
        }
    }

    fn respond(&mut self, id: usize, bytes: Vec<u8>) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.reply(bytes);
        }
    }

    fn route(&mut self, id: usize, req: Request) {
        if req.method != "GET" {
            return self.respond(id, http::error(405, "only GET is served"));
        }
        let Some(view) = self.view() else {
            if let Some(c) = self.conns.get_mut(&id) {
                c.waiting = Some(req);
            }
            return;
        };
        let reply = match req.path.as_str() {
            "/health" if view.all_done() => http::error(503, "finished"),
            "/health" => http::response(200, "text/plain; charset=utf-8", &[], b"ok\n"),
            "/metrics" => http::response(
                200,
                prometheus::CONTENT_TYPE,
                &[],
                prometheus::render(&view, self.hub.counts()).as_bytes(),
            ),
            "/stats" => {
                let body = stats::render(&view, self.hub.counts()).to_string();
                http::response(200, "application/json", &[], body.as_bytes())
            }
            "/subscribe" | "/tap" => match self.subscribe(id, &req, &view) {
                Ok(()) => return,
                Err((status, message)) => http::error(status, &message),
            },
            "/" => http::response(
                200,
                "text/plain; charset=utf-8",
                &[],
                b"dataplane control endpoint: /health /metrics /stats /subscribe?node=MUX&where=JSON /tap?node=NODE&port=PORT&where=JSON&limit=N\n",
            ),
            other => http::error(404, &format!("no such path '{other}'")),
        };
        self.respond(id, reply);
    }

    /// Attaches a subscriber, or says why not.
    fn subscribe(
        &mut self,
        id: usize,
        req: &Request,
        view: &LiveView,
    ) -> Result<(), (u16, String)> {
        if let Some(expected) = &self.token {
            match &req.bearer {
                Some(t) if http::same_secret(t, expected) => {}
                Some(_) => return Err((401, "wrong bearer token".into())),
                None => {
                    return Err((
                        401,
                        "this endpoint requires 'Authorization: Bearer <token>'".into(),
                    ))
                }
            }
        }
        let name = req
            .param("node")
            .ok_or((400, "missing query parameter 'node'".to_string()))?;
        let node = view.node(name).ok_or_else(|| {
            let names: Vec<&str> = view.nodes.iter().map(|n| n.name.as_str()).collect();
            (
                404,
                format!("no node '{name}' (nodes: {})", names.join(", ")),
            )
        })?;
        let feed = if req.path == "/subscribe" {
            let mux = node.mux.clone().ok_or_else(|| {
                (
                    400,
                    format!(
                        "node '{name}' is a {} ({}), not a mux: add a mux sink, or watch its output with /tap (dataplane tap)",
                        node.component, node.role
                    ),
                )
            })?;
            Feed::Refs(mux, Arc::clone(&view.arena))
        } else if node.mux.is_some() && req.param("port").is_none() {
            // A mux has no output port: tapping it means subscribing.
            Feed::Refs(node.mux.clone().expect("checked"), Arc::clone(&view.arena))
        } else {
            let port = match req.param("port") {
                Some(p) => p,
                None => node.ports.first().map(String::as_str).ok_or_else(|| {
                    (
                        400,
                        format!("node '{name}' is a sink: it has no output port to tap"),
                    )
                })?,
            };
            let at = node.ports.iter().position(|p| p == port).ok_or_else(|| {
                (
                    404,
                    format!(
                        "node '{name}' has no port '{port}' (ports: {})",
                        node.ports.join(", ")
                    ),
                )
            })?;
            Feed::Copies(node.taps[at].clone().ok_or_else(|| {
                (
                    409,
                    format!("port '{port}' of node '{name}' is not connected: nothing flows there"),
                )
            })?)
        };
        let filter = match req.param("where") {
            None | Some("") => None,
            Some(w) => {
                Some(Filter::from_json(w).map_err(|e| (400, format!("bad predicate: {e}")))?)
            }
        };
        let limit = match req.param("limit") {
            None | Some("") => None,
            Some(l) => Some(
                l.parse::<u64>()
                    .ok()
                    .filter(|&l| l > 0)
                    .ok_or((400, format!("bad limit '{l}': expected a positive integer")))?,
            ),
        };
        if self.hub.len() >= self.max_subscribers {
            return Err((
                503,
                format!("{} subscribers already (max_subscribers)", self.hub.len()),
            ));
        }
        self.hub.attach(
            id,
            Subscription {
                node: node.name.clone(),
                feed,
                counters: Arc::clone(&node.counters),
                filter,
                limit,
            },
        );
        let conn = self.conns.get_mut(&id).expect("the requesting client");
        // Bound what the kernel buffers for one client, so that a stalled
        // one meets its queue's drop_oldest soon and holds little memory
        // (autotuning would let it hold megabytes).
        if let Err(e) = socket2::SockRef::from(&conn.stream).set_send_buffer_size(STREAM_SNDBUF) {
            log::debug!("control endpoint: cannot size a stream's send buffer: {e}");
        }
        conn.out = http::stream_head();
        conn.written = 0;
        conn.kind = Kind::Stream;
        Ok(())
    }

    /// Moves queued lines into the streams' output as chunks; ends streams
    /// that are over (or all of them, `end_all`, once the linger passed).
    fn feed_streams(&mut self, end_all: bool) {
        let mut chunk = Vec::new();
        for (&id, conn) in &mut self.conns {
            if !matches!(conn.kind, Kind::Stream) {
                continue;
            }
            if conn.pending() < STREAM_PENDING {
                if conn.written > 0 && conn.written == conn.out.len() {
                    conn.out.clear();
                    conn.written = 0;
                }
                chunk.clear();
                self.hub.take(id, &mut chunk, STREAM_PENDING);
                http::push_chunk(&mut conn.out, &chunk);
            }
            if end_all {
                // What the endpoint never got to counts as lost by every
                // stream it ends now.
                self.hub.charge_unseen();
            }
            if end_all || self.hub.finished(id) {
                conn.out.extend_from_slice(http::LAST_CHUNK);
                conn.kind = Kind::Reply;
                self.hub.detach(id);
            }
        }
    }

    /// Writes pending output; a finished reply closes its connection.
    fn write_all(&mut self) {
        let mut gone = Vec::new();
        for (&id, conn) in &mut self.conns {
            while conn.pending() > 0 {
                let end = conn.out.len().min(conn.written + WRITE_AT_ONCE);
                match conn.stream.write(&conn.out[conn.written..end]) {
                    Ok(0) => {
                        gone.push(id);
                        break;
                    }
                    Ok(n) => conn.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        gone.push(id);
                        break;
                    }
                }
            }
            if matches!(conn.kind, Kind::Reply) && conn.pending() == 0 {
                let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                gone.push(id);
            }
        }
        for id in gone {
            self.close(id);
        }
    }

    fn answer_waiting(&mut self) {
        if self.live.get().is_none() {
            return;
        }
        let ids: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.waiting.is_some())
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            if let Some(req) = self.conns.get_mut(&id).and_then(|c| c.waiting.take()) {
                self.route(id, req);
            }
        }
    }

    fn expire_heads(&mut self) {
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.kind, Kind::Head) && c.opened.elapsed() > HEAD_TIMEOUT)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            self.respond(id, http::error(408, "request head not received in time"));
        }
    }

    fn refresh_latency(&mut self) {
        if self.last_latency.elapsed() < LATENCY_EVERY {
            return;
        }
        self.last_latency = Instant::now();
        if let Some(view) = self.live.get() {
            for n in view.nodes.iter().filter(|n| n.role == Role::Sink) {
                n.counters.request_latency();
            }
        }
    }

    fn close(&mut self, id: usize) {
        if let Some(mut conn) = self.conns.remove(&id) {
            self.hub.detach(id);
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }
}

/// The address a `listen` value means: a bare port (`9464` or `:9464`)
/// binds loopback only; `localhost:PORT` is loopback; otherwise an
/// `IP:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let port = s.strip_prefix(':').unwrap_or(s);
    if let Ok(p) = port.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    if let Some(p) = s.strip_prefix("localhost:") {
        if let Ok(p) = p.parse::<u16>() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
        }
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!("bad listen address '{s}': expected a port (9464, loopback only) or IP:PORT (127.0.0.1:9464)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_loopback() {
        assert_eq!(parse_listen("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(parse_listen(":9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(
            parse_listen("localhost:1").unwrap().to_string(),
            "127.0.0.1:1"
        );
        assert_eq!(
            parse_listen("0.0.0.0:80").unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert_eq!(parse_listen("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert!(parse_listen("example:80").unwrap_err().contains("IP:PORT"));
        assert!(parse_listen("70000").is_err());
    }
}
