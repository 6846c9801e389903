//! From repetitions to results: per-rep figures, medians, and ratios to the
//! engine measured side by side (the median over reps of the per-rep ratio,
//! which cancels most of a noisy machine's drift: both systems of a rep ran
//! back to back).

use serde::Serialize;

use crate::measure::RunOutcome;

/// Quantiles of the latency curve kept per run (1.0 is the maximum).
pub const CURVE: [f64; 11] = [
    0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    /// Elements created per second.
    pub throughput_eps: f64,
    /// Payload bytes created per second (`None`: no payload moves, as in
    /// the ping-pong).
    pub bytes_per_s: Option<f64>,
    /// Latency percentiles, ns.
    pub p50_ns: f64,
    /// 90th percentile, ns.
    pub p90_ns: f64,
    /// 99th percentile, ns.
    pub p99_ns: f64,
    /// 99.9th percentile, ns.
    pub p999_ns: f64,
    /// Largest latency, ns.
    pub max_ns: f64,
    /// Steady-state heap allocations per created element (`None`: not
    /// measured).
    pub allocs_per_element: Option<f64>,
    /// Elements created.
    pub elements: u64,
    /// Deliveries at all sinks.
    pub delivered: u64,
    /// Latency at each quantile of [`CURVE`], ns.
    pub curve_ns: Vec<f64>,
}

impl Figures {
    /// The figures of `run` for `size`-byte payloads (`None`: no payload).
    pub fn of(run: &RunOutcome, size: Option<usize>) -> Figures {
        let h = &run.latency;
        let q = |q: f64| {
            if h.is_empty() {
                0.0
            } else if q >= 1.0 {
                h.max() as f64
            } else {
                h.value_at_quantile(q) as f64
            }
        };
        let eps = run.throughput();
        Figures {
            throughput_eps: eps,
            bytes_per_s: size.map(|b| eps * b as f64),
            p50_ns: q(0.5),
            p90_ns: q(0.9),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: q(1.0),
            allocs_per_element: run.allocs_per_element,
            elements: run.elements,
            delivered: run.delivered,
            curve_ns: CURVE.iter().map(|&x| q(x)).collect(),
        }
    }

    fn metrics(&self) -> [f64; 6] {
        [
            self.throughput_eps,
            self.p50_ns,
            self.p90_ns,
            self.p99_ns,
            self.p999_ns,
            self.max_ns,
        ]
    }
}

/// A system's figures divided by the engine's (per rep, then the median):
/// throughput above 1 means faster than the engine; latency above 1 means
/// slower.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Ratios {
    /// Throughput ratio, system / engine.
    pub throughput: f64,
    /// p50 ratio, system / engine.
    pub p50: f64,
    /// p90 ratio.
    pub p90: f64,
    /// p99 ratio.
    pub p99: f64,
    /// p99.9 ratio.
    pub p999: f64,
    /// Max ratio.
    pub max: f64,
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Field-wise medians of `reps`.
pub fn median_figures(reps: &[Figures]) -> Option<Figures> {
    let first = reps.first()?;
    let col = |f: &dyn Fn(&Figures) -> f64| median(&reps.iter().map(f).collect::<Vec<_>>());
    let allocs: Vec<f64> = reps.iter().filter_map(|r| r.allocs_per_element).collect();
    Some(Figures {
        throughput_eps: col(&|r| r.throughput_eps),
        bytes_per_s: reps
            .iter()
            .map(|r| r.bytes_per_s)
            .collect::<Option<Vec<f64>>>()
            .map(|v| median(&v)),
        p50_ns: col(&|r| r.p50_ns),
        p90_ns: col(&|r| r.p90_ns),
        p99_ns: col(&|r| r.p99_ns),
        p999_ns: col(&|r| r.p999_ns),
        max_ns: col(&|r| r.max_ns),
        allocs_per_element: (!allocs.is_empty()).then(|| median(&allocs)),
        elements: first.elements,
        delivered: first.delivered,
        curve_ns: (0..first.curve_ns.len())
            .map(|i| col(&|r| r.curve_ns.get(i).copied().unwrap_or(f64::NAN)))
            .collect(),
    })
}

/// Median per-rep ratios of `system` to `engine` (reps paired by index;
/// a rep missing on either side is left out).
pub fn ratios(system: &[Option<Figures>], engine: &[Option<Figures>]) -> Option<Ratios> {
    let pairs: Vec<[f64; 6]> = system
        .iter()
        .zip(engine)
        .filter_map(|(s, e)| {
            let (s, e) = (s.as_ref()?, e.as_ref()?);
            let (s, e) = (s.metrics(), e.metrics());
            Some(std::array::from_fn(|i| s[i] / e[i]))
        })
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let m = |i: usize| median(&pairs.iter().map(|p| p[i]).collect::<Vec<_>>());
    Some(Ratios {
        throughput: m(0),
        p50: m(1),
        p90: m(2),
        p99: m(3),
        p999: m(4),
        max: m(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
