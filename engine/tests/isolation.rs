//! Branch isolation by per-edge `when_full` policies: a stalled branch on a
//! dropping edge never slows its siblings, drops are counted per edge, and
//! every element is accounted for (delivered or dropped, no slot leaked).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dataplane::operators::json::find_field;
use dataplane::operators::Generator;
use dataplane::{
    Element, PipelineBuilder, Processor, RunReport, Settings, Sink, Stage, StageError, Verdict,
    WhenFull,
};
use proptest::prelude::*;

/// Records the `seq` of everything it receives; optionally raises a flag
/// when its input completes.
struct Recorder {
    seen: Vec<u64>,
    out: Arc<Mutex<Vec<u64>>>,
    done: Option<Arc<AtomicBool>>,
}

impl Sink for Recorder {
    fn push(&mut self, e: &Element<'_>) -> Result<(), StageError> {
        let seq = find_field(e.payload(), "seq").unwrap().field.unwrap();
        self.seen.push(seq.as_f64().unwrap() as u64);
        Ok(())
    }
    fn complete(&mut self) -> Result<(), StageError> {
        *self.out.lock().unwrap() = std::mem::take(&mut self.seen);
        if let Some(d) = &self.done {
            d.store(true, Ordering::Release);
        }
        Ok(())
    }
}

fn recorder(done: Option<Arc<AtomicBool>>) -> (Stage, Arc<Mutex<Vec<u64>>>) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Recorder {
        seen: Vec::new(),
        out: Arc::clone(&out),
        done,
    };
    (Stage::Sink(Box::new(sink)), out)
}

/// Holds every element back (backpressure, never blocking its worker) until
/// `open` is set, then passes everything.
struct Gate {
    open: Arc<AtomicBool>,
}

impl Processor for Gate {
    fn process(&mut self, _e: &mut Element<'_>) -> Result<Verdict, StageError> {
        Ok(if self.open.load(Ordering::Acquire) {
            Verdict::Emit
        } else {
            Verdict::Defer
        })
    }
}

/// Defers every `every`-th element once: a branch that keeps falling behind.
struct Stutter {
    every: u64,
    calls: u64,
}

impl Processor for Stutter {
    fn process(&mut self, _e: &mut Element<'_>) -> Result<Verdict, StageError> {
        self.calls += 1;
        Ok(if self.calls.is_multiple_of(self.every) {
            Verdict::Defer
        } else {
            Verdict::Emit
        })
    }
}

fn generator(n: u64) -> Stage {
    Stage::Source(Box::new(
        Generator::new(r#"{"seq":{seq}}"#, Some(n)).unwrap(),
    ))
}

fn edge<'r>(r: &'r RunReport, from: &str, to: &str) -> &'r dataplane::EdgeReport {
    r.edges
        .iter()
        .find(|e| e.from == from && e.to == to)
        .unwrap_or_else(|| panic!("no edge {from} -> {to}"))
}

/// generator -> {fast, gate -> slow}: the gate stays shut until the fast
/// branch has everything, which it can only get if the dropping edge never
/// holds the generator back. (With `block` this pipeline would wait for the
/// gate forever.)
fn stalled_sibling(when_full: WhenFull, n: u64) -> (RunReport, Vec<u64>, Vec<u64>) {
    let open = Arc::new(AtomicBool::new(false));
    let (fast, fast_seen) = recorder(Some(Arc::clone(&open)));
    let (slow, slow_seen) = recorder(None);
    let mut b = PipelineBuilder::new();
    b.settings(Settings {
        ring_capacity: 64,
        ..Settings::default()
    });
    b.add("gen", "generator", generator(n))
        .add("fast", "recorder", fast)
        .add(
            "gate",
            "gate",
            Stage::Processor(Box::new(Gate {
                open: Arc::clone(&open),
            })),
        )
        .add("slow", "recorder", slow)
        .connect(("gen", "output"), ("fast", "input"))
        .connect_when_full(("gen", "output"), ("gate", "input"), when_full)
        .connect(("gate", "output"), ("slow", "input"));
    let report = b.build().unwrap().run();
    let fast = fast_seen.lock().unwrap().clone();
    let slow = slow_seen.lock().unwrap().clone();
    (report, fast, slow)
}

#[test]
fn drop_newest_sibling_never_stalls_the_fast_branch() {
    let n = 100_000;
    let (r, fast, slow) = stalled_sibling(WhenFull::DropNewest, n);
    assert!(r.is_success(), "{r}");
    assert_eq!(r.leaked_slots, 0);
    assert_eq!(
        fast,
        (0..n).collect::<Vec<_>>(),
        "the fast branch got everything, in order"
    );
    let dropped = edge(&r, "gen", "gate").dropped;
    assert_eq!(
        slow.len() as u64 + dropped,
        n,
        "delivered + dropped = produced"
    );
    assert!(dropped > 0);
    // What the stalled branch kept is the oldest: a prefix, in order.
    assert_eq!(slow, (0..slow.len() as u64).collect::<Vec<_>>());
    assert!(r
        .to_string()
        .contains("edge gen.output -> gate (drop_newest, capacity 64):"));
}

#[test]
fn drop_oldest_sibling_keeps_the_newest() {
    let n = 100_000;
    let (r, fast, slow) = stalled_sibling(WhenFull::DropOldest, n);
    assert!(r.is_success(), "{r}");
    assert_eq!(r.leaked_slots, 0);
    assert_eq!(fast, (0..n).collect::<Vec<_>>());
    let dropped = edge(&r, "gen", "gate").dropped;
    assert_eq!(slow.len() as u64 + dropped, n);
    // What the stalled branch kept is the newest: a suffix, in order.
    let first = n - slow.len() as u64;
    assert_eq!(slow, (first..n).collect::<Vec<_>>());
    assert!(first > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A generator fanned out to branches with random policies, ring sizes
    /// and stuttering processors: per branch, delivered + dropped on its
    /// edges = produced; block edges drop nothing; no slot leaks.
    #[test]
    fn every_element_is_delivered_or_counted(
        n in 1u64..20_000,
        ring in prop::sample::select(vec![1usize, 2, 8, 64]),
        batch in prop::sample::select(vec![1usize, 8, 64]),
        branches in proptest::collection::vec((0usize..3, proptest::option::of(2u64..50)), 1..4),
    ) {
        let policies = [WhenFull::Block, WhenFull::DropNewest, WhenFull::DropOldest];
        let mut b = PipelineBuilder::new();
        b.settings(Settings { ring_capacity: ring, batch, ..Settings::default() });
        b.add("gen", "generator", generator(n));
        let mut outs = Vec::new();
        for (i, &(policy, stutter)) in branches.iter().enumerate() {
            let sink = format!("sink{i}");
            let (stage, seen) = recorder(None);
            b.add(&sink, "recorder", stage);
            let first = match stutter {
                Some(every) => {
                    let p = format!("stutter{i}");
                    b.add(&p, "stutter", Stage::Processor(Box::new(Stutter { every, calls: 0 })));
                    b.connect((p.as_str(), "output"), (sink.as_str(), "input"));
                    p
                }
                None => sink.clone(),
            };
            b.connect_when_full(("gen", "output"), (first.as_str(), "input"), policies[policy]);
            outs.push((first, sink, policies[policy], seen));
        }
        let r = b.build().unwrap().run();
        prop_assert!(r.is_success(), "{}", r);
        prop_assert_eq!(r.leaked_slots, 0);
        for (first, sink, policy, seen) in &outs {
            let got = seen.lock().unwrap().len() as u64;
            let dropped: u64 = r.edges.iter()
                .filter(|e| e.to == *first || e.to == *sink)
                .map(|e| e.dropped)
                .sum();
            prop_assert_eq!(got + dropped, n, "branch {} ({})", sink, policy);
            if *policy == WhenFull::Block {
                prop_assert_eq!(dropped, 0);
                prop_assert_eq!(got, n);
            }
        }
    }
}
