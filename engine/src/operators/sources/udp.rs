//! `udp-in`: one datagram is one element (`udp-out` is in `sinks/udp.rs`).
//!
//! The source's socket is non-blocking and bound when the pipeline is
//! built (so a busy address is a config error, and the port is open before
//! the run starts); each datagram is received straight into its arena slot,
//! with no copy. A datagram larger than a slot is dropped with a reason
//! (the kernel reports its real length), never truncated silently.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use crate::clock::now_ns;
use crate::operators::lines::sniff;
use crate::operators::open::OpenAtInit;
use crate::operators::params::params;
use crate::operators::util::resolve;
use crate::stage::{Pull, Reason, SlotWriter, Source, StageError, StageInfo};

const MS: u64 = 1_000_000;

/// Asks for a socket receive buffer of `bytes` (the kernel may cap it).
fn set_recv_buffer(socket: &UdpSocket, bytes: usize) {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket fd, and `size` is a c_int that lives across the
    // call, with its exact length passed.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        log::warn!(
            "cannot set SO_RCVBUF to {bytes}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Receives one datagram into `buf`; returns its *full* length, which is
/// larger than `buf` when it was truncated.
fn recv_full(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the
        // whole call; MSG_TRUNC only changes the returned length.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Without MSG_TRUNC a full buffer may have been cut: treat it so.
        let n = socket.recv(buf)?;
        Ok(if n == buf.len() { n + 1 } else { n })
    }
}

/// Receives datagrams on a UDP address; each is an element. Finishes after
/// `max_elements`, or after `idle_timeout` without a datagram, or when
/// stopped.
pub struct UdpSource {
    socket: UdpSocket,
    local: SocketAddr,
    max_elements: Option<u64>,
    idle_timeout_ns: Option<u64>,
    received: u64,
    last_data_ns: u64,
}

impl UdpSource {
    /// Binds `address` (non-blocking), asking for a `recv_buffer`-byte
    /// socket buffer.
    pub fn bind(address: &str, recv_buffer: usize) -> Result<UdpSource, String> {
        let addr = resolve(address)?;
        let socket = UdpSocket::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
        set_recv_buffer(&socket, recv_buffer);
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        Ok(UdpSource {
            socket,
            local,
            max_elements: None,
            idle_timeout_ns: None,
            received: 0,
            last_data_ns: 0,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Finishes after `n` elements.
    pub fn max_elements(mut self, n: u64) -> UdpSource {
        self.max_elements = Some(n);
        self
    }

    /// Finishes after `ns` without a datagram (counted from the start
    /// until the first one).
    pub fn idle_timeout(mut self, ns: u64) -> UdpSource {
        self.idle_timeout_ns = Some(ns);
        self
    }
}

impl Source for UdpSource {
    fn init(&mut self, info: &StageInfo) -> Result<(), StageError> {
        log::info!("{}: listening on udp {}", info.name, self.local);
        self.last_data_ns = now_ns();
        Ok(())
    }

    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.max_elements.is_some_and(|m| self.received >= m) {
            return Ok(Pull::Done);
        }
        let buf = slot.buffer();
        let capacity = buf.len();
        match recv_full(&self.socket, buf) {
            Ok(n) if n > capacity => {
                self.last_data_ns = now_ns();
                Err(StageError::Rejected(Reason::new(
                    "payload too large",
                    format!(
                        "datagram of {n} bytes exceeds the arena slot size of {capacity} bytes"
                    ),
                )))
            }
            Ok(0) => Err(StageError::Rejected(Reason::new("empty datagram", ""))),
            Ok(n) => {
                self.received += 1;
                self.last_data_ns = 0; // stamped lazily, only when idle
                let ct = sniff(&slot.buffer()[..n]);
                slot.set_len(n)?;
                slot.set_content_type(ct);
                Ok(Pull::Ready)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let now = now_ns();
                if self.last_data_ns == 0 {
                    self.last_data_ns = now;
                }
                match self.idle_timeout_ns {
                    Some(t) if now - self.last_data_ns >= t => {
                        log::info!(
                            "udp {}: no datagram for {} ms, finishing after {} elements",
                            self.local,
                            t / MS,
                            self.received
                        );
                        Ok(Pull::Done)
                    }
                    _ => Ok(Pull::Pending),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(Pull::Pending),
            Err(e) => Err(StageError::Rejected(Reason::new(
                "receive failed",
                e.to_string(),
            ))),
        }
    }
}

params! {
    /// Parameters of `udp-in`.
    pub(crate) struct UdpSourceParams {
        /// address to bind, e.g. "127.0.0.1:9000"
        address: String,
        /// finish after this many elements
        max_elements: Option<u64>,
        /// finish after this long without a datagram (default: until stopped)
        idle_timeout_ms: Option<u64>,
        /// socket receive buffer to ask for, bytes (default 4 MiB; the kernel may
        /// cap it)
        #[serde(default = "default_recv_buffer")]
        recv_buffer: usize,
    }
}

fn default_recv_buffer() -> usize {
    4 << 20
}

/// `udp-in`: the address is checked now, bound in `init`.
pub(crate) fn build_source(p: UdpSourceParams) -> Result<OpenAtInit<UdpSource>, String> {
    resolve(&p.address)?;
    Ok(OpenAtInit::new(move || {
        let mut s = UdpSource::bind(&p.address, p.recv_buffer)?;
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
mod tests {
    use super::*;
    use crate::operators::testing::{strings, Harness};
    use crate::operators::UdpSink;
    use crate::stage::Sink;

    #[test]
    fn datagrams_in_and_out() {
        let mut h = Harness::new(64);
        let mut src = UdpSource::bind("127.0.0.1:0", 1 << 16)
            .unwrap()
            .max_elements(3);
        src.init(&h.info()).unwrap();
        let mut sink = UdpSink::new(&src.local_addr().to_string()).unwrap();
        let mut big = Harness::new(256);
        sink.init(&big.info()).unwrap();
        big.push(&mut sink, br#"{"n":1}"#, None).unwrap();
        big.push(&mut sink, &[b'x'; 100], None).unwrap(); // larger than a slot
        big.push(&mut sink, b"\xff garbage", None).unwrap();
        big.push(&mut sink, br#"{"n":2}"#, None).unwrap();
        let (got, errors) = h.pull_all(&mut src, 10, 2000);
        assert_eq!(
            strings(&got),
            ["{\"n\":1}", "\u{fffd} garbage", "{\"n\":2}"]
        );
        assert!(matches!(&errors[..], [StageError::Rejected(r)] if r.kind == "payload too large"));
        assert_eq!(h.pull(&mut src).0, Ok(Pull::Done), "max_elements");
    }

    #[test]
    fn idle_timeout_ends_the_source() {
        let mut h = Harness::new(64);
        let mut src = UdpSource::bind("127.0.0.1:0", 1 << 16)
            .unwrap()
            .idle_timeout(20 * MS);
        src.init(&h.info()).unwrap();
        let (got, _) = h.pull_all(&mut src, 10, 5000);
        assert!(got.is_empty());
        assert_eq!(h.pull(&mut src).0, Ok(Pull::Done));
        assert!(UdpSource::bind("definitely-not-a-host.invalid:1", 1).is_err());
    }
}
