//! The window tests (count, processing time, backpressure, snapshots).

use std::cell::Cell;

use super::*;
use crate::operators::testing::{strings, Harness};

fn window(spec: &str) -> Window {
    let t: toml::Table = toml::from_str(spec).unwrap();
    build_processing(crate::operators::parse(&t).unwrap()).unwrap()
}

fn feed(h: &mut Harness, w: &mut Window, docs: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for d in docs {
        let r = h.process(w, d.as_bytes());
        assert_eq!(r.verdict, Ok(Verdict::Drop), "{d}");
        out.extend(strings(&r.emitted));
    }
    out
}

fn docs(n: u64) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"k":"{}","v":{i}}}"#, ["a", "b"][(i % 2) as usize]))
        .collect()
}

#[test]
fn tumbling_count_per_key() {
    let mut w = window(
        r#"size = 4
key = "k"
field = "v""#,
    );
    let mut h = Harness::new(256);
    let out = feed(&mut h, &mut w, &docs(10));
    assert_eq!(
        out,
        [
            r#"{"k":"a","start":0,"end":4,"count":2,"sum":2,"min":0,"max":2,"avg":1}"#,
            r#"{"k":"b","start":0,"end":4,"count":2,"sum":4,"min":1,"max":3,"avg":2}"#,
            r#"{"k":"a","start":4,"end":8,"count":2,"sum":10,"min":4,"max":6,"avg":5}"#,
            r#"{"k":"b","start":4,"end":8,"count":2,"sum":12,"min":5,"max":7,"avg":6}"#,
        ]
    );
    let rest = strings(&h.finish(&mut w));
    assert_eq!(
        rest,
        [
            r#"{"k":"a","start":8,"end":12,"count":1,"sum":8,"min":8,"max":8,"avg":8}"#,
            r#"{"k":"b","start":8,"end":12,"count":1,"sum":9,"min":9,"max":9,"avg":9}"#,
        ]
    );
}

#[test]
fn sliding_count_without_key() {
    let mut w = window(
        r#"kind = "sliding"
size = 4
slide = 2
field = "v"
aggregates = ["sum", "count"]"#,
    );
    let mut h = Harness::new(256);
    let out = feed(&mut h, &mut w, &docs(7));
    // Windows [0,4) at element 3 and [2,6) at element 5.
    assert_eq!(
        out,
        [
            r#"{"start":0,"end":4,"count":4,"sum":6}"#,
            r#"{"start":2,"end":6,"count":4,"sum":14}"#,
        ]
    );
    // Open: [4,8) holds 4,5,6 and [6,10) holds 6.
    assert_eq!(
        strings(&h.finish(&mut w)),
        [
            r#"{"start":4,"end":8,"count":3,"sum":15}"#,
            r#"{"start":6,"end":10,"count":1,"sum":6}"#,
        ]
    );
}

#[test]
fn bad_elements_are_rejected_and_not_counted() {
    let mut w = window("size = 2\nfield = \"v\"");
    let mut h = Harness::new(256);
    for bad in [&b"nope"[..], br#"{"x":1}"#, br#"{"v":"high"}"#] {
        assert!(matches!(
            h.process(&mut w, bad).verdict,
            Err(StageError::Rejected(_))
        ));
    }
    let out = feed(
        &mut h,
        &mut w,
        &[r#"{"v":1}"#.into(), r#"{"v":2.5}"#.into()],
    );
    assert_eq!(
        out,
        [r#"{"start":0,"end":2,"count":2,"sum":3.5,"min":1,"max":2.5,"avg":1.75}"#]
    );
    assert!(h.finish(&mut w).is_empty());
}

/// Keys past `max_keys` are rejected per element and counted once per
/// pane per key.
#[test]
fn counts_keys_refused_past_max_keys() {
    let mut w = window("size = 4\nkey = \"k\"\nmax_keys = 2");
    let mut h = Harness::new(256);
    let mut refused = 0;
    let mut out = Vec::new();
    for k in ["a", "b", "c", "c", "a", "b", "c", "d", "e", "e", "f", "c"] {
        let r = h.process(&mut w, format!(r#"{{"k":"{k}"}}"#).as_bytes());
        match r.verdict {
            Ok(v) => assert_eq!(v, Verdict::Drop),
            Err(StageError::Rejected(r)) if r.kind == "too many keys" => refused += 1,
            Err(e) => panic!("{e}"),
        }
        out.extend(strings(&r.emitted));
    }
    // Pane [0,4): a, b, a, b (c refused twice). Pane [4,8): c, d so
    // far (e twice and f refused).
    assert_eq!(
        out,
        [
            r#"{"k":"a","start":0,"end":4,"count":2}"#,
            r#"{"k":"b","start":0,"end":4,"count":2}"#,
        ]
    );
    assert_eq!(refused, 5);
    assert_eq!(w.counts(), [("keys refused (max_keys)", 1 + 2)]);
    let unkeyed = window("size = 4");
    assert!(unkeyed.counts().is_empty());
}

thread_local! {
    static NOW: Cell<u64> = const { Cell::new(1) };
}

fn fake_now() -> u64 {
    NOW.with(Cell::get)
}

#[test]
fn time_windows_close_on_ticks() {
    const MS: u64 = 1_000_000;
    let mut w = window("kind = \"sliding\"\nsize_ms = 100\nslide_ms = 50\nkey = \"k\"");
    w.now = fake_now;
    w.wall_offset = 0; // the fake clock is "Unix time"
    assert_eq!(w.tick_interval(), Some(2_500_000));
    let mut h = Harness::new(256);
    let at = |ms: u64| NOW.with(|n| n.set(ms * MS));
    at(1_000_010);
    feed(
        &mut h,
        &mut w,
        &[r#"{"k":"a"}"#.into(), r#"{"k":"b"}"#.into()],
    );
    at(1_000_060);
    // The first pane closed when this element arrived: the window
    // [999_950, 1_000_050) that ends with it is emitted then.
    assert_eq!(
        feed(&mut h, &mut w, &[r#"{"k":"a"}"#.into()]),
        [
            r#"{"k":"a","start":999950,"end":1000050,"count":1}"#,
            r#"{"k":"b","start":999950,"end":1000050,"count":1}"#,
        ]
    );
    at(1_000_120);
    let ticked = strings(&h.tick(&mut w, fake_now()));
    assert_eq!(
        ticked,
        [
            r#"{"k":"a","start":1000000,"end":1000100,"count":2}"#,
            r#"{"k":"b","start":1000000,"end":1000100,"count":1}"#,
        ]
    );
    // Long silence: one more window holds the last pane, then nothing.
    at(1_009_000);
    assert_eq!(
        strings(&h.tick(&mut w, fake_now())),
        [r#"{"k":"a","start":1000050,"end":1000150,"count":1}"#]
    );
    at(1_009_500);
    assert!(h.tick(&mut w, fake_now()).is_empty());
    assert!(h.finish(&mut w).is_empty());
}

/// One element per key `0..n`, in order.
fn keyed(n: u64) -> Vec<String> {
    (0..n).map(|i| format!(r#"{{"k":{i}}}"#)).collect()
}

fn results(first: u64, n: u64, start: u64, end: u64) -> Vec<String> {
    (first..first + n)
        .map(|i| format!(r#"{{"k":{i},"start":{start},"end":{end},"count":1}}"#))
        .collect()
}

/// A window closing with more results than the arena has slots (64
/// in the harness) holds the rest and defers its input until they are
/// out; nothing is lost or repeated, and the order stays.
#[test]
fn results_without_room_are_held_and_input_deferred() {
    let mut w = window("size = 200\nkey = \"k\"\nmax_keys = 1000");
    let mut h = Harness::new(256);
    let mut out = Vec::new();
    let mut deferred = 0;
    for d in keyed(200).iter().chain(&keyed(3)) {
        loop {
            let r = h.process(&mut w, d.as_bytes());
            out.extend(strings(&r.emitted));
            match r.verdict {
                Ok(Verdict::Drop) => break,
                Ok(Verdict::Defer) => {
                    assert!(!r.emitted.is_empty(), "deferred without progress");
                    deferred += 1;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(deferred > 0, "the harness arena is smaller than the window");
    assert_eq!(out, results(0, 200, 0, 200));
    assert_eq!(strings(&h.finish(&mut w)), results(0, 3, 200, 400));
}

/// `finish` with more results than slots returns `More` until all are
/// out (the harness calls it again, as the runtime does).
#[test]
fn finish_resumes_until_every_result_is_out() {
    let mut w = window("kind = \"sliding\"\nsize = 1000\nslide = 500\nkey = \"k\"");
    let mut h = Harness::new(256);
    feed(&mut h, &mut w, &keyed(150));
    // Only window [0,1000) holds the open pane: count windows before
    // element 0 do not exist.
    assert_eq!(strings(&h.finish(&mut w)), results(0, 150, 0, 1000));
    assert!(h.finish(&mut w).is_empty());
}

/// A time window closing on `tick` with more results than slots: the
/// ticks that follow go on with them, then the next windows close.
#[test]
fn tick_resumes_until_every_result_is_out() {
    const MS: u64 = 1_000_000;
    let mut w = window("size_ms = 100\nkey = \"k\"\nmax_keys = 1000");
    w.now = fake_now;
    w.wall_offset = 0;
    let mut h = Harness::new(256);
    NOW.with(|n| n.set(2_000_010 * MS));
    feed(&mut h, &mut w, &keyed(150));
    NOW.with(|n| n.set(2_000_150 * MS));
    // This element's arrival closes the first window, with room in the
    // 64-slot arena for part of it: the element waits.
    let r = h.process(&mut w, br#"{"k":0}"#);
    assert_eq!(r.verdict, Ok(Verdict::Defer));
    let mut out = strings(&r.emitted);
    assert!(!out.is_empty() && out.len() < 150, "{}", out.len());
    // The ticks that follow emit the rest; then the element gets in.
    out.extend(strings(&h.tick(&mut w, fake_now())));
    assert_eq!(out, results(0, 150, 2_000_000, 2_000_100));
    feed(&mut h, &mut w, &keyed(1));
    assert_eq!(
        strings(&h.tick(&mut w, 2_000_250 * MS)),
        results(0, 1, 2_000_100, 2_000_200)
    );
}

#[test]
fn a_restored_count_window_goes_on_where_the_snapshot_was_taken() {
    let docs = keyed(10);
    let mut h = Harness::new(256);
    let mut whole = window("size = 4\nkey = \"k\"");
    let expected = feed(&mut h, &mut whole, &docs);
    let mut first = window("size = 4\nkey = \"k\"");
    let mut out = feed(&mut h, &mut first, &docs[..6]);
    let state = first.snapshot().unwrap();
    let mut resumed = window("size = 4\nkey = \"k\"");
    resumed.restore(&state).unwrap();
    out.extend(feed(&mut h, &mut resumed, &docs[6..]));
    assert_eq!(out, expected);
    assert!(window("size = 4")
        .restore(&state[..state.len() - 1])
        .is_err());
}

#[test]
fn config_errors() {
    let err = |spec: &str| {
        let t: toml::Table = toml::from_str(spec).unwrap();
        build(crate::operators::parse(&t).unwrap()).err().unwrap()
    };
    assert!(err("size = 10\nsize_ms = 5").contains("exactly one"));
    assert!(err("kind = \"sliding\"\nsize = 10\nslide = 3").contains("divide"));
    assert!(err("kind = \"sliding\"\nsize = 10").contains("needs slide"));
    assert!(err("size = 10\naggregates = [\"sum\"]").contains("need a 'field'"));
    assert!(err("size = 10\naggregates = [\"median\"]").contains("unknown 'median'"));
    assert!(err("kind = \"hopping\"\nsize = 10").contains("kind must be"));
}
