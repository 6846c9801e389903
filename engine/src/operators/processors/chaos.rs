//! `chaos`: fault injection for testing restart policies and failure
//! handling (like Redpanda Connect's `crash` processor). It forwards
//! elements unchanged, except that the k-th element it sees (1-based)
//! panics when `k % panic_every == 0` and returns `StageError::Fatal` when
//! `k % error_every == 0` (a panic wins when both match).
//!
//! `k` counts every element the node has seen since the process started,
//! across restarts of the stage: the counter lives outside the stage, in a
//! process-wide table keyed by the node name, and a restarted stage picks
//! it up in `init`. So a restarted stage does not fail again on the next
//! element, and a run with a restart policy makes progress. Two pipelines
//! in one process with a `chaos` node of the same name share the counter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::operators::params::params;
use crate::stage::{Element, Processor, StageError, StageInfo, Verdict};

/// Fails on purpose every N elements (see the module docs).
pub struct Chaos {
    panic_every: Option<u64>,
    error_every: Option<u64>,
    /// Elements seen by this node, shared with its restarted successors.
    seen: Arc<AtomicU64>,
}

/// The element counter of the `chaos` node named `node` (created at 0).
pub fn chaos_counter(node: &str) -> Arc<AtomicU64> {
    static COUNTERS: OnceLock<Mutex<HashMap<String, Arc<AtomicU64>>>> = OnceLock::new();
    let mut map = COUNTERS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Arc::clone(map.entry(node.to_string()).or_default())
}

impl Chaos {
    /// Panics every `panic_every` and/or fails every `error_every` elements
    /// (at least one of them, each at least 1).
    pub fn new(panic_every: Option<u64>, error_every: Option<u64>) -> Result<Chaos, String> {
        if panic_every.is_none() && error_every.is_none() {
            return Err("give panic_every and/or error_every".to_string());
        }
        if panic_every == Some(0) || error_every == Some(0) {
            return Err("panic_every and error_every must be at least 1".to_string());
        }
        Ok(Chaos {
            panic_every,
            error_every,
            seen: Arc::default(),
        })
    }
}

impl Processor for Chaos {
    fn init(&mut self, info: &StageInfo) -> Result<(), StageError> {
        self.seen = chaos_counter(&info.name);
        Ok(())
    }

    fn process(&mut self, _element: &mut Element<'_>) -> Result<Verdict, StageError> {
        let k = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if self.panic_every.is_some_and(|n| k.is_multiple_of(n)) {
            panic!("chaos: injected panic at element {k}");
        }
        if self.error_every.is_some_and(|n| k.is_multiple_of(n)) {
            return Err(StageError::Fatal(format!(
                "chaos: injected error at element {k}"
            )));
        }
        Ok(Verdict::Emit)
    }
}

params! {
    /// Parameters of `chaos`.
    pub(crate) struct ChaosParams {
        /// N: the k-th element the node sees (1-based, counted across its restarts)
        /// panics when k % N == 0
        panic_every: Option<u64>,
        /// N: the k-th element returns a fatal error when k % N == 0 (a panic wins
        /// when both match)
        error_every: Option<u64>,
    }
}

pub(crate) fn build(p: ChaosParams) -> Result<Chaos, String> {
    Chaos::new(p.panic_every, p.error_every)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::Harness;
    use crate::stage::guard::{guard, quiet_panics_on_this_thread};

    fn info(name: &str) -> StageInfo {
        StageInfo {
            name: name.to_string(),
            index: 0,
            slot_size: 64,
        }
    }

    #[test]
    fn parameters_are_checked() {
        assert!(Chaos::new(None, None).is_err());
        assert!(Chaos::new(Some(0), None).is_err());
        assert!(Chaos::new(None, Some(0)).is_err());
        assert!(Chaos::new(Some(3), Some(2)).is_ok());
    }

    #[test]
    fn fails_on_schedule_and_the_count_survives_a_rebuild() {
        quiet_panics_on_this_thread();
        let mut h = Harness::new(64);
        let mut outcomes = Vec::new();
        let mut c = Chaos::new(Some(4), Some(3)).unwrap();
        c.init(&info("chaos-unit-test")).unwrap();
        for _ in 0..12 {
            match guard(|| h.process(&mut c, b"{}").verdict) {
                Ok(Ok(Verdict::Emit)) => outcomes.push('.'),
                Ok(Err(StageError::Fatal(_))) => outcomes.push('E'),
                Err(m) => {
                    assert!(m.contains("chaos: injected panic at element"), "{m}");
                    outcomes.push('P');
                    // A fresh stage, as a restart builds it: same count.
                    c = Chaos::new(Some(4), Some(3)).unwrap();
                    c.init(&info("chaos-unit-test")).unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
        let s: String = outcomes.into_iter().collect();
        assert_eq!(s, "..EP.E.PE..P");
        assert_eq!(chaos_counter("chaos-unit-test").load(Ordering::Relaxed), 12);
    }
}
