//! What a pipeline description declares, before it is checked: nodes,
//! edges, the engine's settings and the bounds they must keep, and the
//! graph walks the checks and the plan share (topological order, cycles,
//! upstream sources).

use std::sync::Arc;

use crate::arena::DEFAULT_SLOT_SIZE;
use crate::event_time::{EventTime, WatermarkSpec};
use crate::metrics::targets::Target;
use crate::ring::wait::WaitStrategy;
use crate::ring::{WhenFull, DEFAULT_CAPACITY};
use crate::stage::{Role, Stage};
use crate::topology::restart::RestartPolicy;

/// Default batch: handles moved per ring operation.
pub const DEFAULT_BATCH: usize = 64;

/// Engine settings shared by every flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Arena slot count; `None` sizes it from the topology (see
    /// [`Plan::required_slots`]).
    pub slots: Option<u32>,
    /// Arena slot size in bytes: the largest payload.
    pub slot_size: usize,
    /// Ring capacity for edges that do not set their own.
    pub ring_capacity: usize,
    /// Elements a stage handles per scheduling turn (and per ring commit).
    pub batch: usize,
    /// How idle workers wait.
    pub wait: WaitStrategy,
    /// Pin workers to cores (default true).
    pub pin: bool,
    /// Restrict the engine to these core ids (default: every core this
    /// process may run on).
    pub cores: Option<Vec<usize>>,
    /// Record per-stage service time and arrival age (costs two clock reads
    /// per batch and one metadata read per element; off by default).
    pub stage_metrics: bool,
    /// How long the pipeline may take to drain once its sources stopped
    /// (end of input or a signal) before the run gives up on the stages
    /// still running, names them and counts what they held (0: no limit).
    pub drain_timeout_ms: u64,
    /// The control endpoint (`[control]`), off when `None`.
    pub control: Option<crate::control::ControlSettings>,
    /// Checkpoints (`[engine] checkpoint`), off when `None`.
    pub checkpoint: Option<crate::checkpoint::CheckpointSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            slots: None,
            slot_size: DEFAULT_SLOT_SIZE,
            ring_capacity: DEFAULT_CAPACITY,
            batch: DEFAULT_BATCH,
            wait: WaitStrategy::default(),
            pin: true,
            cores: None,
            stage_metrics: false,
            drain_timeout_ms: DEFAULT_DRAIN_TIMEOUT_MS,
            control: None,
            checkpoint: None,
        }
    }
}

/// Builds a fresh stage for a restart (the node's component and parameters).
pub(crate) type Rebuild = Arc<dyn Fn() -> Result<Stage, String> + Send + Sync>;

/// A node as declared: its stage and everything the plan knows about it.
pub(crate) struct NodeDecl {
    pub(crate) name: String,
    pub(crate) component: String,
    pub(crate) stage: Stage,
    pub(crate) core: Option<usize>,
    pub(crate) origin: String,
    pub(crate) targets: Vec<Target>,
    /// A source's `event_time` and `watermark`.
    pub(crate) source_time: Option<(EventTime, WatermarkSpec)>,
    /// What to do when the stage fails.
    pub(crate) restart: RestartPolicy,
    /// Builds a fresh stage for a restart (`None`: the stage cannot be
    /// restarted, only with policy `never`).
    pub(crate) rebuild: Option<Rebuild>,
}

pub(crate) struct EdgeDecl {
    pub(crate) from: (String, String),
    pub(crate) to: (String, String),
    pub(crate) capacity: Option<usize>,
    pub(crate) when_full: WhenFull,
    pub(crate) origin: String,
}

/// A resolved edge: node indices, output port index, ring capacity, policy.
#[derive(Clone, Debug)]
pub(crate) struct Edge {
    pub(crate) from: usize,
    pub(crate) port: usize,
    pub(crate) to: usize,
    pub(crate) capacity: usize,
    pub(crate) when_full: WhenFull,
}

/// Largest arena slot a config may ask for (64 MiB).
pub const MAX_SLOT_SIZE: usize = 64 << 20;
/// One more than the most arena slots: ring indices keep their top bit to
/// mark control elements (see [`crate::ring::control`]).
pub const MAX_SLOTS: u32 = 1 << 31;
/// Largest ring a config may ask for, in handles (16 MiB of `u32`s).
pub const MAX_RING_CAPACITY: usize = 1 << 22;
/// Largest batch a config may ask for.
pub const MAX_BATCH: usize = 1 << 16;
/// Per-slot memory besides the payload (metadata and refcount, one cache
/// line), for the arena size check.
pub(super) const SLOT_OVERHEAD: u64 = 64;

/// Memory the arena may take: `MemAvailable` on Linux; `None` (no check)
/// where it cannot be read.
pub(super) fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

pub(super) fn human_bytes(b: u64) -> String {
    match b {
        0..=1_048_575 => format!("{b} B"),
        1_048_576..=1_073_741_823 => format!("{:.1} MiB", b as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", b as f64 / 1_073_741_824.0),
    }
}

/// Default [`Settings::drain_timeout_ms`].
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 5000;

pub(super) fn ids(list: &[usize]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sources from which node `i` receives elements, directly or not.
pub(super) fn upstream_sources(i: usize, nodes: &[NodeDecl], edges: &[Edge]) -> Vec<usize> {
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![i];
    let mut sources = Vec::new();
    while let Some(n) = stack.pop() {
        for e in edges.iter().filter(|e| e.to == n) {
            if !std::mem::replace(&mut seen[e.from], true) {
                if nodes[e.from].stage.role() == Role::Source {
                    sources.push(e.from);
                }
                stack.push(e.from);
            }
        }
    }
    sources.sort_unstable();
    sources
}

/// Topological order, or the nodes left on or behind a cycle.
pub(crate) fn topo_order(n: usize, edges: &[Edge]) -> Result<Vec<usize>, Vec<usize>> {
    let mut indegree = vec![0usize; n];
    for e in edges {
        indegree[e.to] += 1;
    }
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(i);
        let mut next: Vec<usize> = edges.iter().filter(|e| e.from == i).map(|e| e.to).collect();
        next.sort_unstable();
        next.dedup();
        for t in next.into_iter().rev() {
            indegree[t] -= edges.iter().filter(|e| e.from == i && e.to == t).count();
            if indegree[t] == 0 {
                ready.push(t);
            }
        }
    }
    if order.len() == n {
        Ok(order)
    } else {
        Err((0..n).filter(|i| !order.contains(i)).collect())
    }
}

/// One cycle among `stuck` nodes, as a closed path (first == last).
pub(super) fn find_cycle(stuck: &[usize], edges: &[Edge]) -> Vec<usize> {
    // Every stuck node has a stuck predecessor; walk predecessors until a
    // node repeats.
    let Some(&start) = stuck.first() else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let pred = edges
            .iter()
            .find(|e| e.to == cur && stuck.contains(&e.from))
            .map(|e| e.from)
            .expect("a stuck node has a stuck predecessor");
        if let Some(pos) = path.iter().position(|&p| p == pred) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return cycle;
        }
        path.push(pred);
        cur = pred;
    }
}
