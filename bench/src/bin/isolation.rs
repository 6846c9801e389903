//! `isolation`: does a slow branch stall its sibling?
//!
//! Two engine pipelines, run interleaved rep by rep on the same cores:
//!
//! * **alone**: generator -> fast sink;
//! * **with a slow sibling**: the generator's output port also feeds
//!   `rate-limit` (1000 elements/s, delay mode: it holds elements in its
//!   input ring, so upstream sees a full ring) -> discard, over an edge with
//!   `when_full = "drop_newest"` (or the policy given with `--when-full`).
//!
//! The fast branch's throughput is its elements over the time from the
//! first element's ingest to the fast sink's completion; the slow branch's
//! drain afterwards is not counted. The ratio (with sibling / alone) is the
//! median of per-rep ratios. With `--when-full block` the ratio collapses to
//! the limiter's 1000/s, which is what the dropping policies are for.
//!
//! ```sh
//! cargo run --release -p bench --bin isolation -- --count 3000000 --reps 5
//! ```

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bench::measure::now_ns;
use clap::Parser;
use dataplane::operators::Generator;
use dataplane::{Element, PipelineBuilder, Registry, Settings, Sink, Stage, StageError, WhenFull};

#[derive(Parser, Debug)]
#[command(
    name = "isolation",
    about = "Fast-branch throughput with a rate-limited sibling on a dropping edge, over the same branch alone"
)]
struct Args {
    /// Elements per run.
    #[arg(long, value_name = "N", default_value_t = 3_000_000)]
    count: u64,
    /// Repetitions (each runs both pipelines); medians are reported.
    #[arg(long, value_name = "N", default_value_t = 5)]
    reps: usize,
    /// The slow edge's policy: block, drop_newest or drop_oldest.
    #[arg(long, value_name = "POLICY", default_value = "drop_newest")]
    when_full: WhenFull,
    /// The slow branch's rate, elements/s.
    #[arg(long, value_name = "EPS", default_value_t = 1000.0)]
    slow_rate: f64,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

/// When the fast sink saw its first element (its ingest stamp) and when its
/// input completed.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    first_ingest: u64,
    completed: u64,
    received: u64,
}

struct Probe {
    span: Span,
    out: Arc<Mutex<Span>>,
}

impl Sink for Probe {
    #[inline]
    fn push(&mut self, e: &Element<'_>) -> Result<(), StageError> {
        if self.span.received == 0 {
            self.span.first_ingest = e.meta().ingest_ns;
        }
        self.span.received += 1;
        Ok(())
    }

    fn complete(&mut self) -> Result<(), StageError> {
        self.span.completed = now_ns();
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = self.span;
        Ok(())
    }
}

/// One run; returns the fast branch's elements per second.
fn run(args: &Args, sibling: bool, cores: (usize, usize)) -> Result<f64, String> {
    let registry = Registry::builtin();
    let out = Arc::new(Mutex::new(Span::default()));
    let mut b = PipelineBuilder::new();
    b.settings(Settings {
        ring_capacity: 256,
        ..Settings::default()
    });
    let template = r#"{"seq":{seq},"host":"web-1","msg":"x"}"#;
    let gen = Generator::new(template, Some(args.count))?.size(64);
    let probe = Probe {
        span: Span::default(),
        out: Arc::clone(&out),
    };
    b.add_pinned("gen", "generator", Stage::Source(Box::new(gen)), cores.0)
        .add_pinned("fast", "probe", Stage::Sink(Box::new(probe)), cores.1)
        .connect(("gen", "output"), ("fast", "input"));
    if sibling {
        let limit: toml::Table = toml::from_str(&format!(
            "rate = {}\nburst = 1\nmode = \"delay\"",
            args.slow_rate
        ))
        .map_err(|e| e.to_string())?;
        let none = toml::Table::new();
        b.add_pinned(
            "limit",
            "rate-limit",
            registry.build("rate-limit", &limit)?,
            cores.1,
        )
        .add_pinned(
            "slow",
            "discard",
            registry.build("discard", &none)?,
            cores.1,
        )
        .connect_when_full(("gen", "output"), ("limit", "input"), args.when_full)
        .connect(("limit", "output"), ("slow", "input"));
    }
    let report = b.build().map_err(|e| e.to_string())?.run();
    if !report.is_success() {
        return Err(format!("the run failed:\n{report}"));
    }
    let span = *out.lock().unwrap_or_else(|e| e.into_inner());
    if span.received != args.count {
        return Err(format!(
            "the fast branch received {} of {}",
            span.received, args.count
        ));
    }
    let secs = span.completed.saturating_sub(span.first_ingest) as f64 / 1e9;
    Ok(span.received as f64 / secs.max(1e-9))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let args = Args::parse();
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let cores = match ids.as_slice() {
        [a, b, ..] => (a.id, b.id),
        _ => {
            eprintln!("error: needs two usable cores");
            return ExitCode::FAILURE;
        }
    };
    let (mut alone, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 1..=args.reps.max(1) {
        let pair = run(&args, false, cores).and_then(|a| Ok((a, run(&args, true, cores)?)));
        match pair {
            Ok((a, w)) => {
                eprintln!(
                    "[isolation] rep {rep}: alone {:.2} M/s, with slow sibling ({}) {:.2} M/s, ratio {:.3}",
                    a / 1e6,
                    args.when_full,
                    w / 1e6,
                    w / a
                );
                alone.push(a);
                with.push(w);
                ratios.push(w / a);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (a, w, r) = (median(&mut alone), median(&mut with), median(&mut ratios));
    println!(
        "fast branch alone {:.2} M/s; with a {} /s sibling on a {} edge {:.2} M/s; ratio (median of {} pairs) {:.3}",
        a / 1e6,
        args.slow_rate,
        args.when_full,
        w / 1e6,
        ratios.len(),
        r
    );
    if let Some(path) = &args.json {
        let v = serde_json::json!({
            "count": args.count,
            "reps": ratios.len(),
            "when_full": args.when_full.as_str(),
            "slow_rate_eps": args.slow_rate,
            "alone_eps_median": a,
            "with_sibling_eps_median": w,
            "ratio_median": r,
            "ratios": ratios,
        });
        if let Err(e) = std::fs::write(path, format!("{v:#}\n")) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
