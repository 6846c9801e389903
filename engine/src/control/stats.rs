//! `/stats`: the live view as one JSON document (what `dataplane top`
//! reads).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::observe::LiveView;
use crate::stage::Role;

use super::prometheus::SubscriberCounts;

/// Renders the document.
pub fn render(view: &LiveView, subs: &BTreeMap<String, SubscriberCounts>) -> Value {
    let slots = view.arena.slots() as usize;
    let nodes: Vec<Value> = view
        .nodes
        .iter()
        .map(|n| {
            let (received, sent, dropped) = n.counters.snapshot();
            let (depth, capacity) = view.input_queue(n);
            let latency = (n.role == Role::Sink)
                .then(|| n.counters.latency())
                .flatten()
                .filter(|h| !h.is_empty());
            let q = |q: f64| latency.as_ref().map(|h| h.value_at_quantile(q));
            json!({
                "name": n.name,
                "component": n.component,
                "role": n.role.as_str(),
                "worker": n.worker,
                "state": n.counters.state().as_str(),
                "received": received,
                "sent": sent,
                "dropped": dropped,
                "failed": n.counters.failed(),
                "restarts": n.counters.restarts(),
                "ports": n.ports.iter().zip(n.counters.port_sent())
                    .map(|(p, s)| json!({"name": p, "sent": s}))
                    .collect::<Vec<_>>(),
                "queue_depth": depth,
                "queue_capacity": capacity,
                "latency_p50_ns": q(0.5),
                "latency_p99_ns": q(0.99),
                "subscribers": subs.get(&n.name).map_or(0, |s| s.attached),
            })
        })
        .collect();
    let edges: Vec<Value> = view
        .edges
        .iter()
        .map(|e| {
            json!({
                "from": e.from,
                "port": e.port,
                "to": e.to,
                "depth": e.stats.depth().min(e.capacity),
                "capacity": e.capacity,
                "dropped": e.stats.dropped(),
                "when_full": e.when_full.as_str(),
            })
        })
        .collect();
    json!({
        "uptime_ms": view.started.elapsed().as_millis() as u64,
        "running": !view.all_done(),
        "arena": {
            "slots": slots,
            "used": view.arena.held_slots().min(slots),
            "slot_size": view.arena.slot_size(),
        },
        "nodes": nodes,
        "edges": edges,
    })
}
