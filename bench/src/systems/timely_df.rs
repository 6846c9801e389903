//! `timely`: timely-dataflow as a peer, the same one cross-core hop.
//!
//! Two timely workers (`Config::process(2)`), each pinned inside its worker
//! closure: worker 0 to the source's core, worker 1 to the (first) sink's
//! core. Both build the same dataflow: an input, an `exchange(|_| 1)` that
//! routes every record to worker 1 (the hop), then one counting sink
//! (`inspect_core`) per sink of the scenario on the exchanged stream, each
//! followed by a probe. Worker 1 closes its input at once; worker 0 alone
//! produces `count` records, [`BATCH`] at a time: one clock read per batch
//! stamps all of its records, `send_batch` hands the batch over (the
//! exchange copies each record into a per-destination buffer of 8 KiB and
//! ships full buffers over the process allocator's channel), then
//! `advance_to` closes the batch's epoch. Worker 0 steps once per batch and
//! then while more than [`WINDOW`] epochs are not yet through the sinks
//! (the probe), so it never runs more than a few batches ahead. Worker 1
//! steps (spinning, never parking) until the probe says the stream is done.
//!
//! Records are `Rec { stamp, payload: [u8; 64] }`: the generator's payload
//! (`{"seq":N}` padded with spaces), no heap allocation per record. A
//! fan-out attaches N sinks to the same stream: timely clones each container
//! for every consumer but the last (its design). Sinks read the clock once
//! per container and record latency per run of equal stamps.

use std::cell::RefCell;
use std::rc::Rc;

use core_affinity::CoreId;
use serde::de::{Deserializer, Error as _};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::{Exchange, Input as _, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use crate::measure::{now_ns, write_payload_into, Recorder, RunOutcome, SinkOutcome, Snapshots};
use crate::scenario::{Load, Scenario, Topology, Workload};

/// Payload bytes per record (the array's length).
pub const PAYLOAD: usize = 64;

/// Records per input batch (one stamp, one `send_batch`, one epoch).
pub const BATCH: usize = 1024;

/// Epochs (batches) worker 0 may have in flight before it waits.
pub const WINDOW: u64 = 4;

/// One record: its batch's stamp and the generator's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec {
    /// Creation time of the record's batch, [`now_ns`].
    pub stamp: u64,
    /// `{"seq":N}` padded with spaces.
    pub payload: [u8; PAYLOAD],
}

// Timely's exchange requires serde (records would be serialized between
// processes; between threads of one process they are moved, never
// serialized). serde's derives stop at arrays of 32, hence by hand.
impl Serialize for Rec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.stamp, &self.payload[..]).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Rec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rec, D::Error> {
        let (stamp, bytes): (u64, Vec<u8>) = Deserialize::deserialize(d)?;
        let payload: [u8; PAYLOAD] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| D::Error::invalid_length(b.len(), &"64 payload bytes"))?;
        Ok(Rec { stamp, payload })
    }
}

impl Rec {
    /// Record `seq` stamped `stamp`, its payload written as
    /// [`write_payload_into`] writes it for a 64-byte payload.
    #[inline]
    pub fn new(seq: u64, stamp: u64) -> Rec {
        let mut payload = [b' '; PAYLOAD];
        write_payload_into(&mut payload, seq, PAYLOAD);
        Rec { stamp, payload }
    }
}

/// Worker 0's input: epochs are `u64` batch numbers.
type Input = InputHandle<u64, CapacityContainerBuilder<Vec<Rec>>>;

/// Whether timely runs `scenario` with `size`-byte payloads, its stages
/// placed on `node_cores` (graph order), with `cores` usable.
pub fn supports(
    scenario: &Scenario,
    size: usize,
    node_cores: &[CoreId],
    cores: usize,
) -> Result<(), String> {
    super::hop_sink_cores(scenario.topology, node_cores)?;
    if scenario.load != Load::Saturating {
        return Err("saturating runs only (the source is not paced)".to_string());
    }
    if size != PAYLOAD {
        return Err(format!(
            "records carry a fixed [u8; {PAYLOAD}] payload, not {size} B"
        ));
    }
    if cores < 2 {
        return Err("needs two cores (one worker per core)".to_string());
    }
    Ok(())
}

/// One sink's running measurements (shared with its operator).
struct Sink {
    rec: Recorder,
    checksum: u8,
}

impl Sink {
    fn new(snaps: Option<Snapshots>) -> Sink {
        Sink {
            rec: Recorder::new(snaps),
            checksum: 0,
        }
    }

    /// One delivered container: one clock read, latency per run of equal
    /// stamps.
    #[inline]
    fn take(&mut self, recs: &[Rec]) {
        if recs.is_empty() {
            return;
        }
        let checksum = &mut self.checksum;
        self.rec.record_batch(
            now_ns(),
            recs.iter().map(|r| {
                *checksum ^= r.payload[PAYLOAD - 1];
                r.stamp
            }),
        );
    }

    fn finish(self) -> SinkOutcome {
        std::hint::black_box(self.checksum);
        self.rec.finish()
    }
}

/// Runs the workload once: worker 0 on the source's core produces, worker 1
/// on the first sink's core runs every sink.
pub fn run(w: &Workload, node_cores: &[CoreId]) -> Result<RunOutcome, String> {
    let n_sinks = match w.topology {
        Topology::Chain(1) => 1,
        Topology::FanOut(n) => n.max(1),
        _ => return Err("written for chain-1 and fanout-N only".to_string()),
    };
    if w.size != PAYLOAD {
        return Err(format!(
            "records carry {PAYLOAD} B payloads, not {}",
            w.size
        ));
    }
    let sink_node = match w.topology {
        Topology::Chain(_) => 1,
        _ => 2,
    };
    let worker_cores = [node_cores[0], node_cores[sink_node]];
    let count = w.count;

    let guards = timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        core_affinity::set_for_current(worker_cores[index]);
        let mut input: Input = InputHandle::new();
        let probe = ProbeHandle::new();
        let sinks: Vec<Rc<RefCell<Sink>>> = (0..n_sinks)
            .map(|k| {
                let snaps = (k == 0).then(|| Snapshots::new(count));
                Rc::new(RefCell::new(Sink::new(snaps)))
            })
            .collect();
        worker.dataflow(|scope| {
            let hop = scope.input_from(&mut input).exchange(|_| 1);
            for sink in &sinks {
                let sink = Rc::clone(sink);
                hop.clone()
                    .inspect_core(move |event| {
                        if let Ok((_, recs)) = event {
                            sink.borrow_mut().take(recs);
                        }
                    })
                    .probe_with(&probe);
            }
        });

        if index == 0 {
            produce(worker, &mut input, &probe, count);
        }
        input.close();
        worker.step_while(|| !probe.done());
        // The operators still hold their handles (the dataflow outlives
        // this closure): take the measurements out.
        sinks
            .iter()
            .filter(|_| index == 1)
            .map(|s| std::mem::replace(&mut *s.borrow_mut(), Sink::new(None)).finish())
            .collect::<Vec<SinkOutcome>>()
    })?;
    let mut outcomes = Vec::new();
    for r in guards.join() {
        outcomes.extend(r.map_err(|e| format!("a timely worker failed: {e}"))?);
    }
    if outcomes.len() != n_sinks {
        return Err(format!(
            "{} sink outcomes for {n_sinks} sinks",
            outcomes.len()
        ));
    }
    if let Some((k, o)) = outcomes
        .iter()
        .enumerate()
        .find(|(_, o)| o.received != count)
    {
        return Err(format!(
            "sink {k} received {} of {count} records",
            o.received
        ));
    }
    Ok(RunOutcome::from_sinks(count, outcomes, 1.0, None))
}

/// Worker 0's source: `count` records in batches of [`BATCH`], one stamp
/// per batch, one epoch per batch, at most [`WINDOW`] epochs in flight.
fn produce(
    worker: &mut timely::worker::Worker,
    input: &mut Input,
    probe: &ProbeHandle<u64>,
    count: u64,
) {
    let mut batch: Vec<Rec> = Vec::with_capacity(BATCH);
    let mut seq = 0u64;
    let mut epoch = 0u64;
    while seq < count {
        let n = (BATCH as u64).min(count - seq);
        let stamp = now_ns();
        batch.clear();
        batch.extend((seq..seq + n).map(|s| Rec::new(s, stamp)));
        seq += n;
        // Moves the batch into the dataflow (the exchange copies each
        // record into worker 1's buffer); leaves `batch` unspecified.
        input.send_batch(&mut batch);
        epoch += 1;
        input.advance_to(epoch);
        worker.step();
        // Epochs below `epoch - WINDOW` must have reached every sink.
        let floor = epoch.saturating_sub(WINDOW);
        while probe.less_than(&floor) {
            worker.step();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::write_payload;

    #[test]
    fn payload_matches_the_generator() {
        for seq in [0, 7, 42, 1_234_567, u64::MAX] {
            let mut v = Vec::new();
            write_payload(&mut v, seq, PAYLOAD);
            assert_eq!(&Rec::new(seq, 9).payload[..], &v[..]);
        }
    }

    #[test]
    fn serde_round_trip() {
        let r = Rec::new(123, 456);
        let json = serde_json::to_string(&r).expect("serializes");
        let back: Rec = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Rec>("[1,[1,2,3]]").is_err());
    }

    fn two_cores() -> Option<(CoreId, CoreId)> {
        let cores = core_affinity::get_core_ids()?;
        Some((*cores.first()?, *cores.get(1).unwrap_or(&cores[0])))
    }

    fn workload(topology: Topology, count: u64) -> Workload {
        Workload {
            topology,
            size: PAYLOAD,
            count,
            rate: None,
            capacity: 1024,
        }
    }

    #[test]
    fn every_sink_gets_every_record() {
        let Some((a, b)) = two_cores() else { return };
        // Not a multiple of the batch: the last batch is short.
        let count = 3 * BATCH as u64 + 17;
        let run = run(&workload(Topology::Chain(1), count), &[a, b]).expect("chain-1 runs");
        assert_eq!(run.delivered, count);
        let run = run_fanout(a, b, count);
        assert_eq!(run.delivered, 2 * count);
        assert!(run.end_ns >= run.start_ns);
    }

    fn run_fanout(a: CoreId, b: CoreId, count: u64) -> RunOutcome {
        run(&workload(Topology::FanOut(2), count), &[a, a, b, b]).expect("fanout-2 runs")
    }
}
