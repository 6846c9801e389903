//! Built-in components and the registry that builds them by name.
//!
//! A config node names a component (`component = "route-by-field"`) and
//! gives its parameters beside it. The [`Registry`] maps the name to a
//! factory that checks the parameters (unknown ones are errors) and builds
//! the [`Stage`]. Library users register their own components the same way.
//!
//! The components live by role: [`sources`], [`processors`], [`routers`],
//! [`sinks`], one file per component or family. Beside them, what they
//! share: [`params`] (parameter structs declared once), [`catalog`] (the
//! built-in names), [`reference`] (what `dataplane list` prints), [`json`]
//! (field lookups), [`lines`] (line framing for line sources), [`format`]
//! (line writing for line sinks), [`open`] and [`util`].

mod catalog;
pub mod format;
pub mod json;
#[cfg(feature = "kafka")]
pub mod kafka;
mod lines;
mod open;
pub mod params;
pub(crate) mod processors;
pub mod reference;
pub(crate) mod routers;
pub(crate) mod sinks;
pub(crate) mod sources;
#[cfg(test)]
mod testing;
pub mod util;

pub use processors::chaos::{chaos_counter, Chaos};
pub use processors::dedupe::Dedupe;
pub use processors::fields::{RemoveField, RenameField};
pub use processors::filter::{Cond, Filter, Literal, Op};
pub use processors::rate_limit::{Mode as RateLimitMode, RateLimit};
pub use processors::sample::Sample;
pub use processors::set_field::{Forward, SetField};
pub use processors::window::{Aggregates, Basis as WindowBasis, EventWindow, Window};
pub use routers::basic::{Broadcast, RoundRobin, RouteByHash};
pub use routers::by_field::RouteByField;
pub use sinks::console::{Console, Discard};
pub use sinks::file::FileSink;
pub use sinks::mux::Mux;
pub use sinks::tcp::TcpSink;
pub use sinks::udp::UdpSink;
pub use sources::file::{FileSource, StdinSource};
pub(crate) use sources::synthetic::payload_bytes;
pub use sources::synthetic::{Generator, ListSource};
pub use sources::tcp::TcpSource;
pub use sources::ticker::Ticker;
pub use sources::udp::UdpSource;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

pub use params::{NoParams, ParamDoc, Params};

use crate::stage::{Role, Stage};

/// Builds a stage from a node's parameters (the node's table without the
/// engine's own keys). The error is a message for the user. Shared, so that
/// a restart policy can build the stage again on its worker.
pub type Factory = Arc<dyn Fn(&toml::Table) -> Result<Stage, String> + Send + Sync>;

/// A component: how to build it and how to describe it.
pub struct Component {
    /// The stage role it builds.
    pub role: Role,
    /// One line for `dataplane list`.
    pub summary: &'static str,
    /// Its parameters, from its parameter struct's doc comments.
    pub params: &'static [ParamDoc],
    factory: Factory,
}

/// Component name -> factory.
pub struct Registry {
    components: BTreeMap<String, Component>,
}

/// Deserializes a node's parameters into `T`, with a readable message.
pub fn parse<T: DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
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

    /// Every built-in component (the catalog is in `catalog.rs`).
    pub fn builtin() -> Registry {
        let mut r = Registry::empty();
        catalog::register_sources(&mut r);
        catalog::register_routers(&mut r);
        catalog::register_processors(&mut r);
        catalog::register_sinks(&mut r);
        r
    }

    /// Registers (or replaces) a component whose parameters are `P` (a
    /// struct declared with [`params!`](params::params), or
    /// [`NoParams`]): a node's table is parsed into `P`, which `build`
    /// turns into the stage; `dataplane list` documents `P`'s fields.
    pub fn register<P: Params + 'static>(
        &mut self,
        name: &str,
        role: Role,
        summary: &'static str,
        build: impl Fn(P) -> Result<Stage, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.components.insert(
            name.to_string(),
            Component {
                role,
                summary,
                params: P::DOCS,
                factory: Arc::new(move |table| build(parse::<P>(table)?)),
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

    /// A stage builder for component `name` with parameters `table`, for
    /// restarts: it builds a fresh stage each time it is called.
    pub fn rebuilder(
        &self,
        name: &str,
        table: &toml::Table,
    ) -> Option<impl Fn() -> Result<Stage, String> + Send + Sync + 'static> {
        let factory = Arc::clone(&self.get(name)?.factory);
        let table = table.clone();
        Some(move || factory(&table))
    }
}
