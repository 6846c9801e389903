//! The run report and its human-readable summary.

use std::fmt;
use std::time::Duration;

use crate::metrics::targets::{Target, Verdict};
use crate::metrics::StageReport;
use crate::ring::WhenFull;
use crate::stage::Role;

/// One edge: its ends, its policy and what it dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeReport {
    /// Producing node.
    pub from: String,
    /// Its output port.
    pub port: String,
    /// Consuming node.
    pub to: String,
    /// Ring capacity.
    pub capacity: usize,
    /// What the edge does when its ring is full.
    pub when_full: WhenFull,
    /// Elements dropped because the ring was full (or, at the end of a run,
    /// left queued for a consumer that had stopped).
    pub dropped: u64,
}

/// Where one stage runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementEntry {
    /// Stage name.
    pub stage: String,
    /// Component it was built from.
    pub component: String,
    /// Its role.
    pub role: Role,
    /// Core id.
    pub core: usize,
    /// Worker (thread) index; stages on one worker run round robin.
    pub worker: usize,
}

/// The drain deadline passed with stages still running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainTimeout {
    /// The deadline, `drain_timeout_ms`.
    pub timeout_ms: u64,
    /// The stages of the workers that had not finished (their rows in the
    /// report hold their counters as last published).
    pub stuck: Vec<String>,
    /// Arena slots still held at the deadline: the elements not delivered,
    /// plus at most two batches of free slots cached by each stuck worker.
    pub undelivered: u64,
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// One entry per stage, in topological order.
    pub stages: Vec<StageReport>,
    /// Where each stage ran.
    pub placement: Vec<PlacementEntry>,
    /// Wall time from the workers' start to the last worker's exit (set-up,
    /// such as pre-faulting the arena, is not included).
    pub elapsed: Duration,
    /// Arena slots not returned at shutdown (0 unless there is a bug).
    pub leaked_slots: usize,
    /// Arena slot count.
    pub arena_slots: u32,
    /// Arena slot size in bytes.
    pub slot_size: usize,
    /// Whether every worker was pinned to its core.
    pub pinned: bool,
    /// Worker panics (a bug in a stage or the engine).
    pub panics: Vec<String>,
    /// Latency targets checked against the sinks' histograms.
    pub targets: Vec<Verdict>,
    /// Every edge, in config order.
    pub edges: Vec<EdgeReport>,
    /// Set when the drain deadline passed with stages still running.
    pub drain: Option<DrainTimeout>,
    /// What the checkpoint coordinator did, when checkpoints are on.
    pub checkpoints: Option<crate::checkpoint::CheckpointStats>,
    /// Set when a stage of a checkpointed pipeline failed and its restart
    /// policy asks for a replay: run the pipeline again (it resumes from
    /// its last checkpoint) after the backoff.
    pub replay: Option<crate::checkpoint::Replay>,
}

impl RunReport {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        stages: Vec<StageReport>,
        placement: Vec<PlacementEntry>,
        elapsed: Duration,
        leaked_slots: usize,
        arena_slots: u32,
        slot_size: usize,
        pinned: bool,
        panics: Vec<String>,
    ) -> RunReport {
        // Present stages in topological order whatever worker ran them.
        let mut stages = stages;
        stages.sort_by_key(|s| {
            placement
                .iter()
                .position(|p| p.stage == s.name)
                .unwrap_or(usize::MAX)
        });
        RunReport {
            stages,
            placement,
            elapsed,
            leaked_slots,
            arena_slots,
            slot_size,
            pinned,
            panics,
            targets: Vec::new(),
            edges: Vec::new(),
            drain: None,
            checkpoints: None,
            replay: None,
        }
    }

    /// Checks each sink's targets against its latency histogram.
    pub(crate) fn check_targets(&mut self, targets: &[(String, Vec<Target>)]) {
        let mut verdicts = Vec::new();
        for (sink, list) in targets {
            let hist = self.stage(sink).and_then(|s| s.latency.as_ref());
            for t in list {
                verdicts.push(Verdict {
                    sink: sink.clone(),
                    target: *t,
                    measured_ns: hist
                        .filter(|h| !h.is_empty())
                        .map(|h| t.statistic.measure(h)),
                });
            }
        }
        self.targets = verdicts;
    }

    /// Whether every latency target was met.
    pub fn targets_met(&self) -> bool {
        self.targets.iter().all(Verdict::met)
    }

    /// The report of the stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Whether the run succeeded: no failed stage, no panic, no leak, and
    /// the drain finished in time.
    pub fn is_success(&self) -> bool {
        self.drain.is_none()
            && self.panics.is_empty()
            && self.leaked_slots == 0
            && self.stages.iter().all(|s| s.failure.is_none())
    }

    /// Elements produced by all sources.
    pub fn produced(&self) -> u64 {
        self.stages
            .iter()
            .filter(|s| s.role == Role::Source)
            .map(|s| s.sent)
            .sum()
    }

    /// Elements sinks accepted but could not deliver, and elements lost
    /// when a stage failed on them and was restarted.
    pub fn failed(&self) -> u64 {
        self.stages.iter().map(|st| st.failed).sum()
    }

    /// Elements lost to restarts (part of [`failed`](Self::failed)).
    pub fn lost_in_restarts(&self) -> u64 {
        self.stages.iter().map(StageReport::lost_in_restarts).sum()
    }

    /// Restarts of all stages.
    pub fn restarts(&self) -> u64 {
        self.stages.iter().map(|st| st.restarts).sum()
    }

    /// Elements dropped on edges (full rings of dropping edges).
    pub fn edge_drops(&self) -> u64 {
        self.edges.iter().map(|e| e.dropped).sum()
    }

    /// Source elements per second over the whole run.
    pub fn throughput(&self) -> f64 {
        self.produced() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Formats nanoseconds with a unit a person reads at a glance.
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} us", ns as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in self.stages.iter().filter(|s| s.role == Role::Router) {
            let parts: Vec<String> = s
                .ports
                .iter()
                .filter(|(p, n)| p != crate::stage::ERROR_PORT || *n > 0)
                .map(|(p, n)| format!("{n} to {p}"))
                .collect();
            let errors = s
                .ports
                .iter()
                .find(|(p, _)| p == crate::stage::ERROR_PORT)
                .map_or(0, |(_, n)| *n);
            let routed = s.received - s.dropped - errors;
            writeln!(
                f,
                "{routed} events routed by '{}': {}",
                s.name,
                parts.join(", ")
            )?;
        }
        let leaked = match self.drain {
            Some(_) => "leaks not checked (stages still running)".to_string(),
            None => format!("{} slots leaked", self.leaked_slots),
        };
        writeln!(
            f,
            "{} elements in {} ({:.0} elements/s), arena {} x {} B, {leaked}",
            self.produced(),
            human_ns(self.elapsed.as_nanos() as u64),
            self.throughput(),
            self.arena_slots,
            self.slot_size,
        )?;
        let w = self
            .stages
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let c = self
            .stages
            .iter()
            .map(|s| s.component.len())
            .max()
            .unwrap_or(9)
            .max(9);
        writeln!(
            f,
            "{:<w$}  {:<c$}  {:<9}  {:>4}  {:>6}  {:>10}  {:>10}  {:>8}  {:>8}",
            "stage", "component", "role", "core", "worker", "in", "out", "dropped", "failed"
        )?;
        for s in &self.stages {
            let core = s.core.map_or("-".to_string(), |c| c.to_string());
            writeln!(
                f,
                "{:<w$}  {:<c$}  {:<9}  {:>4}  {:>6}  {:>10}  {:>10}  {:>8}  {:>8}",
                s.name,
                s.component,
                s.role.to_string(),
                core,
                s.worker,
                s.received,
                s.sent,
                s.dropped,
                s.failed
            )?;
            for r in &s.reasons {
                let what = if r.diverted {
                    "sent to port 'error'"
                } else if r.failed {
                    "failed"
                } else {
                    "dropped"
                };
                if r.first_detail.is_empty() {
                    writeln!(f, "{:<w$}    {what} {} x {}", "", r.count, r.kind)?;
                } else {
                    writeln!(
                        f,
                        "{:<w$}    {what} {} x {} (first: {})",
                        "", r.count, r.kind, r.first_detail
                    )?;
                }
            }
            for (name, n) in s.counts.iter().filter(|(_, n)| *n > 0) {
                writeln!(f, "{:<w$}    {n} x {name}", "")?;
            }
            if s.restarts > 0 {
                writeln!(f, "{:<w$}    restarted {} x", "", s.restarts)?;
            }
            if let Some(failure) = &s.failure {
                writeln!(f, "{:<w$}    FAILED: {failure}", "")?;
            }
        }
        for e in self
            .edges
            .iter()
            .filter(|e| e.dropped > 0 || e.when_full != WhenFull::Block)
        {
            writeln!(
                f,
                "edge {}.{} -> {} ({}, capacity {}): {} dropped",
                e.from, e.port, e.to, e.when_full, e.capacity, e.dropped
            )?;
        }
        if let Some(c) = &self.checkpoints {
            let resumed = c.restored_from.map_or(String::new(), |id| {
                format!(", resumed from checkpoint {id}")
            });
            let errors = if c.write_errors > 0 {
                format!(", {} could not be written", c.write_errors)
            } else {
                String::new()
            };
            writeln!(
                f,
                "checkpoints: {} completed (last id {}){errors}{resumed}",
                c.completed, c.last_id
            )?;
        }
        if let Some(d) = &self.drain {
            writeln!(
                f,
                "DRAIN DEADLINE: still running {} ms after the sources stopped: {}; at most {} elements in flight (arena slots still held, counting the free slots a stuck worker caches); what a stuck stage buffers itself is not counted",
                d.timeout_ms,
                d.stuck.join(", "),
                d.undelivered
            )?;
        }
        let sinks: Vec<_> = self
            .stages
            .iter()
            .filter_map(|s| s.latency.as_ref().map(|h| (s, h)))
            .collect();
        if !sinks.is_empty() {
            writeln!(
                f,
                "{:<w$}  {:>10}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}",
                "latency", "count", "p50", "p90", "p99", "p99.9", "max"
            )?;
            for (s, h) in sinks {
                if h.is_empty() {
                    writeln!(f, "{:<w$}  {:>10}", s.name, 0)?;
                    continue;
                }
                writeln!(
                    f,
                    "{:<w$}  {:>10}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}",
                    s.name,
                    h.len(),
                    human_ns(h.value_at_quantile(0.50)),
                    human_ns(h.value_at_quantile(0.90)),
                    human_ns(h.value_at_quantile(0.99)),
                    human_ns(h.value_at_quantile(0.999)),
                    human_ns(h.max())
                )?;
            }
        }
        let staged: Vec<_> = self.stages.iter().filter(|s| s.service.is_some()).collect();
        if !staged.is_empty() {
            writeln!(
                f,
                "{:<w$}  {:>9}  {:>9}  {:>9}  {:>11}  {:>11}",
                "per stage", "service50", "service99", "service-max", "arrival50", "arrival99"
            )?;
            for s in staged {
                let q = |h: &Option<hdrhistogram::Histogram<u64>>, p: f64| {
                    h.as_ref()
                        .filter(|h| !h.is_empty())
                        .map_or("-".to_string(), |h| {
                            human_ns(if p >= 1.0 {
                                h.max()
                            } else {
                                h.value_at_quantile(p)
                            })
                        })
                };
                writeln!(
                    f,
                    "{:<w$}  {:>9}  {:>9}  {:>11}  {:>11}  {:>11}",
                    s.name,
                    q(&s.service, 0.5),
                    q(&s.service, 0.99),
                    q(&s.service, 1.0),
                    q(&s.arrival, 0.5),
                    q(&s.arrival, 0.99)
                )?;
            }
        }
        if !self.targets.is_empty() {
            writeln!(
                f,
                "{:<w$}  {:>7}  {:>10}  {:>10}  verdict",
                "target", "stat", "limit", "measured"
            )?;
            for v in &self.targets {
                writeln!(
                    f,
                    "{:<w$}  {:>7}  {:>10}  {:>10}  {}",
                    v.sink,
                    v.target.statistic.to_string(),
                    human_ns(v.target.limit_ns),
                    v.measured_ns.map_or("-".to_string(), human_ns),
                    if v.met() { "met" } else { "MISSED" }
                )?;
            }
        }
        if !self.pinned {
            writeln!(f, "note: workers were not pinned to cores")?;
        }
        for p in &self.panics {
            writeln!(f, "error: {p}")?;
        }
        if self.leaked_slots > 0 {
            writeln!(f, "error: {} arena slots leaked", self.leaked_slots)?;
        }
        Ok(())
    }
}
