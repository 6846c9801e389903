//! The human-readable table: one block per scenario, one row per system.

use std::fmt::Write;

use crate::output::{Gates, Report, ScenarioResult, SystemResult};

/// `1234567.0` -> `1.23 M`.
pub fn si(x: f64) -> String {
    let (v, unit) = if x >= 1e9 {
        (x / 1e9, " G")
    } else if x >= 1e6 {
        (x / 1e6, " M")
    } else if x >= 1e3 {
        (x / 1e3, " k")
    } else {
        (x, " ")
    };
    format!("{v:.2}{unit}")
}

/// Nanoseconds with a unit read at a glance.
pub fn ns(x: f64) -> String {
    if !x.is_finite() {
        "-".to_string()
    } else if x < 10_000.0 {
        format!("{x:.0} ns")
    } else if x < 10_000_000.0 {
        format!("{:.1} us", x / 1e3)
    } else if x < 10_000_000_000.0 {
        format!("{:.1} ms", x / 1e6)
    } else {
        format!("{:.2} s", x / 1e9)
    }
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "-".to_string(), f)
}

/// The header line of a scenario block.
pub fn scenario_header(s: &ScenarioResult, reps: usize) -> String {
    let load = match s.offered_rate_eps {
        Some(r) => format!("offered {}elements/s", si(r)),
        None => "saturating".to_string(),
    };
    format!(
        "== {}: {}; {} B payload; {load}; {} elements; median of {reps} rep(s) ==",
        s.name, s.shape, s.payload_bytes, s.elements
    )
}

const COLUMNS: &str = "system      threads   elements/s      bytes/s        p50        p90        p99      p99.9        max   allocs/el   thr/engine  p99/engine";

fn row(s: &SystemResult) -> String {
    if s.status != "ok" {
        return format!(
            "{:<10}  {}: {}",
            s.system,
            if s.status == "skipped" {
                "not run"
            } else {
                "FAILED"
            },
            s.reason.as_deref().unwrap_or("")
        );
    }
    let r = s.ratio_vs_engine;
    format!(
        "{:<10}  {:>7}  {:>11}  {:>11}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>10}  {:>11}  {:>10}",
        s.system,
        opt(s.threads.map(|t| t as f64), |t| format!("{t:.0}")),
        opt(s.throughput_eps, |x| format!("{}/s", si(x))),
        opt(s.bytes_per_s, |x| format!("{}B/s", si(x))),
        opt(s.p50_ns, ns),
        opt(s.p90_ns, ns),
        opt(s.p99_ns, ns),
        opt(s.p999_ns, ns),
        opt(s.max_ns, ns),
        opt(s.allocs_per_element, |x| format!("{x:.3}")),
        opt(r.map(|r| r.throughput), |x| format!("{x:.3}x")),
        opt(r.map(|r| r.p99), |x| format!("{x:.2}x")),
    )
}

/// One scenario's block.
pub fn scenario_block(s: &ScenarioResult, reps: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", scenario_header(s, reps));
    let places: Vec<String> = s
        .placement
        .iter()
        .map(|p| format!("{}@{}", p.stage, p.core))
        .collect();
    let _ = writeln!(
        out,
        "placement (stage@core): {}; other processes used {:.1}% of the CPUs, steal {:.1}%{}",
        places.join(" "),
        s.background_cpu * 100.0,
        s.steal_cpu * 100.0,
        if s.attempts > 1 {
            format!(" (quietest of {} attempts)", s.attempts)
        } else {
            String::new()
        }
    );
    let _ = writeln!(out, "{COLUMNS}");
    for sys in &s.systems {
        let _ = writeln!(out, "{}", row(sys));
    }
    out
}

/// The gate figures, one per line.
pub fn gates(g: &Gates) -> String {
    let x = |v: Option<f64>| opt(v, |v| format!("{v:.3}"));
    let mut out = String::new();
    let lines = [
        (
            "chain-1 throughput, engine / limit",
            x(g.chain1_engine_over_limit_throughput),
        ),
        (
            "fanout-2 throughput, engine / limit",
            x(g.fanout2_engine_over_limit_throughput),
        ),
        (
            "chain-1 throughput, engine / crossbeam",
            x(g.chain1_engine_over_crossbeam_throughput),
        ),
        (
            "chain-1 throughput, engine / std-mpsc",
            x(g.chain1_engine_over_mpsc_throughput),
        ),
        (
            "chain-1 throughput, engine / disruptor",
            x(g.chain1_engine_over_disruptor_throughput),
        ),
        (
            "engine throughput, fanout-2 / fanout-1",
            x(g.engine_fanout2_over_fanout1_throughput),
        ),
        (
            "engine allocs/element, chain-* (most)",
            x(g.engine_allocs_per_element_chain),
        ),
        (
            "engine allocs/element, fanout-* (most)",
            x(g.engine_allocs_per_element_fanout),
        ),
        (
            "crossbeam allocs/element, fanout-2",
            x(g.crossbeam_allocs_per_element_fanout2),
        ),
        (
            "engine chain-1-rate p50",
            opt(g.engine_chain1_rate_p50_ns, ns),
        ),
        (
            "engine chain-1-rate p99",
            opt(g.engine_chain1_rate_p99_ns, ns),
        ),
        ("hop floor (ping-pong) p50", opt(g.pingpong_p50_ns, ns)),
    ];
    for (k, v) in lines {
        let _ = writeln!(out, "  {k:<42} {v}");
    }
    out
}

/// The whole report as text.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "dataplane bench, {} on {} ({}, {} usable cores {:?}, kernel {})",
        r.started_at,
        m.hostname,
        m.cpu_model,
        m.usable_cores.len(),
        m.usable_cores,
        m.kernel
    );
    let _ = writeln!(out, "command: {}", r.command);
    let _ = writeln!(
        out,
        "load average at start {:?}, at end {:?}",
        m.load_avg_start, r.load_avg_end
    );
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(out);
    for s in &r.scenarios {
        let _ = writeln!(out, "{}", scenario_block(s, r.settings.reps));
    }
    let _ = writeln!(out, "gates:");
    out.push_str(&gates(&r.gates));
    out
}
