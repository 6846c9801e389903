//! `udp-out`: each element is one datagram (`udp-in` is in
//! `sources/udp.rs`, with the tests of the two together).

use std::net::{SocketAddr, UdpSocket};

use crate::operators::params::params;
use crate::operators::util::resolve;
use crate::stage::{Element, Reason, Sink, StageError, StageInfo};

/// Sends each element as one datagram to an address. Never blocks: when
/// the socket's send buffer is full, or the peer refused (an ICMP error
/// reported on a later send), the element is dropped with the reason.
pub struct UdpSink {
    target: SocketAddr,
    socket: Option<UdpSocket>,
}

impl UdpSink {
    /// Sends to `address`.
    pub fn new(address: &str) -> Result<UdpSink, String> {
        Ok(UdpSink {
            target: resolve(address)?,
            socket: None,
        })
    }
}

impl Sink for UdpSink {
    fn init(&mut self, _info: &StageInfo) -> Result<(), StageError> {
        let local: SocketAddr = if self.target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let fatal = |e: std::io::Error| StageError::Fatal(format!("udp socket: {e}"));
        let socket = UdpSocket::bind(local).map_err(fatal)?;
        socket.connect(self.target).map_err(fatal)?;
        socket.set_nonblocking(true).map_err(fatal)?;
        self.socket = Some(socket);
        Ok(())
    }

    fn push(&mut self, element: &Element<'_>) -> Result<(), StageError> {
        let socket = self
            .socket
            .as_ref()
            .ok_or_else(|| StageError::Fatal("socket not open".to_string()))?;
        match socket.send(element.payload()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(StageError::Failed(
                Reason::new("send buffer full", self.target.to_string()),
            )),
            Err(e) => Err(StageError::Failed(Reason::new(
                "send failed",
                format!("{}: {e}", self.target),
            ))),
        }
    }
}

params! {
    /// Parameters of `udp-out`.
    pub(crate) struct UdpSinkParams {
        /// destination, e.g. "127.0.0.1:9000"
        address: String,
    }
}

pub(crate) fn build_sink(p: UdpSinkParams) -> Result<UdpSink, String> {
    UdpSink::new(&p.address)
}
