//! `hotpath`: a deterministic, single-threaded element path for counting
//! instructions per element under callgrind.
//!
//! Each element is allocated in the arena, filled, routed by its JSON
//! `type` field (one of three values: two go to one port each, the third is
//! broadcast to both) and released. Nothing in the measured part depends on
//! timing, so the instruction count is a function of `--count` only:
//!
//! ```sh
//! valgrind --tool=callgrind --callgrind-out-file=a target/release/hotpath --count 96000
//! valgrind --tool=callgrind --callgrind-out-file=b target/release/hotpath --count 192000
//! # instructions per element = (Ir(b) - Ir(a)) / 96000
//! ```
//!
//! `--mode engine` (the default) runs the real engine on one worker
//! (`engine.cores = [first usable core]`): generator -> route-by-field ->
//! two discard sinks, every stage built through `Registry::builtin()`, so
//! the count covers the stamp, ring batching, the router, the refcount
//! fan-out, the sink's latency record and the release. `--mode arena` is the
//! data path alone, on the public arena API: `Arena::alloc`,
//! `write_payload`, `json::find_field`, `share`, `release`.
//!
//! Use a count that is a multiple of 3 (the template cycles through three
//! values) and of the batch (64), e.g. 96000 and 192000, so that N and 2N
//! runs end on the same phase.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use dataplane::operators::json::find_field;
use dataplane::{Arena, LocalPool, PipelineBuilder, Registry, Settings};

// No `#[global_allocator]`: the system allocator places the arena's large
// buffer at the same page offset in every run (mmap), so alignment-dependent
// code (memcmp's page-crossing checks) costs the same every time. mimalloc
// randomizes where large blocks start, which moves the count by ~2
// instructions per element between identical runs.

/// The payload template: three kinds of element, padded to 64 bytes.
const TEMPLATE: &str = r#"{"type":"{pick:metric|log|trace}","host":"web-1","seq":0}"#;
const SIZE: usize = 64;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// The engine on one worker: generator -> route-by-field -> 2 discard.
    Engine,
    /// The arena and the JSON field lookup alone, no rings or stages.
    Arena,
}

#[derive(Parser, Debug)]
#[command(
    name = "hotpath",
    about = "Single-threaded alloc -> route-by-field -> release loop for callgrind instruction counts"
)]
struct Args {
    /// Elements to push through.
    #[arg(long, value_name = "N", default_value_t = 96_000)]
    count: u64,
    /// What to run.
    #[arg(long, value_enum, default_value = "engine")]
    mode: Mode,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.mode {
        Mode::Engine => engine(args.count),
        Mode::Arena => arena(args.count),
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn table(text: &str) -> Result<toml::Table, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

fn engine(count: u64) -> Result<String, String> {
    let registry = Registry::builtin();
    let core = core_affinity::get_core_ids()
        .and_then(|c| c.first().map(|c| c.id))
        .unwrap_or(0);
    let mut gen = table(&format!("count = {count}\nsize = {SIZE}"))?;
    gen.insert("template".into(), toml::Value::String(TEMPLATE.into()));
    let router = table(
        r#"
        field = "type"
        routes = { metric = "metrics", log = "logs" }
        unmatched = "broadcast"
        "#,
    )?;
    let none = toml::Table::new();
    let mut b = PipelineBuilder::new();
    b.settings(Settings {
        slot_size: 256,
        cores: Some(vec![core]),
        ..Settings::default()
    });
    b.add("gen", "generator", registry.build("generator", &gen)?)
        .add(
            "router",
            "route-by-field",
            registry.build("route-by-field", &router)?,
        )
        .add("metrics", "discard", registry.build("discard", &none)?)
        .add("logs", "discard", registry.build("discard", &none)?)
        .connect(("gen", "output"), ("router", "input"))
        .connect(("router", "metrics"), ("metrics", "input"))
        .connect(("router", "logs"), ("logs", "input"));
    let report = b.build().map_err(|e| e.to_string())?.run();
    if !report.is_success() {
        return Err(format!("the run failed:\n{report}"));
    }
    let received = |name: &str| report.stage(name).map_or(0, |s| s.received);
    Ok(format!(
        "engine: {} elements, {} to metrics, {} to logs, 1 worker on core {core}",
        report.produced(),
        received("metrics"),
        received("logs")
    ))
}

fn arena(count: u64) -> Result<String, String> {
    let arena = Arena::new(1024, 256);
    let mut pool = LocalPool::new(64);
    let payloads: Vec<Vec<u8>> = ["metric", "log", "trace"]
        .iter()
        .map(|t| {
            let mut p = format!(r#"{{"type":"{t}","host":"web-1","seq":0}}"#).into_bytes();
            p.resize(SIZE, b' ');
            p
        })
        .collect();
    let mut ports = [0u64; 2];
    for i in 0..count {
        let mut h = arena
            .alloc(&mut pool)
            .ok_or("the arena is exhausted (a leak)")?;
        let payload = &payloads[(i % 3) as usize];
        arena
            .write_payload(&mut h, payload, &mut pool)
            .map_err(|e| e.to_string())?;
        let lookup = find_field(arena.payload(&h), "type").map_err(|e| e.to_string())?;
        let mask: u8 = match lookup.field.map(|f| f.as_text()).as_deref() {
            Some("metric") => 0b01,
            Some("log") => 0b10,
            _ => 0b11,
        };
        // One reference per destination: a fan-out shares the slot (a
        // refcount bump), and each "sink" releases its own reference.
        for (p, n) in ports.iter_mut().enumerate() {
            *n += u64::from(mask >> p & 1);
        }
        if mask.count_ones() == 2 {
            let second = arena.share(&h);
            arena.release(second, &mut pool);
        }
        arena.release(h, &mut pool);
    }
    arena.flush(&mut pool);
    Ok(format!(
        "arena: {count} elements, {} to metrics, {} to logs, {} slots leaked",
        ports[0],
        ports[1],
        arena.leaked_quiescent()
    ))
}
