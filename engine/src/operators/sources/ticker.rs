//! `ticker`: an element every interval.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::arena::ContentType;
use crate::clock::now_ns;
use crate::operators::params::params;
use crate::stage::{Pull, SlotWriter, Source, StageError, StageInfo};

/// Emits an element every `interval`: `{"tick":N,"unix_ms":T}` (N from 0),
/// or a fixed payload. Like a clock's tick, a tick that could not be sent in
/// time (backpressure, a busy worker) is skipped, not sent late in a burst.
pub struct Ticker {
    interval_ns: u64,
    count: Option<u64>,
    payload: Option<Vec<u8>>,
    n: u64,
    next_ns: u64,
}

impl Ticker {
    /// A tick every `interval_ns`, `count` times (`None`: until stopped).
    pub fn new(interval_ns: u64, count: Option<u64>) -> Result<Ticker, String> {
        if interval_ns == 0 {
            return Err("interval_ms must be positive".to_string());
        }
        Ok(Ticker {
            interval_ns,
            count,
            payload: None,
            n: 0,
            next_ns: 0,
        })
    }

    /// Sends `payload` on every tick instead of the tick record.
    pub fn payload(mut self, payload: &str) -> Ticker {
        self.payload = Some(payload.as_bytes().to_vec());
        self
    }
}

impl Source for Ticker {
    fn init(&mut self, _info: &StageInfo) -> Result<(), StageError> {
        // The first tick goes at once.
        self.next_ns = now_ns();
        Ok(())
    }

    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.count.is_some_and(|c| self.n >= c) {
            return Ok(Pull::Done);
        }
        let now = now_ns();
        if now < self.next_ns {
            return Ok(Pull::Pending);
        }
        self.next_ns += self.interval_ns;
        if self.next_ns <= now {
            // Missed ticks are skipped.
            self.next_ns = now + self.interval_ns;
        }
        let n = self.n;
        self.n += 1;
        match &self.payload {
            Some(p) => {
                slot.write(p)?;
                slot.set_content_type(crate::operators::lines::sniff(p));
            }
            None => {
                let unix_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let buf = slot.buffer();
                let mut w = &mut buf[..];
                let mut a = itoa::Buffer::new();
                let mut b = itoa::Buffer::new();
                let parts: [&[u8]; 5] = [
                    b"{\"tick\":",
                    a.format(n).as_bytes(),
                    b",\"unix_ms\":",
                    b.format(unix_ms).as_bytes(),
                    b"}",
                ];
                let mut len = 0;
                for part in parts {
                    std::io::Write::write_all(&mut w, part).map_err(|_| {
                        StageError::Fatal("arena slots are too small for a tick".into())
                    })?;
                    len += part.len();
                }
                slot.set_len(len)?;
                slot.set_content_type(ContentType::Json);
            }
        }
        Ok(Pull::Ready)
    }
}

params! {
    /// Parameters of `ticker`.
    pub(crate) struct TickerParams {
        /// time between ticks
        interval_ms: u64,
        /// ticks to emit (default: until stopped)
        count: Option<u64>,
        /// send this text instead of the tick record
        payload: Option<String>,
    }
}

pub(crate) fn build(p: TickerParams) -> Result<Ticker, String> {
    let t = Ticker::new(p.interval_ms.saturating_mul(1_000_000), p.count)?;
    Ok(match &p.payload {
        Some(s) => t.payload(s),
        None => t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::Harness;

    #[test]
    fn ticks_at_the_interval() {
        let mut t = Ticker::new(5_000_000, Some(3)).unwrap();
        let mut h = Harness::new(64);
        t.init(&h.info()).unwrap();
        let (first, p) = h.pull(&mut t);
        assert_eq!(first, Ok(Pull::Ready));
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["tick"], 0);
        assert!(v["unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
        // The next tick is not due yet (5 ms): pending, not a burst.
        assert_eq!(h.pull(&mut t).0, Ok(Pull::Pending));
        let (got, _) = h.pull_all(&mut t, 10, 1000);
        assert_eq!(got.len(), 2);
        assert_eq!(h.pull(&mut t).0, Ok(Pull::Done));
        assert!(Ticker::new(0, None).is_err());
    }
}
