//! The control endpoint: a running pipeline's health, Prometheus metrics,
//! live stats, and its elements for subscribers (`mux` sinks) and taps.
//!
//! Off unless configured (`[control] listen = "127.0.0.1:9464"` or
//! `dataplane run --control ADDR`). It runs on a thread of its own, on a
//! core the workers do not use or else at the lowest priority (nice 19), reads only what workers publish (counters per
//! step, tap logs per batch) and never makes a worker wait: a slow or
//! stalled client loses its own elements, counted, and nothing else.
//!
//! | path | what |
//! |---|---|
//! | `GET /health` | `200 ok` while the pipeline runs (`503` once finished) |
//! | `GET /metrics` | Prometheus text format 0.0.4 |
//! | `GET /stats` | the same numbers as one JSON document (`dataplane top`) |
//! | `GET /subscribe?node=MUX&where=JSON&limit=N` | a `mux` sink's elements, chunked NDJSON |
//! | `GET /tap?node=NODE&port=PORT&where=JSON&limit=N` | any connected output port's elements |
//!
//! With `token_file`, `/subscribe` and `/tap` require
//! `Authorization: Bearer <token>`; `/health`, `/metrics` and `/stats` stay
//! open.

pub mod client;
pub mod http;
pub mod prometheus;
mod server;
pub mod stats;
pub mod subscribers;
pub mod tap;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use prometheus::SubscriberCounts;
pub use server::parse_listen;

use crate::observe::LiveHandle;

/// Default of `max_subscribers`.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 256;
/// Default of `subscriber_queue`.
pub const DEFAULT_SUBSCRIBER_QUEUE: usize = 4096;

/// The `[control]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlSettings {
    /// Where to listen (a bare port binds loopback only).
    pub listen: SocketAddr,
    /// A file holding the bearer token `/subscribe` and `/tap` require.
    pub token_file: Option<PathBuf>,
    /// Subscribers and taps attached at once; one more gets 503.
    pub max_subscribers: usize,
    /// Elements queued per subscriber before its oldest are dropped.
    pub subscriber_queue: usize,
}

impl ControlSettings {
    /// Settings listening on `listen`, defaults otherwise.
    pub fn new(listen: SocketAddr) -> ControlSettings {
        ControlSettings {
            listen,
            token_file: None,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            subscriber_queue: DEFAULT_SUBSCRIBER_QUEUE,
        }
    }
}

/// A running control endpoint.
pub struct Control {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<BTreeMap<String, SubscriberCounts>>>,
}

impl Control {
    /// Binds the endpoint and starts its thread. `avoid` lists the cores
    /// the pipeline's workers are pinned to: the endpoint runs on another
    /// core when there is one, and at a lower priority in any case.
    pub fn start(
        settings: &ControlSettings,
        live: LiveHandle,
        avoid: &[usize],
    ) -> io::Result<Control> {
        let token = match &settings.token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("token_file {}: {e}", path.display()))
                })?;
                let token = text.trim().to_string();
                if token.is_empty() || token.contains(char::is_whitespace) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "token_file {}: expected one token (no spaces), found {}",
                            path.display(),
                            if token.is_empty() {
                                "nothing"
                            } else {
                                "several words"
                            }
                        ),
                    ));
                }
                Some(token)
            }
        };
        let std_listener = std::net::TcpListener::bind(settings.listen).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", settings.listen),
            )
        })?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let mut listener = mio::net::TcpListener::from_std(std_listener);
        let poll = mio::Poll::new()?;
        poll.registry()
            .register(&mut listener, mio::Token(0), mio::Interest::READABLE)?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), server::WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let server = server::Server::new(poll, listener, settings, token, live);
        let spare = spare_core(avoid);
        let thread = {
            let (stop, waker) = (Arc::clone(&stop), Arc::clone(&waker));
            std::thread::Builder::new()
                .name("dataplane-control".into())
                .spawn(move || {
                    lower_priority(spare);
                    server.run(stop, waker)
                })?
        };
        Ok(Control {
            addr,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The address bound (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ends the endpoint: open streams get what is left (within a short
    /// linger) and their end; then the thread is joined. Returns, per node,
    /// what its subscribers got and lost over the whole run.
    pub fn stop(mut self) -> BTreeMap<String, SubscriberCounts> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> BTreeMap<String, SubscriberCounts> {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(counts)) => counts,
            _ => BTreeMap::new(),
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A core the workers do not use, if the process may run on one.
fn spare_core(avoid: &[usize]) -> Option<core_affinity::CoreId> {
    core_affinity::get_core_ids()?
        .into_iter()
        .find(|c| !avoid.contains(&c.id))
}

/// Moves the calling thread off the workers' cores when it can. When it
/// cannot (every core runs a worker), it takes the lowest normal priority
/// (nice 19): it then gets about 1.5% of a core a busy worker shares with
/// it, and a waking worker preempts it. Not `SCHED_IDLE`: that would
/// starve `/metrics` entirely on a machine kept busy by anything else.
/// Under a load that takes every core, subscribers then lose elements
/// (counted), and the pipeline keeps its pace.
fn lower_priority(spare: Option<core_affinity::CoreId>) {
    if let Some(core) = spare {
        if core_affinity::set_for_current(core) {
            return;
        }
    }
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's id only changes its nice value;
    // a failure (not permitted) leaves it as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
    }
}
