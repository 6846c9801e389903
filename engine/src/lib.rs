//! # dataplane
//!
//! A multi-core, shared-nothing dataplane engine. A pipeline of stages
//! (sources, routers, processors, sinks) runs on worker threads pinned to
//! cores; stages exchange `u32` handles through lock-free SPSC rings; payloads
//! live in one preallocated, refcounted [`arena`](crate::arena) and are never
//! copied between stages (a fan-out is a refcount bump).
//!
//! Build a pipeline from Rust with [`PipelineBuilder`], or from a TOML file
//! with [`topology::config::load_plan`] and [`Pipeline::new`]:
//!
//! ```
//! use dataplane::operators::{Discard, Forward, Generator};
//! use dataplane::{PipelineBuilder, Stage};
//!
//! let mut b = PipelineBuilder::new();
//! b.add("gen", "generator", Stage::Source(Box::new(Generator::new("{\"seq\":{seq}}", Some(1000)).unwrap())))
//!     .add("fwd", "forward", Stage::Processor(Box::new(Forward)))
//!     .add("out", "discard", Stage::Sink(Box::new(Discard)))
//!     .connect(("gen", "output"), ("fwd", "input"))
//!     .connect(("fwd", "output"), ("out", "input"));
//! let report = b.build().expect("a valid pipeline").run();
//! assert_eq!(report.stage("out").unwrap().received, 1000);
//! assert!(report.is_success());
//! ```
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod arena;
pub mod checkpoint;
pub mod clock;
pub mod control;
pub mod event_time;
pub mod metrics;
pub mod observe;
pub mod operators;
pub mod ring;
pub mod runtime;
pub mod stage;
mod sync;
pub mod testing;
pub mod top;
pub mod topology;

pub use arena::{Arena, Handle, LocalPool, Meta};
pub use metrics::{EdgeReport, RunReport, StageReport};
pub use operators::Registry;
pub use ring::wait::WaitStrategy;
pub use ring::WhenFull;
pub use runtime::{InFlight, Pipeline};
pub use stage::{
    Commits, Element, Emitter, Flush, Processor, Pull, Reason, Role, Router, Sink, SlotWriter,
    Source, Stage, StageError, Verdict,
};
pub use topology::{ConfigError, ConfigErrors, PipelineBuilder, Settings};
