//! Just enough HTTP/1.1 to `GET /stats` from the control endpoint: one
//! blocking request per connection (`Connection: close`) over a std
//! `TcpStream` with connect and read timeouts, a status line, headers, and
//! a body delimited by `Content-Length` or by the end of the stream.
//! Pulling in an HTTP stack for one request a second would cost more build
//! time than this file.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Headers larger than this are refused (a wrong server, not ours).
const MAX_HEAD: usize = 64 * 1024;
/// Bodies larger than this are refused.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Why a request failed. Each variant's message says what to check.
#[derive(Debug)]
pub enum FetchError {
    /// The address does not parse or resolve.
    Resolve(String, io::Error),
    /// No connection could be made (refused, timed out, unreachable).
    Connect(SocketAddr, io::Error),
    /// The connection broke or timed out during the exchange.
    Io(io::Error),
    /// The server answered something that is not an HTTP/1.x response.
    Malformed(String),
    /// The server answered with a status other than 200.
    Status {
        /// The status code, such as 401.
        code: u16,
        /// The reason phrase.
        reason: String,
        /// The start of the body, for the message.
        body: String,
    },
}

impl FetchError {
    /// Whether the server actively refused the connection: nothing listens
    /// on the port (any more).
    pub fn is_refused(&self) -> bool {
        matches!(self, FetchError::Connect(_, e) if e.kind() == io::ErrorKind::ConnectionRefused)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Resolve(addr, e) => write!(f, "cannot resolve {addr}: {e}"),
            FetchError::Connect(addr, e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => write!(f, "connection refused by {addr}"),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    write!(f, "connecting to {addr} timed out")
                }
                _ => write!(f, "cannot connect to {addr}: {e}"),
            },
            FetchError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                write!(f, "no answer in time")
            }
            FetchError::Io(e) => write!(f, "{e}"),
            FetchError::Malformed(what) => write!(f, "not an HTTP response: {what}"),
            FetchError::Status { code, reason, body } => {
                write!(f, "HTTP {code} {reason}")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                match code {
                    401 | 403 => write!(f, " (check --token-file)"),
                    404 => write!(f, " (is this a dataplane control endpoint?)"),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for FetchError {}

/// A blocking client for one endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    /// `host:port`, as the user wrote it (also the `Host` header).
    authority: String,
    token: Option<String>,
    timeout: Duration,
}

impl Client {
    /// A client for `addr` (`host:port`, an `http://` prefix and a trailing
    /// `/` tolerated), sending `Authorization: Bearer <token>` when given.
    /// `timeout` bounds the connect and the whole exchange.
    pub fn new(addr: &str, token: Option<String>, timeout: Duration) -> Client {
        let authority = addr
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Client {
            authority,
            token,
            timeout,
        }
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `GET path`; the body of a 200 answer.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, FetchError> {
        let deadline = Instant::now() + self.timeout;
        let mut stream = self.connect()?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: dataplane-top\r\nConnection: close\r\n",
            self.authority
        );
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(FetchError::Io)?;
        stream
            .write_all(request.as_bytes())
            .map_err(FetchError::Io)?;
        let raw = read_response(&mut stream, deadline)?;
        let response = parse_response(&raw)?;
        if response.code != 200 {
            let body = String::from_utf8_lossy(&response.body);
            let body = body.lines().next().unwrap_or("").trim();
            return Err(FetchError::Status {
                code: response.code,
                reason: response.reason,
                body: body.chars().take(120).collect(),
            });
        }
        Ok(response.body)
    }

    fn connect(&self) -> Result<TcpStream, FetchError> {
        let addrs: Vec<SocketAddr> = self
            .authority
            .to_socket_addrs()
            .map_err(|e| FetchError::Resolve(self.authority.clone(), e))?
            .collect();
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(FetchError::Connect(addr, e)),
            }
        }
        Err(last.unwrap_or_else(|| {
            FetchError::Resolve(
                self.authority.clone(),
                io::Error::new(io::ErrorKind::NotFound, "no address"),
            )
        }))
    }
}

/// Reads until the body is complete (by `Content-Length`) or the server
/// closes, whichever the headers call for, within `deadline`.
fn read_response(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, FetchError> {
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut chunk = [0u8; 8 * 1024];
    // Where the response ends: unknown until the head is in; then after
    // `Content-Length` bytes of body, or at the end of the stream (the head
    // is parsed once, not on every read).
    let mut wanted: Option<usize> = None;
    let mut to_eof = false;
    loop {
        if let Some(total) = wanted {
            if buf.len() >= total {
                buf.truncate(total);
                return Ok(buf);
            }
        } else if !to_eof {
            if let Some(head_end) = find_head_end(&buf) {
                match parse_head(&buf[..head_end])?.content_length {
                    Some(n) if n > MAX_BODY => {
                        return Err(FetchError::Malformed(format!("body of {n} bytes")))
                    }
                    Some(n) => {
                        wanted = Some(head_end + 4 + n);
                        continue;
                    }
                    None => to_eof = true,
                }
            } else if buf.len() > MAX_HEAD {
                return Err(FetchError::Malformed("headers too long".into()));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FetchError::Io(io::ErrorKind::TimedOut.into()));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(FetchError::Io)?;
        match stream.read(&mut chunk) {
            Ok(0) if wanted.is_some() => {
                return Err(FetchError::Malformed(format!(
                    "connection closed after {} of {} bytes",
                    buf.len(),
                    wanted.unwrap_or(0)
                )))
            }
            Ok(0) => return Ok(buf),
            Ok(n) => {
                if buf.len() + n > MAX_HEAD + MAX_BODY {
                    return Err(FetchError::Malformed("response too long".into()));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FetchError::Io(e)),
        }
    }
}

/// A parsed response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
    /// The body, exactly `Content-Length` bytes when the header is present.
    pub body: Vec<u8>,
}

struct Head {
    code: u16,
    reason: String,
    content_length: Option<usize>,
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse_head(head: &[u8]) -> Result<Head, FetchError> {
    let head = std::str::from_utf8(head)
        .map_err(|_| FetchError::Malformed("headers are not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let (version, code, reason) = (parts.next(), parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        let shown: String = status.chars().take(40).collect();
        return Err(FetchError::Malformed(format!("status line {shown:?}")));
    }
    let code = code
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| FetchError::Malformed(format!("status line {status:?}")))?;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(FetchError::Malformed(format!("header line {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| FetchError::Malformed(format!("Content-Length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(FetchError::Malformed(format!(
                "Transfer-Encoding {value} is not supported"
            )));
        }
    }
    Ok(Head {
        code,
        reason: reason.unwrap_or("").to_string(),
        content_length,
    })
}

/// Parses a complete response (as read to its end).
pub fn parse_response(raw: &[u8]) -> Result<Response, FetchError> {
    let Some(head_end) = find_head_end(raw) else {
        return Err(FetchError::Malformed(if raw.is_empty() {
            "empty response".into()
        } else {
            "no end of headers".into()
        }));
    };
    let head = parse_head(&raw[..head_end])?;
    let body = &raw[head_end + 4..];
    let body = match head.content_length {
        Some(n) if body.len() < n => {
            return Err(FetchError::Malformed(format!(
                "body of {} bytes, Content-Length {n}",
                body.len()
            )))
        }
        Some(n) => &body[..n],
        None => body,
    };
    Ok(Response {
        code: head.code,
        reason: head.reason,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// Serves one connection: reads the request head, answers `answer`,
    /// and hands the request back.
    fn serve_once(answer: &'static [u8]) -> (String, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while find_head_end(&req).is_none() {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&b[..n]);
            }
            s.write_all(answer).unwrap();
            String::from_utf8(req).unwrap()
        });
        (addr, handle)
    }

    #[test]
    fn parses_status_headers_and_body() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}extra",
        )
        .unwrap();
        assert_eq!(
            r,
            Response {
                code: 200,
                reason: "OK".into(),
                body: b"{}".to_vec()
            }
        );
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nto the end").unwrap();
        assert_eq!(r.body, b"to the end");
        let r = parse_response(b"HTTP/1.1 204\r\n\r\n").unwrap();
        assert_eq!((r.code, r.reason.as_str()), (204, ""));
    }

    #[test]
    fn refuses_what_is_not_http() {
        for raw in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        ] {
            let e = parse_response(raw).unwrap_err();
            assert!(
                matches!(e, FetchError::Malformed(_)),
                "{:?}: {e}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn sends_a_get_with_host_close_and_bearer_token() {
        let (addr, server) = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"nodes\": []}",
        );
        let client = Client::new(
            &format!("http://{addr}/"),
            Some("s3cret".into()),
            Duration::from_secs(5),
        );
        assert_eq!(client.authority(), addr);
        let body = client.get("/stats").unwrap();
        assert_eq!(body, b"{\"nodes\": []}");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /stats HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("\r\nHost: {addr}\r\n")), "{req}");
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
        assert!(
            req.contains("\r\nAuthorization: Bearer s3cret\r\n"),
            "{req}"
        );
    }

    #[test]
    fn reads_to_eof_without_content_length_and_sends_no_token_unasked() {
        let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\n\r\n{\"uptime_ms\": 5}");
        let client = Client::new(&addr, None, Duration::from_secs(5));
        assert_eq!(client.get("/stats").unwrap(), b"{\"uptime_ms\": 5}");
        assert!(!server.join().unwrap().contains("Authorization"));
    }

    #[test]
    fn a_401_is_a_clear_error() {
        let (addr, server) = serve_once(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 22\r\n\r\nmissing or wrong token",
        );
        let e = Client::new(&addr, None, Duration::from_secs(5))
            .get("/stats")
            .unwrap_err();
        server.join().unwrap();
        assert!(matches!(e, FetchError::Status { code: 401, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "HTTP 401 Unauthorized: missing or wrong token (check --token-file)"
        );
        assert!(!e.is_refused());
    }

    #[test]
    fn a_closed_port_is_refused() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = Client::new(&format!("127.0.0.1:{port}"), None, Duration::from_secs(2))
            .get("/stats")
            .unwrap_err();
        assert!(e.is_refused(), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("connection refused by 127.0.0.1:{port}")
        );
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Accepted by the kernel's backlog, never answered.
        let e = Client::new(&addr, None, Duration::from_millis(200))
            .get("/stats")
            .unwrap_err();
        assert!(matches!(e, FetchError::Io(_)), "{e:?}");
        assert_eq!(e.to_string(), "no answer in time");
        drop(listener);
    }

    #[test]
    fn a_bad_address_does_not_resolve() {
        let e = Client::new("no port here", None, Duration::from_secs(1))
            .get("/stats")
            .unwrap_err();
        assert!(matches!(e, FetchError::Resolve(..)), "{e:?}");
    }
}
