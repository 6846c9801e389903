//! From a description (TOML or Rust) to a validated [`Plan`]: plain data,
//! with no socket, file or thread opened. `runtime` runs a plan; nothing
//! here imports it.

pub(crate) mod builder;
pub mod config;
pub(crate) mod decl;
mod error;
pub mod graph;
mod passes;
pub(crate) mod placement;
mod plan;
pub mod restart;
pub(crate) mod test_spec;

pub use builder::PipelineBuilder;
pub use decl::{Settings, DEFAULT_BATCH};
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use plan::Plan;
