//! `checkpoints`: what do checkpoints every second cost the pipeline?
//!
//! One pipeline, run interleaved rep by rep in two ways on the same cores:
//!
//! * **off**: generator -> sample (1 in 2) -> discard, no checkpoints (its
//!   nodes read their rings without looking for control elements);
//! * **on**: the same with `[engine] checkpoint = { interval_ms = 1000 }`:
//!   every node looks for control elements, the sources send barriers,
//!   each stage snapshots its state, and the coordinator writes a
//!   checkpoint file (fsync, rename) each second.
//!
//! The rate is elements over the run's elapsed time; the ratio (on / off)
//! is the median of per-rep ratios, the two runs of a rep in alternating
//! order.
//!
//! ```sh
//! cargo run --release -p bench --bin checkpoints -- --count 20000000 --reps 5
//! ```

use std::process::ExitCode;

use clap::Parser;
use dataplane::topology::config::load_str;
use dataplane::Registry;

// The allocator the `dataplane` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "checkpoints",
    about = "Pipeline rate with checkpoints every second over the rate without"
)]
struct Args {
    /// Elements per run.
    #[arg(long, value_name = "N", default_value_t = 20_000_000)]
    count: u64,
    /// Repetitions (each runs both ways); medians are reported.
    #[arg(long, value_name = "N", default_value_t = 5)]
    reps: usize,
    /// Checkpoint interval of the "on" runs.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    interval_ms: u64,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

fn pipeline(count: u64, checkpoint: Option<(&std::path::Path, u64)>) -> String {
    let engine = match checkpoint {
        Some((dir, ms)) => format!(
            "[engine]\ncheckpoint = {{ dir = \"{}\", interval_ms = {ms} }}\n",
            dir.display()
        ),
        None => String::new(),
    };
    format!(
        r#"{engine}
[flow.f.nodes.gen]
component = "generator"
template = '{{"seq":{{seq}},"k":"{{pick:a|b|c}}"}}'
count = {count}

[flow.f.nodes.half]
component = "sample"
every = 2

[flow.f.nodes.sink]
component = "discard"

[[flow.f.edges]]
from = {{ node = "gen" }}
to = {{ node = "half" }}

[[flow.f.edges]]
from = {{ node = "half" }}
to = {{ node = "sink" }}
"#
    )
}

/// One run: (elements per second, checkpoints completed).
fn run(text: &str) -> Result<(f64, u64), String> {
    let registry = Registry::builtin();
    let mut pipeline = load_str(text, "bench", &registry, None)
        .build()
        .map_err(|e| e.to_string())?;
    pipeline.resume(true)?;
    let report = pipeline.run();
    if !report.is_success() {
        return Err(format!("the run failed:\n{report}"));
    }
    let completed = report.checkpoints.as_ref().map_or(0, |c| c.completed);
    Ok((report.throughput(), completed))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!(
        "dataplane-bench-checkpoints-{}",
        std::process::id()
    ));
    let off = pipeline(args.count, None);
    let on = pipeline(args.count, Some((&dir, args.interval_ms)));
    let (mut offs, mut ons, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut checkpoints = Vec::new();
    for rep in 0..args.reps {
        // Alternate which goes first, so that neither always runs on a
        // machine warmed (or disturbed) by the other.
        let pair = if rep % 2 == 0 {
            run(&off).and_then(|a| Ok((a, run(&on)?)))
        } else {
            run(&on).and_then(|b| Ok((run(&off)?, b)))
        };
        let ((a, _), (b, n)) = match pair {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "rep {rep}: off {:.2} M/s, on {:.2} M/s ({n} checkpoints), ratio {:.3}",
            a / 1e6,
            b / 1e6,
            b / a
        );
        offs.push(a);
        ons.push(b);
        ratios.push(b / a);
        checkpoints.push(n);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (m_off, m_on, m_ratio) = (median(&mut offs), median(&mut ons), median(&mut ratios));
    println!(
        "median: off {:.2} M/s, on {:.2} M/s, ratio on/off {m_ratio:.3} ({} reps, {} elements, checkpoint every {} ms)",
        m_off / 1e6,
        m_on / 1e6,
        args.reps,
        args.count,
        args.interval_ms
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "count": args.count,
            "reps": args.reps,
            "interval_ms": args.interval_ms,
            "off_eps_median": m_off,
            "on_eps_median": m_on,
            "ratio_median": m_ratio,
            "ratios": ratios,
            "checkpoints": checkpoints,
        });
        if let Err(e) = std::fs::write(
            path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ) {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
