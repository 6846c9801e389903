//! `dataplane`: runs a pipeline described in a TOML file.
//!
//! Thin by design: parse arguments, call the library, map the outcome to an
//! exit status (sysexits where one fits). The data the pipeline prints goes
//! to stdout; placement, the summary and logs go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Parser;
use dataplane::topology::config::{load_pipeline, LoadError};
use dataplane::Registry;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit statuses (documented in the README).
mod exit {
    /// The pipeline ran and every stage succeeded.
    pub const OK: u8 = 0;
    /// A stage failed, a worker panicked or arena slots leaked (EX_SOFTWARE).
    pub const SOFTWARE: u8 = 70;
    /// The config file could not be read (EX_NOINPUT).
    pub const NOINPUT: u8 = 66;
    /// The config is invalid (EX_CONFIG).
    pub const CONFIG: u8 = 78;
    /// Stopped by a second signal before the drain finished.
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Parser, Debug)]
#[command(
    name = "dataplane",
    version,
    about = "Run a multi-core dataplane pipeline described in TOML"
)]
struct Args {
    /// Pipeline description (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Run only this flow of the file (default: every flow).
    #[arg(long, value_name = "NAME")]
    flow: Option<String>,
    /// Print no placement or summary (data and errors only).
    #[arg(short, long)]
    quiet: bool,
    /// Log level on stderr: error, warn, info, debug, trace (also via DATAPLANE_LOG).
    #[arg(
        long,
        value_name = "LEVEL",
        env = "DATAPLANE_LOG",
        default_value = "warn"
    )]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::new()
        .parse_filters(&args.log)
        .target(env_logger::Target::Stderr)
        .init();

    let registry = Registry::builtin();
    // Reads the usable cores: must happen here, in the main thread, before
    // any worker is pinned.
    let pipeline = match load_pipeline(&args.config, &registry, args.flow.as_deref()) {
        Ok(p) => p,
        Err(LoadError::Io(msg)) => {
            eprintln!("error: {msg}");
            return ExitCode::from(exit::NOINPUT);
        }
        Err(LoadError::Invalid(errors)) => {
            eprint!("{errors}");
            return ExitCode::from(exit::CONFIG);
        }
    };

    // First SIGINT/SIGTERM: sources stop, everything accepted drains.
    // Second: exit at once.
    let stop = pipeline.stop_flag();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(
            sig,
            exit::INTERRUPTED,
            Arc::clone(&stop),
        )
        .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)));
        if let Err(e) = registered {
            eprintln!("warning: cannot handle signal {sig}: {e}");
        }
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
            args.flow.as_deref().map_or("all flows".to_string(), |f| format!("flow '{f}'")),
            args.config.display(),
            placement.len(),
            workers,
            pipeline.settings().wait.as_str(),
            pipeline.arena_slots(),
            pipeline.settings().slot_size,
        );
        for p in &placement {
            eprintln!(
                "[dataplane]   {:<16} {:<15} {:<9} core {} (worker {})",
                p.stage, p.component, p.role, p.core, p.worker
            );
        }
    }

    let report = pipeline.run();
    if !args.quiet {
        let stopped = if stop.load(Ordering::Relaxed) {
            " (stopped by signal, drained)"
        } else {
            ""
        };
        eprintln!("[dataplane] completed{stopped}");
        eprint!("{report}");
    }
    if report.is_success() {
        ExitCode::from(exit::OK)
    } else {
        if args.quiet {
            eprint!("{report}");
        }
        ExitCode::from(exit::SOFTWARE)
    }
}
