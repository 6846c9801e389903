//! Black-box tests of pipelines built with the public API: conservation
//! through a broadcasting router, copy on write across branches, bad data,
//! failing stages, and every wait strategy.

use std::sync::{Arc, Mutex};

use dataplane::operators::json::find_field;
use dataplane::operators::{Discard, Forward, Generator, ListSource, SetField};
use dataplane::{
    Element, PipelineBuilder, Reason, Registry, RunReport, Settings, Sink, Stage, StageError,
    WaitStrategy,
};

/// What a [`Recorder`] saw: (seq, extra field) per element.
type Seen = Arc<Mutex<Vec<(u64, String)>>>;

/// Records the `seq` (and optionally a field) of everything it receives.
struct Recorder {
    field: Option<&'static str>,
    seen: Vec<(u64, String)>,
    out: Seen,
}

impl Recorder {
    fn new(field: Option<&'static str>) -> (Recorder, Seen) {
        let out = Arc::new(Mutex::new(Vec::new()));
        (
            Recorder {
                field,
                seen: Vec::with_capacity(1 << 20),
                out: Arc::clone(&out),
            },
            out,
        )
    }
}

impl Sink for Recorder {
    fn push(&mut self, e: &Element<'_>) -> Result<(), StageError> {
        let p = e.payload();
        let seq = find_field(p, "seq")
            .unwrap()
            .field
            .unwrap()
            .as_f64()
            .unwrap() as u64;
        let extra = self
            .field
            .map(|f| {
                find_field(p, f)
                    .unwrap()
                    .field
                    .map(|v| v.as_text().into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        self.seen.push((seq, extra));
        Ok(())
    }
    fn complete(&mut self) -> Result<(), StageError> {
        *self.out.lock().unwrap() = std::mem::take(&mut self.seen);
        Ok(())
    }
}

fn router(spec: &str) -> Stage {
    let table: toml::Table = toml::from_str(spec).unwrap();
    Registry::builtin().build("route-by-field", &table).unwrap()
}

fn settings(wait: WaitStrategy) -> Settings {
    Settings {
        wait,
        ring_capacity: 256,
        ..Settings::default()
    }
}

/// Millions of elements through a router with broadcast: each branch gets
/// exactly what the rule says, in order, and every slot comes back.
#[test]
fn conservation_through_broadcast_router() {
    let n: u64 = if cfg!(debug_assertions) {
        200_000
    } else {
        3_000_000
    };
    let (a, a_out) = Recorder::new(None);
    let (b, b_out) = Recorder::new(None);
    let mut p = PipelineBuilder::new();
    p.settings(settings(WaitStrategy::Park));
    p.add(
        "gen",
        "generator",
        Stage::Source(Box::new(
            Generator::new(r#"{"seq":{seq},"type":"{pick:a|b|c}"}"#, Some(n)).unwrap(),
        )),
    )
    .add(
        "route",
        "route-by-field",
        router(
            r#"field = "type"
routes = { a = "pa", b = "pb" }
unmatched = "broadcast""#,
        ),
    )
    .add("sink-a", "recorder", Stage::Sink(Box::new(a)))
    .add("sink-b", "recorder", Stage::Sink(Box::new(b)))
    .connect(("gen", "output"), ("route", "input"))
    .connect(("route", "pa"), ("sink-a", "input"))
    .connect(("route", "pb"), ("sink-b", "input"));
    let report = p.build().unwrap().run();
    assert!(report.is_success(), "{report}");
    assert_eq!(report.leaked_slots, 0);

    let expect_a: Vec<u64> = (0..n).filter(|s| s % 3 != 1).collect();
    let expect_b: Vec<u64> = (0..n).filter(|s| s % 3 != 0).collect();
    let got_a: Vec<u64> = a_out.lock().unwrap().iter().map(|x| x.0).collect();
    let got_b: Vec<u64> = b_out.lock().unwrap().iter().map(|x| x.0).collect();
    assert!(
        got_a == expect_a,
        "branch a: {} elements, expected {}",
        got_a.len(),
        expect_a.len()
    );
    assert!(
        got_b == expect_b,
        "branch b: {} elements, expected {}",
        got_b.len(),
        expect_b.len()
    );
    let route = report.stage("route").unwrap();
    assert_eq!(route.received, n);
    assert_eq!(
        route.ports,
        vec![
            ("pa".to_string(), expect_a.len() as u64),
            ("pb".to_string(), expect_b.len() as u64),
            ("error".to_string(), 0),
        ]
    );
}

/// Broadcast then modify on both branches: each branch sees its own tag and
/// never the other's (copy on write of the shared slot).
#[test]
fn copy_on_write_across_branches() {
    let n = 100_000;
    let (a, a_out) = Recorder::new(Some("tag"));
    let (b, b_out) = Recorder::new(Some("tag"));
    let mut p = PipelineBuilder::new();
    p.settings(settings(WaitStrategy::Park));
    p.add(
        "gen",
        "generator",
        Stage::Source(Box::new(
            Generator::new(r#"{"seq":{seq}}"#, Some(n)).unwrap(),
        )),
    )
    .add(
        "route",
        "route-by-field",
        router(
            r#"field = "none"
routes = { x = ["pa", "pb"] }"#,
        ),
    )
    .add(
        "tag-a",
        "set-field",
        Stage::Processor(Box::new(SetField::new("tag", &"A".into()))),
    )
    .add(
        "tag-b",
        "set-field",
        Stage::Processor(Box::new(SetField::new("tag", &"B".into()))),
    )
    .add("sink-a", "recorder", Stage::Sink(Box::new(a)))
    .add("sink-b", "recorder", Stage::Sink(Box::new(b)))
    .connect(("gen", "output"), ("route", "input"))
    .connect(("route", "pa"), ("tag-a", "input"))
    .connect(("route", "pb"), ("tag-b", "input"))
    .connect(("tag-a", "output"), ("sink-a", "input"))
    .connect(("tag-b", "output"), ("sink-b", "input"));
    let report = p.build().unwrap().run();
    assert!(report.is_success(), "{report}");
    for (out, tag) in [(a_out, "A"), (b_out, "B")] {
        let got = out.lock().unwrap();
        assert_eq!(got.len(), n as usize);
        for (i, (seq, t)) in got.iter().enumerate() {
            assert_eq!((*seq, t.as_str()), (i as u64, tag));
        }
    }
}

/// Bad JSON and oversized payloads are counted with their reason; the run
/// goes on and nothing else is lost.
#[test]
fn bad_data_is_counted_not_fatal() {
    let payloads: Vec<Vec<u8>> = vec![
        br#"{"type":"a","seq":0}"#.to_vec(),
        b"not json".to_vec(),
        br#"{"type":"a","seq":1}"#.to_vec(),
        vec![b' '; 100],
        br#"{"type":"a""#.to_vec(),
    ];
    let (a, a_out) = Recorder::new(None);
    let mut p = PipelineBuilder::new();
    p.settings(Settings {
        slot_size: 64,
        ..Settings::default()
    });
    p.add(
        "src",
        "list",
        Stage::Source(Box::new(ListSource::new(payloads))),
    )
    .add(
        "route",
        "route-by-field",
        router(
            r#"field = "type"
routes = { a = "pa" }"#,
        ),
    )
    .add("sink", "recorder", Stage::Sink(Box::new(a)))
    .connect(("src", "output"), ("route", "input"))
    .connect(("route", "pa"), ("sink", "input"));
    let report = p.build().unwrap().run();
    assert!(report.is_success(), "{report}");
    let src = report.stage("src").unwrap();
    assert_eq!((src.sent, src.dropped), (4, 1));
    assert_eq!(src.reasons[0].kind, "payload too large");
    assert!(src.reasons[0]
        .first_detail
        .contains("100 bytes exceeds the arena slot size of 64"));
    let route = report.stage("route").unwrap();
    assert_eq!((route.received, route.sent, route.dropped), (4, 2, 2));
    assert_eq!(route.reasons[0].kind, "invalid JSON");
    assert_eq!(route.reasons[0].count, 2);
    assert_eq!(
        a_out
            .lock()
            .unwrap()
            .iter()
            .map(|x| x.0)
            .collect::<Vec<_>>(),
        [0, 1]
    );
}

struct FailAfter(u64);

impl dataplane::Processor for FailAfter {
    fn process(&mut self, _e: &mut Element<'_>) -> Result<dataplane::Verdict, StageError> {
        if self.0 == 0 {
            return Err(StageError::Fatal("boom".into()));
        }
        self.0 -= 1;
        Ok(dataplane::Verdict::Emit)
    }
}

/// A fatal stage error: the run drains (upstream never blocks), counts what
/// the failed stage could not handle, reports failure, leaks nothing.
#[test]
fn failed_stage_drains_and_reports() {
    let n = 50_000;
    let mut p = PipelineBuilder::new();
    p.settings(settings(WaitStrategy::Park));
    p.add(
        "gen",
        "generator",
        Stage::Source(Box::new(Generator::new("{}", Some(n)).unwrap())),
    )
    .add(
        "fail",
        "fail-after",
        Stage::Processor(Box::new(FailAfter(1000))),
    )
    .add("sink", "discard", Stage::Sink(Box::new(Discard)))
    .connect(("gen", "output"), ("fail", "input"))
    .connect(("fail", "output"), ("sink", "input"));
    let report = p.build().unwrap().run();
    assert!(!report.is_success());
    assert_eq!(report.leaked_slots, 0);
    let fail = report.stage("fail").unwrap();
    assert_eq!(fail.failure.as_deref(), Some("boom"));
    // The failure stops the sources (restart policy `never`); what the
    // generator sent before that drains into the failed stage.
    let sent = report.stage("gen").unwrap().sent;
    assert!((1001..=n).contains(&sent), "{sent}");
    assert_eq!(fail.received, sent);
    assert_eq!(
        fail.sent + fail.dropped,
        sent,
        "every element accounted for"
    );
    assert_eq!(report.stage("sink").unwrap().received, 1000);
    let _ = Reason::new("x", "");
}

fn chain(wait: WaitStrategy, stages: usize, n: u64) -> RunReport {
    let mut p = PipelineBuilder::new();
    p.settings(settings(wait));
    p.add(
        "gen",
        "generator",
        Stage::Source(Box::new(Generator::new("{}", Some(n)).unwrap())),
    );
    let mut prev = "gen".to_string();
    for i in 0..stages {
        let name = format!("fwd{i}");
        p.add(&name, "forward", Stage::Processor(Box::new(Forward)));
        p.connect((&prev, "output"), (&name, "input"));
        prev = name;
    }
    p.add("sink", "discard", Stage::Sink(Box::new(Discard)));
    p.connect((&prev, "output"), ("sink", "input"));
    p.build().unwrap().run()
}

/// More stages than cores under every wait strategy: completes, no loss.
#[test]
fn packed_chain_every_wait_strategy() {
    for wait in [
        WaitStrategy::Park,
        WaitStrategy::Yield,
        WaitStrategy::BusySpin,
    ] {
        let r = chain(wait, 8, 200_000);
        assert!(r.is_success(), "{wait:?}: {r}");
        assert_eq!(r.stage("sink").unwrap().received, 200_000, "{wait:?}");
    }
}

/// Defers every element once before accepting it.
struct DeferOnce(bool);

impl dataplane::Processor for DeferOnce {
    fn process(&mut self, _e: &mut Element<'_>) -> Result<dataplane::Verdict, StageError> {
        self.0 = !self.0;
        Ok(if self.0 {
            dataplane::Verdict::Defer
        } else {
            dataplane::Verdict::Emit
        })
    }
}

/// A deferred element stays in its ring and comes back: nothing lost, order
/// kept, and the deferring stage counts each element once.
#[test]
fn deferred_elements_come_back_in_order() {
    let n = 50_000;
    let (a, a_out) = Recorder::new(None);
    let mut p = PipelineBuilder::new();
    p.settings(settings(WaitStrategy::Park));
    p.add(
        "gen",
        "generator",
        Stage::Source(Box::new(
            Generator::new(r#"{"seq":{seq}}"#, Some(n)).unwrap(),
        )),
    )
    .add(
        "defer",
        "defer-once",
        Stage::Processor(Box::new(DeferOnce(false))),
    )
    .add("sink", "recorder", Stage::Sink(Box::new(a)))
    .connect(("gen", "output"), ("defer", "input"))
    .connect(("defer", "output"), ("sink", "input"));
    let report = p.build().unwrap().run();
    assert!(report.is_success(), "{report}");
    assert_eq!(report.stage("defer").unwrap().received, n);
    let got: Vec<u64> = a_out.lock().unwrap().iter().map(|x| x.0).collect();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}

/// Building a plan opens nothing: two plans of one `udp-in` address build
/// side by side, and only opening the second (as a run does first) fails,
/// naming the node and the address, as a config error.
#[test]
fn plans_open_no_socket_and_open_names_the_node() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    drop(socket);
    let text = format!(
        "[flow.f.nodes.listen]\ncomponent = \"udp-in\"\naddress = \"127.0.0.1:{port}\"\nmax_elements = 1\n\n[flow.f.nodes.out]\ncomponent = \"discard\"\n\n[[flow.f.edges]]\nfrom = {{ node = \"listen\" }}\nto = {{ node = \"out\" }}\n"
    );
    let build = || {
        dataplane::topology::config::load_str(
            &text,
            "udp.toml",
            &dataplane::Registry::builtin(),
            None,
        )
        .build()
        .unwrap()
    };
    let (mut first, mut second) = (build(), build());
    first.open().expect("the first binds");
    let errors = second.open().expect_err("the address is held").to_string();
    assert!(
        errors.contains(&format!("node 'listen': cannot bind 127.0.0.1:{port}")),
        "{errors}"
    );
    assert!(errors.contains("udp.toml:"), "{errors}");
}
