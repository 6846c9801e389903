//! An edge's policy when its ring is full, and the counters its two ends
//! share.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What an edge does when its ring is full (`when_full` in a config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// The producer waits (backpressure): nothing is lost, and a slow
    /// consumer slows everything upstream of it, its siblings included.
    #[default]
    Block,
    /// The elements that find the ring full are dropped (counted): the
    /// consumer sees the oldest data, the producer never waits.
    DropNewest,
    /// The oldest queued elements are dropped to make room (counted): the
    /// consumer sees the freshest data, the producer never waits.
    DropOldest,
}

impl WhenFull {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::Block => "block",
            WhenFull::DropNewest => "drop_newest",
            WhenFull::DropOldest => "drop_oldest",
        }
    }
}

impl fmt::Display for WhenFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WhenFull {
    type Err = String;

    fn from_str(s: &str) -> Result<WhenFull, String> {
        match s {
            "block" => Ok(WhenFull::Block),
            "drop_newest" => Ok(WhenFull::DropNewest),
            "drop_oldest" => Ok(WhenFull::DropOldest),
            other => Err(format!(
                "unknown when_full '{other}' (expected block, drop_newest or drop_oldest)"
            )),
        }
    }
}

/// Counters of one edge, shared by its two ends (written once per batch
/// that drops, never per element).
#[derive(Debug, Default)]
pub struct EdgeStats {
    pub(super) dropped: AtomicU64,
    /// `DropOldest`: elements the producer asks the consumer to shed from
    /// the head of the ring.
    pub(super) shed: AtomicUsize,
    /// Elements in the ring, as either end last saw it (stored once per
    /// batch published or read).
    pub(super) depth: AtomicUsize,
}

impl EdgeStats {
    /// Elements dropped on this edge so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Elements in the ring at the last batch published or read.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    pub(super) fn add_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }
}
