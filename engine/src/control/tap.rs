//! `dataplane tap`: a client of the endpoint's `/tap` that prints the
//! stream, one JSON line per element.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};

use super::client;

/// What to tap.
#[derive(Clone, Debug)]
pub struct TapRequest {
    /// The endpoint (`IP:PORT`, or a bare port for loopback).
    pub control: String,
    /// `NODE`, `NODE.PORT`, or a mux's name.
    pub target: String,
    /// A predicate as JSON.
    pub predicate: Option<String>,
    /// Stop after this many elements.
    pub limit: Option<u64>,
    /// The bearer token.
    pub token: Option<String>,
}

/// Why a tap ended badly.
#[derive(Debug)]
pub enum TapError {
    /// The endpoint could not be reached.
    Unreachable(String),
    /// The endpoint is busy (503).
    Unavailable(String),
    /// The request was refused: no such node or port, a bad predicate...
    Refused(String),
    /// A token is needed, or the one given is wrong (401).
    Unauthorized(String),
    /// The stream broke before its end.
    Cut(String),
    /// Standard output failed.
    Output(io::Error),
}

impl fmt::Display for TapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TapError::Unreachable(m)
            | TapError::Unavailable(m)
            | TapError::Refused(m)
            | TapError::Unauthorized(m)
            | TapError::Cut(m) => f.write_str(m),
            TapError::Output(e) => write!(f, "cannot write to stdout: {e}"),
        }
    }
}

/// Prints the tapped stream to `out` until it ends (the node finished, the
/// limit was reached); returns the elements printed. A reader that went
/// away (`| head`) ends the tap quietly.
pub fn run(req: &TapRequest, out: &mut impl Write) -> Result<u64, TapError> {
    let addr = super::parse_listen(&req.control).map_err(TapError::Unreachable)?;
    // A dot separates the port, but node names may hold dots: a name the
    // endpoint knows whole wins (it answers 404 otherwise, and we retry).
    let mut target = format!("/tap?node={}", client::encode(&req.target));
    if let Some((node, port)) = req.target.rsplit_once('.') {
        target = format!(
            "/tap?node={}&port={}",
            client::encode(node),
            client::encode(port)
        );
    }
    let mut query = String::new();
    if let Some(w) = &req.predicate {
        query.push_str(&format!("&where={}", client::encode(w)));
    }
    if let Some(l) = req.limit {
        query.push_str(&format!("&limit={l}"));
    }
    let connect = |target: &str| {
        client::get(
            addr,
            &format!("{target}{query}"),
            req.token.as_deref(),
            None,
        )
        .map_err(|e| {
            TapError::Unreachable(format!("cannot reach the control endpoint at {addr}: {e}"))
        })
    };
    let mut resp = connect(&target)?;
    if resp.status == 404 && req.target.contains('.') {
        let whole = format!("/tap?node={}", client::encode(&req.target));
        let retry = connect(&whole)?;
        if retry.status != 404 {
            resp = retry;
        }
    }
    match resp.status {
        200 => {}
        status => {
            let body = resp.text().unwrap_or_default();
            let m = format!("{status}: {}", body.trim());
            return Err(match status {
                401 => TapError::Unauthorized(m),
                503 => TapError::Unavailable(m),
                _ => TapError::Refused(m),
            });
        }
    }
    let mut lines = BufReader::new(resp);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(n),
            Ok(_) => {}
            Err(e) => {
                return Err(TapError::Cut(format!(
                    "the stream broke after {n} elements: {e}"
                )))
            }
        }
        match out.write_all(&line).and_then(|()| out.flush()) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(n),
            Err(e) => return Err(TapError::Output(e)),
        }
    }
}
