//! The timer API from Rust: a processor that registers processing-time
//! timers has them fired by the runtime (`Processor::on_timer`), in a
//! pipeline without event time or checkpoints too.

use dataplane::arena::ContentType;
use dataplane::event_time::{TimeDomain, Timer, Timers};
use dataplane::operators::{Discard, Generator};
use dataplane::stage::{Element, Emitter, Flush, Processor, StageError, Verdict};
use dataplane::{PipelineBuilder, Stage};

/// Holds each element until a processing-time timer 2 ms after it arrived
/// fires, then sends it on (a delay line).
struct Delay {
    timers: Timers,
    held: std::collections::BTreeMap<u64, Vec<u8>>,
    next: u64,
    fired: u64,
}

impl Processor for Delay {
    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError> {
        let key = self.next;
        self.next += 1;
        self.held.insert(key, element.payload().to_vec());
        self.timers
            .register_processing_time(dataplane::clock::now_ns() + 2_000_000, key);
        Ok(Verdict::Drop)
    }

    fn timers(&mut self) -> Option<&mut Timers> {
        Some(&mut self.timers)
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        assert_eq!(timer.domain, TimeDomain::Processing);
        let payload = self.held.get(&timer.key).cloned().unwrap_or_default();
        match out.emit(&payload, ContentType::Bytes, 0) {
            Ok(()) => {
                self.held.remove(&timer.key);
                self.fired += 1;
                Ok(Flush::Done)
            }
            Err(e) if e.is_no_room() => Ok(Flush::More),
            Err(e) => Err(e),
        }
    }

    fn finish(&mut self, _out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        // At the end of the stream, wait for the timers of what is held.
        Ok(if self.held.is_empty() {
            Flush::Done
        } else {
            Flush::More
        })
    }

    fn counts(&self) -> Vec<(&'static str, u64)> {
        vec![("fired by timers", self.fired)]
    }
}

/// A fresh delay line.
fn delay() -> Stage {
    Stage::Processor(Box::new(Delay {
        timers: Timers::new(),
        held: Default::default(),
        next: 0,
        fired: 0,
    }))
}

#[test]
fn processing_time_timers_fire_without_event_time() {
    let mut b = PipelineBuilder::new();
    b.add(
        "src",
        "generator",
        Stage::Source(Box::new(Generator::new("e{seq}", Some(50)).unwrap())),
    );
    b.add("delay", "delay", delay());
    b.add("sink", "discard", Stage::Sink(Box::new(Discard)));
    b.connect(("src", "output"), ("delay", "input"));
    b.connect(("delay", "output"), ("sink", "input"));
    let report = b.build().expect("valid").run();
    assert!(report.is_success(), "{report}");
    assert_eq!(report.stage("sink").unwrap().received, 50);
    let fired = report
        .stage("delay")
        .unwrap()
        .counts
        .iter()
        .find(|(k, _)| *k == "fired by timers")
        .map_or(0, |(_, n)| *n);
    assert_eq!(
        fired, 50,
        "every element leaves through its timer: {report}"
    );
    assert_eq!(report.leaked_slots, 0);
}

/// A timer processor with two inputs, in a pipeline without event time:
/// when its last input ends it sends the final watermark on, and the sink
/// after it (which has no timers of its own) must take that control
/// element as one, not as data.
#[test]
fn a_timer_processor_with_two_inputs_ends_cleanly() {
    let mut b = PipelineBuilder::new();
    for src in ["a", "b"] {
        b.add(
            src,
            "generator",
            Stage::Source(Box::new(Generator::new("e{seq}", Some(50)).unwrap())),
        );
    }
    b.add("delay", "delay", delay());
    b.add("sink", "discard", Stage::Sink(Box::new(Discard)));
    b.connect(("a", "output"), ("delay", "input"));
    b.connect(("b", "output"), ("delay", "input"));
    b.connect(("delay", "output"), ("sink", "input"));
    let report = b.build().expect("valid").run();
    assert!(report.is_success(), "{report}");
    assert_eq!(report.stage("sink").unwrap().received, 100, "{report}");
    assert_eq!(report.leaked_slots, 0);
}
