//! Unit tests of `top/model.rs`.

use super::*;

fn node(name: &str, role: NodeRole, received: u64, sent: u64) -> NodeStats {
    NodeStats {
        name: name.into(),
        role,
        received,
        sent,
        ..NodeStats::default()
    }
}

fn snap(uptime_ms: u64, at: Instant, nodes: Vec<NodeStats>) -> Snapshot {
    Snapshot {
        stats: Stats {
            uptime_ms,
            nodes,
            ..Stats::default()
        },
        at,
    }
}

fn row(name: &str, rate_in: Option<f64>) -> NodeRow {
    NodeRow {
        name: name.into(),
        role: NodeRole::Processor,
        state: NodeState::Running,
        rate_in,
        rate_out: None,
        dropped: 0,
        drop_rate: None,
        queue_fill: None,
        p99_ns: None,
    }
}

#[test]
fn parses_the_documented_body_and_tolerates_extra_and_missing_fields() {
    let body = r#"{"uptime_ms": 1234, "arena": {"slots": 16384, "used": 120},
     "nodes": [
       {"name": "gen", "component": "generator", "role": "source", "worker": 0,
        "received": 0, "sent": 1000, "dropped": 0, "failed": 0,
        "queue_depth": 0, "queue_capacity": 0,
        "latency_p50_ns": null, "latency_p99_ns": null, "subscribers": 0, "state": "running"},
       {"name": "sink", "role": "sink", "received": 990, "latency_p99_ns": 1500,
        "state": "failed", "future_field": [1, 2]},
       {"name": "odd", "role": "teleporter", "state": "sleeping"}
     ],
     "edges": [{"from": "gen", "port": "output", "to": "sink", "depth": 3,
                "capacity": 1024, "dropped": 0, "when_full": "block"}],
     "something_new": {}}"#;
    let s: Stats = serde_json::from_str(body).unwrap();
    assert_eq!(s.uptime_ms, 1234);
    assert_eq!(
        s.arena,
        Some(ArenaStats {
            slots: 16384,
            used: 120
        })
    );
    assert_eq!(s.nodes[0].role, NodeRole::Source);
    assert_eq!(s.nodes[0].sent, 1000);
    assert_eq!(s.nodes[0].worker, Some(0));
    assert_eq!(s.nodes[1].state, NodeState::Failed);
    assert_eq!(s.nodes[1].latency_p99_ns, Some(1500));
    assert_eq!(s.nodes[1].component, "");
    assert_eq!(s.nodes[2].role, NodeRole::Other);
    assert_eq!(s.nodes[2].state, NodeState::Unknown);
    assert_eq!(s.edges[0].capacity, 1024);

    let empty: Stats = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, Stats::default());
}

#[test]
fn rates_come_from_two_snapshots_over_the_uptime_difference() {
    let t0 = Instant::now();
    let mut gen = node("gen", NodeRole::Source, 0, 1000);
    let mut sink = node("sink", NodeRole::Sink, 900, 900);
    sink.dropped = 10;
    sink.queue_depth = 30;
    sink.queue_capacity = 120;
    sink.latency_p99_ns = Some(2_000);
    let a = snap(1_000, t0, vec![gen.clone(), sink.clone()]);
    gen.sent = 3000;
    sink.received = 2900;
    sink.sent = 2880;
    sink.dropped = 14;
    sink.failed = 6;
    // The local clock says 5 s passed (a slow network); the pipeline says 2 s.
    let mut b = snap(3_000, t0 + Duration::from_secs(5), vec![gen, sink]);
    b.stats.edges = vec![
        EdgeStats {
            from: "gen".into(),
            to: "sink".into(),
            dropped: 4,
            ..EdgeStats::default()
        },
        EdgeStats {
            from: "sink".into(),
            to: "elsewhere".into(),
            dropped: 1000,
            ..EdgeStats::default()
        },
    ];

    let first = rows(None, &a);
    assert_eq!(first[1].rate_in, None, "one snapshot: no rate yet");
    assert_eq!(first[1].queue_fill, Some(25.0));
    assert_eq!(first[0].queue_fill, None, "a source has no input queue");

    let r = rows(Some(&a), &b);
    assert_eq!(r[0].name, "gen");
    assert_eq!(r[0].rate_in, Some(0.0));
    assert_eq!(r[0].rate_out, Some(1000.0));
    assert_eq!(r[1].rate_in, Some(1000.0));
    assert_eq!(r[1].rate_out, Some(990.0));
    assert_eq!(r[1].dropped, 24, "own drops, failures, input edge drops");
    assert_eq!(r[1].drop_rate, Some(7.0));
    assert_eq!(r[1].p99_ns, Some(2_000));
}

#[test]
fn local_clock_when_uptime_stands_still_and_no_rate_across_a_restart() {
    let t0 = Instant::now();
    let a = snap(0, t0, vec![node("n", NodeRole::Processor, 100, 100)]);
    let b = snap(
        0,
        t0 + Duration::from_millis(500),
        vec![node("n", NodeRole::Processor, 600, 600)],
    );
    assert_eq!(rows(Some(&a), &b)[0].rate_in, Some(1000.0));

    // A new run (uptime went back): the old counters are not subtracted.
    let old = snap(60_000, t0, vec![node("n", NodeRole::Processor, 1 << 20, 0)]);
    let new = snap(1_000, t0, vec![node("n", NodeRole::Processor, 5, 0)]);
    assert_eq!(rows(Some(&old), &new)[0].rate_in, None);

    // Same run but a counter went back (should not happen): no negative rate.
    let c = snap(2_000, t0, vec![node("n", NodeRole::Processor, 10, 0)]);
    let d = snap(3_000, t0, vec![node("n", NodeRole::Processor, 5, 0)]);
    assert_eq!(rows(Some(&c), &d)[0].rate_in, Some(0.0));

    // A node that appeared between snapshots has no rate yet.
    let e = snap(4_000, t0, vec![node("m", NodeRole::Processor, 5, 0)]);
    assert_eq!(rows(Some(&d), &e)[0].rate_in, None);
}

#[test]
fn sorts_by_rate_in_descending_with_missing_last_and_ties_by_name() {
    let mut r = vec![
        row("b", Some(10.0)),
        row("none", None),
        row("a", Some(10.0)),
        row("big", Some(500.0)),
    ];
    sort_rows(&mut r, Sort::default());
    let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["big", "a", "b", "none"]);

    sort_rows(
        &mut r,
        Sort {
            key: SortKey::RateIn,
            reversed: true,
        },
    );
    let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["none", "a", "b", "big"]);

    sort_rows(
        &mut r,
        Sort {
            key: SortKey::Name,
            reversed: false,
        },
    );
    let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "big", "none"]);
    sort_rows(
        &mut r,
        Sort {
            key: SortKey::Name,
            reversed: true,
        },
    );
    let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["none", "big", "b", "a"]);
}

#[test]
fn sorts_by_every_other_column() {
    let mut a = row("a", None);
    let mut b = row("b", None);
    a.rate_out = Some(1.0);
    b.rate_out = Some(2.0);
    a.drop_rate = Some(0.0);
    a.dropped = 100;
    b.drop_rate = Some(0.0);
    b.dropped = 5;
    a.queue_fill = Some(90.0);
    b.queue_fill = Some(10.0);
    b.p99_ns = Some(7);
    let first = |key| {
        let mut r = vec![a.clone(), b.clone()];
        sort_rows(
            &mut r,
            Sort {
                key,
                reversed: false,
            },
        );
        r[0].name.clone()
    };
    assert_eq!(first(SortKey::RateOut), "b");
    assert_eq!(first(SortKey::Drops), "a", "equal rates: more drops first");
    assert_eq!(first(SortKey::Queue), "a");
    assert_eq!(first(SortKey::Latency), "b");
}

#[test]
fn sort_keys_cycle_both_ways() {
    let mut k = SortKey::default();
    assert_eq!(k, SortKey::RateIn);
    for _ in 0..SortKey::ALL.len() {
        assert_eq!(k.next().prev(), k);
        k = k.next();
    }
    assert_eq!(k, SortKey::RateIn, "a full cycle comes back");
    assert_eq!(SortKey::RateIn.prev(), SortKey::Name);
}

#[test]
fn colouring_decisions() {
    let mut r = row("n", Some(1.0));
    assert_eq!(drops_level(&r), Level::Normal, "no rate yet");
    r.dropped = 1_000;
    r.drop_rate = Some(0.0);
    assert_eq!(drops_level(&r), Level::Normal, "old drops are not news");
    r.drop_rate = Some(0.5);
    assert_eq!(drops_level(&r), Level::Alert, "drops rising");

    for (fill, level) in [
        (None, Level::Normal),
        (Some(0.0), Level::Normal),
        (Some(80.0), Level::Normal),
        (Some(80.5), Level::Warn),
        (Some(94.9), Level::Warn),
        (Some(95.0), Level::Alert),
        (Some(100.0), Level::Alert),
    ] {
        r.queue_fill = fill;
        assert_eq!(queue_level(&r), level, "{fill:?}");
    }

    assert_eq!(row_level(&r), Level::Normal);
    r.state = NodeState::Finished;
    assert_eq!(row_level(&r), Level::Normal);
    r.state = NodeState::Failed;
    assert_eq!(row_level(&r), Level::Alert);
}

#[test]
fn formats_fit_their_columns() {
    assert_eq!(fmt_count(0.0), "0");
    assert_eq!(fmt_count(0.5), "0.5");
    assert_eq!(fmt_count(999.0), "999");
    assert_eq!(fmt_count(1000.0), "1.00k");
    assert_eq!(fmt_count(12_345.0), "12.3k");
    assert_eq!(fmt_count(4_560_000.0), "4.56M");
    assert_eq!(fmt_count(999_999_999.0), "1000M");
    assert_eq!(fmt_count(-3.0), "0");
    for v in [0.0, 1.5, 99.9, 123_456.0, 1e15, 9.99e11, u64::MAX as f64] {
        assert!(fmt_count(v).len() <= 6, "{v} -> {}", fmt_count(v));
    }
    assert_eq!(fmt_latency(850), "850ns");
    assert_eq!(fmt_latency(12_300), "12.3us");
    assert_eq!(fmt_latency(1_200_000), "1.20ms");
    assert_eq!(fmt_latency(3_400_000_000), "3.40s");
    assert_eq!(fmt_latency(999_999), "1000us");
    assert_eq!(fmt_uptime(45_900), "45s");
    assert_eq!(fmt_uptime(723_000), "12m03s");
    assert_eq!(fmt_uptime(11_045_000), "3h04m05s");
    assert_eq!(fmt_uptime(2 * 86_400_000 + 3 * 3_600_000), "2d03h");
}

#[test]
fn truncates_names_with_an_ellipsis() {
    assert_eq!(truncate("short", 10), "short");
    assert_eq!(truncate("exactly", 7), "exactly");
    assert_eq!(truncate("much_too_long", 6), "much_…");
    assert_eq!(truncate("é-accentué", 4), "é-a…");
    assert_eq!(truncate("x", 0), "");
}
