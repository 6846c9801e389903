//! Building a pipeline from Rust: add stages, connect ports, `plan()` into
//! a validated [`Plan`] (or `build()` a [`Pipeline`](crate::Pipeline) of
//! it), `run()` it. The TOML loader uses the same
//! builder, so both paths get the same validation.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::arena::{DEFAULT_SLOTS, DEFAULT_SLOT_SIZE};
use crate::event_time::{EventTime, WatermarkSpec};
use crate::metrics::targets::Target;
use crate::ring::wait::WaitStrategy;
use crate::ring::{WhenFull, DEFAULT_CAPACITY};
use crate::stage::{PortMask, Role, Stage};
use crate::topology::error::{ConfigError, ConfigErrors};
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
const SLOT_OVERHEAD: u64 = 64;

/// Memory the arena may take: `MemAvailable` on Linux; `None` (no check)
/// where it cannot be read.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

fn human_bytes(b: u64) -> String {
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
            None => self.errors.push(ConfigError::new(
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
                    self.errors.push(ConfigError::new(
                        origin.clone(),
                        format!("node '{name}' restart: {p}"),
                    ));
                }
            }
            None => self.errors.push(ConfigError::new(
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
            None => self.errors.push(ConfigError::new(
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
            mut errors,
            broken,
            origin,
        } = self;
        let global = |what: &str| {
            if origin.is_empty() {
                what.to_string()
            } else if what.is_empty() {
                origin.clone()
            } else {
                format!("{origin}: {what}")
            }
        };
        // Problems found while loading already explain an empty graph.
        let loaded_cleanly = errors.is_empty();
        let at = |origin: &str, fallback: String| {
            if origin.is_empty() {
                fallback
            } else {
                format!("{origin}: {fallback}")
            }
        };

        // Names.
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if n.name.is_empty() {
                errors.push(ConfigError::new(&n.origin, "a node name may not be empty"));
            }
            if let Some(first) = index.insert(n.name.as_str(), i) {
                let first = &nodes[first].origin;
                let also = if first.is_empty() {
                    String::new()
                } else {
                    format!(" (first defined at {first})")
                };
                errors.push(ConfigError::new(
                    &n.origin,
                    format!("duplicate node name '{}'{also}; node names must be unique across all flows", n.name),
                ));
            }
            if !n.targets.is_empty() && n.stage.role() != Role::Sink {
                errors.push(ConfigError::new(
                    &n.origin,
                    format!(
                        "node '{}' is a {}; latency targets belong on sinks",
                        n.name,
                        n.stage.role()
                    ),
                ));
            }
            if let Stage::Router(_, ports) = &n.stage {
                if ports.is_empty() || ports.len() > PortMask::MAX_PORTS {
                    errors.push(ConfigError::new(
                        &n.origin,
                        format!(
                            "router '{}' declares {} output ports; 1 to {} are allowed",
                            n.name,
                            ports.len(),
                            PortMask::MAX_PORTS
                        ),
                    ));
                }
            }
        }
        if loaded_cleanly && nodes.is_empty() {
            errors.push(ConfigError::new(global(""), "the pipeline has no nodes"));
        } else if loaded_cleanly && !nodes.iter().any(|n| n.stage.role() == Role::Source) {
            errors.push(ConfigError::new(global(""), "the pipeline has no source"));
        }

        // Edges.
        let out_ports: Vec<Vec<String>> = nodes.iter().map(|n| n.stage.output_ports()).collect();
        let mut resolved = Vec::new();
        let mut seen = BTreeSet::new();
        for e in &edges {
            let edge_name = format!("edge {}.{} -> {}.{}", e.from.0, e.from.1, e.to.0, e.to.1);
            let loc = at(&e.origin, edge_name);
            if broken.contains(&e.from.0) || broken.contains(&e.to.0) {
                continue;
            }
            let from = index.get(e.from.0.as_str()).copied();
            let to = index.get(e.to.0.as_str()).copied();
            if from.is_none() {
                errors.push(ConfigError::new(
                    &loc,
                    format!("unknown node '{}'", e.from.0),
                ));
            }
            if to.is_none() {
                errors.push(ConfigError::new(&loc, format!("unknown node '{}'", e.to.0)));
            }
            let (Some(from), Some(to)) = (from, to) else {
                continue;
            };
            let from_node = &nodes[from];
            let to_node = &nodes[to];
            let port = out_ports[from].iter().position(|p| *p == e.from.1);
            let mut ok = true;
            if from_node.stage.role() == Role::Sink && port.is_none() {
                errors.push(ConfigError::new(
                    &loc,
                    format!(
                        "sink '{}' has no output port '{}'; a sink's only output is its optional 'error' port (elements it could not deliver)",
                        e.from.0, e.from.1
                    ),
                ));
                ok = false;
            } else if port.is_none() {
                let msg = if e.from.1 == "input" {
                    format!(
                        "'{}.input' is an input port; an edge must start at an output port of '{}' ({})",
                        e.from.0,
                        e.from.0,
                        out_ports[from].join(", ")
                    )
                } else {
                    format!(
                        "node '{}' has no output port '{}' (its output ports: {})",
                        e.from.0,
                        e.from.1,
                        out_ports[from].join(", ")
                    )
                };
                errors.push(ConfigError::new(&loc, msg));
                ok = false;
            }
            if out_ports[to].contains(&e.to.1) {
                errors.push(ConfigError::new(
                    &loc,
                    format!(
                        "'{}.{}' is an output port; an edge must end at an input port",
                        e.to.0, e.to.1
                    ),
                ));
                ok = false;
            } else if !to_node.stage.has_input() {
                errors.push(ConfigError::new(
                    &loc,
                    format!("source '{}' cannot have inputs", e.to.0),
                ));
                ok = false;
            } else if e.to.1 != "input" {
                let msg = if out_ports[to].contains(&e.to.1) {
                    format!(
                        "'{}.{}' is an output port; an edge must end at an input port ('{}.input')",
                        e.to.0, e.to.1, e.to.0
                    )
                } else {
                    format!(
                        "node '{}' has no input port '{}' (its input port: input)",
                        e.to.0, e.to.1
                    )
                };
                errors.push(ConfigError::new(&loc, msg));
                ok = false;
            }
            let capacity = e.capacity.unwrap_or(settings.ring_capacity);
            if capacity == 0 {
                errors.push(ConfigError::new(&loc, "ring capacity must be at least 1"));
                ok = false;
            } else if capacity > MAX_RING_CAPACITY && capacity != settings.ring_capacity {
                errors.push(ConfigError::new(
                    &loc,
                    format!(
                        "ring capacity {capacity} is larger than the largest ring, {MAX_RING_CAPACITY} handles"
                    ),
                ));
                ok = false;
            }
            if from == to {
                errors.push(ConfigError::new(
                    &loc,
                    "an edge may not connect a node to itself (cycle)",
                ));
                ok = false;
            }
            if ok && !seen.insert((from, port, to)) {
                errors.push(ConfigError::new(&loc, "duplicate edge"));
                ok = false;
            }
            if ok {
                resolved.push(Edge {
                    from,
                    port: port.expect("checked"),
                    to,
                    capacity,
                    when_full: e.when_full,
                });
            }
        }

        // Event time: declared on sources, read by the processors that
        // need it from every source upstream of them.
        for n in &nodes {
            if n.source_time.is_some() && n.stage.role() != Role::Source {
                errors.push(ConfigError::new(
                    &n.origin,
                    format!(
                        "node '{}' is a {}; event_time and watermark belong on sources",
                        n.name,
                        n.stage.role()
                    ),
                ));
            }
        }
        let mut event_times: Vec<(usize, EventTime)> = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let Stage::Processor(p) = &n.stage else {
                continue;
            };
            if !p.uses_event_time() {
                continue;
            }
            let sources = upstream_sources(i, &nodes, &resolved);
            let missing: Vec<&str> = sources
                .iter()
                .filter(|&&s| nodes[s].source_time.is_none())
                .map(|&s| nodes[s].name.as_str())
                .collect();
            if !missing.is_empty() {
                errors.push(ConfigError::new(
                    &n.origin,
                    format!(
                        "node '{}' works in event time, but its upstream source(s) {} declare no event_time; add event_time = {{ field = \"ts\", unit = \"ms\" }} to them",
                        n.name,
                        missing.join(", ")
                    ),
                ));
                continue;
            }
            let declared: Vec<&EventTime> = sources
                .iter()
                .filter_map(|&s| nodes[s].source_time.as_ref().map(|(e, _)| e))
                .collect();
            match declared.first() {
                Some(first) if declared.iter().all(|e| e == first) => {
                    event_times.push((i, (*first).clone()));
                }
                Some(_) => errors.push(ConfigError::new(
                    &n.origin,
                    format!(
                        "node '{}' works in event time, but its upstream sources declare different event_time fields or units",
                        n.name
                    ),
                )),
                None => {}
            }
        }
        if let Some(c) = &settings.checkpoint {
            if c.interval_ms == 0 {
                errors.push(ConfigError::new(
                    global("engine.checkpoint.interval_ms"),
                    "interval_ms must be at least 1",
                ));
            }
            if c.dir.as_os_str().is_empty() {
                errors.push(ConfigError::new(
                    global("engine.checkpoint.dir"),
                    "dir may not be empty",
                ));
            }
            for e in edges.iter().filter(|e| e.when_full != WhenFull::Block) {
                errors.push(ConfigError::new(
                    at(&e.origin, format!("edge {}.{} -> {}.{}", e.from.0, e.from.1, e.to.0, e.to.1)),
                    format!(
                        "when_full = \"{}\" drops elements, which a checkpointed pipeline cannot replay; checkpoints need every edge to block",
                        e.when_full
                    ),
                ));
            }
        }

        // Every output port connected, every consumer fed.
        for (i, n) in nodes.iter().enumerate() {
            for name in &out_ports[i] {
                // An edge naming this port counts even if its other end is
                // wrong: that edge's own error says what to fix.
                let named = edges
                    .iter()
                    .any(|e| e.from.0 == n.name && e.from.1 == *name);
                if !named && !n.stage.is_optional_port(name) {
                    errors.push(ConfigError::new(
                        &n.origin,
                        format!(
                            "output port '{}.{}' is not connected (every output port needs an edge)",
                            n.name, name
                        ),
                    ));
                }
            }
            if n.stage.has_input()
                && !resolved.iter().any(|e| e.to == i)
                && !edges.iter().any(|e| e.to.0 == n.name)
            {
                errors.push(ConfigError::new(
                    &n.origin,
                    format!("{} '{}' has no input edge", n.stage.role(), n.name),
                ));
            }
        }

        // Cycles (Kahn's algorithm; what remains is on or behind a cycle).
        let order = match topo_order(nodes.len(), &resolved) {
            Ok(order) => order,
            Err(stuck) => {
                let cycle = find_cycle(&stuck, &resolved)
                    .into_iter()
                    .map(|i| nodes[i].name.as_str())
                    .collect::<Vec<_>>();
                let at = stuck
                    .first()
                    .map(|&i| nodes[i].origin.clone())
                    .filter(|o| !o.is_empty())
                    .unwrap_or_else(|| global(""));
                errors.push(ConfigError::new(
                    at,
                    format!(
                        "the graph has a cycle: {} (pipelines must be acyclic)",
                        cycle.join(" -> ")
                    ),
                ));
                Vec::new()
            }
        };

        // Settings.
        if settings.slot_size == 0 {
            errors.push(ConfigError::new(
                global("engine.arena"),
                "slot_size must be at least 1 byte",
            ));
        } else if settings.slot_size > MAX_SLOT_SIZE {
            errors.push(ConfigError::new(
                global("engine.arena"),
                format!(
                    "slot_size {} is larger than the largest slot, {MAX_SLOT_SIZE} bytes (64 MiB)",
                    settings.slot_size
                ),
            ));
        }
        if settings.batch == 0 {
            errors.push(ConfigError::new(
                global("engine"),
                "batch must be at least 1",
            ));
        } else if settings.batch > MAX_BATCH {
            errors.push(ConfigError::new(
                global("engine"),
                format!(
                    "batch {} is larger than the largest batch, {MAX_BATCH}",
                    settings.batch
                ),
            ));
        }
        if settings.ring_capacity == 0 {
            errors.push(ConfigError::new(
                global("engine"),
                "ring_capacity must be at least 1",
            ));
        } else if settings.ring_capacity > MAX_RING_CAPACITY {
            errors.push(ConfigError::new(
                global("engine"),
                format!(
                    "ring_capacity {} is larger than the largest ring, {MAX_RING_CAPACITY} handles",
                    settings.ring_capacity
                ),
            ));
        }

        // Cores.
        let detected: Vec<core_affinity::CoreId> =
            core_affinity::get_core_ids().unwrap_or_default();
        let detected_ids: Vec<usize> = detected.iter().map(|c| c.id).collect();
        let usable: Vec<usize> = match &settings.cores {
            Some(list) => {
                for &c in list {
                    if !detected_ids.is_empty() && !detected_ids.contains(&c) {
                        errors.push(ConfigError::new(
                            global("engine.cores"),
                            format!(
                                "core {c} is not available here (usable cores: {})",
                                ids(&detected_ids)
                            ),
                        ));
                    }
                }
                if list.is_empty() {
                    errors.push(ConfigError::new(
                        global("engine.cores"),
                        "the core list is empty",
                    ));
                }
                list.clone()
            }
            None if detected_ids.is_empty() => vec![0],
            None => detected_ids.clone(),
        };
        let mut pinned = vec![None; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            if let Some(c) = n.core {
                match usable.iter().position(|&u| u == c) {
                    Some(p) => pinned[i] = Some(p),
                    None => errors.push(ConfigError::new(
                        &n.origin,
                        format!(
                            "node '{}' asks for core {c}, which is not available (usable cores: {})",
                            n.name,
                            ids(&usable)
                        ),
                    )),
                }
            }
        }

        // Arena: enough slots that every ring can be full and every worker
        // cache full, with one to spare, so a copy-on-write never waits for
        // a slot that only a blocked stage could free.
        let workers = usable.len().min(nodes.len()).max(1);
        let required = Plan::required_slots(&resolved, nodes.len(), workers, settings.batch);
        if let Some(slots) = settings.slots {
            if (slots as u64) < required {
                errors.push(ConfigError::new(
                    global("engine.arena.slots"),
                    format!(
                        "{slots} slots cannot hold what the rings may carry: this topology needs at least \
                         {required} (sum of ring capacities + per-worker caches + one per stage); raise \
                         slots or lower ring capacities"
                    ),
                ));
            }
        }
        if settings.slots.is_some_and(|s| s >= MAX_SLOTS) {
            errors.push(ConfigError::new(
                global("engine.arena.slots"),
                format!(
                    "at most {} slots (ring indices keep one bit to mark control elements)",
                    MAX_SLOTS - 1
                ),
            ));
        }
        if required >= u64::from(MAX_SLOTS) {
            errors.push(ConfigError::new(
                global(""),
                "ring capacities are too large for one arena",
            ));
        }

        let slots = settings
            .slots
            .unwrap_or_else(|| (required.min(u64::from(MAX_SLOTS) - 1) as u32).max(DEFAULT_SLOTS));
        // The arena is allocated and pre-faulted at start: say so now if it
        // cannot fit, instead of an abort later.
        let arena_bytes =
            u64::from(slots).saturating_mul(settings.slot_size as u64 + SLOT_OVERHEAD);
        let in_bounds = settings.slot_size <= MAX_SLOT_SIZE
            && settings.ring_capacity <= MAX_RING_CAPACITY
            && settings.batch <= MAX_BATCH;
        if let Some(available) = available_memory().filter(|_| in_bounds) {
            if arena_bytes > available {
                errors.push(ConfigError::new(
                    global("engine.arena"),
                    format!(
                        "the arena would take about {} ({slots} slots x {} B) but only {} of memory is available; lower slots, slot_size or the ring capacities",
                        human_bytes(arena_bytes),
                        settings.slot_size,
                        human_bytes(available)
                    ),
                ));
            }
        }

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

fn ids(list: &[usize]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sources from which node `i` receives elements, directly or not.
fn upstream_sources(i: usize, nodes: &[NodeDecl], edges: &[Edge]) -> Vec<usize> {
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
fn find_cycle(stuck: &[usize], edges: &[Edge]) -> Vec<usize> {
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
