//! Running one test: the part of its flow reachable from the input node,
//! built afresh (a window or a dedupe starts empty in every test), with the
//! input's payloads fed by a `list` source, every sink replaced by a
//! [`Capture`], and a capture tapped onto each expected output port.

use std::collections::{BTreeMap, BTreeSet};

use crate::operators::{ListSource, Registry};
use crate::runtime::Pipeline;
use crate::stage::{Role, Stage};
use crate::testing::capture::{Capture, Captured, Captures};
use crate::testing::compare::{check, Failure};
use crate::topology::test_spec::TestCase;
use crate::topology::{PipelineBuilder, Settings};

/// Runs `case` and returns why it failed (nothing when it passed).
pub(crate) fn run_case(case: &TestCase, settings: &Settings, registry: &Registry) -> Vec<Failure> {
    let (pipeline, captures) = match build(case, settings, registry) {
        Ok(built) => built,
        Err(why) => return vec![Failure::Run(why)],
    };
    let report = pipeline.run();
    let mut failures = Vec::new();
    for s in &report.stages {
        if let Some(why) = &s.failure {
            failures.push(Failure::Run(format!("stage '{}' failed: {why}", s.name)));
        }
    }
    for p in &report.panics {
        failures.push(Failure::Run(format!("a worker panicked: {p}")));
    }
    if let Some(d) = &report.drain {
        failures.push(Failure::Run(format!(
            "the drain deadline ({} ms) passed; still running: {}",
            d.timeout_ms,
            d.stuck.join(", ")
        )));
    }
    for e in &case.expects {
        let key = (e.node.clone(), e.port.clone());
        let got: Vec<Captured> = captures
            .get(&key)
            .map(|c| c.lock().map(|l| l.clone()).unwrap_or_default())
            .unwrap_or_default();
        failures.extend(check(e, &got));
    }
    failures
}

/// A name no node of the test uses.
fn fresh(base: &str, taken: &mut BTreeSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 1;
    while taken.contains(&name) {
        n += 1;
        name = format!("{base}#{n}");
    }
    taken.insert(name.clone());
    name
}

type CaptureKey = (String, Option<String>);

fn build(
    case: &TestCase,
    settings: &Settings,
    registry: &Registry,
) -> Result<(Pipeline, BTreeMap<CaptureKey, Captures>), String> {
    let mut b = PipelineBuilder::new();
    // The file's arena slots were sized for its own graph, not this one
    // with its taps; placement does not matter to a test.
    b.settings(Settings {
        slots: None,
        pin: false,
        stage_metrics: false,
        ..settings.clone()
    });
    let mut taken: BTreeSet<String> = case.nodes.iter().map(|n| n.name.clone()).collect();
    let mut captures = BTreeMap::new();
    let list = || Stage::Source(Box::new(ListSource::new(case.payloads.clone())));
    for n in &case.nodes {
        let stage = match n.role {
            Role::Source => list(),
            Role::Sink => {
                let (sink, got) = Capture::new();
                captures.insert((n.name.clone(), None), got);
                Stage::Sink(Box::new(sink))
            }
            Role::Processor | Role::Router => registry
                .build(&n.component, &n.params)
                .map_err(|e| format!("node '{}' ({}): {e}", n.name, n.component))?,
        };
        b.add(&n.name, &n.component, stage);
    }
    let input_is_source = case
        .nodes
        .iter()
        .any(|n| n.name == case.input && n.role == Role::Source);
    if !input_is_source {
        let feeder = fresh("test-input", &mut taken);
        b.add(&feeder, "list", list());
        b.connect((&feeder, "output"), (&case.input, "input"));
    }
    for e in &case.edges {
        let from = (e.from.0.as_str(), e.from.1.as_str());
        let to = (e.to.0.as_str(), e.to.1.as_str());
        b.connect_at(from, to, e.capacity, e.when_full, String::new());
    }
    for e in &case.expects {
        let Some(port) = &e.port else { continue };
        let key = (e.node.clone(), Some(port.clone()));
        if captures.contains_key(&key) {
            continue;
        }
        let tap = fresh(&format!("test-capture:{}.{port}", e.node), &mut taken);
        let (sink, got) = Capture::new();
        b.add(&tap, "capture", Stage::Sink(Box::new(sink)));
        b.connect((&e.node, port), (&tap, "input"));
        captures.insert(key, got);
    }
    let pipeline = b.build().map_err(|errors| {
        let errors: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        format!("the test's pipeline is not valid: {}", errors.join("; "))
    })?;
    Ok((pipeline, captures))
}
