//! What a running pipeline shows the outside world: a [`LiveView`] of its
//! nodes, edges and arena (counters as their workers last published them),
//! and the [`tap`] points through which readers get copies of elements.
//!
//! Nothing here is on the per-element path: workers publish counters once
//! per step and copy payloads for a tap only while someone reads it. The
//! control endpoint (`crate::control`) is the reader.

mod live;
pub mod tap;

pub use live::{EdgeLive, LiveHandle, LiveView, NodeLive};
