//! What every run measures, the same way for every system.
//!
//! * **Latency**: each element is stamped with [`now_ns`] when it is created
//!   (or with its *intended* send time under a fixed rate) and the sink
//!   records `now - stamp` into an HDR histogram, as the engine's sinks do.
//! * **Throughput**: elements created, divided by the time from the first
//!   element's stamp to the last delivery. Start-up (arena pre-faulting,
//!   thread spawning) and shutdown are outside the window for every system.
//! * **Allocations per element**: the designated sink snapshots the global
//!   allocation count ([`crate::alloc`]) when it has received 20% and 90% of
//!   its elements; the difference over the elements created in between is
//!   the steady-state figure.

use hdrhistogram::Histogram;

use crate::alloc::allocations;
pub use dataplane::clock::now_ns;
pub use dataplane::metrics::latency_histogram;

/// Allocation snapshots taken by a sink at two delivery counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshots {
    at: [u64; 2],
    taken: [(u64, u64); 2],
    next: usize,
}

impl Snapshots {
    /// Snapshots at 20% and 90% of `expected` deliveries.
    pub fn new(expected: u64) -> Snapshots {
        let first = (expected / 5).max(1);
        let second = (expected * 9 / 10).max(first + 1);
        Snapshots {
            at: [first, second],
            taken: [(0, 0); 2],
            next: 0,
        }
    }

    /// Call with the running delivery count after each delivery.
    #[inline]
    pub fn check(&mut self, received: u64) {
        if self.next < 2 && received == self.at[self.next] {
            self.taken[self.next] = (received, allocations());
            self.next += 1;
        }
    }

    /// (deliveries, allocations) between the two snapshots, if both were
    /// taken.
    pub fn between(&self) -> Option<(u64, u64)> {
        (self.next == 2).then(|| {
            (
                self.taken[1].0 - self.taken[0].0,
                self.taken[1].1 - self.taken[0].1,
            )
        })
    }
}

/// What one sink saw.
#[derive(Clone, Debug)]
pub struct SinkOutcome {
    /// End-to-end latencies (`None` where the system records them itself).
    pub latency: Option<Histogram<u64>>,
    /// Elements received.
    pub received: u64,
    /// Stamp of the first element received.
    pub first_stamp: u64,
    /// Time of the last delivery.
    pub last_ns: u64,
    /// (deliveries, allocations) in steady state, from the designated sink.
    pub allocs: Option<(u64, u64)>,
}

/// A baseline sink's measurements: latency per element, counts, snapshots.
pub struct Recorder {
    hist: Histogram<u64>,
    received: u64,
    first_stamp: u64,
    last_ns: u64,
    snaps: Option<Snapshots>,
}

impl Recorder {
    /// A recorder; `snaps` for the designated sink only.
    pub fn new(snaps: Option<Snapshots>) -> Recorder {
        Recorder {
            hist: latency_histogram(),
            received: 0,
            first_stamp: 0,
            last_ns: 0,
            snaps,
        }
    }

    /// Records one delivery of an element stamped `stamp`.
    #[inline]
    pub fn record(&mut self, stamp: u64) {
        let now = now_ns();
        self.hist.saturating_record(now.saturating_sub(stamp));
        if self.received == 0 {
            self.first_stamp = stamp;
        }
        self.received += 1;
        self.last_ns = now;
        if let Some(s) = self.snaps.as_mut() {
            s.check(self.received);
        }
    }

    /// Records a batch of deliveries, all received at `now` (one clock
    /// read per batch): latency once per run of equal stamps, with its
    /// count, as the engine's sinks do.
    #[inline]
    pub fn record_batch(&mut self, now: u64, stamps: impl IntoIterator<Item = u64>) {
        let mut run_stamp = 0;
        let mut run_len = 0u64;
        for stamp in stamps {
            if stamp != run_stamp {
                if run_len > 0 {
                    self.hist
                        .saturating_record_n(now.saturating_sub(run_stamp), run_len);
                }
                run_stamp = stamp;
                run_len = 0;
            }
            run_len += 1;
            if self.received == 0 {
                self.first_stamp = stamp;
            }
            self.received += 1;
            if let Some(s) = self.snaps.as_mut() {
                s.check(self.received);
            }
        }
        if run_len > 0 {
            self.hist
                .saturating_record_n(now.saturating_sub(run_stamp), run_len);
            self.last_ns = now;
        }
    }

    /// The measurements.
    pub fn finish(self) -> SinkOutcome {
        SinkOutcome {
            latency: Some(self.hist),
            received: self.received,
            first_stamp: self.first_stamp,
            last_ns: self.last_ns,
            allocs: self.snaps.and_then(|s| s.between()),
        }
    }
}

/// One run of one system on one workload.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// Elements created by the sources.
    pub elements: u64,
    /// Elements received by all sinks together.
    pub delivered: u64,
    /// Throughput window: first stamp ..
    pub start_ns: u64,
    /// .. last delivery.
    pub end_ns: u64,
    /// End-to-end latency over every delivery.
    pub latency: Histogram<u64>,
    /// Steady-state allocations per created element.
    pub allocs_per_element: Option<f64>,
}

impl RunOutcome {
    /// Combines the sinks' outcomes. `sink0_factor` is how many deliveries
    /// the designated sink gets per element created.
    pub fn from_sinks(
        elements: u64,
        sinks: Vec<SinkOutcome>,
        sink0_factor: f64,
        engine_latency: Option<Histogram<u64>>,
    ) -> RunOutcome {
        let mut latency = engine_latency.unwrap_or_else(latency_histogram);
        let mut start_ns = u64::MAX;
        let mut end_ns = 0;
        let mut delivered = 0;
        let mut allocs_per_element = None;
        for s in &sinks {
            if let Some(h) = &s.latency {
                latency.add(h).expect("same histogram bounds");
            }
            if s.received > 0 {
                start_ns = start_ns.min(s.first_stamp);
                end_ns = end_ns.max(s.last_ns);
            }
            delivered += s.received;
            if let Some((n, a)) = s.allocs {
                let created = n as f64 / sink0_factor.max(1e-9);
                allocs_per_element = Some(a as f64 / created.max(1.0));
            }
        }
        if start_ns == u64::MAX {
            start_ns = end_ns;
        }
        RunOutcome {
            elements,
            delivered,
            start_ns,
            end_ns,
            latency,
            allocs_per_element,
        }
    }

    /// Elements created per second over the window.
    pub fn throughput(&self) -> f64 {
        let secs = (self.end_ns.saturating_sub(self.start_ns)) as f64 / 1e9;
        self.elements as f64 / secs.max(1e-9)
    }
}

/// Longest payload before padding: `{"seq":` + 20 digits + `}`.
pub const MAX_PAYLOAD_TEXT: usize = 28;

/// Writes the generator's payload for element `seq` into `out`, as the
/// engine's `Generator` with template `{"seq":{seq}}` and `size` does:
/// the JSON object, padded with spaces to exactly `size` bytes.
#[inline]
pub fn write_payload(out: &mut Vec<u8>, seq: u64, size: usize) {
    let start = out.len();
    out.resize(start + size.max(MAX_PAYLOAD_TEXT), b' ');
    let n = write_payload_into(&mut out[start..], seq, size);
    out.truncate(start + n);
}

/// [`write_payload`] into a buffer of at least `size.max(MAX_PAYLOAD_TEXT)`
/// bytes; returns the payload's length.
#[inline]
pub fn write_payload_into(buf: &mut [u8], seq: u64, size: usize) -> usize {
    const HEAD: &[u8] = b"{\"seq\":";
    let mut itoa = itoa::Buffer::new();
    let digits = itoa.format(seq).as_bytes();
    let mut n = HEAD.len();
    buf[..n].copy_from_slice(HEAD);
    buf[n..n + digits.len()].copy_from_slice(digits);
    n += digits.len();
    buf[n] = b'}';
    n += 1;
    if n < size {
        buf[n..size].fill(b' ');
        n = size;
    }
    n
}

/// The template the engine's generator uses for the same payloads.
pub const TEMPLATE: &str = r#"{"seq":{seq}}"#;

/// Paces a baseline source to a fixed rate: element `seq` is due at
/// `start + seq / rate`. Waits the way a careful user would: sleeps while
/// the deadline is far (leaving the core to other stages), then yields.
pub struct Pacer {
    start_ns: u64,
    ns_per_element: f64,
}

impl Pacer {
    /// A pacer starting now at `rate` elements/s.
    pub fn new(rate: f64) -> Pacer {
        Pacer {
            start_ns: now_ns(),
            ns_per_element: 1e9 / rate,
        }
    }

    /// Waits until element `seq` is due and returns its intended send time
    /// (the stamp: a stall shows up as latency, not as a pause).
    #[inline]
    pub fn wait(&self, seq: u64) -> u64 {
        let due = self.start_ns + (seq as f64 * self.ns_per_element) as u64;
        loop {
            let now = now_ns();
            if now >= due {
                return due;
            }
            let left = due - now;
            if left > 200_000 {
                std::thread::sleep(std::time::Duration::from_nanos(left - 100_000));
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_matches_the_generator() {
        let mut v = Vec::new();
        write_payload(&mut v, 42, 16);
        assert_eq!(v, b"{\"seq\":42}      ");
        v.clear();
        write_payload(&mut v, 1234567, 4);
        assert_eq!(v, b"{\"seq\":1234567}");
    }

    #[test]
    fn batches_record_each_run_of_stamps_once() {
        let mut r = Recorder::new(None);
        r.record_batch(100, [10, 10, 10, 40, 40]);
        r.record_batch(200, std::iter::empty());
        r.record_batch(300, [290]);
        let o = r.finish();
        let h = o.latency.expect("a histogram");
        assert_eq!((o.received, o.first_stamp, o.last_ns), (6, 10, 300));
        assert_eq!(h.len(), 6);
        assert_eq!(h.count_at(90), 3);
        assert_eq!(h.count_at(60), 2);
        assert_eq!(h.count_at(10), 1);
    }

    #[test]
    fn snapshots_between() {
        let mut s = Snapshots::new(100);
        for i in 1..=100 {
            s.check(i);
        }
        assert_eq!(s.between().map(|(n, _)| n), Some(70));
    }
}
