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
mod tests;
