//! A deliberately separate HTTP/1.1 client for the control endpoint tests
//! (not the engine's own `control::client`, so a bug shared by the server
//! and its client cannot hide): one request per connection, whole bodies
//! read to the end, streams decoded chunk by chunk.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long any read may block before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Head lines after the status line.
    pub head: String,
    /// Body (chunked bodies decoded).
    pub body: String,
}

/// Sends a raw request text and reads the reply to the end.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to the control endpoint");
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.write_all(request).expect("send the request");
    let mut bytes = Vec::new();
    // A reset after the reply (the server closed with unread input) ends
    // the read like an end of file.
    let _ = s.read_to_end(&mut bytes);
    parse(&bytes)
}

/// `GET target`, with a bearer token when given.
pub fn get(addr: SocketAddr, target: &str, token: Option<&str>) -> Reply {
    raw(addr, request(target, token).as_bytes())
}

fn request(target: &str, token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!("GET {target} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n")
}

fn parse(bytes: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut r = Chunked::new(body.as_bytes());
        let mut s = String::new();
        r.read_to_string(&mut s)
            .expect("a well-formed chunked body");
        s
    } else {
        body.to_string()
    };
    Reply {
        status,
        head: head.to_string(),
        body,
    }
}

/// An open NDJSON stream (`/subscribe`, `/tap`).
pub struct Stream {
    reader: BufReader<Chunked<TcpStream>>,
}

impl Stream {
    /// Opens a stream; panics unless the endpoint answers 200 chunked.
    pub fn open(addr: SocketAddr, target: &str, token: Option<&str>) -> Stream {
        let mut s = TcpStream::connect(addr).expect("connect to the control endpoint");
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.write_all(request(target, token).as_bytes()).unwrap();
        // Read the head byte by byte: what follows is the chunked body.
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                s.read(&mut b).expect("read the head"),
                1,
                "closed in the head: {}",
                String::from_utf8_lossy(&head)
            );
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{target}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        Stream {
            reader: BufReader::new(Chunked::new(s)),
        }
    }

    /// The next line, or `None` at the end of the stream.
    pub fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).expect("read a line") {
            0 => None,
            _ => Some(line.trim_end_matches('\n').to_string()),
        }
    }
}

/// Decodes a chunked body.
struct Chunked<R> {
    r: BufReader<R>,
    left: usize,
    done: bool,
}

impl<R: Read> Chunked<R> {
    fn new(r: R) -> Self {
        Chunked {
            r: BufReader::new(r),
            left: 0,
            done: false,
        }
    }
}

impl<R: Read> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = String::new();
            if self.r.read_line(&mut size)? == 0 {
                panic!("stream cut before its last chunk");
            }
            self.left = usize::from_str_radix(size.trim_end(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {size:?}"));
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left);
        let n = self.r.read(&mut buf[..want])?;
        assert!(n > 0, "stream cut in a chunk");
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.r.read_exact(&mut crlf)?;
            assert_eq!(&crlf, b"\r\n", "chunk not followed by CRLF");
        }
        Ok(n)
    }
}

/// The value of the sample `name{labels}` in a Prometheus exposition
/// (`labels` exactly as written, e.g. `node="mux"`).
pub fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key)?.strip_prefix(' ')?.parse().ok())
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
