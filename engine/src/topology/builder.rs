//! Building a pipeline from Rust: add stages, connect ports, `plan()` into
//! a validated [`Plan`] (or `build()` a [`Pipeline`](crate::Pipeline) of
//! it), `run()` it. The TOML loader uses the same
//! builder, so both paths get the same validation.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::arena::DEFAULT_SLOT_SIZE;
use crate::event_time::{EventTime, WatermarkSpec};
use crate::metrics::targets::Target;
use crate::ring::wait::WaitStrategy;
use crate::ring::{WhenFull, DEFAULT_CAPACITY};
use crate::stage::{Role, Stage};
use crate::topology::error::{ConfigError, ConfigErrors};
use crate::topology::passes::{self, Check};
use crate::topology::placement;
use crate::topology::restart::{Policy, RestartPolicy};
use crate::topology::Plan;

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

/// Assembles and validates a pipeline.
///
/// ```
/// use dataplane::operators::{Discard, ListSource};
/// use dataplane::{PipelineBuilder, Stage};
///
/// let mut b = PipelineBuilder::new();
/// b.add("src", "list", Stage::Source(Box::new(ListSource::new(vec![b"a".to_vec(), b"b".to_vec()]))));
/// b.add("sink", "discard", Stage::Sink(Box::new(Discard)));
/// b.connect(("src", "output"), ("sink", "input"));
/// let report = b.build().expect("valid").run();
/// assert_eq!(report.stage("sink").unwrap().received, 2);
/// assert_eq!(report.leaked_slots, 0);
/// ```
#[derive(Default)]
pub struct PipelineBuilder {
    pub(crate) settings: Settings,
    pub(crate) nodes: Vec<NodeDecl>,
    pub(crate) edges: Vec<EdgeDecl>,
    pub(crate) errors: Vec<ConfigError>,
    /// Nodes that failed to build (already reported): edges touching them
    /// are skipped instead of reported again as unknown.
    pub(crate) broken: BTreeSet<String>,
    /// Where the description came from (a file name), for global errors.
    pub(crate) origin: String,
}

impl PipelineBuilder {
    /// An empty pipeline with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the engine settings.
    pub fn settings(&mut self, settings: Settings) -> &mut Self {
        self.settings = settings;
        self
    }

    /// Adds a stage named `name`, built from `component` (used in reports).
    pub fn add(&mut self, name: &str, component: &str, stage: Stage) -> &mut Self {
        self.add_at(name, component, stage, None, String::new())
    }

    /// Like [`add`](Self::add), pinning the stage to core id `core`.
    pub fn add_pinned(
        &mut self,
        name: &str,
        component: &str,
        stage: Stage,
        core: usize,
    ) -> &mut Self {
        self.add_at(name, component, stage, Some(core), String::new())
    }

    pub(crate) fn add_at(
        &mut self,
        name: &str,
        component: &str,
        stage: Stage,
        core: Option<usize>,
        origin: String,
    ) -> &mut Self {
        self.nodes.push(NodeDecl {
            name: name.to_string(),
            component: component.to_string(),
            stage,
            core,
            origin,
            targets: Vec::new(),
            source_time: None,
            restart: RestartPolicy::default(),
            rebuild: None,
        });
        self
    }

    /// Declares where source `source`'s elements carry their event time,
    /// and how its watermark follows it (see [`crate::event_time`]).
    pub fn event_time(
        &mut self,
        source: &str,
        event_time: EventTime,
        watermark: WatermarkSpec,
    ) -> &mut Self {
        match self.nodes.iter_mut().find(|n| n.name == source) {
            Some(n) => n.source_time = Some((event_time, watermark)),
            None => self.errors.push(ConfigError::name(
                "",
                format!("event_time for unknown node '{source}'"),
            )),
        }
        self
    }

    /// Gives stage `name` a restart policy and the factory that builds a
    /// fresh stage for each restart (called on the stage's worker thread).
    /// A stage without one follows policy `never`.
    pub fn restart(
        &mut self,
        name: &str,
        policy: RestartPolicy,
        rebuild: impl Fn() -> Result<Stage, String> + Send + Sync + 'static,
    ) -> &mut Self {
        let problems = policy.check().err().unwrap_or_default();
        match self.nodes.iter_mut().find(|n| n.name == name) {
            Some(n) if problems.is_empty() => {
                n.restart = policy;
                n.rebuild = (policy.policy != Policy::Never).then(|| Arc::new(rebuild) as Rebuild);
            }
            Some(n) => {
                let origin = n.origin.clone();
                for p in problems {
                    self.errors.push(ConfigError::parameter(
                        origin.clone(),
                        format!("node '{name}' restart: {p}"),
                    ));
                }
            }
            None => self.errors.push(ConfigError::name(
                self.origin.clone(),
                format!("restart policy for unknown node '{name}'"),
            )),
        }
        self
    }

    /// Sets latency targets on sink `sink` (checked when the run ends; see
    /// [`RunReport::targets_met`](crate::RunReport::targets_met)).
    pub fn targets(&mut self, sink: &str, targets: Vec<Target>) -> &mut Self {
        match self.nodes.iter_mut().find(|n| n.name == sink) {
            Some(n) => n.targets = targets,
            None => self.errors.push(ConfigError::name(
                "",
                format!("latency targets for unknown node '{sink}'"),
            )),
        }
        self
    }

    /// Connects output port `from = (node, port)` to input port `to`.
    pub fn connect(&mut self, from: (&str, &str), to: (&str, &str)) -> &mut Self {
        self.connect_at(from, to, None, WhenFull::Block, String::new())
    }

    /// Like [`connect`](Self::connect) with this edge's own ring capacity.
    pub fn connect_with_capacity(
        &mut self,
        from: (&str, &str),
        to: (&str, &str),
        capacity: usize,
    ) -> &mut Self {
        self.connect_at(from, to, Some(capacity), WhenFull::Block, String::new())
    }

    /// Like [`connect`](Self::connect) with this edge's policy for a full
    /// ring (see [`WhenFull`]).
    pub fn connect_when_full(
        &mut self,
        from: (&str, &str),
        to: (&str, &str),
        when_full: WhenFull,
    ) -> &mut Self {
        self.connect_at(from, to, None, when_full, String::new())
    }

    pub(crate) fn connect_at(
        &mut self,
        from: (&str, &str),
        to: (&str, &str),
        capacity: Option<usize>,
        when_full: WhenFull,
        origin: String,
    ) -> &mut Self {
        self.edges.push(EdgeDecl {
            from: (from.0.to_string(), from.1.to_string()),
            to: (to.0.to_string(), to.1.to_string()),
            capacity,
            when_full,
            origin,
        });
        self
    }

    /// Records an error found before building (e.g. by a config loader).
    pub fn error(&mut self, error: ConfigError) -> &mut Self {
        self.errors.push(error);
        self
    }

    /// Validates everything and returns the [`Plan`] (plain data: nothing
    /// opened, nothing started), or every problem found.
    /// [`build`](Self::build) makes a runnable pipeline of it.
    ///
    /// Reads the usable cores with `core_affinity::get_core_ids()`, which
    /// reports the *calling thread's* affinity: call this from the main
    /// thread, before anything is pinned.
    pub fn plan(self) -> Result<Plan, ConfigErrors> {
        let PipelineBuilder {
            settings,
            nodes,
            edges,
            errors,
            broken,
            origin,
        } = self;
        // Problems found while loading already explain an empty graph.
        let loaded_cleanly = errors.is_empty();
        let mut c = Check { origin, errors };
        let index = passes::names(&mut c, &nodes, loaded_cleanly);
        let (out_ports, resolved) =
            passes::edges(&mut c, &nodes, &edges, &broken, &index, &settings);
        let event_times = passes::event_time(&mut c, &nodes, &edges, &resolved, &settings);
        passes::connected(&mut c, &nodes, &edges, &resolved, &out_ports);
        let order = passes::cycles(&mut c, &nodes, &resolved);
        passes::settings(&mut c, &settings);
        let (usable, pinned) = passes::cores(&mut c, &settings, &nodes);
        let slots = passes::arena(&mut c, &settings, &nodes, &resolved, &usable);
        let errors = c.errors;
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut nodes = nodes;
        for (i, et) in event_times {
            if let Stage::Processor(p) = &mut nodes[i].stage {
                p.set_event_time(&et);
            }
        }
        let assignment = placement::assign(&order, &pinned, usable.len());
        let core_of: Vec<core_affinity::CoreId> = assignment
            .iter()
            .map(|&c| core_affinity::CoreId { id: usable[c] })
            .collect();
        Ok(Plan::new(settings, slots, nodes, resolved, order, core_of))
    }
}

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
