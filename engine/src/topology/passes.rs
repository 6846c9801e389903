//! The checks that turn a [`PipelineBuilder`](super::PipelineBuilder)
//! into a [`Plan`](super::Plan), one pass each: names, edges and ports,
//! event time, checkpoints, connections, cycles, settings, cores, the
//! arena. Every pass records what it finds in [`Check`] and goes on, so
//! that one run reports every error at once.

use std::collections::{BTreeSet, HashMap};

use super::decl::{
    available_memory, find_cycle, human_bytes, ids, topo_order, upstream_sources, Edge, EdgeDecl,
    NodeDecl, Settings, MAX_BATCH, MAX_RING_CAPACITY, MAX_SLOTS, MAX_SLOT_SIZE, SLOT_OVERHEAD,
};
use super::error::{did_you_mean, ConfigError};
use super::Plan;
use crate::arena::DEFAULT_SLOTS;
use crate::event_time::EventTime;
use crate::ring::WhenFull;
use crate::stage::{PortMask, Role, Stage};

/// The errors found so far, and where the description came from.
pub(super) struct Check {
    /// A file name, for errors about the whole pipeline.
    pub(super) origin: String,
    pub(super) errors: Vec<ConfigError>,
}

impl Check {
    /// The location of a setting (`engine.arena`, say) of the description.
    pub(super) fn global(&self, what: &str) -> String {
        if self.origin.is_empty() {
            what.to_string()
        } else if what.is_empty() {
            self.origin.clone()
        } else {
            format!("{}: {what}", self.origin)
        }
    }
}

/// `origin: what`, or `what` alone without an origin.
fn at(origin: &str, fallback: String) -> String {
    if origin.is_empty() {
        fallback
    } else {
        format!("{origin}: {fallback}")
    }
}

/// Names.
pub(super) fn names<'n>(
    ck: &mut Check,
    nodes: &'n [NodeDecl],
    loaded_cleanly: bool,
) -> HashMap<&'n str, usize> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.name.is_empty() {
            ck.errors.push(
                ConfigError::name(&n.origin, "a node name may not be empty")
                    .at_node(n.name.as_str()),
            );
        }
        if let Some(first) = index.insert(n.name.as_str(), i) {
            let first = &nodes[first].origin;
            let also = if first.is_empty() {
                String::new()
            } else {
                format!(" (first defined at {first})")
            };
            ck.errors.push(
                ConfigError::name(
                    &n.origin,
                    format!(
                    "duplicate node name '{}'{also}; node names must be unique across all flows",
                    n.name
                ),
                )
                .at_node(n.name.as_str()),
            );
        }
        if !n.targets.is_empty() && n.stage.role() != Role::Sink {
            ck.errors.push(
                ConfigError::structure(
                    &n.origin,
                    format!(
                        "node '{}' is a {}; latency targets belong on sinks",
                        n.name,
                        n.stage.role()
                    ),
                )
                .at_node(n.name.as_str()),
            );
        }
        if let Stage::Router(_, ports) = &n.stage {
            if ports.is_empty() || ports.len() > PortMask::MAX_PORTS {
                ck.errors.push(
                    ConfigError::port(
                        &n.origin,
                        format!(
                            "router '{}' declares {} output ports; 1 to {} are allowed",
                            n.name,
                            ports.len(),
                            PortMask::MAX_PORTS
                        ),
                    )
                    .at_node(n.name.as_str()),
                );
            }
        }
    }
    if loaded_cleanly && nodes.is_empty() {
        ck.errors.push(ConfigError::structure(
            ck.global(""),
            "the pipeline has no nodes",
        ));
    } else if loaded_cleanly && !nodes.iter().any(|n| n.stage.role() == Role::Source) {
        ck.errors.push(ConfigError::structure(
            ck.global(""),
            "the pipeline has no source",
        ));
    }
    index
}

/// Edges.
pub(super) fn edges(
    ck: &mut Check,
    nodes: &[NodeDecl],
    edges: &[EdgeDecl],
    broken: &BTreeSet<String>,
    index: &HashMap<&str, usize>,
    settings: &Settings,
) -> (Vec<Vec<String>>, Vec<Edge>) {
    let out_ports: Vec<Vec<String>> = nodes.iter().map(|n| n.stage.output_ports()).collect();
    let mut resolved = Vec::new();
    let mut seen = BTreeSet::new();
    for e in edges {
        let edge_name = format!("edge {}.{} -> {}.{}", e.from.0, e.from.1, e.to.0, e.to.1);
        let loc = at(&e.origin, edge_name);
        if broken.contains(&e.from.0) || broken.contains(&e.to.0) {
            continue;
        }
        let from = index.get(e.from.0.as_str()).copied();
        let to = index.get(e.to.0.as_str()).copied();
        for (end, found) in [(&e.from.0, from), (&e.to.0, to)] {
            if found.is_none() {
                let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
                ck.errors.push(
                    ConfigError::name(&loc, format!("unknown node '{end}'"))
                        .with_hint(did_you_mean(end, &names)),
                );
            }
        }
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        let from_node = &nodes[from];
        let to_node = &nodes[to];
        let port = out_ports[from].iter().position(|p| *p == e.from.1);
        let mut ok = true;
        if from_node.stage.role() == Role::Sink && port.is_none() {
            ck.errors.push(ConfigError::port(
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
            let ports: Vec<&str> = out_ports[from].iter().map(String::as_str).collect();
            ck.errors.push(
                ConfigError::port(&loc, msg)
                    .at_node(e.from.0.as_str())
                    .with_hint(did_you_mean(&e.from.1, &ports)),
            );
            ok = false;
        }
        if out_ports[to].contains(&e.to.1) {
            ck.errors.push(ConfigError::port(
                &loc,
                format!(
                    "'{}.{}' is an output port; an edge must end at an input port",
                    e.to.0, e.to.1
                ),
            ));
            ok = false;
        } else if !to_node.stage.has_input() {
            ck.errors.push(ConfigError::port(
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
            ck.errors.push(ConfigError::port(&loc, msg));
            ok = false;
        }
        let capacity = e.capacity.unwrap_or(settings.ring_capacity);
        if capacity == 0 {
            ck.errors
                .push(ConfigError::bound(&loc, "ring capacity must be at least 1"));
            ok = false;
        } else if capacity > MAX_RING_CAPACITY && capacity != settings.ring_capacity {
            ck.errors.push(ConfigError::bound(
                    &loc,
                    format!(
                        "ring capacity {capacity} is larger than the largest ring, {MAX_RING_CAPACITY} handles"
                    ),
                ));
            ok = false;
        }
        if from == to {
            ck.errors.push(ConfigError::cycle(
                &loc,
                "an edge may not connect a node to itself (cycle)",
            ));
            ok = false;
        }
        if ok && !seen.insert((from, port, to)) {
            ck.errors.push(ConfigError::port(&loc, "duplicate edge"));
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
    (out_ports, resolved)
}

/// Event time: declared on sources, read by the processors that need it from every source upstream of them.
pub(super) fn event_time(
    ck: &mut Check,
    nodes: &[NodeDecl],
    edges: &[EdgeDecl],
    resolved: &[Edge],
    settings: &Settings,
) -> Vec<(usize, EventTime)> {
    for n in nodes {
        if n.source_time.is_some() && n.stage.role() != Role::Source {
            ck.errors.push(
                ConfigError::structure(
                    &n.origin,
                    format!(
                        "node '{}' is a {}; event_time and watermark belong on sources",
                        n.name,
                        n.stage.role()
                    ),
                )
                .at_node(n.name.as_str()),
            );
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
        let sources = upstream_sources(i, nodes, resolved);
        let missing: Vec<&str> = sources
            .iter()
            .filter(|&&s| nodes[s].source_time.is_none())
            .map(|&s| nodes[s].name.as_str())
            .collect();
        if !missing.is_empty() {
            ck.errors.push(ConfigError::parameter(
                    &n.origin,
                    format!(
                        "node '{}' works in event time, but its upstream source(s) {} declare no event_time; add event_time = {{ field = \"ts\", unit = \"ms\" }} to them",
                        n.name,
                        missing.join(", ")
                    ),
                ).at_node(n.name.as_str()));
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
                Some(_) => ck.errors.push(ConfigError::parameter(
                    &n.origin,
                    format!(
                        "node '{}' works in event time, but its upstream sources declare different event_time fields or units",
                        n.name
                    ),
                ).at_node(n.name.as_str())),
                None => {}
            }
    }
    if let Some(c) = &settings.checkpoint {
        if c.interval_ms == 0 {
            ck.errors.push(ConfigError::parameter(
                ck.global("engine.checkpoint.interval_ms"),
                "interval_ms must be at least 1",
            ));
        }
        if c.dir.as_os_str().is_empty() {
            ck.errors.push(ConfigError::parameter(
                ck.global("engine.checkpoint.dir"),
                "dir may not be empty",
            ));
        }
        for e in edges.iter().filter(|e| e.when_full != WhenFull::Block) {
            ck.errors.push(ConfigError::parameter(
                    at(&e.origin, format!("edge {}.{} -> {}.{}", e.from.0, e.from.1, e.to.0, e.to.1)),
                    format!(
                        "when_full = \"{}\" drops elements, which a checkpointed pipeline cannot replay; checkpoints need every edge to block",
                        e.when_full
                    ),
                ));
        }
    }
    event_times
}

/// Every output port connected, every consumer fed.
pub(super) fn connected(
    ck: &mut Check,
    nodes: &[NodeDecl],
    edges: &[EdgeDecl],
    resolved: &[Edge],
    out_ports: &[Vec<String>],
) {
    for (i, n) in nodes.iter().enumerate() {
        for name in &out_ports[i] {
            // An edge naming this port counts even if its other end is
            // wrong: that edge's own error says what to fix.
            let named = edges
                .iter()
                .any(|e| e.from.0 == n.name && e.from.1 == *name);
            if !named && !n.stage.is_optional_port(name) {
                ck.errors.push(
                    ConfigError::port(
                        &n.origin,
                        format!(
                        "output port '{}.{}' is not connected (every output port needs an edge)",
                        n.name, name
                    ),
                    )
                    .at_node(n.name.as_str()),
                );
            }
        }
        if n.stage.has_input()
            && !resolved.iter().any(|e| e.to == i)
            && !edges.iter().any(|e| e.to.0 == n.name)
        {
            ck.errors.push(
                ConfigError::port(
                    &n.origin,
                    format!("{} '{}' has no input edge", n.stage.role(), n.name),
                )
                .at_node(n.name.as_str()),
            );
        }
    }
}

/// Cycles (Kahn's algorithm; what remains is on or behind a cycle).
pub(super) fn cycles(ck: &mut Check, nodes: &[NodeDecl], resolved: &[Edge]) -> Vec<usize> {
    let order = match topo_order(nodes.len(), resolved) {
        Ok(order) => order,
        Err(stuck) => {
            let cycle = find_cycle(&stuck, resolved)
                .into_iter()
                .map(|i| nodes[i].name.as_str())
                .collect::<Vec<_>>();
            let at = stuck
                .first()
                .map(|&i| nodes[i].origin.clone())
                .filter(|o| !o.is_empty())
                .unwrap_or_else(|| ck.global(""));
            ck.errors.push(ConfigError::cycle(
                at,
                format!(
                    "the graph has a cycle: {} (pipelines must be acyclic)",
                    cycle.join(" -> ")
                ),
            ));
            Vec::new()
        }
    };
    order
}

/// Settings.
pub(super) fn settings(ck: &mut Check, settings: &Settings) {
    if settings.slot_size == 0 {
        ck.errors.push(ConfigError::bound(
            ck.global("engine.arena"),
            "slot_size must be at least 1 byte",
        ));
    } else if settings.slot_size > MAX_SLOT_SIZE {
        ck.errors.push(ConfigError::bound(
            ck.global("engine.arena"),
            format!(
                "slot_size {} is larger than the largest slot, {MAX_SLOT_SIZE} bytes (64 MiB)",
                settings.slot_size
            ),
        ));
    }
    if settings.batch == 0 {
        ck.errors.push(ConfigError::bound(
            ck.global("engine"),
            "batch must be at least 1",
        ));
    } else if settings.batch > MAX_BATCH {
        ck.errors.push(ConfigError::bound(
            ck.global("engine"),
            format!(
                "batch {} is larger than the largest batch, {MAX_BATCH}",
                settings.batch
            ),
        ));
    }
    if settings.ring_capacity == 0 {
        ck.errors.push(ConfigError::bound(
            ck.global("engine"),
            "ring_capacity must be at least 1",
        ));
    } else if settings.ring_capacity > MAX_RING_CAPACITY {
        ck.errors.push(ConfigError::bound(
            ck.global("engine"),
            format!(
                "ring_capacity {} is larger than the largest ring, {MAX_RING_CAPACITY} handles",
                settings.ring_capacity
            ),
        ));
    }
}

/// Cores.
pub(super) fn cores(
    ck: &mut Check,
    settings: &Settings,
    nodes: &[NodeDecl],
) -> (Vec<usize>, Vec<Option<usize>>) {
    let detected: Vec<core_affinity::CoreId> = core_affinity::get_core_ids().unwrap_or_default();
    let detected_ids: Vec<usize> = detected.iter().map(|c| c.id).collect();
    let usable: Vec<usize> = match &settings.cores {
        Some(list) => {
            for &c in list {
                if !detected_ids.is_empty() && !detected_ids.contains(&c) {
                    ck.errors.push(ConfigError::bound(
                        ck.global("engine.cores"),
                        format!(
                            "core {c} is not available here (usable cores: {})",
                            ids(&detected_ids)
                        ),
                    ));
                }
            }
            if list.is_empty() {
                ck.errors.push(ConfigError::parameter(
                    ck.global("engine.cores"),
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
                None => ck.errors.push(
                    ConfigError::bound(
                        &n.origin,
                        format!(
                        "node '{}' asks for core {c}, which is not available (usable cores: {})",
                        n.name,
                        ids(&usable)
                    ),
                    )
                    .at_node(n.name.as_str()),
                ),
            }
        }
    }
    (usable, pinned)
}

/// Arena: enough slots that every ring can be full and every worker cache full, with one to spare, so a copy-on-write never waits for a slot that only a blocked stage could free.
pub(super) fn arena(
    ck: &mut Check,
    settings: &Settings,
    nodes: &[NodeDecl],
    resolved: &[Edge],
    usable: &[usize],
) -> u32 {
    let workers = usable.len().min(nodes.len()).max(1);
    let required = Plan::required_slots(resolved, nodes.len(), workers, settings.batch);
    if let Some(slots) = settings.slots {
        if (slots as u64) < required {
            ck.errors.push(ConfigError::bound(
                    ck.global("engine.arena.slots"),
                    format!(
                        "{slots} slots cannot hold what the rings may carry: this topology needs at least \
                         {required} (sum of ring capacities + per-worker caches + one per stage); raise \
                         slots or lower ring capacities"
                    ),
                ));
        }
    }
    if settings.slots.is_some_and(|s| s >= MAX_SLOTS) {
        ck.errors.push(ConfigError::bound(
            ck.global("engine.arena.slots"),
            format!(
                "at most {} slots (ring indices keep one bit to mark control elements)",
                MAX_SLOTS - 1
            ),
        ));
    }
    if required >= u64::from(MAX_SLOTS) {
        ck.errors.push(ConfigError::bound(
            ck.global(""),
            "ring capacities are too large for one arena",
        ));
    }

    let slots = settings
        .slots
        .unwrap_or_else(|| (required.min(u64::from(MAX_SLOTS) - 1) as u32).max(DEFAULT_SLOTS));
    // The arena is allocated and pre-faulted at start: say so now if it
    // cannot fit, instead of an abort later.
    let arena_bytes = u64::from(slots).saturating_mul(settings.slot_size as u64 + SLOT_OVERHEAD);
    let in_bounds = settings.slot_size <= MAX_SLOT_SIZE
        && settings.ring_capacity <= MAX_RING_CAPACITY
        && settings.batch <= MAX_BATCH;
    if let Some(available) = available_memory().filter(|_| in_bounds) {
        if arena_bytes > available {
            ck.errors.push(ConfigError::bound(
                    ck.global("engine.arena"),
                    format!(
                        "the arena would take about {} ({slots} slots x {} B) but only {} of memory is available; lower slots, slot_size or the ring capacities",
                        human_bytes(arena_bytes),
                        settings.slot_size,
                        human_bytes(available)
                    ),
                ));
        }
    }
    slots
}
