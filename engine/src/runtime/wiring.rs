//! Wiring a plan's edges before a run: one ring per edge, its two ends
//! handed to the nodes it joins, the workers that must wake each other, a
//! tap point per connected output port, and what the live view and the
//! report say about each edge.

use std::sync::Arc;

use crate::metrics::EdgeReport;
use crate::observe::tap::TapPoint;
use crate::observe::EdgeLive;
use crate::ring::{self, EdgeIn, EdgeOut, EdgeStats};
use crate::topology::Plan;

/// The rings of a run, by node.
pub(super) struct Wiring {
    /// Per node, its input ends.
    pub(super) inputs: Vec<Vec<EdgeIn>>,
    /// Per node and output port, the producer ends of the port's edges.
    pub(super) outputs: Vec<Vec<Vec<EdgeOut>>>,
    /// Per worker, the other workers it shares a ring with (to wake them).
    pub(super) neighbours: Vec<Vec<usize>>,
    /// Per edge (plan order), its counters.
    pub(super) stats: Vec<Arc<EdgeStats>>,
    /// Per node and output port, its tap point (none when unconnected).
    pub(super) taps: Vec<Vec<Option<Arc<TapPoint>>>>,
    /// Per node, the plan indices of its input edges.
    pub(super) edge_inputs: Vec<Vec<usize>>,
}

/// One ring per edge of `plan`, nodes placed on workers by `worker_of`.
pub(super) fn wire(plan: &Plan, worker_of: &[usize], n_workers: usize) -> Wiring {
    let n = plan.nodes.len();
    let mut inputs: Vec<Vec<EdgeIn>> = (0..n).map(|_| Vec::new()).collect();
    let mut outputs: Vec<Vec<Vec<EdgeOut>>> = plan
        .nodes
        .iter()
        .map(|d| d.stage.output_ports().iter().map(|_| Vec::new()).collect())
        .collect();
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); n_workers];
    let mut stats: Vec<Arc<EdgeStats>> = Vec::with_capacity(plan.edges.len());
    for e in &plan.edges {
        let (tx, rx, edge_stats) = ring::edge(e.capacity, e.when_full);
        stats.push(edge_stats);
        outputs[e.from][e.port].push(tx);
        inputs[e.to].push(rx);
        let (a, b) = (worker_of[e.from], worker_of[e.to]);
        if a != b {
            for (x, y) in [(a, b), (b, a)] {
                if !neighbours[x].contains(&y) {
                    neighbours[x].push(y);
                }
            }
        }
    }

    // One tap per connected port, carried by the port's first edge that
    // takes every element (a `drop_newest` edge may refuse some).
    let taps: Vec<Vec<Option<Arc<TapPoint>>>> = outputs
        .iter_mut()
        .map(|ports| {
            ports
                .iter_mut()
                .map(|edges| {
                    let at = edges
                        .iter()
                        .position(|e| !e.refuses())
                        .or((!edges.is_empty()).then_some(0))?;
                    let point = TapPoint::new();
                    edges[at].set_tap(Arc::clone(&point));
                    Some(point)
                })
                .collect()
        })
        .collect();
    let mut edge_inputs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, e) in plan.edges.iter().enumerate() {
        edge_inputs[e.to].push(k);
    }
    Wiring {
        inputs,
        outputs,
        neighbours,
        stats,
        taps,
        edge_inputs,
    }
}

/// The live view of each edge (plan order).
pub(super) fn edges_live(plan: &Plan, stats: &[Arc<EdgeStats>]) -> Vec<EdgeLive> {
    plan.edges
        .iter()
        .zip(stats)
        .map(|(e, stats)| EdgeLive {
            from: plan.nodes[e.from].name.clone(),
            port: plan.nodes[e.from].stage.output_ports()[e.port].clone(),
            to: plan.nodes[e.to].name.clone(),
            capacity: e.capacity,
            when_full: e.when_full,
            stats: Arc::clone(stats),
        })
        .collect()
}

/// Each edge's report, its drops still to be filled in (plan order).
pub(super) fn edge_reports(plan: &Plan) -> Vec<EdgeReport> {
    plan.edges
        .iter()
        .map(|e| EdgeReport {
            from: plan.nodes[e.from].name.clone(),
            port: plan.nodes[e.from].stage.output_ports()[e.port].clone(),
            to: plan.nodes[e.to].name.clone(),
            capacity: e.capacity,
            when_full: e.when_full,
            dropped: 0,
        })
        .collect()
}
