//! A small blocking HTTP/1.1 client for the control endpoint (`dataplane
//! tap`, `dataplane top`, tests): one request per connection, the response
//! body read whole or streamed (chunked or to the end).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response whose body is read on demand.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (names lower-case).
    pub headers: Vec<(String, String)>,
    body: Body,
}

enum Body {
    Chunked {
        r: BufReader<TcpStream>,
        left: usize,
        done: bool,
    },
    Length {
        r: BufReader<TcpStream>,
        left: usize,
    },
    ToEnd(BufReader<TcpStream>),
}

/// Sends `GET target` to `addr` (with a bearer token when given) and reads
/// the response head. `timeout` bounds the connection and each read.
pub fn get(
    addr: SocketAddr,
    target: &str,
    token: Option<&str>,
    timeout: Option<Duration>,
) -> io::Result<Response> {
    let stream = match timeout {
        Some(t) => TcpStream::connect_timeout(&addr, t)?,
        None => TcpStream::connect(addr)?,
    };
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: dataplane\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    (&stream).write_all(req.as_bytes())?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| line.starts_with("HTTP/1."))
        .ok_or_else(|| bad(format!("not an HTTP response: {:?}", line.trim_end())))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in the response head".into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Body::Chunked {
            r,
            left: 0,
            done: false,
        }
    } else if let Some(n) = header("content-length") {
        let left = n
            .parse()
            .map_err(|_| bad(format!("bad Content-Length '{n}'")))?;
        Body::Length { r, left }
    } else {
        Body::ToEnd(r)
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

impl Response {
    /// The whole body.
    pub fn text(mut self) -> io::Result<String> {
        let mut s = String::new();
        self.read_to_string(&mut s)?;
        Ok(s)
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.body {
            Body::ToEnd(r) => r.read(buf),
            Body::Length { r, left } => {
                let want = buf.len().min(*left);
                if want == 0 {
                    return Ok(0);
                }
                let n = r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(bad("connection closed before the end of the body".into()));
                }
                *left -= n;
                Ok(n)
            }
            Body::Chunked { r, left, done } => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut line = String::new();
                    if r.read_line(&mut line)? == 0 {
                        return Err(bad("stream cut before its last chunk".into()));
                    }
                    let size = line.trim_end().split(';').next().unwrap_or("");
                    *left = usize::from_str_radix(size, 16)
                        .map_err(|_| bad(format!("bad chunk size {:?}", line.trim_end())))?;
                    if *left == 0 {
                        *done = true;
                        return Ok(0);
                    }
                }
                let want = buf.len().min(*left);
                let n = r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(bad("stream cut in a chunk".into()));
                }
                *left -= n;
                if *left == 0 {
                    let mut crlf = [0u8; 2];
                    r.read_exact(&mut crlf)?;
                }
                Ok(n)
            }
        }
    }
}

fn bad(m: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m)
}

/// Percent-encodes a query parameter value.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
