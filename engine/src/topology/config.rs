//! TOML pipeline files: parsed into raw serde structs (phase one), then fed
//! to the [`PipelineBuilder`] which validates the graph (phase two). Every
//! problem in both phases is collected, located by `file:line:col`.
//!
//! ```toml
//! [engine]                       # optional
//! wait = "park"                  # busy-spin | yield | park
//! ring_capacity = 1024           # default per edge
//! batch = 64
//! drain_timeout_ms = 5000        # then stuck stages are named, exit 74
//! arena = { slots = 16384, slot_size = 2048 }
//!
//! [control]                      # optional: the control endpoint
//! listen = "127.0.0.1:9464"      # a bare port binds loopback only
//! token_file = "secret"          # optional: /subscribe and /tap need it
//! max_subscribers = 256
//! subscriber_queue = 4096        # elements per subscriber (drop_oldest)
//!
//! [flow.main]
//! [flow.main.nodes.source]
//! component = "list"
//! payloads = ['{"type":"metric"}']
//! core = 0                       # optional pinning
//! restart = { policy = "on-failure", max_restarts = 5, within_ms = 60000, backoff_ms = 100, max_backoff_ms = 10000 }
//!
//! [[flow.main.edges]]
//! from = { node = "source", port = "output" }
//! to = { node = "sink", port = "input" }
//! capacity = 256                 # optional
//! when_full = "block"            # or drop_newest, drop_oldest (optional)
//!
//! [flow.main.targets]            # optional latency targets for every sink
//! p99 = "50us"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::checkpoint::CheckpointSettings;
use crate::control::{parse_listen, ControlSettings};
use crate::event_time::{EventTime, WatermarkSpec};
use crate::metrics::targets;
use crate::operators::Registry;
use crate::ring::wait::WaitStrategy;
use crate::ring::WhenFull;
use crate::topology::builder::PipelineBuilder;
use crate::topology::decl::Settings;
use crate::topology::error::{
    did_you_mean, locate, toml_error, unknown_field_hint, ConfigError, ConfigErrors,
};
use crate::topology::plan::NODE_KEYS;
use crate::topology::restart::{Policy, RestartPolicy};
use crate::topology::Plan;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    flow: BTreeMap<String, RawFlow>,
    control: Option<Spanned<RawControl>>,
    /// `[[tests]]` blocks: checked by [`crate::testing`], run by `dataplane test`.
    #[serde(default)]
    tests: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    listen: Spanned<String>,
    token_file: Option<std::path::PathBuf>,
    max_subscribers: Option<Spanned<usize>>,
    subscriber_queue: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    #[serde(default)]
    arena: RawArena,
    ring_capacity: Option<usize>,
    batch: Option<usize>,
    wait: Option<Spanned<String>>,
    pin: Option<bool>,
    cores: Option<Vec<usize>>,
    stage_metrics: Option<bool>,
    drain_timeout_ms: Option<u64>,
    checkpoint: Option<CheckpointSettings>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawArena {
    slots: Option<u32>,
    slot_size: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    ring_capacity: Option<usize>,
    /// Latency targets for every sink of the flow.
    targets: Option<Spanned<toml::Table>>,
    #[serde(default)]
    nodes: indexmap::IndexMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    edges: Vec<Spanned<RawEdge>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    from: RawEnd,
    to: RawEnd,
    capacity: Option<usize>,
    when_full: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnd {
    node: String,
    port: Option<String>,
}

/// Why a config file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read (missing, permissions...).
    Io(String),
    /// The file was read but describes no valid pipeline.
    Invalid(ConfigErrors),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io(m) => f.write_str(m),
            LoadError::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads a pipeline file into a builder (with any errors recorded in it).
/// `flow` selects one `[flow.NAME]`; `None` runs every flow in the file.
pub fn load_file(
    path: &Path,
    registry: &Registry,
    flow: Option<&str>,
) -> Result<PipelineBuilder, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::Io(format!("cannot read config file {}: {e}", path.display())))?;
    Ok(load_str(&text, &path.display().to_string(), registry, flow))
}

/// Parses pipeline TOML `text` (named `file` in messages) into a builder.
pub fn load_str(
    text: &str,
    file: &str,
    registry: &Registry,
    flow: Option<&str>,
) -> PipelineBuilder {
    let mut b = PipelineBuilder::new();
    b.origin = file.to_string();
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            b.error(toml_error(file, text, &e));
            return b;
        }
    };

    let mut settings = Settings::default();
    let eng = raw.engine;
    if let Some(v) = eng.arena.slots {
        settings.slots = Some(v);
    }
    if let Some(v) = eng.arena.slot_size {
        settings.slot_size = v;
    }
    if let Some(v) = eng.ring_capacity {
        settings.ring_capacity = v;
    }
    if let Some(v) = eng.batch {
        settings.batch = v;
    }
    if let Some(w) = eng.wait {
        let at = locate(file, text, w.span().start);
        let w = w.into_inner();
        match WaitStrategy::parse(&w) {
            Some(w) => settings.wait = w,
            None => {
                b.error(ConfigError::parameter(
                    format!("{at}: engine.wait"),
                    format!("unknown wait strategy '{w}' (expected busy-spin, yield or park)"),
                ));
            }
        }
    }
    if let Some(p) = eng.pin {
        settings.pin = p;
    }
    settings.cores = eng.cores;
    settings.stage_metrics = eng.stage_metrics.unwrap_or(false);
    if let Some(ms) = eng.drain_timeout_ms {
        settings.drain_timeout_ms = ms;
    }
    settings.checkpoint = eng.checkpoint;
    if let Some(c) = raw.control {
        settings.control = control_settings(c.into_inner(), file, text, &mut b);
    }
    let default_capacity = settings.ring_capacity;
    b.settings(settings);

    if raw.flow.is_empty() {
        b.error(ConfigError::structure(
            file,
            "no flow defined (expected a [flow.NAME] table)",
        ));
        return b;
    }
    let flows: Vec<(&String, &RawFlow)> = match flow {
        Some(name) => match raw.flow.get_key_value(name) {
            Some(f) => vec![f],
            None => {
                let names: Vec<&str> = raw.flow.keys().map(String::as_str).collect();
                b.error(ConfigError::name(
                    file,
                    format!(
                        "no flow named '{name}' (flows in this file: {})",
                        names.join(", ")
                    ),
                ));
                return b;
            }
        },
        None => raw.flow.iter().collect(),
    };

    for (flow_name, f) in flows {
        if f.nodes.is_empty() {
            b.error(ConfigError::structure(
                file,
                format!("flow '{flow_name}' has no nodes (expected [flow.{flow_name}.nodes.NAME] tables)"),
            ));
        }
        let flow_targets = match &f.targets {
            None => Vec::new(),
            Some(t) => match targets::parse_targets(t.get_ref()) {
                Ok(t) => t,
                Err(errs) => {
                    let at = locate(file, text, t.span().start);
                    for e in errs {
                        b.error(ConfigError::parameter(
                            &at,
                            format!("flow '{flow_name}' targets: {e}"),
                        ));
                    }
                    Vec::new()
                }
            },
        };
        for (name, node) in &f.nodes {
            let origin = locate(file, text, node.span().start);
            let table = node.get_ref();
            let component = match table.get("component") {
                Some(toml::Value::String(c)) => c.clone(),
                Some(_) => {
                    b.error(
                        ConfigError::structure(
                            &origin,
                            format!("node '{name}': component must be a string"),
                        )
                        .at_node(name.as_str()),
                    );
                    b.broken.insert(name.clone());
                    continue;
                }
                None => {
                    b.error(
                        ConfigError::structure(
                            &origin,
                            format!("node '{name}': missing `component`"),
                        )
                        .at_node(name.as_str()),
                    );
                    b.broken.insert(name.clone());
                    continue;
                }
            };
            let core =
                match table.get("core") {
                    None => None,
                    Some(toml::Value::Integer(c)) if *c >= 0 => Some(*c as usize),
                    Some(other) => {
                        b.error(ConfigError::parameter(
                        &origin,
                        format!("node '{name}': core must be a non-negative integer, not {other}"),
                    ).at_node(name.as_str()));
                        None
                    }
                };
            let mut params = table.clone();
            for k in NODE_KEYS {
                params.remove(k);
            }
            let node_targets = match table.get("targets") {
                None => Vec::new(),
                Some(toml::Value::Table(t)) => match targets::parse_targets(t) {
                    Ok(t) => t,
                    Err(errs) => {
                        for e in errs {
                            b.error(
                                ConfigError::parameter(
                                    &origin,
                                    format!("node '{name}' targets: {e}"),
                                )
                                .at_node(name.as_str()),
                            );
                        }
                        Vec::new()
                    }
                },
                Some(other) => {
                    b.error(ConfigError::structure(
                        &origin,
                        format!("node '{name}': targets must be a table like {{ p99 = \"50us\" }}, not {other}"),
                    ).at_node(name.as_str()));
                    Vec::new()
                }
            };
            let event_time = table.get("event_time").map(|v| {
                v.clone().try_into::<EventTime>().map_err(|e| {
                    format!("node '{name}': event_time: {} (expected {{ field = \"ts\", unit = \"ms\" | \"s\" | \"rfc3339\" }})", e.message())
                })
            });
            let watermark = table.get("watermark").map(|v| {
                v.clone().try_into::<WatermarkSpec>().map_err(|e| {
                    format!("node '{name}': watermark: {} (expected {{ max_out_of_orderness_ms = N, idle_timeout_ms = N }})", e.message())
                })
            });
            let source_time = match (event_time, watermark) {
                (None, None) => None,
                (None, Some(_)) => {
                    b.error(ConfigError::parameter(
                        &origin,
                        format!("node '{name}': watermark needs event_time (the field the watermark follows)"),
                    ).at_node(name.as_str()));
                    None
                }
                (Some(Err(e)), _) | (_, Some(Err(e))) => {
                    b.error(ConfigError::parameter(&origin, e).at_node(name.as_str()));
                    None
                }
                (Some(Ok(et)), wm) => Some((
                    et,
                    wm.map_or(Ok(WatermarkSpec::default()), |w| w)
                        .unwrap_or_default(),
                )),
            };
            let restart = match table.get("restart") {
                None => RestartPolicy::default(),
                Some(value) => RestartPolicy::from_toml(value).unwrap_or_else(|errs| {
                    for e in errs {
                        b.error(
                            ConfigError::parameter(&origin, format!("node '{name}' restart: {e}"))
                                .at_node(name.as_str()),
                        );
                    }
                    RestartPolicy::default()
                }),
            };
            match registry.build(&component, &params) {
                Ok(stage) => {
                    let is_sink = stage.role() == crate::stage::Role::Sink;
                    b.add_at(name, &component, stage, core, origin);
                    if let Some((et, wm)) = source_time {
                        b.event_time(name, et, wm);
                    }
                    if restart.policy != Policy::Never {
                        if let Some(rebuild) = registry.rebuilder(&component, &params) {
                            b.restart(name, restart, rebuild);
                        }
                    }
                    let merged = if is_sink {
                        targets::merge(&flow_targets, &node_targets)
                    } else {
                        node_targets
                    };
                    if !merged.is_empty() {
                        b.targets(name, merged);
                    }
                }
                Err(msg) => {
                    let message = format!("node '{name}' ({component}): {msg}");
                    let error = if registry.get(&component).is_none() {
                        let known: Vec<&str> = registry.iter().map(|(n, _)| n).collect();
                        ConfigError::name(&origin, message)
                            .at_node(name.as_str())
                            .with_hint(did_you_mean(&component, &known))
                    } else {
                        ConfigError::parameter(&origin, message)
                            .at_node(name.as_str())
                            .with_hint(unknown_field_hint(&msg))
                    };
                    b.error(error);
                    b.broken.insert(name.clone());
                }
            }
        }
        let capacity = f.ring_capacity.unwrap_or(default_capacity);
        for edge in &f.edges {
            let origin = locate(file, text, edge.span().start);
            let e = edge.get_ref();
            let from_port = e.from.port.as_deref().unwrap_or("output");
            let to_port = e.to.port.as_deref().unwrap_or("input");
            let when_full = match &e.when_full {
                None => WhenFull::Block,
                Some(w) => match w.get_ref().parse() {
                    Ok(w) => w,
                    Err(msg) => {
                        b.error(ConfigError::parameter(
                            locate(file, text, w.span().start),
                            msg,
                        ));
                        WhenFull::Block
                    }
                },
            };
            b.connect_at(
                (&e.from.node, from_port),
                (&e.to.node, to_port),
                Some(e.capacity.unwrap_or(capacity)),
                when_full,
                origin,
            );
        }
    }
    if !raw.tests.is_empty() {
        for e in super::test_spec::check_str(text, file, registry) {
            b.error(e);
        }
    }
    b
}

/// Most subscribers a `[control]` section may allow.
const MAX_SUBSCRIBERS: usize = 65_536;
/// Largest per-subscriber queue, in elements.
const MAX_SUBSCRIBER_QUEUE: usize = 1 << 20;

/// The `[control]` section, checked (each problem located).
fn control_settings(
    c: RawControl,
    file: &str,
    text: &str,
    b: &mut PipelineBuilder,
) -> Option<ControlSettings> {
    let at = |span: std::ops::Range<usize>| locate(file, text, span.start);
    let listen = match parse_listen(c.listen.get_ref()) {
        Ok(a) => a,
        Err(m) => {
            b.error(ConfigError::parameter(
                format!("{}: control.listen", at(c.listen.span())),
                m,
            ));
            return None;
        }
    };
    let mut settings = ControlSettings::new(listen);
    settings.token_file = c.token_file;
    for (key, value, max, slot) in [
        (
            "max_subscribers",
            c.max_subscribers,
            MAX_SUBSCRIBERS,
            &mut settings.max_subscribers,
        ),
        (
            "subscriber_queue",
            c.subscriber_queue,
            MAX_SUBSCRIBER_QUEUE,
            &mut settings.subscriber_queue,
        ),
    ] {
        let Some(v) = value else { continue };
        if (1..=max).contains(v.get_ref()) {
            *slot = v.into_inner();
        } else {
            b.error(ConfigError::bound(
                format!("{}: control.{key}", at(v.span())),
                format!("{key} = {} is out of range (1 to {max})", v.get_ref()),
            ));
        }
    }
    Some(settings)
}

/// Loads and validates a pipeline file in one go, into its [`Plan`]
/// (`Pipeline::new` runs it).
pub fn load_plan(path: &Path, registry: &Registry, flow: Option<&str>) -> Result<Plan, LoadError> {
    load_file(path, registry, flow)?
        .plan()
        .map_err(LoadError::Invalid)
}
