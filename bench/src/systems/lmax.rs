//! The `disruptor` crate (a Rust port of the LMAX Disruptor) for the one
//! hop it can run fairly here: a single producer publishing into a
//! preallocated ring, one consumer thread. Events are preallocated and
//! reused (each holds a payload buffer written in place), which is how the
//! crate is meant to be used, so it allocates nothing per element.
//!
//! Its consumers wait by spinning (or sleeping), and a producer facing a
//! full ring spins, so every stage is a busy thread: shapes that need more
//! threads than cores are reported as not run rather than measured against
//! the scheduler (see [`super::plan`]).

use std::sync::mpsc;
use std::thread;

use core_affinity::CoreId;
use disruptor::{BusySpinWithSpinLoopHint, ProcessorSettings, Producer, Sequence};

use crate::measure::{now_ns, write_payload, Pacer, Recorder, RunOutcome, SinkOutcome, Snapshots};
use crate::scenario::{Topology, Workload};

/// A ring entry.
struct Event {
    stamp: u64,
    payload: Vec<u8>,
}

/// Owns the consumer's recorder and hands the outcome back when the
/// disruptor drops the handler (after the consumer thread has seen every
/// published event).
struct Report {
    rec: Option<Recorder>,
    tx: mpsc::Sender<SinkOutcome>,
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(rec) = self.rec.take() {
            let _ = self.tx.send(rec.finish());
        }
    }
}

/// Runs a chain-1 workload: producer on `cores[0]`, consumer on `cores[1]`.
pub fn run(w: &Workload, cores: &[CoreId]) -> Result<RunOutcome, String> {
    if w.topology != Topology::Chain(1) || cores.len() < 2 {
        return Err("the disruptor baseline only runs chain-1".to_string());
    }
    let (size, count, rate) = (w.size, w.count, w.rate);
    let ring = w.capacity.next_power_of_two();
    let (producer_core, consumer_core) = (cores[0], cores[1]);
    let (tx, rx) = mpsc::channel();
    let producer = thread::Builder::new()
        .name("disruptor-producer".to_string())
        .spawn(move || {
            let mut report = Report {
                rec: Some(Recorder::new(Some(Snapshots::new(count)))),
                tx,
            };
            let handler = move |e: &Event, _: Sequence, _: bool| {
                if let Some(r) = report.rec.as_mut() {
                    r.record(e.stamp);
                }
            };
            let factory = move || Event {
                stamp: 0,
                payload: Vec::with_capacity(size),
            };
            let mut producer =
                disruptor::build_single_producer(ring, factory, BusySpinWithSpinLoopHint)
                    .pin_at_core(consumer_core.id)
                    .handle_events_with(handler)
                    .build();
            // Pin only now: the crate checks `pin_at_core` against the
            // building thread's affinity, and the consumer thread it spawns
            // inherits that mask until it pins itself.
            core_affinity::set_for_current(producer_core);
            let pacer = rate.map(Pacer::new);
            for seq in 0..count {
                let due = pacer.as_ref().map(|p| p.wait(seq));
                producer.publish(|e| {
                    e.payload.clear();
                    write_payload(&mut e.payload, seq, size);
                    e.stamp = due.unwrap_or_else(now_ns);
                });
            }
            // Dropping the producer waits for the consumer to drain and
            // joins it.
        })
        .map_err(|e| format!("cannot spawn a thread: {e}"))?;
    producer
        .join()
        .map_err(|_| "the disruptor producer panicked".to_string())?;
    let outcome = rx
        .recv()
        .map_err(|_| "the disruptor consumer reported nothing".to_string())?;
    Ok(RunOutcome::from_sinks(count, vec![outcome], 1.0, None))
}
