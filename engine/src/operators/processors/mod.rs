//! Processors: one input, one output (and optional side ports). Each sees
//! an element ([`Processor::process`](crate::stage::Processor::process)),
//! may change its payload in place (copy-on-write when the slot is shared)
//! and says where it goes with a [`Verdict`](crate::stage::Verdict).
//!
//! - [`set_field`]: `forward`, `set-field`.
//! - [`fields`]: `remove-field`, `rename-field`.
//! - [`filter`]: `filter` (conditions on top-level JSON fields).
//! - [`sample`], [`dedupe`], [`rate_limit`]: dropping by count, key, rate.
//! - [`window`]: `window` (count, processing-time and event-time windows).
//! - [`chaos`]: `chaos` (fault injection for restart policies).

pub(crate) mod chaos;
pub(crate) mod dedupe;
pub(crate) mod fields;
pub(crate) mod filter;
pub(crate) mod rate_limit;
pub(crate) mod sample;
pub(crate) mod set_field;
pub(crate) mod window;
