//! `dataplane run`: load, open, run, report; signals, the control
//! endpoint, and replays from checkpoints under a restart policy.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

/// The running pipeline's stop flag and arena, for the signal handler
/// (replaced by each run of a replayed pipeline).
type Current = Arc<std::sync::Mutex<Option<(Arc<AtomicBool>, dataplane::InFlight)>>>;

/// How one run of `dataplane run` ended.
enum Outcome {
    /// Exit with this status.
    Exit(ExitCode),
    /// A stage of a checkpointed pipeline failed and its restart policy
    /// asks for a replay from the last checkpoint after this backoff.
    Replay(Duration),
}

pub(crate) fn run(registry: &Registry, args: RunArgs) -> ExitCode {
    // First SIGINT/SIGTERM: sources stop, everything accepted drains (up to
    // `drain_timeout_ms`). Second: exit at once, saying what was in flight.
    let current: Current = Arc::default();
    let signalled = Arc::new(AtomicBool::new(false));
    match Signals::new([SIGINT, SIGTERM]) {
        Ok(mut signals) => {
            let (current, signalled) = (Arc::clone(&current), Arc::clone(&signalled));
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    let now = current.lock().ok().and_then(|c| c.clone());
                    if signalled.swap(true, Ordering::SeqCst) {
                        eprintln!(
                            "[dataplane] interrupted by a second signal before the drain finished: about {} elements undelivered (arena slots still held)",
                            now.and_then(|(_, f)| f.held_slots()).unwrap_or(0)
                        );
                        std::process::exit(exit::INTERRUPTED);
                    }
                    if let Some((stop, _)) = now {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
        Err(e) => eprintln!("warning: cannot handle SIGINT/SIGTERM: {e}"),
    }
    let mut fresh = args.fresh;
    loop {
        match run_once(registry, &args, fresh, &current, &signalled) {
            Outcome::Exit(code) => return code,
            Outcome::Replay(after) => {
                fresh = false;
                std::thread::sleep(after);
                if signalled.load(Ordering::SeqCst) {
                    eprintln!("[dataplane] stopped by signal before the replay");
                    return ExitCode::from(exit::INTERRUPTED as u8);
                }
            }
        }
    }
}

/// One run of the pipeline: load, resume from a checkpoint, run, report.
fn run_once(
    registry: &Registry,
    args: &RunArgs,
    fresh: bool,
    current: &Current,
    signalled: &AtomicBool,
) -> Outcome {
    let (mut pipeline, path) = match load(registry, &args.config) {
        Ok(p) => p,
        Err(code) => return Outcome::Exit(code),
    };
    match pipeline.resume(fresh) {
        Ok(Some(id)) if !args.quiet => {
            let dir = pipeline
                .settings()
                .checkpoint
                .as_ref()
                .map(|c| c.dir.clone());
            eprintln!(
                "[dataplane] resuming from checkpoint {id} in {}",
                dir.unwrap_or_default().display()
            );
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Exit(ExitCode::from(exit::CONFIG));
        }
    }

    // Sockets are bound now, on this thread: an address in use is a
    // config error naming the node, and nothing runs.
    if let Err(errors) = pipeline.open() {
        eprint!("{errors}");
        return Outcome::Exit(ExitCode::from(exit::CONFIG));
    }

    let stop = pipeline.stop_flag();
    if let Ok(mut c) = current.lock() {
        *c = Some((Arc::clone(&stop), pipeline.in_flight()));
    }
    if signalled.load(Ordering::SeqCst) {
        stop.store(true, Ordering::SeqCst);
    }

    if !args.quiet {
        let placement = pipeline.placement();
        let workers = placement
            .iter()
            .map(|p| p.worker)
            .max()
            .map_or(0, |w| w + 1);
        eprintln!(
            "[dataplane] running {} from {}: {} stages on {} workers, wait strategy {}, arena {} x {} B",
            args.config
                .flow
                .as_deref()
                .map_or("all flows".to_string(), |f| format!("flow '{f}'")),
            path.display(),
            placement.len(),
            workers,
            pipeline.settings().wait.as_str(),
            pipeline.arena_slots(),
            pipeline.settings().slot_size,
        );
        print_placement(&pipeline, "[dataplane]");
    }

    let mut control_settings = pipeline.settings().control.clone();
    if let Some(addr) = &args.control {
        match dataplane::control::parse_listen(addr) {
            Ok(listen) => {
                let mut c = control_settings.unwrap_or(ControlSettings::new(listen));
                c.listen = listen;
                control_settings = Some(c);
            }
            Err(e) => {
                eprintln!("error: --control: {e}");
                return Outcome::Exit(ExitCode::from(2));
            }
        }
    }
    let control = match &control_settings {
        None => None,
        Some(c) => {
            let pinned: Vec<usize> = if pipeline.settings().pin {
                pipeline.placement().iter().map(|p| p.core).collect()
            } else {
                Vec::new()
            };
            match Control::start(c, pipeline.live(), &pinned) {
                Ok(control) => {
                    if !args.quiet {
                        eprintln!(
                            "[dataplane] control endpoint on http://{} (/health /metrics /stats /subscribe /tap)",
                            control.local_addr()
                        );
                    }
                    Some(control)
                }
                Err(e) => {
                    eprintln!("error: control endpoint: {e}");
                    return Outcome::Exit(ExitCode::from(exit::UNAVAILABLE));
                }
            }
        }
    };

    let started = SystemTime::now();
    let report = pipeline.run();
    // Subscribers get the end of what the run produced, then their end.
    if let Some(control) = control {
        let subscribers = control.stop();
        if !args.quiet {
            for (node, c) in subscribers.iter().filter(|(_, c)| c.sent + c.dropped > 0) {
                eprintln!(
                    "[dataplane] subscribers of {node}: {} elements sent, {} lost (slow or stopped clients)",
                    c.sent, c.dropped
                );
            }
        }
    }
    if !args.quiet {
        let failed_stage = report.stages.iter().any(|s| s.failure.is_some());
        let stopped = match (&report.drain, stop.load(Ordering::Relaxed)) {
            (Some(_), _) => " (drain deadline passed)",
            // A stage that fails for good raises the stop flag too.
            (None, true) if failed_stage => " (stopped: a stage failed, drained)",
            (None, true) => " (stopped by signal, drained)",
            (None, false) => "",
        };
        eprintln!("[dataplane] completed{stopped}");
        eprint!("{report}");
    }
    if let Some(r) = &report.replay {
        if !signalled.load(Ordering::SeqCst) {
            eprintln!(
                "[dataplane] stage '{}' failed ({}); its restart policy replays the pipeline from its last checkpoint in {} ms",
                r.stage, r.reason, r.after_ms
            );
            return Outcome::Replay(Duration::from_millis(r.after_ms));
        }
    }
    if report.restarts() > 0 {
        // Restarts lose the element each failure was on; by the policy's
        // choice, so they do not change the exit status.
        eprintln!(
            "[dataplane] {} stage restarts; {} elements lost with the failed stages",
            report.restarts(),
            report.lost_in_restarts()
        );
    }
    let mut code = if let Some(d) = &report.drain {
        if args.quiet {
            eprint!("{report}");
        }
        eprintln!(
            "[dataplane] drain deadline ({} ms) passed; still running: {} (exit status {})",
            d.timeout_ms,
            d.stuck.join(", "),
            exit::IOERR
        );
        exit::IOERR
    } else if !report.panics.is_empty() || report.leaked_slots > 0 {
        if args.quiet {
            eprint!("{report}");
        }
        exit::SOFTWARE
    } else if report.failed() > report.lost_in_restarts() {
        if args.quiet {
            eprint!("{report}");
        }
        eprintln!(
            "[dataplane] {} elements were not delivered by their sinks (exit status {})",
            report.failed() - report.lost_in_restarts(),
            exit::IOERR
        );
        exit::IOERR
    } else if !report.is_success() {
        if args.quiet {
            eprint!("{report}");
        }
        for line in report.stages.iter().filter_map(|s| s.failure_line()) {
            eprintln!("[dataplane] {line} (exit status {})", exit::SOFTWARE);
        }
        exit::SOFTWARE
    } else if !report.targets_met() {
        eprintln!(
            "[dataplane] latency target missed (exit status {})",
            exit::TARGET_MISSED
        );
        exit::TARGET_MISSED
    } else {
        exit::OK
    };
    if let Some(file) = &args.report {
        if let Err(e) = write_file(file, |w| write_json_report(&report, w)) {
            eprintln!("error: cannot write report {}: {e}", file.display());
            code = code.max(exit::CANTCREAT);
        }
    }
    if let Some(file) = &args.histograms {
        if let Err(e) = write_file(file, |w| write_histogram_log(&report, started, w)) {
            eprintln!("error: cannot write histograms {}: {e}", file.display());
            code = code.max(exit::CANTCREAT);
        }
    }
    Outcome::Exit(ExitCode::from(code))
}

fn write_file(
    path: &Path,
    f: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    f(&mut w)?;
    w.flush()
}
