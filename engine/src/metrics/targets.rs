//! Latency targets: what a user promises about a sink's end-to-end latency,
//! checked at the end of the run.
//!
//! ```toml
//! [flow.main.targets]            # every sink of the flow
//! p99 = "50us"
//! max = "10ms"
//!
//! [flow.main.nodes.metric-sink]
//! component = "console"
//! targets = { p50 = "20us" }     # this sink: adds to / overrides the flow's
//! ```
//!
//! A missed target makes `dataplane` exit with status 3, so CI can gate on
//! it. Percentiles are exact to HDR's 3 significant digits.

use std::fmt;

use hdrhistogram::Histogram;

/// Which statistic a target limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Statistic {
    /// A percentile (0..=100), e.g. 99.9.
    Percentile(f64),
    /// The largest value.
    Max,
}

impl Statistic {
    /// Parses `p50`, `p99`, `p99.9`, `p99.99`, `max`.
    pub fn parse(s: &str) -> Option<Statistic> {
        if s == "max" {
            return Some(Statistic::Max);
        }
        let p: f64 = s.strip_prefix('p')?.parse().ok()?;
        (p > 0.0 && p < 100.0).then_some(Statistic::Percentile(p))
    }

    /// The statistic's value in a histogram.
    pub fn measure(self, h: &Histogram<u64>) -> u64 {
        match self {
            Statistic::Percentile(p) => h.value_at_quantile(p / 100.0),
            Statistic::Max => h.max(),
        }
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statistic::Percentile(p) => write!(f, "p{p}"),
            Statistic::Max => f.write_str("max"),
        }
    }
}

/// One limit on one statistic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    /// What is limited.
    pub statistic: Statistic,
    /// The limit in nanoseconds (inclusive).
    pub limit_ns: u64,
}

/// Parses a duration with a unit: `250ns`, `50us`, `1.5ms`, `2s`.
pub fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("'{s}' has no unit (use ns, us, ms or s)"))?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a number followed by a unit"))?;
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        u => return Err(format!("unknown unit '{u}' in '{s}' (use ns, us, ms or s)")),
    };
    Ok((value * scale).round() as u64)
}

/// Parses a `targets` table: statistic -> duration string.
pub fn parse_targets(table: &toml::Table) -> Result<Vec<Target>, Vec<String>> {
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in table {
        let Some(statistic) = Statistic::parse(key) else {
            errors.push(format!(
                "unknown latency statistic '{key}' (use p50, p90, p99, p99.9, ... or max)"
            ));
            continue;
        };
        let limit = match value {
            toml::Value::String(s) => parse_duration_ns(s),
            other => Err(format!(
                "{key} = {other}: give a duration with a unit, like \"50us\""
            )),
        };
        match limit {
            Ok(limit_ns) => targets.push(Target {
                statistic,
                limit_ns,
            }),
            Err(e) => errors.push(format!("{key}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(targets)
    } else {
        Err(errors)
    }
}

/// Merges node targets over flow targets (the node's win per statistic).
pub fn merge(flow: &[Target], node: &[Target]) -> Vec<Target> {
    let mut out: Vec<Target> = flow
        .iter()
        .filter(|f| !node.iter().any(|n| n.statistic == f.statistic))
        .copied()
        .collect();
    out.extend_from_slice(node);
    out
}

/// A target checked against a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The sink.
    pub sink: String,
    /// The target.
    pub target: Target,
    /// The measured value in ns (`None`: the sink received nothing).
    pub measured_ns: Option<u64>,
}

impl Verdict {
    /// Whether the target was met (a sink that received nothing meets it).
    pub fn met(&self) -> bool {
        self.measured_ns.is_none_or(|m| m <= self.target.limit_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("250ns"), Ok(250));
        assert_eq!(parse_duration_ns("50us"), Ok(50_000));
        assert_eq!(parse_duration_ns("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_duration_ns("2s"), Ok(2_000_000_000));
        assert!(parse_duration_ns("50").unwrap_err().contains("no unit"));
        assert!(parse_duration_ns("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
    }

    #[test]
    fn statistics_and_merge() {
        assert_eq!(Statistic::parse("p99.9"), Some(Statistic::Percentile(99.9)));
        assert_eq!(Statistic::parse("max"), Some(Statistic::Max));
        assert_eq!(Statistic::parse("p100"), None);
        assert_eq!(Statistic::parse("avg"), None);
        let t = |s, l| Target {
            statistic: Statistic::parse(s).unwrap(),
            limit_ns: l,
        };
        let merged = merge(&[t("p99", 1), t("max", 2)], &[t("p99", 3)]);
        assert_eq!(merged, vec![t("max", 2), t("p99", 3)]);
        let mut h = crate::metrics::latency_histogram();
        for v in 1..=100 {
            h.record(v * 1000).unwrap();
        }
        let v = Verdict {
            sink: "s".into(),
            target: t("p99", 99_100),
            measured_ns: Some(Statistic::Percentile(99.0).measure(&h)),
        };
        assert!(v.met(), "{v:?}");
    }
}
