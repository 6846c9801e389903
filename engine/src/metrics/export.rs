//! Machine-readable output: the run report as stable JSON, and the HDR
//! histograms as a standard interval log (V2 compressed histograms, as read
//! by HdrHistogram's `HistogramLogProcessor` and plotting tools).
//!
//! JSON schema (`"schema": 1`; fields are only ever added):
//! ```text
//! { schema, success, targets_met, elapsed_ns, produced, throughput_eps,
//!   arena: { slots, slot_size, leaked },
//!   pinned, panics: [..],
//!   edges: [{ from, port, to, capacity, when_full, dropped }],
//!   drain_timeout: null | { timeout_ms, stuck: [stage], undelivered },
//!   placement: [{ stage, component, role, core, worker }],
//!   stages: [{ name, component, role, core, worker, received, sent, dropped, failed,
//!              ports: { port: count }, reasons: [{ kind, count, first_detail, diverted, failed }],
//!              counts: { name: count },
//!              failure, restarts, latency?, service?, arrival? }],
//!   targets: [{ sink, statistic, limit_ns, measured_ns, met }] }
//! ```
//! Each histogram summary is `{ count, min_ns, p50_ns, p90_ns, p99_ns,
//! p999_ns, p9999_ns, max_ns, mean_ns }`.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::metrics::RunReport;

fn summary(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "min_ns": h.min(),
        "p50_ns": h.value_at_quantile(0.50),
        "p90_ns": h.value_at_quantile(0.90),
        "p99_ns": h.value_at_quantile(0.99),
        "p999_ns": h.value_at_quantile(0.999),
        "p9999_ns": h.value_at_quantile(0.9999),
        "max_ns": h.max(),
        "mean_ns": h.mean(),
    })
}

/// The report as a JSON value (schema in the module docs).
pub fn report_json(r: &RunReport) -> Value {
    let stages: Vec<Value> = r
        .stages
        .iter()
        .map(|s| {
            let mut v = json!({
                "name": s.name,
                "component": s.component,
                "role": s.role.to_string(),
                "core": s.core,
                "worker": s.worker,
                "received": s.received,
                "sent": s.sent,
                "dropped": s.dropped,
                "failed": s.failed,
                "ports": s.ports.iter().map(|(p, n)| (p.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "reasons": s.reasons.iter().map(|x| json!({
                    "kind": x.kind, "count": x.count, "first_detail": x.first_detail, "diverted": x.diverted, "failed": x.failed,
                })).collect::<Vec<_>>(),
                "counts": s.counts.iter().map(|(k, n)| ((*k).to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "failure": s.failure,
                "restarts": s.restarts,
            });
            for (key, h) in [("latency", &s.latency), ("service", &s.service), ("arrival", &s.arrival)] {
                if let Some(h) = h {
                    v[key] = summary(h);
                }
            }
            v
        })
        .collect();
    json!({
        "schema": 1,
        "success": r.is_success(),
        "targets_met": r.targets_met(),
        "elapsed_ns": r.elapsed.as_nanos() as u64,
        "produced": r.produced(),
        "throughput_eps": r.throughput(),
        "arena": { "slots": r.arena_slots, "slot_size": r.slot_size, "leaked": r.leaked_slots },
        "pinned": r.pinned,
        "checkpoints": r.checkpoints.as_ref().map(|c| json!({
            "completed": c.completed, "last_id": c.last_id,
            "write_errors": c.write_errors, "restored_from": c.restored_from,
        })),
        "drain_timeout": r.drain.as_ref().map(|d| json!({
            "timeout_ms": d.timeout_ms, "stuck": d.stuck, "undelivered": d.undelivered,
        })),
        "edges": r.edges.iter().map(|e| json!({
            "from": e.from, "port": e.port, "to": e.to, "capacity": e.capacity,
            "when_full": e.when_full.as_str(), "dropped": e.dropped,
        })).collect::<Vec<_>>(),
        "panics": r.panics,
        "placement": r.placement.iter().map(|p| json!({
            "stage": p.stage, "component": p.component, "role": p.role.to_string(),
            "core": p.core, "worker": p.worker,
        })).collect::<Vec<_>>(),
        "stages": stages,
        "targets": r.targets.iter().map(|t| json!({
            "sink": t.sink,
            "statistic": t.target.statistic.to_string(),
            "limit_ns": t.target.limit_ns,
            "measured_ns": t.measured_ns,
            "met": t.met(),
        })).collect::<Vec<_>>(),
    })
}

/// Writes the JSON report (pretty-printed, newline-terminated).
pub fn write_json_report(r: &RunReport, out: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &report_json(r))?;
    out.write_all(b"\n")
}

/// Writes every histogram of the run as one interval of an HDR interval log
/// (V2 format), tagged `<stage>.latency`, `<stage>.service` or
/// `<stage>.arrival`. Values are nanoseconds; the log's max-value divisor
/// is 1e6, so its max column reads in milliseconds.
pub fn write_histogram_log(
    r: &RunReport,
    started: SystemTime,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut serializer = V2Serializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("dataplane latency histograms (values in ns)")
        .with_start_time(started)
        .with_base_time(started)
        .with_max_value_divisor(1e6)
        .begin_log_with(out, &mut serializer)?;
    for s in &r.stages {
        for (kind, h) in [
            ("latency", &s.latency),
            ("service", &s.service),
            ("arrival", &s.arrival),
        ] {
            let Some(h) = h else { continue };
            let tag_text: String = format!("{}.{kind}", s.name)
                .chars()
                .map(|c| {
                    if c == ',' || c.is_whitespace() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect();
            log.write_histogram(h, Duration::ZERO, r.elapsed, Tag::new(&tag_text))
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
        }
    }
    Ok(())
}
