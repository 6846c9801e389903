//! Unit tests of `operators/tcp_source.rs`.

use std::io::Write;
use std::net::TcpStream;

use super::*;
use crate::operators::testing::{strings, Harness};

#[test]
fn many_clients_garbage_and_disconnects() {
    let mut h = Harness::new(64);
    let mut src = TcpSource::bind("127.0.0.1:0")
        .unwrap()
        .idle_timeout(300 * MS);
    src.init(&h.info()).unwrap();
    let addr = src.local_addr();
    let mut a = TcpStream::connect(addr).unwrap();
    let mut b = TcpStream::connect(addr).unwrap();
    a.write_all(b"{\"c\":\"a\",\"n\":1}\n\xff\xfe garbage\n")
        .unwrap();
    b.write_all(b"{\"c\":\"b\",\"n\":1}\n").unwrap();
    b.write_all(&[b'y'; 70_000]).unwrap(); // longer than the read buffer
    b.write_all(b"\n{\"c\":\"b\",\"n\":2}\n").unwrap();
    a.write_all(b"{\"c\":\"a\",\"n\":2}").unwrap(); // no newline, then gone
    drop(a);
    let (got, errors) = h.pull_all(&mut src, 100, 5000);
    let mut got = strings(&got);
    got.sort();
    assert_eq!(
        got,
        [
            "{\"c\":\"a\",\"n\":1}",
            "{\"c\":\"a\",\"n\":2}",
            "{\"c\":\"b\",\"n\":1}",
            "{\"c\":\"b\",\"n\":2}",
            "\u{fffd}\u{fffd} garbage",
        ]
    );
    assert!(matches!(&errors[..], [StageError::Rejected(r)] if r.kind == "payload too large"));
    drop(b);
    assert_eq!(h.pull(&mut src).0, Ok(Pull::Done), "idle timeout");
}

/// A client that sends nothing, or half a line, holds up no one: new
/// clients are accepted and served while it stays connected.
#[test]
fn accepts_while_clients_stay_connected() {
    let mut h = Harness::new(64);
    let mut src = TcpSource::bind("127.0.0.1:0").unwrap();
    src.init(&h.info()).unwrap();
    let addr = src.local_addr();
    let _silent = TcpStream::connect(addr).unwrap();
    let mut partial = TcpStream::connect(addr).unwrap();
    partial.write_all(b"{\"half\":").unwrap();
    let (got, errors) = h.pull_all(&mut src, 1, 50);
    assert!(got.is_empty() && errors.is_empty());
    assert_eq!(src.open, 2);
    let mut got = Vec::new();
    for i in 0..3 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(format!("{{\"c\":{i}}}\n").as_bytes()).unwrap();
        let (lines, errors) = h.pull_all(&mut src, 1, 5000);
        assert!(errors.is_empty(), "{errors:?}");
        got.extend(strings(&lines));
    }
    assert_eq!(got, ["{\"c\":0}", "{\"c\":1}", "{\"c\":2}"]);
    partial.write_all(b"1}\n").unwrap();
    let (lines, _) = h.pull_all(&mut src, 1, 5000);
    assert_eq!(strings(&lines), ["{\"half\":1}"]);
}

/// Past `max_connections` a client is closed at once and counted (one
/// rejection each); a freed place is taken by the next client.
#[test]
fn lines_left_unread_at_the_end_are_counted() {
    let mut h = Harness::new(64);
    let mut src = TcpSource::bind("127.0.0.1:0").unwrap().max_elements(2);
    src.init(&h.info()).unwrap();
    let mut c = TcpStream::connect(src.local_addr()).unwrap();
    c.write_all(b"a\nb\nc\nd\ne\npartial").unwrap();
    // Wait until every byte is buffered (one read takes them all).
    let (got, errors) = h.pull_all(&mut src, 2, 5000);
    assert_eq!(strings(&got), ["a", "b"]);
    assert!(errors.is_empty(), "{errors:?}");
    let (got, errors) = h.pull_all(&mut src, 10, 50);
    assert!(got.is_empty());
    let kinds: Vec<&str> = errors
        .iter()
        .map(|e| match e {
            StageError::Rejected(r) => r.kind,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "not read: source finished",
            "not read: source finished",
            "not read: source finished",
            "incomplete line at end of run"
        ]
    );
    assert_eq!(h.pull(&mut src).0, Ok(Pull::Done));
}

#[test]
fn refuses_and_counts_clients_past_max_connections() {
    let mut h = Harness::new(64);
    let mut src = TcpSource::bind("127.0.0.1:0").unwrap().max_connections(2);
    src.init(&h.info()).unwrap();
    let addr = src.local_addr();
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(format!("{{\"c\":{i}}}\n").as_bytes()).unwrap();
            c
        })
        .collect();
    let (got, errors) = h.pull_all(&mut src, 2, 5000);
    let mut got = strings(&got);
    got.sort();
    assert_eq!(got, ["{\"c\":0}", "{\"c\":1}"], "the first two");
    assert!(
        matches!(&errors[..], [StageError::Rejected(r)] if r.kind == REFUSED),
        "{errors:?}"
    );
    // The refused client sees its connection closed.
    let mut refused = clients.pop().unwrap();
    refused
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0; 8];
    match refused.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    // One leaves; the next is served.
    drop(clients.remove(0));
    let (got, errors) = h.pull_all(&mut src, 1, 50);
    assert!(got.is_empty() && errors.is_empty());
    assert_eq!(src.open, 1);
    let mut next = TcpStream::connect(addr).unwrap();
    next.write_all(b"{\"c\":3}\n").unwrap();
    let (got, errors) = h.pull_all(&mut src, 1, 5000);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(strings(&got), ["{\"c\":3}"]);
}

/// Writes `lines` short lines from a thread and waits (up to 5 s) until
/// the kernel took them all, so that no data arrives once pulling
/// starts; the stream stays open.
fn send_lines(addr: SocketAddr, tag: &str, lines: usize) -> TcpStream {
    let tag = tag.to_string();
    let writer = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        let mut bytes = Vec::new();
        for n in 0..lines {
            bytes.extend_from_slice(format!("{tag}{n:05}\n").as_bytes());
        }
        c.write_all(&bytes).unwrap();
        c
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !writer.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(writer.is_finished(), "the kernel buffers the lines");
    writer.join().unwrap()
}

/// Readiness is reported once per arrival: a client whose bytes take
/// several reads is served to the end with no new event, while another
/// client's line goes out after at most one read of the first.
#[test]
fn serves_data_beyond_one_read_without_a_new_event() {
    const BULK: usize = 30_000; // 210 KB: four reads of 64 KiB
    let mut h = Harness::new(64);
    let mut src = TcpSource::bind("127.0.0.1:0").unwrap();
    src.init(&h.info()).unwrap();
    let addr = src.local_addr();
    let _bulk = send_lines(addr, "b", BULK);
    let _one = send_lines(addr, "one", 1);
    let (got, errors) = h.pull_all(&mut src, BULK + 1, 50);
    assert!(errors.is_empty(), "{errors:?}");
    let got = strings(&got);
    assert_eq!(got.len(), BULK + 1, "nothing stranded");
    let bulk: Vec<&String> = got.iter().filter(|l| l.starts_with('b')).collect();
    assert!(bulk
        .iter()
        .enumerate()
        .all(|(n, l)| **l == format!("b{n:05}")));
    let one = got.iter().position(|l| l == "one00000").unwrap();
    assert!(
        one <= READ_BUFFER / "b00000\n".len(),
        "served after one read of the bulk, not {one}"
    );
    // Once a read finds nothing, the clients wait for their next event.
    let (more, _) = h.pull_all(&mut src, 1, 5);
    assert!(more.is_empty());
    assert!(src.readable.is_empty() && src.round_left == 0);
}

/// Read buffers are lent only while a client has bytes buffered.
#[test]
fn idle_clients_hold_no_buffer() {
    let mut h = Harness::new(64);
    let mut src = TcpSource::bind("127.0.0.1:0").unwrap();
    src.init(&h.info()).unwrap();
    let addr = src.local_addr();
    let mut clients: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("{i}\n").as_bytes()).unwrap();
    }
    clients[0].write_all(b"unfinished").unwrap();
    let (got, _) = h.pull_all(&mut src, 20, 5000);
    assert_eq!(got.len(), 20);
    let (more, _) = h.pull_all(&mut src, 1, 50);
    assert!(more.is_empty());
    let holding = src.conns.iter().flatten().filter(|c| c.lines.is_some());
    assert_eq!(holding.count(), 1, "only the unfinished line's client");
    assert!(src.spare.len() <= SPARE_BUFFERS);
}
