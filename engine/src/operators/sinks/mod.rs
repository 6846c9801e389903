//! Sinks: where elements leave the pipeline. Each is handed an element
//! ([`Sink::push`](crate::stage::Sink::push)) and must be done with its
//! payload when it returns; what it could not deliver is failed with a
//! reason or goes to its `error` port.
//!
//! - [`console`]: `console`, `discard`.
//! - [`file`]: `file-out` (lines, through [`format`](super::format)).
//! - [`tcp`]: `tcp-out` (lines, through `format` too; reconnects).
//! - [`udp`]: `udp-out` (one element, one datagram).
//! - [`mux`]: `mux` (clients subscribe at run time).
//! - `kafka`: `kafka-out` (feature `kafka`).

pub(crate) mod console;
pub(crate) mod file;
#[cfg(feature = "kafka")]
pub(crate) mod kafka;
pub(crate) mod mux;
pub(crate) mod tcp;
pub(crate) mod udp;
