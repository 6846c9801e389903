//! What `dataplane top` shows, as plain data: the `/stats` document, the
//! rows derived from two successive snapshots of it (rates are counter
//! differences over the pipeline's own uptime), their order, and which
//! cells deserve a colour. No terminal here: everything is a pure function
//! so it can be unit-tested.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The control endpoint's `GET /stats` body. Unknown fields are ignored
/// and missing ones take their defaults, so `top` keeps working against
/// an endpoint that grew (or has not yet grown) a field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Milliseconds since the pipeline started.
    pub uptime_ms: u64,
    /// The slot arena's fill.
    pub arena: Option<ArenaStats>,
    /// One entry per node.
    pub nodes: Vec<NodeStats>,
    /// One entry per edge.
    pub edges: Vec<EdgeStats>,
}

/// Arena occupancy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ArenaStats {
    /// Slots in the arena.
    pub slots: u64,
    /// Slots in use.
    pub used: u64,
}

/// One node's counters, cumulative since the start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct NodeStats {
    /// The node's name in the config.
    pub name: String,
    /// Its component (`generator`, `forward`, ...).
    pub component: String,
    /// Its role.
    pub role: NodeRole,
    /// The worker it runs on.
    pub worker: Option<u64>,
    /// Elements it took in.
    pub received: u64,
    /// Elements it passed on (a sink: delivered).
    pub sent: u64,
    /// Elements it dropped (its own drops; edges count theirs).
    pub dropped: u64,
    /// Elements a sink could not deliver.
    pub failed: u64,
    /// Elements waiting on its input edges, summed.
    pub queue_depth: u64,
    /// Capacity of its input edges, summed (0 for a source).
    pub queue_capacity: u64,
    /// Median latency (sinks only), in nanoseconds.
    pub latency_p50_ns: Option<u64>,
    /// 99th percentile latency (sinks only), in nanoseconds.
    pub latency_p99_ns: Option<u64>,
    /// Observers attached to it.
    pub subscribers: u64,
    /// Whether it is still running.
    pub state: NodeState,
}

/// One edge's fill and drops.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EdgeStats {
    /// Upstream node.
    pub from: String,
    /// Upstream port.
    pub port: String,
    /// Downstream node.
    pub to: String,
    /// Elements in the ring.
    pub depth: u64,
    /// The ring's capacity.
    pub capacity: u64,
    /// Elements the edge dropped (its `when_full` policy).
    pub dropped: u64,
    /// `block`, `drop_newest` or `drop_oldest`.
    pub when_full: String,
}

/// A node's role, as the endpoint names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Produces elements.
    Source,
    /// Transforms elements.
    Processor,
    /// Sends each element to one of its ports.
    Router,
    /// Consumes elements.
    Sink,
    /// A role this version of `top` does not know.
    #[default]
    #[serde(other)]
    Other,
}

impl NodeRole {
    /// Four letters at most, for the table.
    pub fn short(self) -> &'static str {
        match self {
            NodeRole::Source => "src",
            NodeRole::Processor => "proc",
            NodeRole::Router => "rtr",
            NodeRole::Sink => "sink",
            NodeRole::Other => "?",
        }
    }
}

/// A node's life cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Still stepping.
    #[default]
    Running,
    /// Done, successfully.
    Finished,
    /// Stopped by an error.
    Failed,
    /// A state this version of `top` does not know.
    #[serde(other)]
    Unknown,
}

impl NodeState {
    /// The word shown in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Running => "running",
            NodeState::Finished => "finished",
            NodeState::Failed => "failed",
            NodeState::Unknown => "?",
        }
    }
}

/// A `/stats` document and when it arrived.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The document.
    pub stats: Stats,
    /// When `top` received it (the fallback clock for rates).
    pub at: Instant,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    /// Node name (untruncated).
    pub name: String,
    /// Its role.
    pub role: NodeRole,
    /// Its state.
    pub state: NodeState,
    /// Elements in per second; `None` until there are two snapshots.
    pub rate_in: Option<f64>,
    /// Elements out per second; `None` until there are two snapshots.
    pub rate_out: Option<f64>,
    /// Drops since the start (the node's own plus a sink's failures).
    pub dropped: u64,
    /// Drops per second; `None` until there are two snapshots.
    pub drop_rate: Option<f64>,
    /// Input queue fill in percent; `None` for a node without input edges.
    pub queue_fill: Option<f64>,
    /// 99th percentile latency in nanoseconds (sinks).
    pub p99_ns: Option<u64>,
}

/// The interval between two snapshots: the pipeline's uptime difference,
/// which is immune to network jitter, or `top`'s own clock when uptime did
/// not advance (an endpoint that does not report it).
pub fn interval(prev: &Snapshot, cur: &Snapshot) -> Duration {
    let up = cur.stats.uptime_ms.saturating_sub(prev.stats.uptime_ms);
    if up > 0 {
        Duration::from_millis(up)
    } else {
        cur.at.saturating_duration_since(prev.at)
    }
}

/// Whether `prev` belongs to the same run as `cur`. A restarted pipeline
/// reports a smaller uptime; its counters must not be subtracted from the
/// old run's.
pub fn same_run(prev: &Snapshot, cur: &Snapshot) -> bool {
    cur.stats.uptime_ms >= prev.stats.uptime_ms
}

/// The table's rows for `cur`, with rates against `prev` where `prev` is of
/// the same run and names match. A counter that went backwards counts as
/// no progress rather than an absurd rate.
pub fn rows(prev: Option<&Snapshot>, cur: &Snapshot) -> Vec<NodeRow> {
    let prev = prev.filter(|p| same_run(p, cur));
    let secs = prev.map(|p| interval(p, cur).as_secs_f64());
    cur.stats
        .nodes
        .iter()
        .map(|n| {
            let before = prev.and_then(|p| p.stats.nodes.iter().find(|o| o.name == n.name));
            let per_sec = |now: u64, then: u64| match secs {
                Some(s) if s > 0.0 => Some(now.saturating_sub(then) as f64 / s),
                _ => None,
            };
            let dropped = drops(&cur.stats, n);
            NodeRow {
                name: n.name.clone(),
                role: n.role,
                state: n.state,
                rate_in: before.and_then(|b| per_sec(n.received, b.received)),
                rate_out: before.and_then(|b| per_sec(n.sent, b.sent)),
                dropped,
                drop_rate: before
                    .zip(prev)
                    .and_then(|(b, p)| per_sec(dropped, drops(&p.stats, b))),
                queue_fill: (n.queue_capacity > 0)
                    .then(|| n.queue_depth as f64 * 100.0 / n.queue_capacity as f64),
                p99_ns: n.latency_p99_ns,
            }
        })
        .collect()
}

/// What a node lost: its own drops, what a sink failed to deliver, and
/// what its input edges dropped when full (shown with the queue they
/// overflowed, as the queue fill is).
fn drops(stats: &Stats, n: &NodeStats) -> u64 {
    let edges: u64 = stats
        .edges
        .iter()
        .filter(|e| e.to == n.name)
        .map(|e| e.dropped)
        .sum();
    n.dropped.saturating_add(n.failed).saturating_add(edges)
}

/// The column the table is sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Elements in per second (the default).
    #[default]
    RateIn,
    /// Elements out per second.
    RateOut,
    /// Drops per second, then total drops.
    Drops,
    /// Input queue fill.
    Queue,
    /// Sink p99 latency.
    Latency,
    /// Node name (ascending by default).
    Name,
}

impl SortKey {
    /// Every key, in the order `s` cycles through them.
    pub const ALL: [SortKey; 6] = [
        SortKey::RateIn,
        SortKey::RateOut,
        SortKey::Drops,
        SortKey::Queue,
        SortKey::Latency,
        SortKey::Name,
    ];

    /// The next key (`s`).
    pub fn next(self) -> SortKey {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// The previous key (`S`).
    pub fn prev(self) -> SortKey {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + Self::ALL.len() - 1) % Self::ALL.len()]
    }

    /// The heading of the column it sorts.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::RateIn => "IN/s",
            SortKey::RateOut => "OUT/s",
            SortKey::Drops => "DROP/s",
            SortKey::Queue => "QUEUE",
            SortKey::Latency => "P99",
            SortKey::Name => "NAME",
        }
    }
}

/// How the table is ordered: a key and a direction. Numbers sort largest
/// first and names A to Z unless `reversed`; ties fall back to the name so
/// rows do not jump between refreshes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sort {
    /// The column.
    pub key: SortKey,
    /// Flip the natural direction (`r`).
    pub reversed: bool,
}

/// Sorts `rows` in place. A missing value (no rate yet, no queue, no
/// latency) sorts after every present one in the natural direction.
pub fn sort_rows(rows: &mut [NodeRow], sort: Sort) {
    fn num(a: Option<f64>, b: Option<f64>) -> Ordering {
        // Largest first; `None` last.
        match (a, b) {
            (Some(a), Some(b)) => b.total_cmp(&a),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    rows.sort_by(|a, b| {
        let primary = match sort.key {
            SortKey::RateIn => num(a.rate_in, b.rate_in),
            SortKey::RateOut => num(a.rate_out, b.rate_out),
            SortKey::Drops => num(a.drop_rate, b.drop_rate).then(b.dropped.cmp(&a.dropped)),
            SortKey::Queue => num(a.queue_fill, b.queue_fill),
            SortKey::Latency => num(a.p99_ns.map(|v| v as f64), b.p99_ns.map(|v| v as f64)),
            SortKey::Name => Ordering::Equal,
        };
        let primary = if sort.reversed {
            primary.reverse()
        } else {
            primary
        };
        let by_name = a.name.cmp(&b.name);
        let by_name = if sort.reversed && sort.key == SortKey::Name {
            by_name.reverse()
        } else {
            by_name
        };
        primary.then(by_name)
    });
}

/// How loudly a cell or row should be drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing to see.
    Normal,
    /// Worth a look (yellow).
    Warn,
    /// Something is being lost or is broken (red).
    Alert,
}

/// Queue fill above this percentage is a warning...
pub const QUEUE_WARN_PCT: f64 = 80.0;
/// ...and at or above this one an alert: the producer is about to block or drop.
pub const QUEUE_ALERT_PCT: f64 = 95.0;

/// The drops cell: red while drops are rising. Drops from long ago are
/// history, not news.
pub fn drops_level(row: &NodeRow) -> Level {
    match row.drop_rate {
        Some(r) if r > 0.0 => Level::Alert,
        _ => Level::Normal,
    }
}

/// The queue cell: yellow above [`QUEUE_WARN_PCT`], red from [`QUEUE_ALERT_PCT`].
pub fn queue_level(row: &NodeRow) -> Level {
    match row.queue_fill {
        Some(f) if f >= QUEUE_ALERT_PCT => Level::Alert,
        Some(f) if f > QUEUE_WARN_PCT => Level::Warn,
        _ => Level::Normal,
    }
}

/// The whole row: red when the node failed.
pub fn row_level(row: &NodeRow) -> Level {
    if row.state == NodeState::Failed {
        Level::Alert
    } else {
        Level::Normal
    }
}

/// A count or rate in at most six characters: `999`, `12.3k`, `4.56M`.
pub fn fmt_count(v: f64) -> String {
    let v = v.max(0.0);
    if v < 10.0 && v.fract() != 0.0 {
        return format!("{v:.1}");
    }
    const UNITS: [(f64, &str); 6] = [
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
    ];
    for (scale, unit) in UNITS {
        if v >= scale {
            let x = v / scale;
            return if x >= 100.0 {
                format!("{x:.0}{unit}")
            } else if x >= 10.0 {
                format!("{x:.1}{unit}")
            } else {
                format!("{x:.2}{unit}")
            };
        }
    }
    format!("{v:.0}")
}

/// A latency in at most six characters: `850ns`, `12.3us`, `1.20ms`, `3.40s`.
pub fn fmt_latency(ns: u64) -> String {
    let ns = ns as f64;
    let (v, unit) = if ns < 1e3 {
        return format!("{ns:.0}ns");
    } else if ns < 1e6 {
        (ns / 1e3, "us")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    if v >= 100.0 {
        format!("{v:.0}{unit}")
    } else if v >= 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.2}{unit}")
    }
}

/// An uptime as `45s`, `12m03s`, `3h04m05s` or `2d03h`.
pub fn fmt_uptime(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `name` cut to `width` characters, its last one replaced by `…` when cut.
pub fn truncate(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        return name.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = name.chars().take(width - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
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
}
