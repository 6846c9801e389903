//! The results of a whole run, and how they are shown: a table for people
//! ([`table`]), JSON for machines (this model, serialized as is; see
//! `bench/README.md` for the schema) and an SVG latency plot ([`svg`]).

pub mod svg;
pub mod table;

use serde::Serialize;

use crate::machine::Machine;
use crate::summary::{Figures, Ratios, CURVE};

/// Version of the JSON layout; bumped on any incompatible change.
pub const SCHEMA: &str = "dataplane-bench/1";

/// Everything one invocation measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// When the run started, UTC, ISO 8601.
    pub started_at: String,
    /// The same, seconds since the Unix epoch.
    pub started_unix: u64,
    /// The exact command line.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// Load averages when the run ended.
    pub load_avg_end: [f64; 3],
    /// Parameters in force.
    pub settings: RunSettings,
    /// How the systems are set up, in words.
    pub notes: Vec<String>,
    /// Per scenario results.
    pub scenarios: Vec<ScenarioResult>,
    /// The figures the perf gate reads.
    pub gates: Gates,
}

/// Parameters of the run.
#[derive(Clone, Debug, Serialize)]
pub struct RunSettings {
    /// Elements per saturating run.
    pub count: u64,
    /// Payload bytes for scenarios without a fixed size.
    pub size: usize,
    /// Offered rate of the `-rate` scenarios, elements/s.
    pub rate_eps: f64,
    /// Duration of the `-rate` scenarios, seconds.
    pub rate_secs: f64,
    /// Repetitions per scenario and system.
    pub reps: usize,
    /// Ring / channel capacity per edge.
    pub ring_capacity: usize,
    /// The engine's elements per batch.
    pub engine_batch: usize,
    /// The engine's idle wait strategy.
    pub engine_wait: String,
    /// The global allocator of the process.
    pub allocator: String,
    /// `--quick` was given.
    pub quick: bool,
}

/// Where a stage ran (the engine's placement; baselines follow it).
#[derive(Clone, Debug, Serialize)]
pub struct StagePlace {
    /// Stage name.
    pub stage: String,
    /// Core id.
    pub core: usize,
}

/// One scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// The pipeline, in words.
    pub shape: String,
    /// `"saturating"` or `"rate"`.
    pub load: String,
    /// Payload bytes per element.
    pub payload_bytes: usize,
    /// Offered rate, elements/s (`null` when saturating).
    pub offered_rate_eps: Option<f64>,
    /// Elements created per run.
    pub elements: u64,
    /// Stage placement.
    pub placement: Vec<StagePlace>,
    /// Share of all CPUs' time used by *other* processes while this
    /// scenario ran (0.0 to 1.0): above a few percent, the figures are
    /// skewed by a neighbour.
    pub background_cpu: f64,
    /// Share of all CPUs' time stolen by the hypervisor meanwhile.
    pub steal_cpu: f64,
    /// Times the scenario ran (more than 1 under `--max-background` when a
    /// neighbour was busy; the quietest attempt is reported).
    pub attempts: usize,
    /// One entry per system, the engine first.
    pub systems: Vec<SystemResult>,
}

/// One system in one scenario: medians over the reps that succeeded.
/// Every key is always present; figures are `null` when not measured.
#[derive(Clone, Debug, Serialize)]
pub struct SystemResult {
    /// System name.
    pub system: String,
    /// `"ok"`, `"skipped"` (with `reason`) or `"failed"` (with `reason`).
    pub status: String,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// Threads doing pipeline work.
    pub threads: Option<usize>,
    /// How they are placed.
    pub threading: Option<String>,
    /// Repetitions that succeeded.
    pub reps_ok: usize,
    /// Elements created per second.
    pub throughput_eps: Option<f64>,
    /// Payload bytes created per second.
    pub bytes_per_s: Option<f64>,
    /// End-to-end latency percentiles over all deliveries, ns.
    pub p50_ns: Option<f64>,
    /// 90th percentile, ns.
    pub p90_ns: Option<f64>,
    /// 99th percentile, ns.
    pub p99_ns: Option<f64>,
    /// 99.9th percentile, ns.
    pub p999_ns: Option<f64>,
    /// Maximum, ns.
    pub max_ns: Option<f64>,
    /// Steady-state heap allocations per created element.
    pub allocs_per_element: Option<f64>,
    /// Median per-rep ratios to the engine (system / engine).
    pub ratio_vs_engine: Option<Ratios>,
    /// `[quantile, ns]` points of the median latency curve (quantile 1.0
    /// is the maximum).
    pub latency_curve: Vec<[f64; 2]>,
    /// Throughput of each successful rep, elements/s.
    pub rep_throughput_eps: Vec<f64>,
}

impl SystemResult {
    /// A system that ran (some reps may have failed).
    pub fn measured(
        system: &str,
        threads: usize,
        threading: String,
        reps: &[Option<Figures>],
        median: Option<Figures>,
        ratio: Option<Ratios>,
        errors: &[String],
    ) -> SystemResult {
        let ok: Vec<&Figures> = reps.iter().flatten().collect();
        let status = if median.is_some() { "ok" } else { "failed" };
        let reason = errors.first().cloned();
        let m = median.as_ref();
        SystemResult {
            system: system.to_string(),
            status: status.to_string(),
            reason,
            threads: Some(threads),
            threading: Some(threading),
            reps_ok: ok.len(),
            throughput_eps: m.map(|f| f.throughput_eps),
            bytes_per_s: m.and_then(|f| f.bytes_per_s),
            p50_ns: m.map(|f| f.p50_ns),
            p90_ns: m.map(|f| f.p90_ns),
            p99_ns: m.map(|f| f.p99_ns),
            p999_ns: m.map(|f| f.p999_ns),
            max_ns: m.map(|f| f.max_ns),
            allocs_per_element: m.and_then(|f| f.allocs_per_element),
            ratio_vs_engine: ratio,
            latency_curve: m.map_or_else(Vec::new, |f| {
                CURVE
                    .iter()
                    .zip(&f.curve_ns)
                    .map(|(&q, &v)| [q, v])
                    .collect()
            }),
            rep_throughput_eps: ok.iter().map(|f| f.throughput_eps).collect(),
        }
    }

    /// A system that did not run this scenario.
    pub fn skipped(system: &str, reason: String) -> SystemResult {
        SystemResult {
            system: system.to_string(),
            status: "skipped".to_string(),
            reason: Some(reason),
            threads: None,
            threading: None,
            reps_ok: 0,
            throughput_eps: None,
            bytes_per_s: None,
            p50_ns: None,
            p90_ns: None,
            p99_ns: None,
            p999_ns: None,
            max_ns: None,
            allocs_per_element: None,
            ratio_vs_engine: None,
            latency_curve: Vec::new(),
            rep_throughput_eps: Vec::new(),
        }
    }
}

/// The figures a perf gate compares, `null` when their scenario did not run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Gates {
    /// chain-1 (gen -> sink): engine throughput / limit throughput (the
    /// bare hop), median of per-rep ratios; the gated figure.
    pub chain1_engine_over_limit_throughput: Option<f64>,
    /// fanout-2: engine throughput / limit throughput; gated.
    pub fanout2_engine_over_limit_throughput: Option<f64>,
    /// chain-1 (gen -> sink): engine throughput / crossbeam throughput,
    /// median of per-rep ratios.
    pub chain1_engine_over_crossbeam_throughput: Option<f64>,
    /// chain-1: engine throughput / std mpsc throughput.
    pub chain1_engine_over_mpsc_throughput: Option<f64>,
    /// chain-1: engine throughput / disruptor throughput.
    pub chain1_engine_over_disruptor_throughput: Option<f64>,
    /// Engine throughput, fanout-2 / fanout-1 (the same router with one
    /// branch: the single path), ratio of medians.
    pub engine_fanout2_over_fanout1_throughput: Option<f64>,
    /// Engine steady-state allocations per element, the most over the
    /// `chain-*` scenarios.
    pub engine_allocs_per_element_chain: Option<f64>,
    /// The same over the `fanout-*` scenarios.
    pub engine_allocs_per_element_fanout: Option<f64>,
    /// crossbeam allocations per element in fanout-2 (about one per branch).
    pub crossbeam_allocs_per_element_fanout2: Option<f64>,
    /// chain-1-rate: engine p50 / p99 latency, ns.
    pub engine_chain1_rate_p50_ns: Option<f64>,
    /// chain-1-rate: engine p99, ns.
    pub engine_chain1_rate_p99_ns: Option<f64>,
    /// The hop floor: ping-pong p50 one-way latency, ns.
    pub pingpong_p50_ns: Option<f64>,
}

impl Gates {
    /// Reads the gate figures out of the scenario results.
    pub fn from(scenarios: &[ScenarioResult]) -> Gates {
        let get = |scenario: &str, system: &str| -> Option<&SystemResult> {
            scenarios
                .iter()
                .find(|s| s.name == scenario)?
                .systems
                .iter()
                .find(|s| s.system == system && s.status == "ok")
        };
        let inverse = |scenario: &str, system: &str| {
            get(scenario, system)
                .and_then(|s| s.ratio_vs_engine)
                .map(|r| 1.0 / r.throughput)
        };
        let most = |prefix: &str, system: &str| {
            scenarios
                .iter()
                .filter(|s| s.name.starts_with(prefix))
                .filter_map(|s| {
                    s.systems
                        .iter()
                        .find(|x| x.system == system && x.status == "ok")?
                        .allocs_per_element
                })
                .reduce(f64::max)
        };
        let eps = |scenario: &str| get(scenario, "engine").and_then(|s| s.throughput_eps);
        Gates {
            chain1_engine_over_limit_throughput: inverse("chain-1", "limit"),
            fanout2_engine_over_limit_throughput: inverse("fanout-2", "limit"),
            chain1_engine_over_crossbeam_throughput: inverse("chain-1", "crossbeam"),
            chain1_engine_over_mpsc_throughput: inverse("chain-1", "std-mpsc"),
            chain1_engine_over_disruptor_throughput: inverse("chain-1", "disruptor"),
            engine_fanout2_over_fanout1_throughput: eps("fanout-2")
                .zip(eps("fanout-1"))
                .map(|(a, b)| a / b),
            engine_allocs_per_element_chain: most("chain-", "engine"),
            engine_allocs_per_element_fanout: most("fanout-", "engine"),
            crossbeam_allocs_per_element_fanout2: get("fanout-2", "crossbeam")
                .and_then(|s| s.allocs_per_element),
            engine_chain1_rate_p50_ns: get("chain-1-rate", "engine").and_then(|s| s.p50_ns),
            engine_chain1_rate_p99_ns: get("chain-1-rate", "engine").and_then(|s| s.p99_ns),
            pingpong_p50_ns: get("chain-1", "pingpong").and_then(|s| s.p50_ns),
        }
    }
}
