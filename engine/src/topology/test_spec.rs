//! `[[tests]]` blocks: read with their spans, checked against the file's
//! flows, and resolved into plain [`TestCase`]s (the part of the graph a
//! test runs, and what it expects). Nothing is built here but routers, whose
//! output ports come from their parameters.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Deserialize;
use toml::Spanned;

use super::error::{locate, toml_error};
use super::plan::NODE_KEYS;
use super::ConfigError;
use crate::operators::{payload_bytes, Filter, Registry};
use crate::ring::WhenFull;
use crate::stage::Role;

/// The parts of a pipeline file a test needs. The loader has already
/// checked the flows strictly, so unknown keys are ignored here.
#[derive(Deserialize)]
struct FileView {
    #[serde(default)]
    flow: BTreeMap<String, FlowView>,
    #[serde(default)]
    tests: Vec<Spanned<RawTest>>,
}

#[derive(Deserialize)]
struct FlowView {
    ring_capacity: Option<usize>,
    #[serde(default)]
    nodes: indexmap::IndexMap<String, toml::Table>,
    #[serde(default)]
    edges: Vec<EdgeView>,
}

#[derive(Deserialize)]
struct EdgeView {
    from: EndView,
    to: EndView,
    capacity: Option<usize>,
    when_full: Option<String>,
}

#[derive(Deserialize)]
struct EndView {
    node: String,
    port: Option<String>,
}

/// One `[[tests]]` block as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: Spanned<String>,
    flow: Option<Spanned<String>>,
    input: Spanned<RawInput>,
    #[serde(default)]
    outputs: Vec<Spanned<RawOutput>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    node: Spanned<String>,
    payloads: Vec<toml::Value>,
}

/// One `[[tests.outputs]]` block as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    node: Spanned<String>,
    port: Option<Spanned<String>>,
    payloads: Option<Spanned<Vec<toml::Value>>>,
    ordered: Option<Spanned<bool>>,
    count: Option<usize>,
    #[serde(rename = "where")]
    cond: Option<Spanned<toml::Value>>,
    reason: Option<String>,
}

/// A node of a test's pipeline, as the file describes it.
pub(crate) struct PlanNode {
    pub(crate) name: String,
    pub(crate) component: String,
    pub(crate) role: Role,
    /// The component's parameters (the node table without the engine's keys).
    pub(crate) params: toml::Table,
}

/// An edge of a test's pipeline; `capacity: None` takes the engine's.
pub(crate) struct PlanEdge {
    pub(crate) from: (String, String),
    pub(crate) to: (String, String),
    pub(crate) capacity: Option<usize>,
    pub(crate) when_full: WhenFull,
}

/// One expected payload: a string is compared byte for byte; anything else
/// (a table) as JSON, ignoring key order and whitespace.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expected {
    Bytes(Vec<u8>),
    Json(serde_json::Value),
}

/// What a test expects at one node's output port, or at one sink.
pub(crate) struct Expect {
    pub(crate) node: String,
    /// The captured output port; `None`: what the sink received.
    pub(crate) port: Option<String>,
    /// Where the `[[tests.outputs]]` block is (`file:line:col`).
    pub(crate) origin: String,
    pub(crate) payloads: Option<Vec<Expected>>,
    pub(crate) ordered: bool,
    pub(crate) count: Option<usize>,
    pub(crate) cond: Option<Filter>,
    pub(crate) reason: Option<String>,
}

impl Expect {
    /// `node.port`, or `node` for a sink.
    pub(crate) fn target(&self) -> String {
        match &self.port {
            Some(p) => format!("{}.{p}", self.node),
            None => self.node.clone(),
        }
    }
}

/// A checked test: the nodes reachable from its input and what it expects.
pub(crate) struct TestCase {
    pub(crate) name: String,
    pub(crate) origin: String,
    pub(crate) flow: String,
    /// The node the payloads are inserted at.
    pub(crate) input: String,
    pub(crate) payloads: Vec<Vec<u8>>,
    /// The input node and every node reachable from it, in file order.
    pub(crate) nodes: Vec<PlanNode>,
    /// Every edge out of those nodes.
    pub(crate) edges: Vec<PlanEdge>,
    pub(crate) expects: Vec<Expect>,
}

/// What the file says about one node.
struct NodeInfo<'a> {
    flow: &'a str,
    component: &'a str,
    role: Role,
    /// Output port names (`None`: the node does not build, which the
    /// loader reports; tests touching it are not checked further).
    ports: Option<Vec<String>>,
}

/// Checks every `[[tests]]` block of pipeline text `text` (named `file`):
/// the problems found, located. The config loader calls this, so that
/// `run` and `validate` reject a file whose tests are wrong.
pub fn check_str(text: &str, file: &str, registry: &Registry) -> Vec<ConfigError> {
    resolve(text, file, registry).err().unwrap_or_default()
}

/// Reads and checks every `[[tests]]` block of `text` (named `file` in
/// messages): the test cases, or every problem found, located.
pub(crate) fn resolve(
    text: &str,
    file: &str,
    registry: &Registry,
) -> Result<Vec<TestCase>, Vec<ConfigError>> {
    let view: FileView = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
    let nodes = node_infos(&view, registry);
    let mut cx = Checker {
        text,
        file,
        nodes: &nodes,
        view: &view,
        errors: Vec::new(),
    };
    let mut cases = Vec::new();
    let mut names: HashMap<&str, String> = HashMap::new();
    for t in &view.tests {
        let origin = locate(file, text, t.span().start);
        let name = t.get_ref().name.get_ref();
        if name.trim().is_empty() {
            cx.error(t.get_ref().name.span(), "a test needs a name".into());
        } else if let Some(first) = names.insert(name, origin.clone()) {
            cx.error(
                t.get_ref().name.span(),
                format!("duplicate test name '{name}' (first defined at {first})"),
            );
        }
        if let Some(case) = cx.test(t.get_ref(), origin) {
            cases.push(case);
        }
    }
    if cx.errors.is_empty() {
        Ok(cases)
    } else {
        Err(cx.errors)
    }
}

fn node_infos<'a>(view: &'a FileView, registry: &Registry) -> HashMap<&'a str, NodeInfo<'a>> {
    let mut out = HashMap::new();
    for (flow, f) in &view.flow {
        for (name, table) in &f.nodes {
            let Some(component) = table.get("component").and_then(toml::Value::as_str) else {
                continue;
            };
            let Some(role) = registry.get(component).map(|c| c.role) else {
                continue;
            };
            let ports = match role {
                Role::Source => Some(vec!["output".to_string()]),
                Role::Processor => Some(vec!["output".to_string(), "error".to_string()]),
                Role::Sink => Some(vec!["error".to_string()]),
                Role::Router => registry
                    .build(component, &params(table))
                    .ok()
                    .map(|s| s.output_ports()),
            };
            out.insert(
                name.as_str(),
                NodeInfo {
                    flow,
                    component,
                    role,
                    ports,
                },
            );
        }
    }
    out
}

/// A node table without the engine's keys: the component's parameters.
fn params(table: &toml::Table) -> toml::Table {
    let mut p = table.clone();
    for k in NODE_KEYS {
        p.remove(k);
    }
    p
}

struct Checker<'a> {
    text: &'a str,
    file: &'a str,
    nodes: &'a HashMap<&'a str, NodeInfo<'a>>,
    view: &'a FileView,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn at(&self, span: std::ops::Range<usize>) -> String {
        locate(self.file, self.text, span.start)
    }

    fn error(&mut self, span: std::ops::Range<usize>, message: String) {
        let at = self.at(span);
        self.errors.push(ConfigError::test(at, message));
    }

    /// Checks one test; `None` when it has errors (recorded) or touches a
    /// node that does not build (which the loader reports).
    fn test(&mut self, t: &RawTest, origin: String) -> Option<TestCase> {
        let before = self.errors.len();
        let name = t.name.get_ref().clone();
        let what = format!("test '{name}'");
        let input = t.input.get_ref();
        let input_name = input.node.get_ref();
        let info = match self.nodes.get(input_name.as_str()) {
            Some(info) => Some(info),
            None => {
                if !self.is_declared(input_name) {
                    let hint = self.known_nodes();
                    self.error(
                        input.node.span(),
                        format!("{what}: input.node: unknown node '{input_name}' ({hint})"),
                    );
                }
                None
            }
        };
        let mut flow = info.map(|i| i.flow.to_string());
        if let Some(f) = &t.flow {
            let want = f.get_ref();
            if !self.view.flow.contains_key(want) {
                let flows: Vec<&str> = self.view.flow.keys().map(String::as_str).collect();
                self.error(
                    f.span(),
                    format!(
                        "{what}: no flow named '{want}' (flows in this file: {})",
                        flows.join(", ")
                    ),
                );
            } else if flow.as_ref().is_some_and(|have| have != want) {
                self.error(
                    f.span(),
                    format!(
                        "{what}: input node '{input_name}' is in flow '{}', not in flow '{want}'",
                        flow.as_deref().unwrap_or_default()
                    ),
                );
            }
            flow.get_or_insert_with(|| want.clone());
        }
        if info.is_some_and(|i| i.role == Role::Sink) {
            self.error(
                input.node.span(),
                format!(
                    "{what}: input.node '{input_name}' is a sink; payloads are inserted at a source (replacing its output) or fed to a processor or router"
                ),
            );
        }
        let mut payloads = Vec::new();
        for (i, p) in input.payloads.iter().enumerate() {
            match payload_bytes(p) {
                Ok(b) => payloads.push(b),
                Err(e) => self.error(t.input.span(), format!("{what}: input.payloads[{i}]: {e}")),
            }
        }
        if t.outputs.is_empty() {
            self.errors.push(ConfigError::test(
                &origin,
                format!(
                    "{what} expects nothing: add [[tests.outputs]] blocks naming a node and its payloads, count, where or reason"
                ),
            ));
        }
        let reachable = info.map(|_| self.reachable(input_name));
        let mut expects = Vec::new();
        for out in &t.outputs {
            if let Some(e) = self.output(&what, out, flow.as_deref(), input_name, &reachable) {
                expects.push(e);
            }
        }
        let info = info?;
        if self.errors.len() > before || info.ports.is_none() {
            return None;
        }
        let reachable = reachable.unwrap_or_default();
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        let f = &self.view.flow[info.flow];
        for (n, table) in &f.nodes {
            if !reachable.contains(n.as_str()) {
                continue;
            }
            let node = self.nodes.get(n.as_str())?;
            nodes.push(PlanNode {
                name: n.clone(),
                component: node.component.to_string(),
                role: node.role,
                params: params(table),
            });
        }
        for e in &f.edges {
            if !reachable.contains(e.from.node.as_str()) {
                continue;
            }
            edges.push(PlanEdge {
                from: (
                    e.from.node.clone(),
                    e.from.port.clone().unwrap_or_else(|| "output".into()),
                ),
                to: (
                    e.to.node.clone(),
                    e.to.port.clone().unwrap_or_else(|| "input".into()),
                ),
                capacity: e.capacity.or(f.ring_capacity),
                when_full: e
                    .when_full
                    .as_deref()
                    .and_then(|w| w.parse().ok())
                    .unwrap_or_default(),
            });
        }
        Some(TestCase {
            name,
            origin,
            flow: info.flow.to_string(),
            input: input_name.clone(),
            payloads,
            nodes,
            edges,
            expects,
        })
    }

    /// Checks one `[[tests.outputs]]` block.
    fn output(
        &mut self,
        what: &str,
        out: &Spanned<RawOutput>,
        flow: Option<&str>,
        input: &str,
        reachable: &Option<BTreeSet<String>>,
    ) -> Option<Expect> {
        let origin = self.at(out.span());
        let o = out.get_ref();
        let name = o.node.get_ref();
        let before = self.errors.len();
        if o.payloads.is_none() && o.count.is_none() && o.cond.is_none() && o.reason.is_none() {
            self.errors.push(ConfigError::test(
                &origin,
                format!("{what}: the expectation on '{name}' checks nothing (give payloads, count, where or reason)"),
            ));
        }
        if let (Some(p), Some(n)) = (&o.payloads, o.count) {
            self.error(
                p.span(),
                format!(
                    "{what}: '{name}' has both payloads ({} of them) and count = {n}; the payloads already fix the count, give one of the two",
                    p.get_ref().len()
                ),
            );
        }
        if let (Some(ord), None) = (&o.ordered, &o.payloads) {
            self.error(
                ord.span(),
                format!("{what}: 'ordered' only applies to payloads"),
            );
        }
        let cond = o.cond.as_ref().and_then(|c| {
            Filter::from_toml(c.get_ref(), false)
                .map_err(|e| self.error(c.span(), format!("{what}: {e}")))
                .ok()
        });
        let payloads = o.payloads.as_ref().map(|p| {
            p.get_ref()
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Expected::Bytes(s.clone().into_bytes()),
                    other => Expected::Json(
                        serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
                    ),
                })
                .collect()
        });
        let port = self.port(what, o, flow, input, reachable)?;
        if self.errors.len() > before {
            return None;
        }
        Some(Expect {
            node: name.clone(),
            port,
            origin,
            payloads,
            ordered: o.ordered.as_ref().is_none_or(|o| *o.get_ref()),
            count: o.count,
            cond,
            reason: o.reason.clone(),
        })
    }

    /// The port an expectation captures (`Some(None)`: a sink's input), or
    /// `None` after recording why it cannot be captured.
    fn port(
        &mut self,
        what: &str,
        o: &RawOutput,
        flow: Option<&str>,
        input: &str,
        reachable: &Option<BTreeSet<String>>,
    ) -> Option<Option<String>> {
        let name = o.node.get_ref();
        let span = o.node.span();
        let Some(info) = self.nodes.get(name.as_str()) else {
            if !self.is_declared(name) {
                let hint = self.known_nodes();
                self.error(span, format!("{what}: unknown node '{name}' ({hint})"));
            }
            return None;
        };
        if let Some(flow) = flow.filter(|f| *f != info.flow) {
            self.error(
                span,
                format!(
                    "{what}: node '{name}' is in flow '{}', not in the test's flow '{flow}'",
                    info.flow
                ),
            );
            return None;
        }
        if reachable
            .as_ref()
            .is_some_and(|r| !r.contains(name.as_str()))
        {
            self.error(
                span,
                format!("{what}: node '{name}' cannot be reached from the test's input '{input}', so it would receive nothing"),
            );
            return None;
        }
        let ports = info.ports.as_ref()?;
        let port = o.port.as_ref().map(|p| (p.get_ref().as_str(), p.span()));
        if info.role == Role::Sink {
            return match port {
                None | Some(("input", _)) => Some(None),
                Some((p, span)) => {
                    self.error(
                        span,
                        format!(
                            "{what}: sink '{name}' is replaced by a capture in a test, so its '{p}' port carries nothing; leave `port` out to check what the sink received"
                        ),
                    );
                    None
                }
            };
        }
        match port {
            None => Some(Some(ports[0].clone())),
            Some((p, _)) if ports.iter().any(|q| q == p) => Some(Some(p.to_string())),
            Some((p, span)) => {
                let msg = if p == "input" {
                    format!(
                        "{what}: '{name}.input' is an input port; an expectation names an output port of '{name}' ({})",
                        ports.join(", ")
                    )
                } else {
                    format!(
                        "{what}: node '{name}' has no output port '{p}' (its output ports: {})",
                        ports.join(", ")
                    )
                };
                self.error(span, msg);
                None
            }
        }
    }

    /// Whether `name` is a node of the file at all (one that does not build
    /// is the loader's to report).
    fn is_declared(&self, name: &str) -> bool {
        self.view.flow.values().any(|f| f.nodes.contains_key(name))
    }

    fn known_nodes(&self) -> String {
        let mut names: Vec<&str> = self
            .view
            .flow
            .values()
            .flat_map(|f| f.nodes.keys().map(String::as_str))
            .collect();
        names.sort_unstable();
        format!("nodes in this file: {}", names.join(", "))
    }

    /// `start` and every node downstream of it, in its flow.
    fn reachable(&self, start: &str) -> BTreeSet<String> {
        let Some(flow) = self.nodes.get(start).map(|i| i.flow) else {
            return BTreeSet::new();
        };
        let edges = &self.view.flow[flow].edges;
        let mut seen = BTreeSet::from([start.to_string()]);
        let mut queue = VecDeque::from([start.to_string()]);
        while let Some(n) = queue.pop_front() {
            for e in edges.iter().filter(|e| e.from.node == n) {
                if seen.insert(e.to.node.clone()) {
                    queue.push_back(e.to.node.clone());
                }
            }
        }
        seen
    }
}
