//! From a description (TOML or Rust) to a validated graph.

pub(crate) mod builder;
pub mod config;
mod error;
pub mod graph;

pub use builder::{PipelineBuilder, Settings, DEFAULT_BATCH};
pub use error::{ConfigError, ConfigErrors};
