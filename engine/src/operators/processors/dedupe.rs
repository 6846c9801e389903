//! `dedupe`: drops repeats of a key seen within a time window.

use std::collections::{HashMap, VecDeque};

use crate::checkpoint::{StateReader, StateWriter};
use crate::operators::json::find_field;
use crate::operators::params::params;
use crate::operators::util::{fnv1a64, PrehashedBuild};
use crate::stage::{Element, Processor, Reason, StageError, Verdict};

/// Passes an element when its key was not passed within the last
/// `window_ns` (by ingest time), drops it otherwise.
///
/// The key is a top-level field's text, or the whole payload when no field
/// is named; keys are remembered as their FNV-1a 64 hash (a collision, about
/// 1 in 2^64 per pair, would drop an element wrongly). Memory is bounded:
/// at most `max_keys` are remembered, in a table and a FIFO preallocated at
/// start; when full, the oldest is forgotten early, so one of its repeats
/// may pass. Those early evictions are counted ([`Processor::counts`]:
/// "keys evicted (max_keys)"), so a summary shows when `max_keys` is too
/// small for the window. No allocation per element.
pub struct Dedupe {
    field: Option<String>,
    window_ns: u64,
    max_keys: usize,
    seen: HashMap<u64, u64, PrehashedBuild>,
    order: VecDeque<(u64, u64)>,
    last_ns: u64,
    /// Keys forgotten before their window ended, to stay within `max_keys`.
    evicted: u64,
}

impl Dedupe {
    /// Dedupes on `field` (`None`: the whole payload) within `window_ns`.
    pub fn new(field: Option<String>, window_ns: u64, max_keys: usize) -> Result<Dedupe, String> {
        if window_ns == 0 || max_keys == 0 {
            return Err("window_ms and max_keys must be positive".to_string());
        }
        Ok(Dedupe {
            field,
            window_ns,
            max_keys,
            seen: HashMap::with_capacity_and_hasher(max_keys, PrehashedBuild::default()),
            order: VecDeque::with_capacity(max_keys),
            last_ns: 0,
            evicted: 0,
        })
    }

    /// The decision for key hash `key` at time `t` (ns, non-decreasing).
    fn admit(&mut self, key: u64, t: u64) -> bool {
        while let Some(&(k, at)) = self.order.front() {
            if at.saturating_add(self.window_ns) > t {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&k);
        }
        if self.seen.contains_key(&key) {
            return false;
        }
        if self.seen.len() >= self.max_keys {
            if let Some((k, _)) = self.order.pop_front() {
                self.seen.remove(&k);
                self.evicted += 1;
            }
        }
        self.seen.insert(key, t);
        self.order.push_back((key, t));
        true
    }
}

impl Processor for Dedupe {
    fn drop_reason(&self) -> &'static str {
        "duplicate"
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        let mut w = StateWriter::new();
        w.u64(self.last_ns)
            .u64(self.evicted)
            .u64(self.order.len() as u64);
        for &(k, at) in &self.order {
            w.u64(k).u64(at);
        }
        Ok(w.finish())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let mut r = StateReader::new(state);
        self.last_ns = r.u64()?;
        self.evicted = r.u64()?;
        let n = r.u64()?;
        self.order.clear();
        self.seen.clear();
        for _ in 0..n {
            let (k, at) = (r.u64()?, r.u64()?);
            self.order.push_back((k, at));
            self.seen.insert(k, at);
        }
        r.done()
    }

    fn counts(&self) -> Vec<(&'static str, u64)> {
        vec![("keys evicted (max_keys)", self.evicted)]
    }

    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError> {
        let payload = element.payload();
        let key = match &self.field {
            None => fnv1a64(payload),
            Some(name) => {
                let lookup = find_field(payload, name).map_err(|e| {
                    StageError::Rejected(Reason::new("invalid JSON", e.to_string()))
                })?;
                let field = lookup.field.ok_or_else(|| {
                    StageError::Rejected(Reason::new("missing field", name.clone()))
                })?;
                fnv1a64(field.as_text().as_bytes())
            }
        };
        // Ingest times from several sources may interleave out of order.
        self.last_ns = self.last_ns.max(element.meta().ingest_ns);
        Ok(if self.admit(key, self.last_ns) {
            Verdict::Emit
        } else {
            Verdict::Drop
        })
    }
}

params! {
    /// Parameters of `dedupe`.
    pub(crate) struct DedupeParams {
        /// top-level key field (default: the whole payload)
        field: Option<String>,
        /// a key passes again once this long has passed since it last passed
        window_ms: u64,
        /// keys remembered at most; the oldest is forgotten early, counted in the
        /// summary as keys evicted (default 100000)
        #[serde(default = "default_max_keys")]
        max_keys: usize,
    }
}

fn default_max_keys() -> usize {
    100_000
}

pub(crate) fn build(p: DedupeParams) -> Result<Dedupe, String> {
    Dedupe::new(p.field, p.window_ms.saturating_mul(1_000_000), p.max_keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::Harness;

    const MS: u64 = 1_000_000;

    #[test]
    fn drops_repeats_within_the_window() {
        let mut d = Dedupe::new(Some("id".into()), 100 * MS, 1000).unwrap();
        let mut h = Harness::new(256);
        let mut at = |h: &mut Harness, doc: &str, ms: u64| {
            h.process_at(&mut d, doc.as_bytes(), 1 + ms * MS).verdict
        };
        assert_eq!(at(&mut h, r#"{"id":"a"}"#, 0), Ok(Verdict::Emit));
        assert_eq!(at(&mut h, r#"{"id":"b"}"#, 10), Ok(Verdict::Emit));
        assert_eq!(at(&mut h, r#"{"id":"a","x":1}"#, 50), Ok(Verdict::Drop));
        assert_eq!(at(&mut h, r#"{"id":"\u0061"}"#, 60), Ok(Verdict::Drop));
        assert_eq!(
            at(&mut h, r#"{"id":"a"}"#, 100),
            Ok(Verdict::Emit),
            "expired"
        );
        assert_eq!(at(&mut h, r#"{"id":"b"}"#, 105), Ok(Verdict::Drop));
        assert!(matches!(
            at(&mut h, r#"{"other":1}"#, 106),
            Err(StageError::Rejected(r)) if r.kind == "missing field"
        ));
        assert!(matches!(
            at(&mut h, "garbage", 107),
            Err(StageError::Rejected(r)) if r.kind == "invalid JSON"
        ));
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = Dedupe::new(None, 1_000_000 * MS, 2).unwrap();
        assert!(d.admit(1, 1));
        assert!(d.admit(2, 2));
        assert!(!d.admit(1, 3));
        assert!(d.admit(3, 4), "evicts key 1");
        assert_eq!(d.seen.len(), 2);
        assert!(d.admit(1, 5), "key 1 was forgotten early");
        assert!(d.seen.capacity() >= 2 && d.order.len() == 2);
    }

    /// Keys forgotten early are counted; keys that expired are not.
    #[test]
    fn counts_evictions() {
        let mut d = Dedupe::new(Some("id".into()), 100 * MS, 2).unwrap();
        let mut h = Harness::new(256);
        let mut at = |h: &mut Harness, id: u32, ms: u64| {
            let doc = format!(r#"{{"id":{id}}}"#);
            h.process_at(&mut d, doc.as_bytes(), 1 + ms * MS).verdict
        };
        assert_eq!(at(&mut h, 1, 0), Ok(Verdict::Emit));
        assert_eq!(at(&mut h, 2, 1), Ok(Verdict::Emit));
        assert_eq!(at(&mut h, 3, 2), Ok(Verdict::Emit), "evicts 1");
        assert_eq!(at(&mut h, 1, 3), Ok(Verdict::Emit), "evicts 2");
        assert_eq!(at(&mut h, 3, 4), Ok(Verdict::Drop));
        // Past the window both keys expire: room without evicting.
        assert_eq!(at(&mut h, 4, 200), Ok(Verdict::Emit));
        assert_eq!(at(&mut h, 5, 201), Ok(Verdict::Emit));
        assert_eq!(d.counts(), [("keys evicted (max_keys)", 2)]);
    }
}
