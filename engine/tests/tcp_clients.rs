//! `tcp-in` under a thousand clients connected at once: every line of every
//! client reaches the sink, and no client is refused or waits for another
//! to leave.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use dataplane::operators::TcpSource;
use dataplane::{Element, PipelineBuilder, Sink, Stage, StageError};

const CLIENTS: usize = 1000;
const LINES: usize = 3;
const THREADS: usize = 10;
/// Bounds every wait of the test: connects, writes, and the source's end
/// when lines were lost (its idle timeout).
const PATIENCE: Duration = Duration::from_secs(20);

/// Keeps the payloads it receives.
struct Collect {
    seen: Vec<String>,
    out: Arc<Mutex<Vec<String>>>,
}

impl Sink for Collect {
    fn push(&mut self, e: &Element<'_>) -> Result<(), StageError> {
        self.seen
            .push(String::from_utf8_lossy(e.payload()).into_owned());
        Ok(())
    }
    fn complete(&mut self) -> Result<(), StageError> {
        *self.out.lock().unwrap() = std::mem::take(&mut self.seen);
        Ok(())
    }
}

/// Raises the soft limit on open files toward `want`; returns the limit in
/// force.
fn raise_open_files(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit for the call, within the hard
        // limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = raised.rlim_cur;
        }
    }
    limit.rlim_cur
}

/// Clients `ids` connect (spread over threads), all stay connected until
/// every one has connected and sent its lines, then leave.
fn clients(addr: SocketAddr, ids: std::ops::Range<usize>) {
    let ids: Vec<usize> = ids.collect();
    let per_thread = ids.len().div_ceil(THREADS);
    let groups: Vec<Vec<usize>> = ids.chunks(per_thread).map(<[usize]>::to_vec).collect();
    let connected = Arc::new(Barrier::new(groups.len()));
    let sent = Arc::new(Barrier::new(groups.len()));
    let threads: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let (connected, sent) = (Arc::clone(&connected), Arc::clone(&sent));
            thread::spawn(move || {
                let streams: Vec<(usize, std::io::Result<TcpStream>)> = group
                    .iter()
                    .map(|&c| (c, TcpStream::connect_timeout(&addr, PATIENCE)))
                    .collect();
                connected.wait();
                let mut failures = Vec::new();
                for (c, stream) in &streams {
                    let written = stream.as_ref().map_err(|e| e.kind()).and_then(|mut s| {
                        s.set_write_timeout(Some(PATIENCE)).map_err(|e| e.kind())?;
                        for n in 0..LINES {
                            s.write_all(format!("{{\"c\":{c},\"n\":{n}}}\n").as_bytes())
                                .map_err(|e| e.kind())?;
                        }
                        Ok(())
                    });
                    if let Err(e) = written {
                        failures.push(format!("client {c}: {e:?}"));
                    }
                }
                sent.wait();
                failures
            })
        })
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} clients failed, first: {}",
        failures.len(),
        failures[0]
    );
}

/// A thousand clients at once, a few lines each: every line is received,
/// none dropped, no client refused.
#[test]
fn thousand_clients_at_once_lose_nothing() {
    // Each client costs two descriptors here (its socket and the accepted
    // one). Where the limit cannot be raised, fewer connect at once, in
    // waves, still a thousand in all.
    let limit = raise_open_files(4096);
    let at_once = CLIENTS
        .min((limit.saturating_sub(256) / 2) as usize)
        .max(10);
    if at_once < CLIENTS {
        eprintln!("open-file limit {limit}: {at_once} clients at once, in waves");
    }
    let total = (CLIENTS * LINES) as u64;
    let source = TcpSource::bind("127.0.0.1:0")
        .unwrap()
        .max_elements(total)
        .idle_timeout(PATIENCE.as_nanos() as u64);
    let addr = source.local_addr();
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Collect {
        seen: Vec::new(),
        out: Arc::clone(&out),
    };
    let run = thread::spawn(move || {
        let mut p = PipelineBuilder::new();
        p.add("tcp", "tcp-in", Stage::Source(Box::new(source)))
            .add("sink", "collect", Stage::Sink(Box::new(sink)))
            .connect(("tcp", "output"), ("sink", "input"));
        p.build().unwrap().run()
    });
    let mut first = 0;
    while first < CLIENTS {
        let end = (first + at_once).min(CLIENTS);
        clients(addr, first..end);
        first = end;
    }
    let report = run.join().unwrap();
    assert!(report.is_success(), "{report}");
    let tcp = report.stage("tcp").unwrap();
    assert_eq!((tcp.sent, tcp.dropped), (total, 0), "{report}");
    let mut got = std::mem::take(&mut *out.lock().unwrap());
    got.sort();
    let mut want: Vec<String> = (0..CLIENTS)
        .flat_map(|c| (0..LINES).map(move |n| format!("{{\"c\":{c},\"n\":{n}}}")))
        .collect();
    want.sort();
    let missing = want
        .iter()
        .filter(|w| got.binary_search(w).is_err())
        .count();
    assert!(
        got == want,
        "{} lines received, {} expected, {missing} missing",
        got.len(),
        want.len()
    );
}
