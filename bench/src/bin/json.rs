//! The JSON field lookup of `filter` and `route-by-field`: the engine's own
//! scanner (`dataplane::operators::json`) against `sonic-rs`, same run,
//! interleaved.
//!
//! Each round times the same lookups over the same payloads once per
//! system (scanner, `sonic_rs::get_from_slice`, `sonic_rs::to_object_iter`
//! over every member) and the ratio sonic / scanner is taken per round; the
//! table gives each system's median nanoseconds per lookup and the median
//! of the per-round ratios.
//!
//! The two `sonic-rs` calls stand for two different contracts:
//! - `get` checks the document only up to the field it finds; whatever
//!   follows is not read, so `{"level":"error",` passes. The engine's
//!   filter and router send such a payload to the `error` port.
//! - `object iter` reads every member, the nearest to what the scanner
//!   checks (one JSON object, all of it).
//!
//! Run: `cargo run --release -p bench --features sonic --bin json -- --rounds 21`

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use dataplane::operators::json::{find_field, find_members};
use sonic_rs::JsonValueTrait;

#[derive(Parser)]
struct Args {
    /// Interleaved rounds (the medians are over these).
    #[arg(long, default_value_t = 21)]
    rounds: usize,
    /// Passes over the payloads in each timed run.
    #[arg(long, default_value_t = 200)]
    passes: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// A payload set: the shape of a config's generator template.
struct Set {
    name: &'static str,
    field: &'static str,
    want: &'static str,
    payloads: Vec<Vec<u8>>,
}

fn sets() -> Vec<Set> {
    let levels = ["info", "info", "warn", "info", "error"];
    let log = (0..1024)
        .map(|i| {
            format!(
                r#"{{"seq":{i},"host":"web-{}","level":"{}","msg":"request served"}}"#,
                i % 4 + 1,
                levels[i % 5]
            )
            .into_bytes()
        })
        .collect::<Vec<_>>();
    let wide = (0..1024)
        .map(|i| {
            format!(
                r#"{{"seq":{i},"ts":"2026-11-30T07:29:06.{:03}Z","host":"web-{}","path":"/api/v1/orders/{i}","status":{},"bytes":{},"ua":"Mozilla/5.0 (X11; Linux x86_64)","tags":["a","b","c"],"ctx":{{"trace":"{:016x}","span":{i}}},"level":"{}"}}"#,
                i % 1000,
                i % 4 + 1,
                200 + i % 3 * 100,
                i * 37 % 10_000,
                i * 2_654_435_761_usize,
                levels[i % 5]
            )
            .into_bytes()
        })
        .collect::<Vec<_>>();
    vec![
        Set {
            name: "filter level (log, 80 B)",
            field: "level",
            want: "error",
            payloads: log.clone(),
        },
        Set {
            name: "route host (log, 80 B)",
            field: "host",
            want: "web-2",
            payloads: log,
        },
        Set {
            name: "filter level, last (wide, 280 B)",
            field: "level",
            want: "error",
            payloads: wide,
        },
    ]
}

/// The engine's filter path: `find_members` then compare the text.
fn scanner(set: &Set) -> usize {
    let mut hits = 0;
    let keys = [set.field];
    for p in &set.payloads {
        let mut found = [None; 1];
        find_members(black_box(p), &keys, &mut found).expect("valid");
        if let Some(m) = found[0] {
            hits += usize::from(m.value.as_text() == set.want);
        }
    }
    hits
}

/// The engine's route path: `find_field` then compare the text.
fn scanner_one(set: &Set) -> usize {
    let mut hits = 0;
    for p in &set.payloads {
        let l = find_field(black_box(p), set.field).expect("valid");
        if let Some(f) = l.field {
            hits += usize::from(f.as_text() == set.want);
        }
    }
    hits
}

fn sonic_get(set: &Set) -> usize {
    let mut hits = 0;
    for p in &set.payloads {
        let v = sonic_rs::get_from_slice(black_box(p), [set.field]).expect("valid");
        hits += usize::from(v.as_str() == Some(set.want));
    }
    hits
}

fn sonic_iter(set: &Set) -> usize {
    let mut hits = 0;
    for p in &set.payloads {
        let mut seen = false;
        for m in sonic_rs::to_object_iter(black_box(p.as_slice())) {
            let (k, v) = m.expect("valid");
            if !seen && k == set.field {
                seen = true;
                hits += usize::from(v.as_str() == Some(set.want));
            }
        }
    }
    hits
}

type System = (&'static str, fn(&Set) -> usize);

fn time(f: fn(&Set) -> usize, set: &Set, passes: usize) -> f64 {
    let start = Instant::now();
    let mut hits = 0;
    for _ in 0..passes {
        hits += f(set);
    }
    black_box(hits);
    start.elapsed().as_nanos() as f64 / (passes * set.payloads.len()) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = Args::parse();
    let systems: [System; 4] = [
        ("scanner find_members", scanner),
        ("scanner find_field", scanner_one),
        ("sonic-rs get", sonic_get),
        ("sonic-rs object iter", sonic_iter),
    ];
    let mut rows = Vec::new();
    println!("| payloads | system | ns / lookup (median) | / scanner find_members (median of per-round ratios) |");
    println!("| --- | --- | --- | --- |");
    for set in sets() {
        // All systems agree on what they find.
        let expect = scanner(&set);
        for (name, f) in &systems {
            assert_eq!(f(&set), expect, "{name} disagrees on {}", set.name);
        }
        let mut ns = vec![Vec::new(); systems.len()];
        for _ in 0..args.rounds {
            for (i, (_, f)) in systems.iter().enumerate() {
                ns[i].push(time(*f, &set, args.passes));
            }
        }
        for (i, (name, _)) in systems.iter().enumerate() {
            let ratio = median(ns[i].iter().zip(&ns[0]).map(|(a, b)| a / b).collect());
            let med = median(ns[i].clone());
            println!("| {} | {name} | {med:.1} | {ratio:.3} |", set.name);
            rows.push(serde_json::json!({
                "payloads": set.name, "system": name, "ns_per_lookup": med, "ratio_to_scanner": ratio,
            }));
        }
    }
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&rows).expect("json");
        std::fs::write(&path, text).expect("write results");
    }
}
