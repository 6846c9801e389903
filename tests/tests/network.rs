//! The network operators against real peers: Python 3 clients and servers
//! (and, for `udp-out`, a plain socket in the test), never the engine
//! talking to itself. Loopback only. Every run ends by itself: the sources
//! are given `max_elements` (the exact number of elements the clients
//! send), with the shipped idle timeout as a backstop, so a lost datagram
//! fails the counts instead of hanging the test.

use std::net::UdpSocket;
use std::time::Duration;

use dataplane_tests::{
    adapt_config, free_port, start, Output, Python, TempDir, DEFAULT_TIMEOUT, EXIT_OK,
};

fn run_adapted(path: &std::path::Path, clients: Python) -> (Output, String) {
    let mut run = start(&[std::ffi::OsStr::new("--config"), path.as_os_str()]);
    // Sockets are bound when the pipeline is built, before this line.
    run.wait_for_stderr("[dataplane] running", DEFAULT_TIMEOUT);
    let out = run.wait();
    let printed = clients.wait(Duration::from_secs(60));
    out.assert_no_panic();
    (out, printed)
}

/// Sends N JSON datagrams (metric, log, trace in turn), paced so the
/// socket buffer never overflows, plus a garbage datagram and an oversized
/// one every 500.
const UDP_CLIENT: &str = r#"
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
addr = ("127.0.0.1", port)
for i in range(n):
    kind = (b"metric", b"log", b"trace")[i % 3]
    s.sendto(b'{"type":"%s","n":%d}' % (kind, i), addr)
    if i % 500 == 0:
        s.sendto(b"\xff\x00 garbage, not JSON", addr)
        s.sendto(b"x" * 3000, addr)
    if i % 20 == 19:
        time.sleep(0.001)
"#;

#[test]
fn udp_in_routes_to_two_files_exactly() {
    const N: usize = 3000;
    const GARBAGE: usize = N / 500;
    let dir = TempDir::new("udp-in");
    let port = free_port(true);
    let metrics = dir.path().join("metrics.ndjson").display().to_string();
    let logs = dir.path().join("logs.ndjson").display().to_string();
    let path = adapt_config(
        &dir,
        "udp.toml",
        &[
            ("127.0.0.1:9000", &format!("127.0.0.1:{port}")),
            (
                "idle_timeout_ms = 10_000",
                &format!("idle_timeout_ms = 10_000\nmax_elements = {}", N + GARBAGE),
            ),
            ("/tmp/dataplane-udp-metrics.ndjson", &metrics),
            ("/tmp/dataplane-udp-logs.ndjson", &logs),
        ],
    );
    let client = Python::start(UDP_CLIENT, &[&port.to_string(), &N.to_string()]);
    let (out, _) = run_adapted(&path, client);
    out.assert_code(EXIT_OK);

    let expect = |kind: &str, r: usize| -> String {
        (0..N)
            .filter(|i| i % 3 == r)
            .map(|i| format!("{{\"type\":\"{kind}\",\"n\":{i}}}\n"))
            .collect()
    };
    assert_eq!(
        std::fs::read_to_string(&metrics).unwrap(),
        expect("metric", 0)
    );
    assert_eq!(std::fs::read_to_string(&logs).unwrap(), expect("log", 1));

    let listen = out.stage("listen");
    assert_eq!(listen.sent, (N + GARBAGE) as u64, "{}", out.dump());
    assert_eq!(listen.dropped, GARBAGE as u64, "oversized datagrams");
    out.assert_stderr_contains(&format!("dropped {GARBAGE} x payload too large"));
    let route = out.stage("route");
    assert_eq!(route.received, (N + GARBAGE) as u64);
    out.assert_stderr_contains(&format!("dropped {GARBAGE} x invalid JSON"))
        .assert_stderr_contains(&format!("dropped {} x no route", N / 3));
}

/// One process plays both peers of the relay: a server that collects what
/// tcp-out delivers, and three clients of tcp-in (one clean, one sending
/// garbage lines, one that vanishes in the middle of a line).
const TCP_PEERS: &str = r#"
import socket, sys, threading, time
port_in, port_out = int(sys.argv[1]), int(sys.argv[2])

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port_out))
server.listen(8)
server.settimeout(60)
received = []

def serve():
    # Accept until a connection that delivered data reaches EOF (tcp-out
    # shuts its side down at the end of the stream).
    while True:
        conn, _ = server.accept()
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        conn.close()
        if data:
            received.extend(data.decode().splitlines())
            return

collector = threading.Thread(target=serve)
collector.start()

def connect():
    for _ in range(2000):
        try:
            return socket.create_connection(("127.0.0.1", port_in))
        except OSError:
            time.sleep(0.01)
    raise SystemExit("tcp-in never accepted")

def client_a():
    c = connect()
    c.sendall(b"".join(b'{"level":"%s","c":"A","n":%d}\n' % ((b"error", b"info")[i % 2], i) for i in range(500)))
    c.close()

def client_b():
    c = connect()
    for i in range(500):
        c.sendall(b'{"level":"%s","c":"B","n":%d}\n' % ((b"error", b"info")[i % 2], i))
        if i % 100 == 0:
            c.sendall(b"\xff\xfe binary garbage\nnot json either\n")
    c.close()

def client_c():
    c = connect()
    c.sendall(b"".join(b'{"level":"%s","c":"C","n":%d}\n' % ((b"error", b"info")[i % 2], i) for i in range(10)))
    c.sendall(b'{"level":"error","c":"C","n":10')  # gone mid-line
    c.close()

threads = [threading.Thread(target=f) for f in (client_a, client_b, client_c)]
for t in threads:
    t.start()
for t in threads:
    t.join()
collector.join()
print("\n".join(received))
"#;

#[test]
fn tcp_relay_with_many_clients_garbage_and_disconnects() {
    let dir = TempDir::new("tcp-relay");
    let (port_in, port_out) = (free_port(false), free_port(false));
    // 500 + (500 + 5 x 2 garbage) + (10 + 1 cut short) lines.
    let total = 500 + 510 + 11;
    let path = adapt_config(
        &dir,
        "tcp.toml",
        &[
            ("127.0.0.1:9001", &format!("127.0.0.1:{port_in}")),
            ("127.0.0.1:9002", &format!("127.0.0.1:{port_out}")),
            (
                "idle_timeout_ms = 10_000",
                &format!("idle_timeout_ms = 10_000\nmax_elements = {total}"),
            ),
        ],
    );
    let peers = Python::start(TCP_PEERS, &[&port_in.to_string(), &port_out.to_string()]);
    let (out, delivered) = run_adapted(&path, peers);
    out.assert_code(EXIT_OK);

    // Every error-level line arrived, each client's in its order.
    let delivered: Vec<serde_json::Value> = delivered
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    for (client, n) in [("A", 500), ("B", 500), ("C", 10)] {
        let got: Vec<u64> = delivered
            .iter()
            .filter(|v| v["c"] == client)
            .map(|v| {
                assert_eq!(v["level"], "error");
                v["n"].as_u64().unwrap()
            })
            .collect();
        let want: Vec<u64> = (0..n).step_by(2).collect();
        assert_eq!(got, want, "client {client}");
    }
    assert_eq!(delivered.len(), 250 + 250 + 5);

    // Garbage and the cut-short line: rejected with their reason, printed.
    let rejects: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejects.len(), 11, "{}", out.dump());
    assert!(rejects.iter().all(|r| r["reason"] == "invalid JSON"));
    assert!(rejects
        .iter()
        .any(|r| r["payload"] == r#"{"level":"error","c":"C","n":10"#));
    assert_eq!(
        rejects
            .iter()
            .filter(|r| r["payload"] == "not json either")
            .count(),
        5
    );
    let listen = out.stage("listen");
    assert_eq!(listen.sent, total as u64);
    let filter = out.stage("errors-only");
    assert_eq!(
        (filter.received, filter.sent, filter.dropped),
        (total as u64, 505 + 11, 505)
    );
}

#[test]
fn udp_out_sends_every_element() {
    let dir = TempDir::new("udp-out");
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = receiver.local_addr().unwrap().port();
    let path = adapt_config(
        &dir,
        "udp_out.toml",
        &[("127.0.0.1:9003", &format!("127.0.0.1:{port}"))],
    );
    let run = start(&[std::ffi::OsStr::new("--config"), path.as_os_str()]);
    let mut seqs = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        let n = receiver.recv(&mut buf).expect("a datagram");
        let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert!(v["r"].as_u64().unwrap() < 1000);
        seqs.push(v["seq"].as_u64().unwrap());
    }
    let out = run.wait();
    out.assert_code(EXIT_OK).assert_no_panic();
    assert_eq!(seqs, (0..100).collect::<Vec<u64>>());
    let sink = out.stage("out");
    assert_eq!((sink.received, sink.dropped), (100, 0));
}
