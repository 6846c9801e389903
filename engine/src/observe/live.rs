//! The live view of a running pipeline.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::arena::Arena;
use crate::metrics::LiveCounters;
use crate::observe::tap::{RefPoint, TapPoint};
use crate::ring::{EdgeStats, WhenFull};
use crate::stage::Role;

/// One node, as the control endpoint sees it.
#[derive(Debug)]
pub struct NodeLive {
    /// Node name.
    pub name: String,
    /// Component it was built from.
    pub component: String,
    /// Its role.
    pub role: Role,
    /// The worker hosting it.
    pub worker: usize,
    /// Output port names.
    pub ports: Vec<String>,
    /// Counters as last published.
    pub counters: Arc<LiveCounters>,
    /// Per output port: its tap (`None` when nothing is connected there).
    pub taps: Vec<Option<Arc<TapPoint>>>,
    /// A `mux` sink's subscriber point.
    pub mux: Option<Arc<RefPoint>>,
    /// Indices (into [`LiveView::edges`]) of the edges into this node.
    pub inputs: Vec<usize>,
}

/// One edge, as the control endpoint sees it.
#[derive(Debug)]
pub struct EdgeLive {
    /// Producing node.
    pub from: String,
    /// Its port.
    pub port: String,
    /// Consuming node.
    pub to: String,
    /// Ring capacity.
    pub capacity: usize,
    /// Policy when full.
    pub when_full: WhenFull,
    /// Drops and depth.
    pub stats: Arc<EdgeStats>,
}

/// A running pipeline's nodes, edges and arena.
#[derive(Debug)]
pub struct LiveView {
    /// Nodes in topological order.
    pub nodes: Vec<NodeLive>,
    /// Edges in declaration order.
    pub edges: Vec<EdgeLive>,
    /// The arena (slots in use are read from its free stack).
    pub arena: Arc<Arena>,
    /// When the workers started.
    pub started: Instant,
}

impl LiveView {
    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeLive> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Whether every node has finished (or failed).
    pub fn all_done(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.counters.state() != crate::metrics::LiveState::Running)
    }

    /// Elements queued on the node's input edges, and their capacity.
    pub fn input_queue(&self, node: &NodeLive) -> (usize, usize) {
        node.inputs.iter().fold((0, 0), |(d, c), &e| {
            let e = &self.edges[e];
            (d + e.stats.depth().min(e.capacity), c + e.capacity)
        })
    }
}

/// Where a pipeline publishes its [`LiveView`] when it starts running: the
/// control endpoint holds one before [`Pipeline::run`](crate::Pipeline::run)
/// is called.
#[derive(Clone, Debug, Default)]
pub struct LiveHandle(pub(crate) Arc<OnceLock<Arc<LiveView>>>);

impl LiveHandle {
    /// The view, once the run has started.
    pub fn get(&self) -> Option<&Arc<LiveView>> {
        self.0.get()
    }
}
