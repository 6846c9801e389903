//! `rate-limit`: a token bucket, shared or per key, that drops or delays
//! what exceeds the rate.

use std::collections::HashMap;

use serde::Deserialize;

use crate::checkpoint::{StateReader, StateWriter};
use crate::clock::now_ns;
use crate::operators::json::find_field;
use crate::operators::params::params;
use crate::operators::util::{fnv1a64, PrehashedBuild};
use crate::stage::{Element, Processor, Reason, StageError, Verdict};

/// What happens to an element that finds no token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Drop it (counted as filtered).
    Drop,
    /// Leave it in the input ring until a token is available
    /// ([`Verdict::Defer`]): upstream sees backpressure, order is kept.
    Delay,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last_ns: u64,
}

impl Bucket {
    fn full(burst: f64, now: u64) -> Bucket {
        Bucket {
            tokens: burst,
            last_ns: now,
        }
    }

    fn refill(&mut self, now: u64, rate_per_ns: f64, burst: f64) {
        let elapsed = now.saturating_sub(self.last_ns) as f64;
        self.tokens = (self.tokens + elapsed * rate_per_ns).min(burst);
        self.last_ns = now.max(self.last_ns);
    }

    fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A token bucket of `burst` tokens refilled at `rate` per second; each
/// element takes one. With a `key` field every key value has its own bucket
/// (at most `max_keys`; full buckets are forgotten first, and keys beyond
/// the bound share one overflow bucket). Elements without the key field
/// share one bucket too. In delay mode a deferred element holds back the
/// whole input (a ring is FIFO), so per-key delay is order-preserving, not
/// independent.
pub struct RateLimit {
    rate_per_ns: f64,
    burst: f64,
    mode: Mode,
    key: Option<String>,
    max_keys: usize,
    shared: Option<Bucket>,
    buckets: HashMap<u64, Bucket, PrehashedBuild>,
    overflow: Option<Bucket>,
    now: fn() -> u64,
}

impl RateLimit {
    /// `rate` elements per second with bursts of up to `burst`.
    pub fn new(rate: f64, burst: f64, mode: Mode) -> Result<RateLimit, String> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!(
                "rate must be a positive number per second, not {rate}"
            ));
        }
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(format!("burst must be at least 1, not {burst}"));
        }
        Ok(RateLimit {
            rate_per_ns: rate / 1e9,
            burst,
            mode,
            key: None,
            max_keys: 10_000,
            shared: None,
            buckets: HashMap::default(),
            overflow: None,
            now: now_ns,
        })
    }

    /// One bucket per value of top-level field `key`, at most `max_keys`.
    pub fn per_key(mut self, key: &str, max_keys: usize) -> RateLimit {
        self.key = Some(key.to_string());
        self.max_keys = max_keys.max(1);
        self.buckets = HashMap::with_capacity_and_hasher(self.max_keys, PrehashedBuild::default());
        self
    }

    fn bucket(&mut self, key: Option<u64>, now: u64) -> &mut Bucket {
        let (rate, burst) = (self.rate_per_ns, self.burst);
        let Some(k) = key else {
            return self.shared.get_or_insert_with(|| Bucket::full(burst, now));
        };
        if !self.buckets.contains_key(&k) && self.buckets.len() >= self.max_keys {
            // A full bucket is the same as no bucket: forget those.
            self.buckets.retain(|_, b| {
                b.refill(now, rate, burst);
                b.tokens < burst
            });
            if self.buckets.len() >= self.max_keys {
                return self
                    .overflow
                    .get_or_insert_with(|| Bucket::full(burst, now));
            }
        }
        self.buckets
            .entry(k)
            .or_insert_with(|| Bucket::full(burst, now))
    }

    fn admit(&mut self, key: Option<u64>) -> bool {
        let now = (self.now)();
        let (rate, burst) = (self.rate_per_ns, self.burst);
        let b = self.bucket(key, now);
        b.refill(now, rate, burst);
        b.take()
    }
}

/// Appends a bucket (or its absence) to a snapshot.
fn put_bucket(w: &mut StateWriter, b: Option<&Bucket>) {
    match b {
        None => w.u64(0),
        Some(b) => w.u64(1).f64(b.tokens).u64(b.last_ns),
    };
}

fn get_bucket(r: &mut StateReader<'_>) -> Result<Option<Bucket>, StageError> {
    Ok(match r.u64()? {
        0 => None,
        _ => Some(Bucket {
            tokens: r.f64()?,
            last_ns: r.u64()?,
        }),
    })
}

impl Processor for RateLimit {
    fn drop_reason(&self) -> &'static str {
        "rate limited"
    }

    /// The buckets' tokens and refill times (the monotonic clock is the
    /// machine's, so a resumed run on the same boot refills from there).
    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        let mut w = StateWriter::new();
        put_bucket(&mut w, self.shared.as_ref());
        put_bucket(&mut w, self.overflow.as_ref());
        w.u64(self.buckets.len() as u64);
        for (k, b) in &self.buckets {
            w.u64(*k);
            put_bucket(&mut w, Some(b));
        }
        Ok(w.finish())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let mut r = StateReader::new(state);
        self.shared = get_bucket(&mut r)?;
        self.overflow = get_bucket(&mut r)?;
        self.buckets.clear();
        for _ in 0..r.u64()? {
            let k = r.u64()?;
            if let Some(b) = get_bucket(&mut r)? {
                self.buckets.insert(k, b);
            }
        }
        r.done()
    }

    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError> {
        let key = match &self.key {
            None => None,
            Some(name) => {
                let lookup = find_field(element.payload(), name).map_err(|e| {
                    StageError::Rejected(Reason::new("invalid JSON", e.to_string()))
                })?;
                // Elements without the key share the unkeyed bucket.
                lookup.field.map(|f| fnv1a64(f.as_text().as_bytes()))
            }
        };
        if self.admit(key) {
            return Ok(Verdict::Emit);
        }
        Ok(match self.mode {
            Mode::Drop => Verdict::Drop,
            Mode::Delay => Verdict::Defer,
        })
    }
}

params! {
    /// Parameters of `rate-limit`.
    pub(crate) struct RateLimitParams {
        /// tokens (elements) per second
        rate: f64,
        /// bucket size (default: rate, at least 1)
        burst: Option<f64>,
        /// "drop" (default) or "delay" (hold the input until a token is free)
        #[serde(default = "default_mode")]
        mode: Mode,
        /// top-level field: one bucket per value (default: one bucket)
        key: Option<String>,
        /// per-key buckets at most; beyond, keys share one (default 10000)
        #[serde(default = "default_max_keys")]
        max_keys: usize,
    }
}

fn default_mode() -> Mode {
    Mode::Drop
}

fn default_max_keys() -> usize {
    10_000
}

pub(crate) fn build(p: RateLimitParams) -> Result<RateLimit, String> {
    let burst = p.burst.unwrap_or(p.rate.max(1.0));
    let r = RateLimit::new(p.rate, burst, p.mode)?;
    Ok(match p.key {
        Some(k) => r.per_key(&k, p.max_keys),
        None => r,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::operators::testing::Harness;

    thread_local! {
        static NOW: Cell<u64> = const { Cell::new(1) };
    }

    fn fake_now() -> u64 {
        NOW.with(Cell::get)
    }

    fn set_ms(ms: u64) {
        NOW.with(|n| n.set(1 + ms * 1_000_000));
    }

    fn limiter(rate: f64, burst: f64, mode: Mode) -> RateLimit {
        let mut r = RateLimit::new(rate, burst, mode).unwrap();
        r.now = fake_now;
        r
    }

    #[test]
    fn bursts_then_refills() {
        set_ms(0);
        let mut r = limiter(10.0, 3.0, Mode::Drop);
        let mut h = Harness::new(64);
        let verdicts = |h: &mut Harness, r: &mut RateLimit, n| {
            (0..n)
                .map(|_| h.process(r, b"{}").verdict.unwrap())
                .collect::<Vec<_>>()
        };
        use Verdict::{Drop, Emit};
        assert_eq!(verdicts(&mut h, &mut r, 4), [Emit, Emit, Emit, Drop]);
        set_ms(100); // one token back
        assert_eq!(verdicts(&mut h, &mut r, 2), [Emit, Drop]);
        set_ms(10_000); // capped at the burst
        assert_eq!(verdicts(&mut h, &mut r, 4), [Emit, Emit, Emit, Drop]);
    }

    #[test]
    fn delay_defers_until_a_token() {
        set_ms(0);
        let mut r = limiter(1.0, 1.0, Mode::Delay);
        let mut h = Harness::new(64);
        assert_eq!(h.process(&mut r, b"x").verdict, Ok(Verdict::Emit));
        assert_eq!(h.process(&mut r, b"x").verdict, Ok(Verdict::Defer));
        set_ms(999);
        assert_eq!(h.process(&mut r, b"x").verdict, Ok(Verdict::Defer));
        set_ms(1000);
        assert_eq!(h.process(&mut r, b"x").verdict, Ok(Verdict::Emit));
    }

    #[test]
    fn per_key_buckets_are_bounded() {
        set_ms(0);
        let mut r = limiter(1.0, 1.0, Mode::Drop).per_key("k", 2);
        let mut h = Harness::new(64);
        let mut v = |doc: &str| h.process(&mut r, doc.as_bytes()).verdict;
        assert_eq!(v(r#"{"k":"a"}"#), Ok(Verdict::Emit));
        assert_eq!(v(r#"{"k":"b"}"#), Ok(Verdict::Emit));
        assert_eq!(v(r#"{"k":"a"}"#), Ok(Verdict::Drop));
        // Table full of empty buckets: "c" and "d" share the overflow.
        assert_eq!(v(r#"{"k":"c"}"#), Ok(Verdict::Emit));
        assert_eq!(v(r#"{"k":"d"}"#), Ok(Verdict::Drop));
        // No key: the shared bucket.
        assert_eq!(v(r#"{"x":1}"#), Ok(Verdict::Emit));
        assert!(v("nope").is_err());
    }
}
