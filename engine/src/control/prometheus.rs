//! `/metrics`: the live view in the Prometheus text exposition format
//! (0.0.4). Written by hand: the format is a few lines of rules (one
//! `HELP` and `TYPE` per family, escaped label values), and our counters
//! already live in atomics a client library would only wrap again.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::metrics::LiveState;
use crate::observe::LiveView;
use crate::stage::Role;

/// Content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the endpoint knows about subscribers of one node.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubscriberCounts {
    /// Attached now.
    pub attached: usize,
    /// Elements written to subscribers, departed ones included.
    pub sent: u64,
    /// Elements subscribers lost (their queue was full, or the endpoint fell
    /// behind), departed ones included.
    pub dropped: u64,
}

/// Renders the exposition. `subs` maps node names to their subscribers.
pub fn render(view: &LiveView, subs: &BTreeMap<String, SubscriberCounts>) -> String {
    let mut m = Metrics::default();
    let running = !view.all_done();
    m.family(
        "dataplane_up",
        "gauge",
        "1 while the pipeline runs, 0 once every stage has finished.",
    );
    m.sample("dataplane_up", &[], running as u64 as f64);
    m.family(
        "dataplane_uptime_seconds",
        "gauge",
        "Seconds since the pipeline's workers started.",
    );
    m.sample(
        "dataplane_uptime_seconds",
        &[],
        view.started.elapsed().as_secs_f64(),
    );

    let name = "dataplane_node_elements_total";
    m.family(name, "counter", "Elements per node, port and outcome: in (received), out (sent on the port), dropped, failed (a sink could not deliver them).");
    for n in &view.nodes {
        let (received, _, dropped) = n.counters.snapshot();
        if n.role != Role::Source {
            m.sample(
                name,
                &[("node", &n.name), ("port", "input"), ("outcome", "in")],
                received as f64,
            );
        }
        for (port, sent) in n.ports.iter().zip(n.counters.port_sent()) {
            m.sample(
                name,
                &[("node", &n.name), ("port", port), ("outcome", "out")],
                sent as f64,
            );
        }
        m.sample(
            name,
            &[("node", &n.name), ("port", ""), ("outcome", "dropped")],
            dropped as f64,
        );
        if n.role == Role::Sink {
            let failed = n.counters.failed() as f64;
            m.sample(
                name,
                &[("node", &n.name), ("port", ""), ("outcome", "failed")],
                failed,
            );
        }
    }
    let name = "dataplane_node_running";
    m.family(
        name,
        "gauge",
        "1 while the node runs, 0 once it has finished or failed.",
    );
    for n in &view.nodes {
        let up = n.counters.state() == LiveState::Running;
        m.sample(
            name,
            &[
                ("node", &n.name),
                ("component", &n.component),
                ("role", n.role.as_str()),
            ],
            up as u64 as f64,
        );
    }
    let name = "dataplane_node_failed";
    m.family(
        name,
        "gauge",
        "1 when the node failed (its inputs are drained and counted as dropped).",
    );
    for n in &view.nodes {
        let failed = n.counters.state() == LiveState::Failed;
        m.sample(name, &[("node", &n.name)], failed as u64 as f64);
    }
    let name = "dataplane_node_restarts_total";
    m.family(
        name,
        "counter",
        "Times the node's restart policy rebuilt and restarted its stage after a panic or a fatal error.",
    );
    for n in &view.nodes {
        m.sample(name, &[("node", &n.name)], n.counters.restarts() as f64);
    }

    for (name, kind, help) in [
        (
            "dataplane_edge_queue_depth",
            "gauge",
            "Elements in an edge's ring, as either end last saw it.",
        ),
        (
            "dataplane_edge_queue_capacity",
            "gauge",
            "Capacity of an edge's ring, in elements.",
        ),
        (
            "dataplane_edge_dropped_total",
            "counter",
            "Elements an edge dropped by its when_full policy.",
        ),
    ] {
        m.family(name, kind, help);
        for e in &view.edges {
            let value = match name {
                "dataplane_edge_queue_depth" => e.stats.depth().min(e.capacity) as f64,
                "dataplane_edge_queue_capacity" => e.capacity as f64,
                _ => e.stats.dropped() as f64,
            };
            let labels = [
                ("from", e.from.as_str()),
                ("port", &e.port),
                ("to", &e.to),
                ("when_full", e.when_full.as_str()),
            ];
            m.sample(name, &labels, value);
        }
    }

    let name = "dataplane_sink_latency_seconds";
    m.family(name, "summary", "End-to-end latency of the elements a sink received (ingest to sink) since the start; quantiles from an HDR histogram, sum from its mean.");
    for n in view.nodes.iter().filter(|n| n.role == Role::Sink) {
        n.counters.request_latency();
        let Some(h) = n.counters.latency() else {
            continue;
        };
        for q in ["0.5", "0.9", "0.99", "0.999"] {
            let v = h.value_at_quantile(q.parse().expect("a number")) as f64 / 1e9;
            m.sample(name, &[("node", &n.name), ("quantile", q)], v);
        }
        let sum = h.mean() * h.len() as f64 / 1e9;
        m.sample(&format!("{name}_sum"), &[("node", &n.name)], sum);
        m.sample(
            &format!("{name}_count"),
            &[("node", &n.name)],
            h.len() as f64,
        );
    }

    let slots = view.arena.slots() as usize;
    let used = view.arena.held_slots().min(slots);
    m.family(
        "dataplane_arena_slots",
        "gauge",
        "Arena slots by state: used (elements in flight and slots cached by workers) or free.",
    );
    m.sample("dataplane_arena_slots", &[("state", "used")], used as f64);
    m.sample(
        "dataplane_arena_slots",
        &[("state", "free")],
        (slots - used) as f64,
    );
    m.family(
        "dataplane_arena_slot_size_bytes",
        "gauge",
        "Size of one arena slot.",
    );
    m.sample(
        "dataplane_arena_slot_size_bytes",
        &[],
        view.arena.slot_size() as f64,
    );

    m.family(
        "dataplane_subscribers",
        "gauge",
        "Clients attached to the node now (mux subscribers and taps).",
    );
    for n in &view.nodes {
        let attached = subs.get(&n.name).map_or(0, |s| s.attached);
        m.sample(
            "dataplane_subscribers",
            &[("node", &n.name)],
            attached as f64,
        );
    }
    let name = "dataplane_subscriber_elements_total";
    m.family(name, "counter", "Elements written to the node's subscribers (sent) or lost by them (dropped: a full queue or an overrun), departed subscribers included.");
    for (node, s) in subs {
        m.sample(name, &[("node", node), ("outcome", "sent")], s.sent as f64);
        m.sample(
            name,
            &[("node", node), ("outcome", "dropped")],
            s.dropped as f64,
        );
    }
    m.out
}

#[derive(Default)]
struct Metrics {
    out: String,
}

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut m = Metrics::default();
        m.family("x_total", "counter", "a\\b\nc");
        m.sample("x_total", &[("node", "a\"b\\c\nd")], 3.0);
        assert_eq!(
            m.out,
            "# HELP x_total a\\\\b\\nc\n# TYPE x_total counter\nx_total{node=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }
}
