//! Restart policies through the library: pipelines from TOML text with a
//! `chaos` processor. A restarted stage loses exactly the element it failed
//! on (counted as failed); `never` and a policy that gives up stop the whole
//! run, naming the stage. Nothing here asserts on time.
//!
//! `chaos` counts per node name for the whole process, so every test uses
//! its own node names.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use dataplane::operators::{Discard, Generator};
use dataplane::runtime::restart::{Policy, RestartPolicy};
use dataplane::stage::{Inbox, PortMask, Reason, SlotBatch, StageInfo};
use dataplane::topology::config::load_str;
use dataplane::{
    Element, PipelineBuilder, Processor, Pull, Registry, Router, RunReport, Settings, Sink,
    SlotWriter, Source, Stage, StageError, StageReport, Verdict,
};

fn run(text: &str) -> RunReport {
    load_str(text, "restart.toml", &Registry::builtin(), None)
        .build()
        .unwrap_or_else(|e| panic!("invalid config: {e}"))
        .run()
}

/// generator (`count`, or unbounded) -> chaos node `name` -> discard.
fn pipeline(name: &str, count: Option<u64>, chaos: &str, restart: &str) -> String {
    let count = count.map_or(String::new(), |n| format!("count = {n}"));
    format!(
        r#"
[engine]
pin = false

[flow.f.nodes.gen-{name}]
component = "generator"
{count}

[flow.f.nodes.{name}]
component = "chaos"
{chaos}
{restart}

[flow.f.nodes.out-{name}]
component = "discard"

[[flow.f.edges]]
from = {{ node = "gen-{name}" }}
to = {{ node = "{name}" }}

[[flow.f.edges]]
from = {{ node = "{name}" }}
to = {{ node = "out-{name}" }}
"#
    )
}

/// Every element a stage received is sent, dropped or failed.
fn balanced(s: &StageReport) {
    assert_eq!(
        s.received,
        s.sent + s.dropped + s.failed,
        "{}: {s:?}",
        s.name
    );
}

#[test]
fn on_failure_loses_exactly_the_elements_it_panicked_on() {
    let r = run(&pipeline(
        "of-panic",
        Some(10_000),
        "panic_every = 1000",
        r#"restart = { policy = "on-failure", max_restarts = 100, backoff_ms = 1, max_backoff_ms = 2 }"#,
    ));
    let chaos = r.stage("of-panic").unwrap();
    assert!(r.is_success(), "{r}");
    assert_eq!(chaos.received, 10_000);
    assert_eq!(chaos.failed, 10);
    assert_eq!(chaos.lost_in_restarts(), 10);
    assert_eq!(chaos.sent, 9_990);
    assert_eq!(chaos.restarts, 10);
    assert_eq!(r.restarts(), 10);
    balanced(chaos);
    assert_eq!(r.stage("out-of-panic").unwrap().received, 9_990);
    assert_eq!(r.leaked_slots, 0);
    let reason = &chaos.reasons[0];
    assert_eq!(
        (reason.kind, reason.count, reason.failed),
        ("stage restarted", 10, true)
    );
    assert!(
        reason
            .first_detail
            .starts_with("panic: chaos: injected panic at element 1000"),
        "{reason:?}"
    );
    let summary = r.to_string();
    assert!(summary.contains("restarted 10 x"), "{summary}");
}

#[test]
fn on_failure_restarts_after_fatal_errors_too() {
    let r = run(&pipeline(
        "of-error",
        Some(10_000),
        "error_every = 2500",
        r#"restart = { policy = "always", max_restarts = 10, backoff_ms = 0, max_backoff_ms = 0 }"#,
    ));
    let chaos = r.stage("of-error").unwrap();
    assert!(r.is_success(), "{r}");
    assert_eq!((chaos.failed, chaos.sent, chaos.restarts), (4, 9_996, 4));
    balanced(chaos);
}

#[test]
fn never_stops_the_run_and_names_the_stage() {
    // An unbounded source: only the stop flag the failure raises ends it.
    let r = run(&pipeline("nv-panic", None, "panic_every = 1000", ""));
    assert!(!r.is_success());
    let chaos = r.stage("nv-panic").unwrap();
    assert_eq!(chaos.restarts, 0);
    assert_eq!(chaos.sent, 999);
    assert_eq!(chaos.failed, 0);
    balanced(chaos);
    let line = chaos.failure_line().unwrap();
    assert!(
        line.starts_with("stage 'nv-panic' failed: panic: chaos: injected panic at element 1000"),
        "{line}"
    );
    // The source stopped, everything drained, nothing leaked.
    assert_eq!(
        chaos.received,
        r.stage("gen-nv-panic").unwrap().sent,
        "the failed stage drained its input"
    );
    assert_eq!(r.leaked_slots, 0);
}

#[test]
fn giving_up_after_max_restarts_stops_the_run() {
    let r = run(&pipeline(
        "gu-panic",
        None,
        "panic_every = 10",
        r#"restart = { policy = "on-failure", max_restarts = 3, backoff_ms = 1, max_backoff_ms = 4 }"#,
    ));
    assert!(!r.is_success());
    let chaos = r.stage("gu-panic").unwrap();
    assert_eq!(chaos.restarts, 3);
    assert_eq!(chaos.failed, 3, "one element lost per restart");
    balanced(chaos);
    let line = chaos.failure_line().unwrap();
    assert!(
        line.starts_with(
            "stage 'gu-panic' failed after 3 restarts in 60000 ms: panic: chaos: injected panic at element 40"
        ),
        "{line}"
    );
    assert_eq!(chaos.received, r.stage("gen-gu-panic").unwrap().sent);
    assert_eq!(r.leaked_slots, 0);
}

/// A processor whose `init` fails while the shared count of its builds is
/// below `bad` (what a port still held by a previous process looks like).
struct FlakyInit {
    build: u32,
    bad: u32,
}

impl Processor for FlakyInit {
    fn init(&mut self, _info: &StageInfo) -> Result<(), StageError> {
        if self.build < self.bad {
            return Err(StageError::Fatal(format!(
                "not ready (build {})",
                self.build
            )));
        }
        Ok(())
    }
    fn process(&mut self, _e: &mut Element<'_>) -> Result<Verdict, StageError> {
        Ok(Verdict::Emit)
    }
}

fn flaky_init(policy: Policy, bad: u32) -> RunReport {
    let builds = Arc::new(AtomicU32::new(0));
    let stage = {
        let builds = Arc::clone(&builds);
        move || -> Result<Stage, String> {
            let build = builds.fetch_add(1, Ordering::Relaxed);
            Ok(Stage::Processor(Box::new(FlakyInit { build, bad })))
        }
    };
    let mut b = PipelineBuilder::new();
    b.settings(Settings {
        pin: false,
        ..Settings::default()
    });
    b.add(
        "gen",
        "generator",
        Stage::Source(Box::new(Generator::new("{}", Some(100)).unwrap())),
    )
    .add("flaky", "flaky-init", stage().unwrap())
    .add("out", "discard", Stage::Sink(Box::new(Discard)))
    .connect(("gen", "output"), ("flaky", "input"))
    .connect(("flaky", "output"), ("out", "input"))
    .restart(
        "flaky",
        RestartPolicy {
            policy,
            backoff_ms: 1,
            max_backoff_ms: 1,
            ..RestartPolicy::default()
        },
        stage,
    );
    b.build().unwrap().run()
}

#[test]
fn init_errors_are_restarted_only_by_always() {
    // `always`: two failed inits, then the third build runs.
    let r = flaky_init(Policy::Always, 2);
    assert!(r.is_success(), "{r}");
    let s = r.stage("flaky").unwrap();
    assert_eq!((s.restarts, s.sent, s.failed), (2, 100, 0));

    // `on-failure`: an init error is final.
    let r = flaky_init(Policy::OnFailure, 1);
    assert!(!r.is_success());
    let s = r.stage("flaky").unwrap();
    assert_eq!(s.restarts, 0);
    assert_eq!(
        s.failure.as_deref(),
        Some("init: fatal: not ready (build 0)")
    );

    // `always` gives up too, past max_restarts (5 by default).
    let r = flaky_init(Policy::Always, 100);
    let s = r.stage("flaky").unwrap();
    assert_eq!(s.restarts, 5);
    assert_eq!(
        s.failure.as_deref(),
        Some("after 5 restarts in 60000 ms: init: fatal: not ready (build 5)")
    );
}

#[test]
fn bad_restart_tables_are_located_config_errors() {
    let text = r#"
[flow.f.nodes.gen]
component = "generator"
count = 1

[flow.f.nodes.a]
component = "forward"
restart = { policy = "sometimes" }

[flow.f.nodes.b]
component = "forward"
restart = { policy = "on-failure", backoff_ms = 500, max_backoff_ms = 100 }

[flow.f.nodes.c]
component = "forward"
restart = { policy = "always", max_restarts = 0 }

[flow.f.nodes.d]
component = "forward"
restart = { policy = "on-failure", retries = 3 }

[flow.f.nodes.e]
component = "discard"
restart = "on-failure"

[[flow.f.edges]]
from = { node = "gen" }
to = { node = "a" }

[[flow.f.edges]]
from = { node = "a" }
to = { node = "b" }

[[flow.f.edges]]
from = { node = "b" }
to = { node = "c" }

[[flow.f.edges]]
from = { node = "c" }
to = { node = "d" }

[[flow.f.edges]]
from = { node = "d" }
to = { node = "e" }
"#;
    let errors = match load_str(text, "bad.toml", &Registry::builtin(), None).build() {
        Ok(_) => panic!("bad restart tables accepted"),
        Err(e) => e.to_string(),
    };
    for (at, what) in [
        (
            "bad.toml:6:1",
            "node 'a' restart: unknown restart policy 'sometimes'",
        ),
        (
            "bad.toml:10:1",
            "node 'b' restart: backoff_ms = 500 is larger than max_backoff_ms = 100",
        ),
        (
            "bad.toml:14:1",
            "node 'c' restart: max_restarts = 0 with policy 'always'",
        ),
        ("bad.toml:18:1", "node 'd' restart: unknown field `retries`"),
        ("bad.toml:22:1", "node 'e' restart: "),
    ] {
        let line = errors
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no error {what:?} in\n{errors}"));
        assert!(line.contains(at), "{line}");
    }
}

/// Emits `count` elements; the first build panics before its `at`-th.
struct PanickySource {
    n: u64,
    count: u64,
    panic_at: Option<u64>,
}

/// Runs source `src` -> discard `out`, unpinned, with no restart policy.
fn into_discard(source: impl Source + 'static) -> RunReport {
    let mut b = PipelineBuilder::new();
    b.settings(Settings {
        pin: false,
        ..Settings::default()
    });
    b.add("src", "test-source", Stage::Source(Box::new(source)))
        .add("out", "discard", Stage::Sink(Box::new(Discard)))
        .connect(("src", "output"), ("out", "input"));
    b.build().unwrap().run()
}

/// Emits `count` elements, rejects its `reject_at`-th pull and panics at
/// its `panic_at`-th (both in the runtime's first batch).
struct RejectThenPanic {
    n: u64,
    reject_at: u64,
    panic_at: u64,
}

impl Source for RejectThenPanic {
    fn pull(&mut self, out: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        self.n += 1;
        if self.n == self.reject_at {
            return Err(StageError::Rejected(Reason::new("odd one", "rejected")));
        }
        if self.n == self.panic_at {
            panic!("source gave out at {}", self.n);
        }
        out.write(b"{}")?;
        Ok(Pull::Ready)
    }
}

#[test]
fn a_source_that_rejects_then_panics_counts_the_rejection() {
    let r = into_discard(RejectThenPanic {
        n: 0,
        reject_at: 5,
        panic_at: 10,
    });
    assert!(
        !r.is_success(),
        "a panic without a restart policy fails the run"
    );
    let s = r.stage("src").unwrap();
    // Pulls 1-9 but the 5th were sent; the 5th was dropped, with its reason.
    assert_eq!((s.sent, s.dropped), (8, 1), "{s:?}");
    assert_eq!(r.stage("out").unwrap().received, 8);
    assert_eq!(r.leaked_slots, 0);
}

/// Overrides `pull_batch`: its first call refuses the whole batch with a
/// reason (as `pull` may refuse one element); then `count` elements.
struct RefusesFirstBatch {
    calls: u64,
    n: u64,
    count: u64,
}

impl Source for RefusesFirstBatch {
    fn pull(&mut self, out: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.n == self.count {
            return Ok(Pull::Done);
        }
        self.n += 1;
        out.write(b"{}")?;
        Ok(Pull::Ready)
    }

    fn pull_batch(&mut self, slots: &mut SlotBatch<'_>) -> Result<(), StageError> {
        self.calls += 1;
        if self.calls == 1 {
            return Err(StageError::Rejected(Reason::new("not yet", "first batch")));
        }
        slots.fill_all(|slot| self.pull(slot))
    }
}

#[test]
fn a_rejection_from_pull_batch_is_a_drop() {
    let r = into_discard(RefusesFirstBatch {
        calls: 0,
        n: 0,
        count: 100,
    });
    assert!(r.is_success(), "{r}");
    let s = r.stage("src").unwrap();
    assert_eq!((s.sent, s.dropped, s.restarts), (100, 1, 0), "{s:?}");
    assert_eq!(r.leaked_slots, 0);
}

impl Source for PanickySource {
    fn pull(&mut self, out: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.n == self.count {
            return Ok(Pull::Done);
        }
        self.n += 1;
        if self.panic_at == Some(self.n) {
            panic!("source gave out at {}", self.n);
        }
        out.write(b"{}")?;
        Ok(Pull::Ready)
    }
}

#[test]
fn a_restarted_source_starts_over_and_its_batch_is_counted() {
    let builds = Arc::new(AtomicU32::new(0));
    let source = move || -> Result<Stage, String> {
        let first = builds.fetch_add(1, Ordering::Relaxed) == 0;
        Ok(Stage::Source(Box::new(PanickySource {
            n: 0,
            count: 1000,
            panic_at: first.then_some(700),
        })))
    };
    let mut b = PipelineBuilder::new();
    b.settings(Settings {
        pin: false,
        ..Settings::default()
    });
    b.add("src", "panicky", source().unwrap())
        .add("out", "discard", Stage::Sink(Box::new(Discard)))
        .connect(("src", "output"), ("out", "input"))
        .restart(
            "src",
            RestartPolicy {
                policy: Policy::OnFailure,
                backoff_ms: 0,
                max_backoff_ms: 0,
                ..RestartPolicy::default()
            },
            source,
        );
    let r = b.build().unwrap().run();
    assert!(r.is_success(), "{r}");
    let s = r.stage("src").unwrap();
    assert_eq!((s.restarts, s.sent), (1, 699 + 1000));
    assert_eq!(r.stage("out").unwrap().received, 1699);
    assert_eq!(r.leaked_slots, 0);
}

/// Every `every`-th element (counted across builds) panics in a router or
/// a sink; the rest pass (to port 0) or are consumed.
struct Panicky {
    seen: Arc<AtomicU64>,
    every: u64,
}

impl Panicky {
    fn tick(&self) {
        let k = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if k.is_multiple_of(self.every) {
            panic!("panicky at {k}");
        }
    }
}

impl Router for Panicky {
    fn route(&mut self, _e: &Element<'_>, ports: &mut PortMask) -> Result<(), StageError> {
        self.tick();
        ports.add(0);
        Ok(())
    }
}

impl Sink for Panicky {
    fn push(&mut self, _e: &Element<'_>) -> Result<(), StageError> {
        self.tick();
        Ok(())
    }
}

/// generator (n) -> router -> sink, one of them panicking every `every`.
fn panicky_pipeline(n: u64, every: u64, in_router: bool) -> RunReport {
    let seen = Arc::new(AtomicU64::new(0));
    let router = {
        let seen = Arc::clone(&seen);
        move || -> Result<Stage, String> {
            // Not panicking: a counter of its own.
            let r: Box<dyn Router> = Box::new(Panicky {
                seen: if in_router {
                    Arc::clone(&seen)
                } else {
                    Arc::default()
                },
                every: if in_router { every } else { u64::MAX },
            });
            Ok(Stage::Router(r, vec!["output".to_string()]))
        }
    };
    let sink = move || -> Result<Stage, String> {
        Ok(Stage::Sink(if in_router {
            Box::new(Discard)
        } else {
            Box::new(Panicky {
                seen: Arc::clone(&seen),
                every,
            })
        }))
    };
    let policy = RestartPolicy {
        policy: Policy::OnFailure,
        max_restarts: 1000,
        backoff_ms: 0,
        max_backoff_ms: 0,
        ..RestartPolicy::default()
    };
    let mut b = PipelineBuilder::new();
    b.settings(Settings {
        pin: false,
        ring_capacity: 256,
        ..Settings::default()
    });
    b.add(
        "gen",
        "generator",
        Stage::Source(Box::new(Generator::new("{}", Some(n)).unwrap())),
    )
    .add("route", "panicky", router().unwrap())
    .add("sink", "panicky", sink().unwrap())
    .connect(("gen", "output"), ("route", "input"))
    .connect(("route", "output"), ("sink", "input"))
    .restart("route", policy, router)
    .restart("sink", policy, sink);
    b.build().unwrap().run()
}

#[test]
fn routers_and_sinks_lose_only_the_element_they_panicked_on() {
    // Sink: panics mid-batch (every 100th of 64-element batches).
    let r = panicky_pipeline(20_000, 100, false);
    assert!(r.is_success(), "{r}");
    let s = r.stage("sink").unwrap();
    assert_eq!((s.received, s.failed, s.restarts), (20_000, 200, 200));
    assert_eq!(r.stage("route").unwrap().sent, 20_000);
    assert_eq!(r.leaked_slots, 0);

    // Router: the same, and what it sent reaches the sink.
    let r = panicky_pipeline(20_000, 100, true);
    assert!(r.is_success(), "{r}");
    let route = r.stage("route").unwrap();
    assert_eq!(
        (route.received, route.failed, route.sent, route.restarts),
        (20_000, 200, 19_800, 200)
    );
    balanced(route);
    assert_eq!(r.stage("sink").unwrap().received, 19_800);
    assert_eq!(r.leaked_slots, 0);
}

/// A sink that takes its batches itself (`Sink::push_batch`) and panics
/// every `every`-th batch (counted across builds) before or after its
/// loop, or calls the loop twice.
struct BatchPanics {
    batches: Arc<AtomicU64>,
    every: u64,
    when: When,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    Before,
    After,
    Twice,
}

impl Sink for BatchPanics {
    fn push(&mut self, _e: &Element<'_>) -> Result<(), StageError> {
        Ok(())
    }

    fn push_batch(&mut self, inbox: &mut Inbox<'_, '_>) {
        let k = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        let panics = k.is_multiple_of(self.every);
        if panics && self.when == When::Before {
            panic!("before the loop of batch {k}");
        }
        inbox.push_each(|e| self.push(e));
        if self.when == When::Twice {
            // Nothing is left: the first call took the batch.
            inbox.push_each(|_| panic!("an element handed out twice"));
        }
        if panics && self.when == When::After {
            panic!("after the loop of batch {k}");
        }
    }
}

/// generator (n) -> a `BatchPanics` sink, restarted on each panic.
fn batch_panics(n: u64, when: When) -> RunReport {
    let batches = Arc::new(AtomicU64::new(0));
    let sink = move || -> Result<Stage, String> {
        Ok(Stage::Sink(Box::new(BatchPanics {
            batches: Arc::clone(&batches),
            every: 7,
            when,
        })))
    };
    let policy = RestartPolicy {
        policy: Policy::OnFailure,
        max_restarts: 100_000,
        backoff_ms: 0,
        max_backoff_ms: 0,
        ..RestartPolicy::default()
    };
    let mut b = PipelineBuilder::new();
    b.settings(Settings {
        pin: false,
        ring_capacity: 256,
        ..Settings::default()
    });
    b.add(
        "gen",
        "generator",
        Stage::Source(Box::new(Generator::new("{}", Some(n)).unwrap())),
    )
    .add("sink", "batch-panics", sink().unwrap())
    .connect(("gen", "output"), ("sink", "input"))
    .restart("sink", policy, sink);
    b.build().unwrap().run()
}

/// A panic in a sink's own `push_batch` outside the inbox's loop loses
/// nothing: before it, the batch waits in the ring for the restarted
/// sink; after it, the batch was delivered (none in flight). A second
/// call of the loop finds nothing left.
#[test]
fn a_panic_around_the_batch_loop_loses_nothing() {
    for when in [When::Before, When::After, When::Twice] {
        let r = batch_panics(20_000, when);
        assert!(r.is_success(), "{when:?}: {r}");
        let s = r.stage("sink").unwrap();
        assert_eq!(
            (s.received, s.failed, s.dropped),
            (20_000, 0, 0),
            "{when:?}: {s:?}"
        );
        if when == When::Twice {
            assert_eq!(s.restarts, 0, "{s:?}");
        } else {
            assert!(s.restarts > 0, "{when:?}: {s:?}");
        }
        assert_eq!(r.leaked_slots, 0, "{when:?}");
    }
}
