//! Sources: where elements come from. Each writes its payloads into arena
//! slots it is lent ([`Source::pull`](crate::stage::Source::pull)) and
//! never sees them again.
//!
//! - [`synthetic`]: `list`, `generator` (data made up from parameters).
//! - [`ticker`]: `ticker` (one element per interval).
//! - [`file`]: `file-in`, `stdin` (lines, through [`lines`](super::lines)).
//! - [`tcp`]: `tcp-in` (lines from many clients, through `lines` too).
//! - [`udp`]: `udp-in` (one datagram, one element).
//! - `kafka`: `kafka-in` (a consumer-group member; feature `kafka`).

pub(crate) mod file;
#[cfg(feature = "kafka")]
pub(crate) mod kafka;
pub(crate) mod synthetic;
pub(crate) mod tcp;
pub(crate) mod ticker;
pub(crate) mod udp;
