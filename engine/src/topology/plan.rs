//! The validated pipeline as plain data: what runs where.
//!
//! [`PipelineBuilder::plan`](crate::PipelineBuilder::plan) makes a `Plan`
//! after every check passed; building it opened no socket or file and
//! started no thread. The runtime takes it from there
//! ([`Pipeline`](crate::Pipeline)): arena, rings, workers.

use crate::checkpoint::shape_hash;
use crate::metrics::PlacementEntry;
use crate::ring::WhenFull;
use crate::topology::decl::{Edge, NodeDecl, Settings};

/// Keys of a node table that belong to the engine, not the component.
pub(crate) const NODE_KEYS: [&str; 7] = [
    "component",
    "core",
    "description",
    "restart",
    "targets",
    "event_time",
    "watermark",
];

/// Nodes with their stages, edges between their ports, the topological
/// order, the core of each node and the engine settings.
pub struct Plan {
    pub(crate) settings: Settings,
    /// Arena slots.
    pub(crate) slots: u32,
    pub(crate) nodes: Vec<NodeDecl>,
    pub(crate) edges: Vec<Edge>,
    /// A topological order of `nodes` (sources first).
    pub(crate) order: Vec<usize>,
    /// The core each node runs on, by node index.
    pub(crate) cores: Vec<core_affinity::CoreId>,
}

impl Plan {
    pub(crate) fn new(
        settings: Settings,
        slots: u32,
        nodes: Vec<NodeDecl>,
        edges: Vec<Edge>,
        order: Vec<usize>,
        cores: Vec<core_affinity::CoreId>,
    ) -> Plan {
        Plan {
            settings,
            slots,
            nodes,
            edges,
            order,
            cores,
        }
    }

    /// The hash a checkpoint of this pipeline carries: node names and
    /// components, and the edges between their ports.
    pub fn shape(&self) -> u64 {
        shape_hash(
            self.nodes
                .iter()
                .map(|n| (n.name.as_str(), n.component.as_str())),
            self.edges.iter().map(|e| {
                (
                    self.nodes[e.from].name.as_str(),
                    port_name(e),
                    self.nodes[e.to].name.as_str(),
                )
            }),
        )
    }

    /// Slots the arena needs so that no stage can wait on the arena forever:
    /// every ring full, every worker cache full, one in hand per stage, and
    /// one spare.
    pub(crate) fn required_slots(
        edges: &[Edge],
        stages: usize,
        workers: usize,
        batch: usize,
    ) -> u64 {
        // A `drop_oldest` edge may also hold a ring's worth of leftovers
        // while its consumer sheds.
        let rings: u64 = edges
            .iter()
            .map(|e| match e.when_full {
                WhenFull::DropOldest => 2 * e.capacity as u64,
                _ => e.capacity as u64,
            })
            .sum();
        rings + (workers * 2 * batch) as u64 + stages as u64 + 1
    }

    /// The engine settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The arena's slot count.
    pub fn arena_slots(&self) -> u32 {
        self.slots
    }

    pub(crate) fn nodes(&self) -> &[NodeDecl] {
        &self.nodes
    }

    pub(crate) fn edges(&self) -> &[Edge] {
        &self.edges
    }

    /// Where each stage will run, in topological order.
    pub fn placement(&self) -> Vec<PlacementEntry> {
        let workers = self.worker_of();
        self.order
            .iter()
            .map(|&i| PlacementEntry {
                stage: self.nodes[i].name.clone(),
                component: self.nodes[i].component.clone(),
                role: self.nodes[i].stage.role(),
                core: self.cores[i].id,
                worker: workers[i],
            })
            .collect()
    }

    /// The stage names in topological order.
    pub fn stage_names(&self) -> Vec<&str> {
        self.order
            .iter()
            .map(|&i| self.nodes[i].name.as_str())
            .collect()
    }

    /// Worker index per stage: one worker per distinct core, numbered in
    /// order of first use along the topological order.
    pub(crate) fn worker_of(&self) -> Vec<usize> {
        let mut core_ids: Vec<usize> = Vec::new();
        let mut of = vec![0; self.nodes.len()];
        for &i in &self.order {
            let id = self.cores[i].id;
            of[i] = match core_ids.iter().position(|&c| c == id) {
                Some(w) => w,
                None => {
                    core_ids.push(id);
                    core_ids.len() - 1
                }
            };
        }
        of
    }
}

fn port_name(e: &Edge) -> &'static str {
    // Port names only matter to the hash through their position.
    const PORTS: [&str; 8] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];
    PORTS.get(e.port).copied().unwrap_or("p+")
}
