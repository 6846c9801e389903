//! `subscribers`: does serving subscribers slow the pipeline down?
//!
//! One pipeline, run interleaved rep by rep in two ways on the same cores:
//!
//! * **none**: generator -> (discard, mux) with the control endpoint on and
//!   nobody subscribed (the mux consumes and counts);
//! * **subscribed**: the same, with `--subscribers` clients (default 100)
//!   attached to the mux, each with its own predicate, read as fast as the
//!   data comes, plus one client that subscribes and never reads.
//!
//! The pipeline's rate is its elements over the run's elapsed time; the
//! ratio (subscribed / none) is the median of per-rep ratios. The clients
//! stand in for remote consumers: on a machine whose cores the workers
//! take, all 100 are read by one thread at idle priority (`SCHED_IDLE`;
//! the endpoint's own thread runs at nice 19 then), so what is measured is
//! the engine's cost (a slot reference per element for the mux, the
//! endpoint's share of
//! the CPU), not two cores shared with 100 reader threads. What the readers
//! received and what subscribers lost is printed alongside.
//!
//! ```sh
//! cargo run --release -p bench --bin subscribers -- --count 8000000 --reps 5
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use dataplane::control::{client, Control, ControlSettings};
use dataplane::operators::{Discard, Generator, Mux};
use dataplane::{PipelineBuilder, Settings, Stage};

// The allocator the `dataplane` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "subscribers",
    about = "Pipeline rate with mux subscribers (one stuck) over the rate with none"
)]
struct Args {
    /// Elements per run.
    #[arg(long, value_name = "N", default_value_t = 8_000_000)]
    count: u64,
    /// Repetitions (each runs both ways); medians are reported.
    #[arg(long, value_name = "N", default_value_t = 5)]
    reps: usize,
    /// Subscribers that read (one more never reads).
    #[arg(long, value_name = "N", default_value_t = 100)]
    subscribers: usize,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

/// What the subscribers of one run got.
#[derive(Default)]
struct Received {
    bytes: AtomicU64,
}

/// `SCHED_IDLE`: the stand-in clients run only on CPU time the workers
/// leave.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler with pid 0 changes only this thread's
        // policy; SCHED_IDLE takes priority 0.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        }
    }
}

/// One run; returns (elements per second, lines the readers received,
/// elements subscribers lost as counted by the endpoint).
fn run(args: &Args, subscribed: bool, cores: (usize, usize)) -> Result<(f64, u64, u64), String> {
    let mut b = PipelineBuilder::new();
    b.settings(Settings::default());
    let template = r#"{"seq":{seq},"host":"web-1","msg":"x"}"#;
    let gen = Generator::new(template, Some(args.count))?.size(64);
    b.add_pinned("gen", "generator", Stage::Source(Box::new(gen)), cores.0)
        .add_pinned("out", "discard", Stage::Sink(Box::new(Discard)), cores.1)
        .add_pinned("mux", "mux", Stage::Sink(Box::new(Mux::new())), cores.1)
        .connect(("gen", "output"), ("out", "input"))
        .connect(("gen", "output"), ("mux", "input"));
    let pipeline = b.build().map_err(|e| e.to_string())?;
    let settings = ControlSettings::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    let control = Control::start(&settings, pipeline.live(), &[cores.0, cores.1])
        .map_err(|e| format!("control endpoint: {e}"))?;
    let addr = control.local_addr();
    let received = Arc::new(Received::default());
    let done = Arc::new(AtomicBool::new(false));
    let mut reader = None;
    let mut stuck = None;
    if subscribed {
        let mut streams = Vec::with_capacity(args.subscribers);
        for s in 0..args.subscribers {
            // Different predicates: a head or a tail of the sequence.
            let at = args.count * s as u64 / args.subscribers as u64;
            let predicate = if s % 2 == 0 {
                format!(r#"{{"field":"seq","ge":{at}}}"#)
            } else {
                format!(r#"{{"field":"seq","lt":{at}}}"#)
            };
            let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            let target = format!("/subscribe?node=mux&where={}", client::encode(&predicate));
            c.write_all(format!("GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
                .map_err(|e| e.to_string())?;
            c.set_nonblocking(true).map_err(|e| e.to_string())?;
            streams.push(c);
        }
        // One thread reads every subscriber's socket as fast as the data
        // comes (the clients would be on other machines; here they must not
        // take the workers' cores: one thread at idle priority).
        let (received, done) = (Arc::clone(&received), Arc::clone(&done));
        reader = Some(std::thread::spawn(move || {
            lowest_priority();
            let mut buf = vec![0u8; 1 << 16];
            let mut open = streams.len();
            let mut live = vec![true; streams.len()];
            while open > 0 {
                let mut any = false;
                for (c, alive) in streams.iter_mut().zip(&mut live) {
                    if !*alive {
                        continue;
                    }
                    match c.read(&mut buf) {
                        Ok(0) => {
                            *alive = false;
                            open -= 1;
                        }
                        Ok(n) => {
                            received.bytes.fetch_add(n as u64, Ordering::Relaxed);
                            any = true;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => {
                            *alive = false;
                            open -= 1;
                        }
                    }
                }
                if !any {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }));
        let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        s.write_all(b"GET /subscribe?node=mux HTTP/1.1\r\nHost: bench\r\n\r\n")
            .map_err(|e| e.to_string())?;
        stuck = Some(s);
    }
    let report = pipeline.run();
    drop(stuck);
    let counts = control.stop();
    let lost = counts.get("mux").map_or(0, |c| c.dropped);
    done.store(true, Ordering::Relaxed);
    if let Some(r) = reader {
        let _ = r.join();
    }
    if !report.is_success() {
        return Err(format!("the run failed:\n{report}"));
    }
    let got = report.stage("mux").map_or(0, |s| s.received);
    if got != args.count {
        return Err(format!("the mux received {got} of {}", args.count));
    }
    let rate = args.count as f64 / report.elapsed.as_secs_f64().max(1e-9);
    Ok((rate, received.bytes.load(Ordering::Relaxed), lost))
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
    let (mut none, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut delivered = Vec::new();
    for rep in 1..=args.reps.max(1) {
        let pair = run(&args, false, cores).and_then(|a| Ok((a, run(&args, true, cores)?)));
        match pair {
            Ok(((n, _, _), (w, lines, lost))) => {
                eprintln!(
                    "[subscribers] rep {rep}: none {:.2} M/s, {} subscribers + 1 stuck {:.2} M/s, ratio {:.3} (readers got {:.1} MB, subscribers lost {lost} elements)",
                    n / 1e6,
                    args.subscribers,
                    w / 1e6,
                    w / n,
                    lines as f64 / 1e6
                );
                none.push(n);
                with.push(w);
                ratios.push(w / n);
                delivered.push((lines, lost));
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (n, w, r) = (median(&mut none), median(&mut with), median(&mut ratios));
    println!(
        "pipeline rate with no subscriber {:.2} M/s; with {} subscribers and one stuck {:.2} M/s; ratio (median of {} pairs) {:.3}",
        n / 1e6,
        args.subscribers,
        w / 1e6,
        ratios.len(),
        r
    );
    if let Some(path) = &args.json {
        let v = serde_json::json!({
            "count": args.count,
            "reps": ratios.len(),
            "subscribers": args.subscribers,
            "none_eps_median": n,
            "subscribed_eps_median": w,
            "ratio_median": r,
            "ratios": ratios,
            "received_bytes_and_lost_elements": delivered,
        });
        if let Err(e) = std::fs::write(path, format!("{v:#}\n")) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
