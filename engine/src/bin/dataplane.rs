//! `dataplane`: runs, validates, draws and lists pipelines described in TOML.
//!
//! Thin by design: parse arguments, call the library, map the outcome to an
//! exit status (sysexits where one fits). The data the pipeline prints goes
//! to stdout; placement, the summary and logs go to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};
use dataplane::control::{tap::TapError, Control, ControlSettings};
use dataplane::metrics::{write_histogram_log, write_json_report};
use dataplane::topology::config::{load_plan, LoadError};
use dataplane::topology::graph::{render, GraphFormat};
use dataplane::{Pipeline, Registry};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "dataplane/run.rs"]
mod run;
use run::run;

/// Exit statuses (documented in the README).
mod exit {
    /// The pipeline ran, every stage succeeded, every latency target was met.
    pub const OK: u8 = 0;
    /// `dataplane test`: a test of the config failed.
    pub const TEST_FAILED: u8 = 1;
    /// A latency target was missed (the run itself succeeded).
    pub const TARGET_MISSED: u8 = 3;
    /// The config file could not be read (EX_NOINPUT).
    pub const NOINPUT: u8 = 66;
    /// A stage failed, a worker panicked or arena slots leaked (EX_SOFTWARE).
    pub const SOFTWARE: u8 = 70;
    /// Elements were not delivered: a sink failed to write them, or the
    /// drain deadline passed with stages still running (EX_IOERR).
    pub const IOERR: u8 = 74;
    /// An output file (report, histograms) could not be written (EX_CANTCREAT).
    pub const CANTCREAT: u8 = 73;
    /// The config is invalid (EX_CONFIG).
    pub const CONFIG: u8 = 78;
    /// The control endpoint could not start, or `tap` could not reach it
    /// (EX_UNAVAILABLE).
    pub const UNAVAILABLE: u8 = 69;
    /// `tap` asked for something the endpoint refused (EX_USAGE).
    pub const USAGE: u8 = 64;
    /// `tap` was refused for want of the right token (EX_NOPERM).
    pub const NOPERM: u8 = 77;
    /// Stopped by a second signal before the drain finished.
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Parser, Debug)]
#[command(
    name = "dataplane",
    version,
    about = "Run a multi-core dataplane pipeline described in TOML",
    args_conflicts_with_subcommands = true,
    after_help = "Without a subcommand, `dataplane --config FILE` runs the pipeline (same as `dataplane run`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
    /// Log level on stderr: error, warn, info, debug, trace.
    #[arg(
        long,
        value_name = "LEVEL",
        env = "DATAPLANE_LOG",
        default_value = "warn",
        global = true
    )]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a pipeline (the default).
    Run(RunArgs),
    /// Check a config: every error at once (exit 78), or "valid" and the placement it would use.
    Validate(ConfigArgs),
    /// Print the pipeline as a Graphviz DOT or Mermaid graph.
    Graph {
        #[command(flatten)]
        config: ConfigArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "dot")]
        format: Format,
    },
    /// List the built-in components: role, ports and parameters.
    List {
        /// `text` for a terminal, `markdown` for the README's component reference.
        #[arg(long, value_enum, default_value = "text")]
        format: ListFormat,
    },
    /// Run the config's [[tests]]: payloads in at a node, expectations out, no real source or sink (exit 1 when one fails).
    Test(ConfigArgs),
    /// Print the elements leaving a node's output port of a running pipeline (one JSON line each).
    Tap(TapArgs),
    /// Watch a running pipeline through its control endpoint: rates, drops, queues, latency.
    Top(dataplane::top::Options),
    /// List the checkpoints of a config's `[engine] checkpoint` directory: id, time, size, per-node state.
    Checkpoints(ConfigArgs),
}

#[derive(Args, Debug, Clone)]
struct TapArgs {
    /// The running pipeline's control endpoint (its `[control] listen` or `run --control`).
    #[arg(long, value_name = "ADDR")]
    control: String,
    /// NODE (its first output port), NODE.PORT, or a mux sink's name.
    #[arg(value_name = "NODE[.PORT]")]
    target: String,
    /// Only elements satisfying this predicate (the filter component's tree, as JSON).
    #[arg(long = "where", value_name = "JSON")]
    predicate: Option<String>,
    /// Stop after this many elements.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// File holding the endpoint's bearer token (when it has a `token_file`).
    #[arg(long, value_name = "FILE", env = "DATAPLANE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ListFormat {
    Text,
    Markdown,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Dot,
    Mermaid,
}

#[derive(Args, Debug, Clone)]
struct ConfigArgs {
    /// Pipeline description (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only this flow of the file (default: every flow).
    #[arg(long, value_name = "NAME")]
    flow: Option<String>,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print no placement or summary (data and errors only).
    #[arg(short, long)]
    quiet: bool,
    /// Write the run report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write the HDR histograms as an interval log (V2) to FILE.
    #[arg(long, value_name = "FILE")]
    histograms: Option<PathBuf>,
    /// Serve the control endpoint (health, metrics, subscribers, taps) on ADDR: a bare port binds 127.0.0.1 (overrides `[control] listen`).
    #[arg(long, value_name = "ADDR")]
    control: Option<String>,
    /// With checkpoints on: delete the existing checkpoints and start from the beginning instead of resuming.
    #[arg(long)]
    fresh: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .parse_filters(&cli.log)
        .target(env_logger::Target::Stderr)
        .init();
    let registry = Registry::builtin();
    match cli.command {
        None => run(&registry, cli.run),
        Some(Command::Run(args)) => run(&registry, args),
        // Checking a config opens nothing (no socket): a running instance
        // keeps its ports.
        Some(Command::Validate(args)) => validate(&Registry::builtin(), &args),
        Some(Command::Graph { config, format }) => graph(&Registry::builtin(), &config, format),
        Some(Command::List { format }) => list(&registry, format),
        Some(Command::Checkpoints(args)) => checkpoints(&Registry::builtin(), &args),
        Some(Command::Tap(args)) => tap(&args),
        // Checked as `validate` checks (dry: a network source only proves
        // its address); the tests themselves open no real source or sink.
        Some(Command::Test(args)) => test(&Registry::builtin(), &args),
        Some(Command::Top(opts)) => match dataplane::top::run(&opts) {
            Ok(()) => ExitCode::from(exit::OK),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                        exit::NOINPUT
                    }
                    _ => exit::IOERR,
                })
            }
        },
    }
}

/// Loads and validates, mapping failures to exit statuses. Reads the usable
/// cores: runs in the main thread, before any worker is pinned.
fn load(registry: &Registry, args: &ConfigArgs) -> Result<(Pipeline, PathBuf), ExitCode> {
    let Some(path) = args.config.clone() else {
        eprintln!("error: --config FILE is required (see --help)");
        return Err(ExitCode::from(2));
    };
    match load_plan(&path, registry, args.flow.as_deref()).map(Pipeline::new) {
        Ok(p) => Ok((p, path)),
        Err(LoadError::Io(msg)) => {
            eprintln!("error: {msg}");
            Err(ExitCode::from(exit::NOINPUT))
        }
        Err(LoadError::Invalid(errors)) => {
            eprint!("{errors}");
            Err(ExitCode::from(exit::CONFIG))
        }
    }
}

/// `dataplane checkpoints`: what a config's checkpoint directory holds.
fn checkpoints(registry: &Registry, args: &ConfigArgs) -> ExitCode {
    let (pipeline, path) = match load(registry, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some(c) = &pipeline.settings().checkpoint else {
        eprintln!(
            "error: {} takes no checkpoints (add [engine] checkpoint = {{ dir = \"state\", interval_ms = 1000 }})",
            path.display()
        );
        return ExitCode::from(exit::CONFIG);
    };
    let listed = match dataplane::checkpoint::list(&c.dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {}: {e}", c.dir.display());
            return ExitCode::from(exit::NOINPUT);
        }
    };
    let shape = pipeline.shape();
    let mut out = String::new();
    if listed.is_empty() {
        out.push_str(&format!("no checkpoints in {}\n", c.dir.display()));
    }
    for l in &listed {
        match &l.snapshot {
            Ok(s) => {
                let when = dataplane::event_time::format_rfc3339(s.unix_ms);
                let fits = if s.shape == shape {
                    ""
                } else {
                    " (another pipeline shape: `run` refuses it without --fresh)"
                };
                out.push_str(&format!(
                    "checkpoint {}  {when}  {} bytes  {}{fits}\n",
                    s.id,
                    l.size,
                    l.path.display()
                ));
                for (name, state) in &s.nodes {
                    out.push_str(&format!("  {name:<24} {} bytes of state\n", state.len()));
                }
            }
            Err(e) => out.push_str(&format!(
                "checkpoint {}  unusable: {e}  {}\n",
                l.id,
                l.path.display()
            )),
        }
    }
    print_out(&out)
}

fn print_placement(p: &Pipeline, prefix: &str) {
    for e in &p.placement() {
        eprintln!(
            "{prefix}   {:<16} {:<15} {:<9} core {} (worker {})",
            e.stage, e.component, e.role, e.core, e.worker
        );
    }
}

/// Writes a command's whole output to stdout. A reader that went away
/// (`dataplane list | head -1`) is not an error: the command has nothing
/// left to say to anyone, so it exits 0 quietly, as Unix tools do.
fn print_out(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(exit::IOERR)
        }
    }
}

fn validate(registry: &Registry, args: &ConfigArgs) -> ExitCode {
    match load(registry, args) {
        Ok((pipeline, path)) => {
            let mut text = format!(
                "{}: valid ({} stages, arena {} x {} B)\n",
                path.display(),
                pipeline.placement().len(),
                pipeline.arena_slots(),
                pipeline.settings().slot_size
            );
            for e in &pipeline.placement() {
                text.push_str(&format!(
                    "  {:<16} {:<15} {:<9} core {} (worker {})\n",
                    e.stage, e.component, e.role, e.core, e.worker
                ));
            }
            print_out(&text)
        }
        Err(code) => code,
    }
}

fn graph(registry: &Registry, args: &ConfigArgs, format: Format) -> ExitCode {
    match load(registry, args) {
        Ok((pipeline, _)) => {
            let format = match format {
                Format::Dot => GraphFormat::Dot,
                Format::Mermaid => GraphFormat::Mermaid,
            };
            print_out(&render(pipeline.plan(), format))
        }
        Err(code) => code,
    }
}

fn list(registry: &Registry, format: ListFormat) -> ExitCode {
    print_out(&match format {
        ListFormat::Text => dataplane::operators::reference::text(registry),
        ListFormat::Markdown => dataplane::operators::reference::markdown(registry),
    })
}

fn tap(args: &TapArgs) -> ExitCode {
    let token = match &args.token_file {
        None => None,
        Some(f) => match std::fs::read_to_string(f) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                eprintln!("error: cannot read token file {}: {e}", f.display());
                return ExitCode::from(exit::NOINPUT);
            }
        },
    };
    let request = dataplane::control::tap::TapRequest {
        control: args.control.clone(),
        target: args.target.clone(),
        predicate: args.predicate.clone(),
        limit: args.limit,
        token,
    };
    let mut out = std::io::stdout().lock();
    match dataplane::control::tap::run(&request, &mut out) {
        Ok(_) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                TapError::Unreachable(_) | TapError::Unavailable(_) => exit::UNAVAILABLE,
                TapError::Refused(_) => exit::USAGE,
                TapError::Unauthorized(_) => exit::NOPERM,
                TapError::Cut(_) => exit::IOERR,
                TapError::Output(_) => exit::IOERR,
            })
        }
    }
}

fn test(registry: &Registry, args: &ConfigArgs) -> ExitCode {
    let Some(path) = &args.config else {
        eprintln!("error: --config FILE is required (see --help)");
        return ExitCode::from(2);
    };
    let suite = match dataplane::testing::load_file(path, registry, args.flow.as_deref()) {
        Ok(suite) => suite,
        Err(LoadError::Io(msg)) => {
            eprintln!("error: {msg}");
            return ExitCode::from(exit::NOINPUT);
        }
        Err(LoadError::Invalid(errors)) => {
            eprint!("{errors}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let n = suite.len();
    if n == 0 {
        eprintln!("warning: {} has no [[tests]] blocks", path.display());
    }
    let mut out = std::io::stdout().lock();
    // A reader that went away is not a test failure: the tally decides.
    let _ = writeln!(
        out,
        "running {n} test{} from {}",
        if n == 1 { "" } else { "s" },
        path.display()
    );
    let summary = suite.run(registry, |result| {
        let _ = write!(out, "{result}");
        let _ = out.flush();
    });
    let _ = writeln!(out, "\n{summary}");
    let _ = out.flush();
    ExitCode::from(if summary.failed > 0 {
        exit::TEST_FAILED
    } else {
        exit::OK
    })
}
