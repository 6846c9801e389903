//! Built-in components and the registry that builds them by name.
//!
//! A config node names a component (`component = "route-by-field"`) and
//! gives its parameters beside it. The [`Registry`] maps the name to a
//! factory that checks the parameters (unknown ones are errors) and builds
//! the [`Stage`]. Library users register their own components the same way.

pub mod json;
mod processors;
mod route_by_field;
mod sinks;
mod sources;

pub use processors::{Forward, SetField};
pub use route_by_field::RouteByField;
pub use sinks::{Console, Discard};
pub use sources::{Generator, ListSource};

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::stage::{Role, Stage};

/// Builds a stage from a node's parameters (the node's table without the
/// engine's own keys). The error is a message for the user.
pub type Factory = Box<dyn Fn(&toml::Table) -> Result<Stage, String> + Send + Sync>;

/// A component: how to build it and how to describe it.
pub struct Component {
    /// The stage role it builds.
    pub role: Role,
    /// One line for `dataplane list`.
    pub summary: &'static str,
    /// Parameters: (name, description).
    pub params: &'static [(&'static str, &'static str)],
    factory: Factory,
}

/// Component name -> factory.
pub struct Registry {
    components: BTreeMap<String, Component>,
}

/// Deserializes a node's parameters into `T`, with a readable message.
pub fn params<T: DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    T::deserialize(toml::Value::Table(table.clone()))
        .map_err(|e| e.message().trim_end().to_string())
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Registry {
        Registry {
            components: BTreeMap::new(),
        }
    }

    /// Every built-in component.
    pub fn builtin() -> Registry {
        let mut r = Registry::empty();
        r.register(
            "list",
            Role::Source,
            "emits a fixed list of payloads, in order",
            &[
                (
                    "payloads",
                    "array of strings (sent as is) or tables (sent as compact JSON)",
                ),
                ("repeat", "times to emit the list (default 1)"),
            ],
            |t| Ok(Stage::Source(Box::new(sources::build_list(params(t)?)?))),
        );
        r.register(
            "generator",
            Role::Source,
            "generates payloads from a template: a count of them or until stopped",
            &[
                ("template", "payload with {seq}, {ts}, {pick:a|b|c} placeholders (default {\"seq\":{seq}})"),
                ("count", "elements to emit (default: until stopped)"),
                ("size", "pad each payload with spaces to this many bytes"),
                ("rate", "elements per second, stamped with their intended send time (default: as fast as possible)"),
            ],
            |t| Ok(Stage::Source(Box::new(sources::build_generator(params(t)?)?))),
        );
        r.register(
            "route-by-field",
            Role::Router,
            "routes JSON elements by a top-level field's value; one element to several ports shares one slot",
            &[
                ("field", "top-level field to route on"),
                ("routes", "table: value = port or [ports]"),
                ("unmatched", "ports for other values, \"broadcast\" (default) or \"drop\""),
                ("missing", "ports when the field is absent (default: as unmatched)"),
                ("ports", "extra output ports to declare"),
            ],
            |t| {
                let (router, ports) = route_by_field::build(params(t)?)?;
                Ok(Stage::Router(Box::new(router), ports))
            },
        );
        r.register(
            "set-field",
            Role::Processor,
            "sets a top-level JSON field to a value (in place unless the element is shared)",
            &[
                ("field", "field name"),
                ("value", "any TOML value, written as JSON"),
            ],
            |t| {
                Ok(Stage::Processor(Box::new(processors::build_set_field(
                    params(t)?,
                )?)))
            },
        );
        r.register(
            "forward",
            Role::Processor,
            "passes elements through unchanged",
            &[],
            |t| {
                params::<NoParams>(t)?;
                Ok(Stage::Processor(Box::new(Forward)))
            },
        );
        r.register(
            "console",
            Role::Sink,
            "prints each payload on a line of stdout after a prefix",
            &[
                ("prefix", "text before each payload (default none)"),
                ("on_complete", "line printed when the stream completes"),
            ],
            |t| Ok(Stage::Sink(Box::new(sinks::build_console(params(t)?)))),
        );
        r.register(
            "discard",
            Role::Sink,
            "counts elements, nothing else",
            &[],
            |t| {
                params::<NoParams>(t)?;
                Ok(Stage::Sink(Box::new(Discard)))
            },
        );
        r
    }

    /// Registers (or replaces) a component.
    pub fn register(
        &mut self,
        name: &str,
        role: Role,
        summary: &'static str,
        params: &'static [(&'static str, &'static str)],
        factory: impl Fn(&toml::Table) -> Result<Stage, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.components.insert(
            name.to_string(),
            Component {
                role,
                summary,
                params,
                factory: Box::new(factory),
            },
        );
        self
    }

    /// The component called `name`.
    pub fn get(&self, name: &str) -> Option<&Component> {
        self.components.get(name)
    }

    /// All components, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Component)> {
        self.components.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Builds a stage of component `name` from `table`.
    pub fn build(&self, name: &str, table: &toml::Table) -> Result<Stage, String> {
        let c = self.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.components.keys().map(String::as_str).collect();
            format!("unknown component '{name}' (known: {})", names.join(", "))
        })?;
        (c.factory)(table)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}
