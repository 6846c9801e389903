//! The engine, built with [`PipelineBuilder`] from built-in stages:
//! `Generator` sources, `Forward` processors and a measuring sink that does
//! no more than `Discard` on the hot path (a count and, at two points, an
//! allocation snapshot). Latency comes from the engine's own per-sink
//! histograms in the [`RunReport`].
//!
//! A broadcast node of the scenario graph becomes what a user writes for
//! "every element to each of these": one output port connected to several
//! inputs. The engine fans a port out by raising the slot's refcount once
//! and pushing the handle on each edge, on the producer's core; the
//! `broadcast` router component would add a ring hop and a second pass over
//! each batch on that core.
//!
//! [`RunReport`]: dataplane::RunReport

use std::sync::{Arc, Mutex};

use core_affinity::CoreId;
use dataplane::operators::{Forward, Generator};
use dataplane::{Element, Pipeline, PipelineBuilder, Role, Settings, Sink, Stage, StageError};

use crate::measure::{latency_histogram, now_ns, RunOutcome, SinkOutcome, Snapshots, TEMPLATE};
use crate::scenario::{Graph, Kind, Workload};

type Slot = Arc<Mutex<Option<SinkOutcome>>>;

/// A sink that counts like `Discard` and notes what throughput and the
/// allocation figure need, without per-element clock reads (the engine
/// already reads the clock per element for the latency histogram).
struct Probe {
    received: u64,
    first_stamp: u64,
    last_ns: u64,
    snaps: Option<Snapshots>,
    out: Slot,
}

impl Sink for Probe {
    #[inline]
    fn push(&mut self, element: &Element<'_>) -> Result<(), StageError> {
        if self.received == 0 {
            self.first_stamp = element.meta().ingest_ns;
        }
        self.received += 1;
        if let Some(s) = self.snaps.as_mut() {
            s.check(self.received);
        }
        Ok(())
    }

    fn end_batch(&mut self) -> Result<(), StageError> {
        self.last_ns = now_ns();
        Ok(())
    }

    fn teardown(&mut self) {
        let outcome = SinkOutcome {
            latency: None,
            received: self.received,
            first_stamp: self.first_stamp,
            last_ns: self.last_ns,
            allocs: self.snaps.and_then(|s| s.between()),
        };
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    }
}

/// Arena slot size for payloads of `size` bytes: what a user would set.
pub fn slot_size(size: usize) -> usize {
    size.max(64).next_power_of_two()
}

/// Where each edge of `graph` starts in the engine: its own source node and
/// port, or, for an edge out of a broadcast node, the broadcast's producer
/// (whose port is then connected to every target of the broadcast).
fn engine_edges(graph: &Graph) -> Vec<(usize, usize, usize)> {
    let producer = |node: usize| {
        graph
            .edges
            .iter()
            .find(|e| e.to == node)
            .map(|e| (e.from, e.port))
    };
    graph
        .edges
        .iter()
        .filter(|e| !matches!(graph.nodes[e.to].kind, Kind::Broadcast(_)))
        .filter_map(|e| match graph.nodes[e.from].kind {
            Kind::Broadcast(_) => producer(e.from).map(|(from, port)| (from, port, e.to)),
            _ => Some((e.from, e.port, e.to)),
        })
        .collect()
}

/// Builds the engine pipeline for `graph`; `probes` receive the sinks'
/// outcomes (one per sink, in graph order).
fn build(w: &Workload, graph: &Graph, probes: &[Slot]) -> Result<Pipeline, String> {
    let mut b = PipelineBuilder::new();
    b.settings(Settings {
        slot_size: slot_size(w.size),
        ring_capacity: w.capacity,
        ..Settings::default()
    });
    let mut sink_no = 0;
    for (i, node) in graph.nodes.iter().enumerate() {
        let (component, stage) = match node.kind {
            Kind::Source { count } => {
                let mut g = Generator::new(TEMPLATE, Some(count))?.size(w.size);
                if let Some(rate) = w.rate {
                    g = g.rate(rate * count as f64 / w.count.max(1) as f64);
                }
                ("generator", Stage::Source(Box::new(g)))
            }
            Kind::Forward => ("forward", Stage::Processor(Box::new(Forward))),
            // Folded into its producer's port (see `engine_edges`).
            Kind::Broadcast(_) => continue,
            Kind::Sink => {
                let snaps = (sink_no == 0).then(|| {
                    let per = graph.deliveries_per_element(i);
                    Snapshots::new((w.count as f64 * per) as u64)
                });
                let out = probes
                    .get(sink_no)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Mutex::new(None)));
                sink_no += 1;
                let probe = Probe {
                    received: 0,
                    first_stamp: 0,
                    last_ns: 0,
                    snaps,
                    out,
                };
                ("probe", Stage::Sink(Box::new(probe)))
            }
        };
        b.add(&node.name, component, stage);
    }
    for (from, port, to) in engine_edges(graph) {
        let from = &graph.nodes[from];
        debug_assert_eq!(port, 0, "sources and forwards have one port");
        b.connect((&from.name, "output"), (&graph.nodes[to].name, "input"));
    }
    b.build().map_err(|e| e.to_string())
}

/// Where the engine puts each node of `graph` (in graph order). Call from
/// the main thread: building reads the usable cores from its affinity.
pub fn placement(w: &Workload, graph: &Graph) -> Result<Vec<CoreId>, String> {
    let pipeline = build(w, graph, &[])?;
    let entries = pipeline.placement();
    graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            // A folded broadcast runs where its producer runs.
            let n = match n.kind {
                Kind::Broadcast(_) => graph
                    .edges
                    .iter()
                    .find(|e| e.to == i)
                    .map_or(n, |e| &graph.nodes[e.from]),
                _ => n,
            };
            entries
                .iter()
                .find(|p| p.stage == n.name)
                .map(|p| CoreId { id: p.core })
                .ok_or_else(|| format!("the engine did not place stage '{}'", n.name))
        })
        .collect()
}

/// Runs the workload through the engine once.
pub fn run(w: &Workload, graph: &Graph) -> Result<RunOutcome, String> {
    let sinks = graph.sinks();
    let probes: Vec<Slot> = sinks.iter().map(|_| Arc::new(Mutex::new(None))).collect();
    let pipeline = build(w, graph, &probes)?;
    let report = pipeline.run();
    if !report.is_success() {
        return Err(format!("the engine run failed:\n{report}"));
    }
    let mut latency = latency_histogram();
    for s in report.stages.iter().filter(|s| s.role == Role::Sink) {
        if let Some(h) = &s.latency {
            latency.add(h).map_err(|e| e.to_string())?;
        }
    }
    let outcomes = probes
        .iter()
        .map(|p| {
            p.lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(|| "a sink reported nothing".to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let factor = sinks
        .first()
        .map_or(1.0, |&s| graph.deliveries_per_element(s));
    Ok(RunOutcome::from_sinks(
        report.produced(),
        outcomes,
        factor,
        Some(latency),
    ))
}
