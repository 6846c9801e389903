//! Per-stage counters and latency histograms, and the run report.
//!
//! Counters are plain integers owned by the stage's worker (no sharing on the
//! hot path); each sink records end-to-end latency into its own HDR histogram.
//! Everything is collected when the workers exit and merged into a
//! [`RunReport`].

mod export;
mod report;
pub mod targets;

pub use export::{write_histogram_log, write_json_report};
pub use report::{human_ns, DrainTimeout, EdgeReport, PlacementEntry, RunReport};

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::stage::{Reason, Role};

/// Highest latency a histogram tracks (larger values are clamped): 1 hour.
const MAX_TRACKABLE_NS: u64 = 3_600_000_000_000;

/// A new latency histogram (1 ns .. 1 h, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, 3).expect("valid histogram bounds")
}

/// A stage's counters as its worker last published them (after every step
/// that moved something, never per element): readable while the pipeline
/// runs, by the control endpoint or for a stage still running at the drain
/// deadline.
#[derive(Debug)]
pub struct LiveCounters {
    received: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    restarts: AtomicU64,
    /// Per output port: elements sent.
    ports: Box<[AtomicU64]>,
    state: AtomicU8,
    /// A reader asked for a fresh latency snapshot (see
    /// [`LiveCounters::request_latency`]); the worker copies its histogram
    /// at its next publish and clears the flag. Nothing is copied while
    /// nobody asks.
    want_latency: AtomicBool,
    latency: Mutex<Option<Histogram<u64>>>,
}

/// What a stage is doing, as last published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveState {
    /// Not stepped yet, or processing.
    Running,
    /// Done: every input completed and every output drained.
    Finished,
    /// The stage failed; its inputs are drained and counted as dropped.
    Failed,
}

impl LiveState {
    /// Lower-case name (`running`, `finished`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            LiveState::Running => "running",
            LiveState::Finished => "finished",
            LiveState::Failed => "failed",
        }
    }
}

impl Default for LiveCounters {
    fn default() -> Self {
        LiveCounters::new(0)
    }
}

impl LiveCounters {
    /// Counters for a stage with `ports` output ports.
    pub fn new(ports: usize) -> LiveCounters {
        LiveCounters {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            ports: (0..ports).map(|_| AtomicU64::new(0)).collect(),
            state: AtomicU8::new(0),
            want_latency: AtomicBool::new(false),
            latency: Mutex::new(None),
        }
    }

    pub(crate) fn publish(&self, r: &StageReport, state: LiveState) {
        self.received.store(r.received, Ordering::Relaxed);
        self.sent.store(r.sent, Ordering::Relaxed);
        self.dropped.store(r.dropped, Ordering::Relaxed);
        self.failed.store(r.failed, Ordering::Relaxed);
        self.restarts.store(r.restarts, Ordering::Relaxed);
        for (live, (_, n)) in self.ports.iter().zip(&r.ports) {
            live.store(*n, Ordering::Relaxed);
        }
        self.state.store(state as u8, Ordering::Relaxed);
        if self.want_latency.load(Ordering::Relaxed) || state != LiveState::Running {
            self.copy_latency(r);
        }
    }

    #[cold]
    fn copy_latency(&self, r: &StageReport) {
        let Some(h) = &r.latency else { return };
        // Never wait on a reader: try again at the next publish.
        if let Ok(mut slot) = self.latency.try_lock() {
            match slot.as_mut() {
                Some(copy) => {
                    copy.reset();
                    // Same bounds: cannot fail.
                    let _ = copy.add(h);
                }
                None => *slot = Some(h.clone()),
            }
            self.want_latency.store(false, Ordering::Relaxed);
        }
    }

    /// `(received, sent, dropped)` as last published.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }

    /// Elements a sink could not deliver, as last published.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Times the stage was restarted by its restart policy, as last
    /// published.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Elements sent per output port, as last published.
    pub fn port_sent(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .collect()
    }

    /// The stage's state, as last published.
    pub fn state(&self) -> LiveState {
        match self.state.load(Ordering::Relaxed) {
            1 => LiveState::Finished,
            2 => LiveState::Failed,
            _ => LiveState::Running,
        }
    }

    /// Asks the worker for a fresh copy of a sink's latency histogram at
    /// its next publish (one relaxed load per publish otherwise).
    pub fn request_latency(&self) {
        self.want_latency.store(true, Ordering::Relaxed);
    }

    /// The latest latency histogram copy (`None` before the first one, and
    /// for stages without one). Call [`request_latency`](Self::request_latency)
    /// first; the copy may be one request old.
    pub fn latency(&self) -> Option<Histogram<u64>> {
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The reason under which an element is counted as failed when the stage
/// failed on it and was restarted (and what a restarted sink still held).
pub const RESTART_REASON: &str = "stage restarted";

/// How often one reason occurred, with the first occurrence's details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonCount {
    /// The reason category.
    pub kind: &'static str,
    /// Occurrences.
    pub count: u64,
    /// Details of the first occurrence.
    pub first_detail: String,
    /// Sent to the `error` port rather than dropped.
    pub diverted: bool,
    /// Counted as failed (not delivered by a sink) rather than dropped.
    pub failed: bool,
}

/// What one stage did during the run.
#[derive(Clone, Debug)]
pub struct StageReport {
    /// Node name.
    pub name: String,
    /// Component it was built from.
    pub component: String,
    /// Its role.
    pub role: Role,
    /// Core it ran on (`None`: not pinned).
    pub core: Option<usize>,
    /// Worker that hosted it.
    pub worker: usize,
    /// Elements received.
    pub received: u64,
    /// Elements sent (a fan-out to two ports counts two).
    pub sent: u64,
    /// Elements dropped, all reasons together.
    pub dropped: u64,
    /// Elements a sink accepted but could not deliver (I/O errors); the run
    /// exits 74 when any stage has some. Also the elements a stage failed on
    /// and lost when its restart policy restarted it (reason
    /// [`RESTART_REASON`]), which do not change the exit status.
    pub failed: u64,
    /// Drop reasons.
    pub reasons: Vec<ReasonCount>,
    /// Per output port: name and elements sent to it.
    pub ports: Vec<(String, u64)>,
    /// End-to-end latency of the elements a sink received.
    pub latency: Option<Histogram<u64>>,
    /// With `engine.stage_metrics`: per-element service time (batch time
    /// divided by its elements).
    pub service: Option<Histogram<u64>>,
    /// With `engine.stage_metrics`: age of each element (time since ingest)
    /// when this stage dequeued it. The difference between a stage's and its
    /// upstream's arrival, less the upstream's service time, is the queueing
    /// delay of the hop between them.
    pub arrival: Option<Histogram<u64>>,
    /// Events the stage counted besides elements (see
    /// [`Processor::counts`](crate::stage::Processor::counts)).
    pub counts: Vec<(&'static str, u64)>,
    /// The fatal error that stopped the stage, if any.
    pub failure: Option<String>,
    /// Times its restart policy rebuilt and restarted the stage.
    pub restarts: u64,
}

impl StageReport {
    pub(crate) fn new(
        name: &str,
        component: &str,
        role: Role,
        ports: Vec<String>,
        stage_metrics: bool,
    ) -> Self {
        StageReport {
            name: name.to_string(),
            component: component.to_string(),
            role,
            core: None,
            worker: 0,
            received: 0,
            sent: 0,
            dropped: 0,
            failed: 0,
            reasons: Vec::new(),
            ports: ports.into_iter().map(|p| (p, 0)).collect(),
            latency: (role == Role::Sink).then(latency_histogram),
            service: stage_metrics.then(latency_histogram),
            arrival: (stage_metrics && role != Role::Source).then(latency_histogram),
            counts: Vec::new(),
            failure: None,
            restarts: 0,
        }
    }

    /// `stage 'NAME' failed: WHY` (or `failed after N restarts in T ms:
    /// WHY` when its restart policy gave up), for a failed stage.
    pub fn failure_line(&self) -> Option<String> {
        let f = self.failure.as_deref()?;
        let sep = if f.starts_with("after ") { " " } else { ": " };
        Some(format!("stage '{}' failed{sep}{f}", self.name))
    }

    /// Elements lost to restarts (failed under [`RESTART_REASON`]).
    pub fn lost_in_restarts(&self) -> u64 {
        self.reasons
            .iter()
            .filter(|r| r.failed && r.kind == RESTART_REASON)
            .map(|r| r.count)
            .sum()
    }

    /// Counts one dropped element under `reason`.
    /// Counts `n` elements sent on output port `port`.
    #[inline]
    pub(crate) fn count_sent(&mut self, port: usize, n: u64) {
        self.sent += n;
        self.ports[port].1 += n;
    }

    pub(crate) fn drop_with(&mut self, reason: Reason) {
        self.dropped += 1;
        self.tally(reason, false);
    }

    /// Counts one element sent to the `error` port under `reason` (it is
    /// counted as sent, not dropped).
    pub(crate) fn divert(&mut self, reason: Reason) {
        self.tally(reason, true);
    }

    /// Counts `n` elements a sink could not deliver, under `reason`.
    pub(crate) fn fail_with(&mut self, reason: Reason, n: u64) {
        if n == 0 {
            return;
        }
        self.failed += n;
        match self
            .reasons
            .iter_mut()
            .find(|r| r.kind == reason.kind && r.failed)
        {
            Some(r) => r.count += n,
            None => self.reasons.push(ReasonCount {
                kind: reason.kind,
                count: n,
                first_detail: reason.detail,
                diverted: false,
                failed: true,
            }),
        }
    }

    fn tally(&mut self, reason: Reason, diverted: bool) {
        match self
            .reasons
            .iter_mut()
            .find(|r| r.kind == reason.kind && r.diverted == diverted && !r.failed)
        {
            Some(r) => r.count += 1,
            None => self.reasons.push(ReasonCount {
                kind: reason.kind,
                count: 1,
                first_detail: reason.detail,
                diverted,
                failed: false,
            }),
        }
    }

    /// Counts one dropped element under a detail-less reason, allocation-free
    /// after its first occurrence.
    pub(crate) fn drop_static(&mut self, kind: &'static str) {
        self.dropped += 1;
        match self
            .reasons
            .iter_mut()
            .find(|r| r.kind == kind && !r.diverted && !r.failed)
        {
            Some(r) => r.count += 1,
            None => self.reasons.push(ReasonCount {
                kind,
                count: 1,
                first_detail: String::new(),
                diverted: false,
                failed: false,
            }),
        }
    }
}
