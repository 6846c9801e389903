//! `latency`: runs named scenarios through the engine and the baselines, in
//! this process, on the same workload and cores, and reports throughput,
//! end-to-end latency percentiles, allocations per element and ratios to
//! the engine (table on stdout, progress on stderr, `--json`, `--svg`).

use std::path::PathBuf;
use std::process::ExitCode;

use bench::machine::{self, CpuSample, Machine};
use bench::output::{self, Gates, Report, RunSettings, ScenarioResult, StagePlace, SystemResult};
use bench::scenario::{self, Graph, Load, Scenario, Workload};
use bench::summary::{self, Figures};
use bench::systems::{self, engine, Placement, Plan, System};
use clap::Parser;

/// Attempts per scenario under `--max-background`.
const MAX_ATTEMPTS: usize = 3;
/// How long `--max-background` waits for a quiet machine before a scenario.
const QUIET_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

#[global_allocator]
static GLOBAL: bench::alloc::Counting = bench::alloc::Counting;

#[derive(Parser, Debug)]
#[command(
    name = "latency",
    about = "Throughput, end-to-end latency and allocations of the dataplane engine against crossbeam-channel, std mpsc, the disruptor crate and a core-to-core ping-pong",
    after_help = "Scenarios: chain-N (gen -> N-1 forward -> sink), fanout-N (gen -> broadcast router -> N sinks), \
fanin-2 (2 gens -> one sink), diamond (gen -> router -> 2 forward -> sink); -1k: 1024 B payloads; \
-rate: fixed offered rate. See --list. Results are medians over --reps; ratios are medians of per-rep ratios \
(system / engine), each rep running every system back to back."
)]
struct Args {
    /// Run only this scenario (repeatable; default: all). See --list.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Run only this system (repeatable; default: all): engine, crossbeam, std-mpsc, disruptor, pingpong.
    /// The engine always runs (ratios refer to it).
    #[arg(long = "system", value_name = "NAME")]
    systems: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Elements per saturating run [default: 1000000; 100000 with --quick].
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Payload bytes for scenarios without a fixed size (the -1k ones use 1024).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    size: usize,
    /// Offered rate of the -rate scenarios, elements/s.
    #[arg(long, value_name = "EPS", default_value_t = 100_000.0)]
    rate: f64,
    /// Duration of each -rate run, seconds [default: 1; 0.2 with --quick].
    #[arg(long, value_name = "SECS")]
    rate_secs: Option<f64>,
    /// Repetitions of each scenario and system; medians are reported [default: 3; 1 with --quick].
    #[arg(long, value_name = "N")]
    reps: Option<usize>,
    /// Ring / channel capacity per edge, elements.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    capacity: usize,
    /// Write the results as JSON to FILE (schema in bench/README.md).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the latency-percentile plot as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// A short run (for CI): fewer elements, shorter rate runs, one rep.
    #[arg(long)]
    quick: bool,
    /// On a shared machine: before each scenario wait (up to 60 s) until other processes use at
    /// most this share of the CPUs, e.g. 0.05, and re-run it (up to 3 attempts, keeping the
    /// quietest) while they used more during it.
    #[arg(long, value_name = "SHARE")]
    max_background: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for s in scenario::ALL {
            let size = s
                .size
                .map_or(format!("--size ({} B)", args.size), |b| format!("{b} B"));
            let load = match s.load {
                Load::Saturating => "saturating".to_string(),
                Load::Rate => format!("--rate ({} elements/s)", args.rate),
                Load::HalfOf(base) => {
                    format!("half the engine's saturated rate on {base}, same run")
                }
            };
            println!("{:<14} {}; {size}; {load}", s.name, s.topology);
        }
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let count = args
        .count
        .unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
    let rate_secs = args.rate_secs.unwrap_or(if args.quick { 0.2 } else { 1.0 });
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(format!("--rate must be positive, not {}", args.rate));
    }
    if args.size == 0 || args.capacity == 0 || count == 0 {
        return Err("--size, --capacity and --count must be at least 1".to_string());
    }
    let selected: Vec<Scenario> = if args.scenarios.is_empty() {
        scenario::ALL.to_vec()
    } else {
        args.scenarios
            .iter()
            .map(|n| {
                scenario::find(n).ok_or_else(|| format!("unknown scenario '{n}' (see --list)"))
            })
            .collect::<Result<_, _>>()?
    };
    let mut systems_on: Vec<System> = vec![System::Engine];
    for n in &args.systems {
        let s = System::parse(n).ok_or_else(|| {
            let names: Vec<&str> = System::ALL.iter().map(|s| s.name()).collect();
            format!("unknown system '{n}' (known: {})", names.join(", "))
        })?;
        if !systems_on.contains(&s) {
            systems_on.push(s);
        }
    }
    if args.systems.is_empty() {
        systems_on = System::ALL.to_vec();
    }

    // Read the usable cores once, here, before any thread is pinned: a
    // thread spawned by a pinned thread inherits its mask.
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.is_empty() {
        return Err("cannot read this process's usable cores".to_string());
    }
    let started_unix = machine::unix_now();
    let machine = Machine::detect(cores.iter().map(|c| c.id).collect());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let settings = RunSettings {
        count,
        size: args.size,
        rate_eps: args.rate,
        rate_secs,
        reps,
        ring_capacity: args.capacity,
        engine_batch: dataplane::Settings::default().batch,
        engine_wait: dataplane::Settings::default().wait.as_str().to_string(),
        allocator: "mimalloc behind a counting wrapper (per-thread shards)".to_string(),
        quick: args.quick,
    };
    let notes = vec![
        "throughput = elements created / (last delivery - first element's stamp); start-up and shutdown are outside the window".to_string(),
        "latency = sink time - stamp taken at creation (intended send time under a fixed rate: coordinated-omission safe), HDR histogram, all sinks merged".to_string(),
        "allocs/el = heap allocations (all threads) between 20% and 90% of the first sink's deliveries / elements created in between".to_string(),
        "engine: PipelineBuilder, built-in Generator/Forward, a PortMask::all broadcast router, a counting sink; default settings (wait park, batch 64), arena slot = payload size rounded up to a power of two (min 64 B)".to_string(),
        "timely 0.32: Config::process(2), worker 0 pinned to the source's core produces [u8; 64] + stamp records in batches of 1024 (send_batch, advance_to, at most 4 epochs in flight by a probe), exchange(|_| 1) to worker 1 pinned to the first sink's core, which runs one inspect sink per sink; chain-1 and fanout-N, 64 B, saturating".to_string(),
        "crossbeam / std-mpsc: one thread per stage, each pinned to the core the engine gives that stage; bounded channels of the same capacity; Vec<u8> per element, cloned per extra fan-out branch; blocking send/recv".to_string(),
        "disruptor 4.4: single producer, preallocated events reused, BusySpinWithSpinLoopHint consumer; only chain-1 runs (others need more busy threads than cores)".to_string(),
        "pingpong: two threads bounce one cache line; half a round trip per sample (includes one clock read); throughput = one-way hops/s, unpipelined".to_string(),
        "background_cpu per scenario: CPU time of other processes / (wall time x CPUs) while it ran; a busy neighbour (a build) skews everything".to_string(),
        "fixed-rate sources: the engine's Generator::rate (its worker spins, yields, then parks between due times); baseline sources sleep while a deadline is over 200 us away, then yield until it; both stamp the intended send time".to_string(),
    ];
    eprintln!(
        "[bench] {} scenario(s) x {} system(s) x {reps} rep(s); {count} elements per saturating run; load {:?}",
        selected.len(),
        systems_on.len(),
        machine.load_avg_start
    );

    let mut results = Vec::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let quiet = |limit: f64| {
        let share = machine::wait_quiet(limit, cpus, QUIET_WAIT);
        if share > limit {
            eprintln!(
                "[bench] still {:.0}% busy with other processes after {} s; running anyway",
                share * 100.0,
                QUIET_WAIT.as_secs()
            );
        }
    };
    for sc in &selected {
        if let Some(limit) = args.max_background {
            quiet(limit);
        }
        let half = match sc.load {
            Load::HalfOf(base) => Some(0.5 * saturated_rate(base, &results, &args, count, &cores)?),
            _ => None,
        };
        let mut result =
            run_scenario(sc, &args, count, rate_secs, reps, &cores, &systems_on, half)?;
        if let Some(limit) = args.max_background {
            for attempt in 2..=MAX_ATTEMPTS {
                if result.background_cpu <= limit {
                    break;
                }
                eprintln!(
                    "[bench] {}: other processes used {:.1}% of the CPUs; attempt {attempt}/{MAX_ATTEMPTS}",
                    sc.name,
                    result.background_cpu * 100.0
                );
                quiet(limit);
                let again =
                    run_scenario(sc, &args, count, rate_secs, reps, &cores, &systems_on, half)?;
                if again.background_cpu <= result.background_cpu {
                    result = ScenarioResult {
                        attempts: attempt,
                        ..again
                    };
                } else {
                    result.attempts = attempt;
                }
            }
        }
        print!("{}", output::table::scenario_block(&result, reps));
        println!();
        results.push(result);
    }
    let gates = Gates::from(&results);
    println!("gates:");
    print!("{}", output::table::gates(&gates));

    let report = Report {
        schema: output::SCHEMA,
        started_at: machine::iso8601(started_unix),
        started_unix,
        command,
        machine,
        load_avg_end: machine::load_avg(),
        settings,
        notes,
        scenarios: results,
        gates,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("[bench] wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, output::svg::render(&report))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("[bench] wrote {}", path.display());
    }
    let failed = report
        .scenarios
        .iter()
        .flat_map(|s| &s.systems)
        .any(|s| s.status == "failed");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The engine's saturated throughput on scenario `base`: from this run's
/// results if it ran, else measured now (one rep, engine only).
fn saturated_rate(
    base: &str,
    results: &[ScenarioResult],
    args: &Args,
    count: u64,
    cores: &[core_affinity::CoreId],
) -> Result<f64, String> {
    let measured = |r: &ScenarioResult| {
        r.systems
            .iter()
            .find(|s| s.system == "engine")
            .and_then(|s| s.throughput_eps)
    };
    if let Some(eps) = results.iter().filter(|r| r.name == base).find_map(measured) {
        return Ok(eps);
    }
    let sc = scenario::find(base).ok_or_else(|| format!("unknown base scenario '{base}'"))?;
    eprintln!("[bench] measuring the engine's saturated rate on {base} for the half-rate run");
    let r = run_scenario(&sc, args, count, 1.0, 1, cores, &[System::Engine], None)?;
    measured(&r).ok_or_else(|| format!("the engine did not finish {base}"))
}

#[allow(clippy::too_many_arguments)]
fn run_scenario(
    sc: &Scenario,
    args: &Args,
    count: u64,
    rate_secs: f64,
    reps: usize,
    cores: &[core_affinity::CoreId],
    systems_on: &[System],
    half_rate: Option<f64>,
) -> Result<ScenarioResult, String> {
    let size = sc.payload(args.size);
    let (count, rate) = match (sc.load, half_rate) {
        (Load::Saturating, _) => (count, None),
        (Load::Rate, _) => (((args.rate * rate_secs) as u64).max(1), Some(args.rate)),
        (Load::HalfOf(_), Some(r)) => (((r * rate_secs) as u64).max(1), Some(r)),
        (Load::HalfOf(base), None) => {
            return Err(format!("{}: no saturated rate measured on {base}", sc.name))
        }
    };
    let workload = Workload {
        topology: sc.topology,
        size,
        count,
        rate,
        capacity: args.capacity,
    };
    let graph = Graph::of(&workload);
    let node_cores = engine::placement(&workload, &graph)
        .map_err(|e| format!("{}: cannot build the engine pipeline: {e}", sc.name))?;
    let placement = Placement {
        cores: cores.to_vec(),
        node_cores,
    };

    struct Entry {
        system: System,
        plan: Plan,
        reps: Vec<Option<Figures>>,
        errors: Vec<String>,
    }
    let mut entries: Vec<Entry> = systems_on
        .iter()
        .map(|&system| Entry {
            system,
            plan: systems::plan(system, sc, &workload, &graph, &placement),
            reps: Vec::new(),
            errors: Vec::new(),
        })
        .collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let before = CpuSample::now();
    for rep in 0..reps {
        for e in entries.iter_mut() {
            if !matches!(e.plan, Plan::Run { .. }) {
                continue;
            }
            match systems::run(e.system, &workload, &graph, &placement) {
                Ok(outcome) => {
                    let payload = (e.system != System::PingPong).then_some(size);
                    let f = Figures::of(&outcome, payload);
                    eprintln!(
                        "[bench] {:<14} {:<10} rep {}/{reps}: {:>9}/s  p50 {:>9}  p99 {:>9}  allocs/el {}",
                        sc.name,
                        e.system.name(),
                        rep + 1,
                        output::table::si(f.throughput_eps),
                        output::table::ns(f.p50_ns),
                        output::table::ns(f.p99_ns),
                        f.allocs_per_element
                            .map_or("-".to_string(), |a| format!("{a:.3}"))
                    );
                    e.reps.push(Some(f));
                }
                Err(err) => {
                    eprintln!(
                        "[bench] {:<14} {:<10} rep {}/{reps}: FAILED: {err}",
                        sc.name,
                        e.system.name(),
                        rep + 1
                    );
                    e.reps.push(None);
                    e.errors.push(err);
                }
            }
        }
    }
    let (background_cpu, steal_cpu) = before.background(&CpuSample::now(), cpus);
    let engine_reps: Vec<Option<Figures>> = entries
        .iter()
        .find(|e| e.system == System::Engine)
        .map(|e| e.reps.clone())
        .unwrap_or_default();
    let systems = entries
        .iter()
        .filter_map(|e| match &e.plan {
            Plan::Absent => None,
            Plan::Skip(reason) => Some(SystemResult::skipped(e.system.name(), reason.clone())),
            Plan::Run { threads, threading } => {
                let ok: Vec<Figures> = e.reps.iter().flatten().cloned().collect();
                let ratio = summary::ratios(&e.reps, &engine_reps);
                Some(SystemResult::measured(
                    e.system.name(),
                    *threads,
                    threading.clone(),
                    &e.reps,
                    summary::median_figures(&ok),
                    ratio,
                    &e.errors,
                ))
            }
        })
        .collect();
    Ok(ScenarioResult {
        name: sc.name.to_string(),
        shape: sc.topology.to_string(),
        load: match sc.load {
            Load::Saturating => "saturating",
            Load::Rate => "rate",
            Load::HalfOf(_) => "half-rate",
        }
        .to_string(),
        payload_bytes: size,
        offered_rate_eps: rate,
        elements: count,
        placement: graph
            .nodes
            .iter()
            .zip(&placement.node_cores)
            .map(|(n, c)| StagePlace {
                stage: n.name.clone(),
                core: c.id,
            })
            .collect(),
        background_cpu,
        steal_cpu,
        attempts: 1,
        systems,
    })
}
