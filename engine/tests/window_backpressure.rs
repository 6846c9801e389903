//! A window never loses a result for want of room: with an arena far
//! smaller than the number of keys in one window, every key's result
//! still arrives, exactly once, and every slot comes back. The window waits
//! for slots and output space the way a source does, and holds its input
//! back meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dataplane::operators::json::find_field;
use dataplane::operators::Generator;
use dataplane::{Element, PipelineBuilder, Registry, Settings, Sink, Stage, StageError};

/// Distinct keys in one window: about 200 times the arena.
const KEYS: u64 = 50_000;

/// Per key, the `count` of every result that named it.
type Counts = Arc<Mutex<HashMap<String, Vec<u64>>>>;

/// Records the key and count of every window result.
struct Tally {
    seen: HashMap<String, Vec<u64>>,
    out: Counts,
}

impl Sink for Tally {
    fn push(&mut self, e: &Element<'_>) -> Result<(), StageError> {
        let p = e.payload();
        let field = |name| {
            find_field(p, name)
                .expect("a window result is JSON")
                .field
                .unwrap_or_else(|| panic!("no {name} in {}", String::from_utf8_lossy(p)))
        };
        let key = field("k").as_text().into_owned();
        let count = field("count").as_f64().expect("a numeric count") as u64;
        self.seen.entry(key).or_default().push(count);
        Ok(())
    }

    fn complete(&mut self) -> Result<(), StageError> {
        *self.out.lock().unwrap() = std::mem::take(&mut self.seen);
        Ok(())
    }
}

/// Runs `KEYS` elements, each with its own key, through windows built from
/// `specs`, one after the other, on a 256-slot arena; returns the results
/// per key.
fn run(specs: &[&str]) -> HashMap<String, Vec<u64>> {
    let out = Counts::default();
    let tally = Tally {
        seen: HashMap::new(),
        out: Arc::clone(&out),
    };
    let mut p = PipelineBuilder::new();
    // With two windows: 3 rings x 32 + up to 4 workers x 2 x 16 + 4 stages
    // + 1 = 229 slots at most.
    p.settings(Settings {
        slots: Some(256),
        ring_capacity: 32,
        batch: 16,
        ..Settings::default()
    });
    p.add(
        "gen",
        "generator",
        Stage::Source(Box::new(
            Generator::new(r#"{"k":"{seq}"}"#, Some(KEYS)).unwrap(),
        )),
    );
    let mut last = "gen".to_string();
    for (i, spec) in specs.iter().enumerate() {
        let table: toml::Table = toml::from_str(spec).unwrap();
        let name = format!("win{i}");
        p.add(
            &name,
            "window",
            Registry::builtin().build("window", &table).unwrap(),
        )
        .connect((last.as_str(), "output"), (name.as_str(), "input"));
        last = name;
    }
    p.add("tally", "tally", Stage::Sink(Box::new(tally)))
        .connect((last.as_str(), "output"), ("tally", "input"));
    let report = p.build().unwrap().run();
    assert!(report.is_success(), "{report}");
    assert_eq!(report.leaked_slots, 0, "{report}");
    let win = report.stage(&last).unwrap();
    let absorbed = report.stage("win0").unwrap().dropped;
    assert_eq!(absorbed, KEYS, "every element absorbed: {report}");
    let results = report.stage("tally").unwrap().received;
    let per_key = std::mem::take(&mut *out.lock().unwrap());
    assert_eq!(
        per_key.values().map(Vec::len).sum::<usize>() as u64,
        results
    );
    assert_eq!(win.sent, results, "{report}");
    per_key
}

/// Every key has exactly one result, with count 1.
fn assert_each_key_once(per_key: &HashMap<String, Vec<u64>>) {
    assert_eq!(per_key.len() as u64, KEYS, "keys with a result");
    for seq in 0..KEYS {
        assert_eq!(per_key.get(&seq.to_string()), Some(&vec![1]), "key {seq}");
    }
}

/// The window closes in `process`, on its last element: 50,000 results at
/// once, from a step that has room for 16.
#[test]
fn count_window_closing_on_an_element_emits_every_key() {
    let per_key = run(&[&format!("size = {KEYS}\nkey = \"k\"\nmax_keys = {KEYS}")]);
    assert_each_key_once(&per_key);
}

/// The window is still open at the end of the stream: `finish` emits it
/// over as many steps as it takes.
#[test]
fn count_window_open_at_the_end_emits_every_key() {
    let per_key = run(&[&format!(
        "size = {}\nkey = \"k\"\nmax_keys = {KEYS}",
        10 * KEYS
    )]);
    assert_each_key_once(&per_key);
}

/// A window behind a window: the second one's input is the first one's
/// burst of results, and it closes every 1,000 of them, each close again
/// more than the arena holds: both hold results and defer input at once,
/// and still every result of the second one arrives.
#[test]
fn windows_in_a_row_emit_every_key() {
    let per_key = run(&[
        &format!("size = {KEYS}\nkey = \"k\"\nmax_keys = {KEYS}"),
        "size = 1000\nkey = \"k\"\nmax_keys = 1000",
    ]);
    assert_each_key_once(&per_key);
}

/// A time window: whichever of `tick` (a window boundary passed during the
/// run) and `finish` emits a key's result, each key's counts add up to its
/// one element.
#[test]
fn time_window_emits_every_key() {
    let per_key = run(&[&format!(
        "size_ms = 3600000\nkey = \"k\"\nmax_keys = {KEYS}"
    )]);
    assert_eq!(per_key.len() as u64, KEYS, "keys with a result");
    for seq in 0..KEYS {
        let counts = &per_key[&seq.to_string()];
        assert_eq!(counts.iter().sum::<u64>(), 1, "key {seq}: {counts:?}");
    }
}
