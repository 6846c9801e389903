//! The engine's monotonic clock: nanoseconds since the first call in this
//! process. Ingest timestamps and latency measurements all use it, so they are
//! comparable across cores (the kernel's monotonic clock is system-wide).

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the engine's epoch (never 0 after start-up, so 0 can mean
/// "not set" in element metadata).
#[inline]
pub fn now_ns() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos() as u64 + 1
}
