//! Building a pipeline from Rust: add stages, connect ports, `plan()` into
//! a validated [`Plan`] (or `build()` a [`Pipeline`](crate::Pipeline) of
//! it), `run()` it. The TOML loader uses the same
//! builder, so both paths get the same validation.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::event_time::{EventTime, WatermarkSpec};
use crate::metrics::targets::Target;
use crate::ring::WhenFull;
use crate::stage::Stage;
use crate::topology::error::{ConfigError, ConfigErrors};
use crate::topology::passes::{self, Check};
use crate::topology::placement;
use crate::topology::restart::{Policy, RestartPolicy};
use crate::topology::Plan;

use super::decl::{EdgeDecl, NodeDecl, Rebuild, Settings};

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
