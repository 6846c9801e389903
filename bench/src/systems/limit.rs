//! `limit`: the engine's own design with nothing else in it, the ceiling the
//! engine is gated against.
//!
//! The same parts as the engine and no engine code: preallocated slots (the
//! payload in one array, a cache-line-aligned metadata record per slot in
//! another, as the arena lays them out), `u32` slot indices passed over
//! `rtrb` rings to a consumer pinned to the core the engine gives the sink,
//! which reads the element and hands the index back to the producer on a
//! second ring. Everything moves in chunks of at most `batch` (the engine's
//! default batch): one ring commit per batch and per ring, one clock read per
//! batch on each side, one latency record per run of equal stamps (exact
//! counts). A fan-out writes the slot once, sets its refcount to the number
//! of branches and pushes the same index on each branch's ring; the consumer
//! that drops the last reference returns the slot.
//!
//! It has no stages, no dynamic dispatch, no per-stage counters, no
//! completion protocol beyond ring abandonment, and its threads spin (then
//! yield) when idle instead of parking: a pipeline engine cannot go faster
//! than this on the same machine, so `engine / limit` moves with the CPU
//! where `engine / crossbeam` (allocator-bound) does not.

use std::cell::UnsafeCell;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use core_affinity::CoreId;
use rtrb::{Consumer, Producer, RingBuffer};

use crate::measure::{now_ns, write_payload_into, Recorder, RunOutcome, SinkOutcome, Snapshots};
use crate::scenario::{Graph, Topology, Workload};

/// Elements per chunk: the engine's default batch.
pub fn batch() -> usize {
    dataplane::Settings::default().batch
}

/// Spins before an idle thread yields.
const SPINS: u32 = 64;

/// A slot's metadata, on its own cache line like the arena's.
#[repr(align(64))]
struct SlotMeta {
    refs: AtomicU32,
    len: UnsafeCell<u32>,
    seq: UnsafeCell<u64>,
    stamp: UnsafeCell<u64>,
}

/// The preallocated slots.
struct Slots {
    size: usize,
    meta: Box<[SlotMeta]>,
    data: Box<[UnsafeCell<u8>]>,
}

// SAFETY: a slot is written only by the producer while it owns the index
// (taken from its free list, before the index is pushed on any ring) and read
// only by consumers that received the index from a ring (Release push /
// Acquire pop orders the writes before the reads); it returns to the
// producer over a ring after the last reference is dropped (the last
// consumer's Acquire load of `refs` orders the other consumers' reads before
// its push), so no slot is read while it is written.
unsafe impl Sync for Slots {}

impl Slots {
    fn new(count: usize, size: usize) -> Slots {
        Slots {
            size,
            meta: (0..count)
                .map(|_| SlotMeta {
                    refs: AtomicU32::new(0),
                    len: UnsafeCell::new(0),
                    seq: UnsafeCell::new(0),
                    stamp: UnsafeCell::new(0),
                })
                .collect(),
            // Written now: the pages are faulted in before the run.
            data: (0..count * size).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    /// Fills slot `i` (which the producer owns) with element `seq`.
    #[inline]
    fn write(&self, i: u32, seq: u64, stamp: u64, payload_len: usize, refs: u32) {
        let m = &self.meta[i as usize];
        let start = i as usize * self.size;
        // SAFETY: the producer owns slot `i` (see `Sync`); the range is inside
        // `data` because `i < count` and `payload_len <= size`, and
        // `UnsafeCell<u8>` has the layout of `u8`.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(
                UnsafeCell::raw_get(self.data.as_ptr().add(start)),
                self.size,
            )
        };
        let len = write_payload_into(buf, seq, payload_len);
        // SAFETY: as above, the producer owns the slot.
        unsafe {
            *m.len.get() = len as u32;
            *m.seq.get() = seq;
            *m.stamp.get() = stamp;
        }
        m.refs.store(refs, Ordering::Relaxed);
    }

    /// Reads slot `i` (the caller holds a reference): its stamp and a byte
    /// of the payload (so the payload's cache line really moves).
    #[inline]
    fn read(&self, i: u32) -> (u64, u8) {
        let m = &self.meta[i as usize];
        // SAFETY: the caller received `i` from a ring and still holds its
        // reference, so the producer does not write it (see `Sync`).
        unsafe {
            let len = *m.len.get() as usize;
            let start = i as usize * self.size;
            let last = *UnsafeCell::raw_get(self.data.as_ptr().add(start + len.max(1) - 1));
            (*m.stamp.get(), last)
        }
    }

    /// Drops one reference; true when it was the last.
    #[inline]
    fn release(&self, i: u32) -> bool {
        let refs = &self.meta[i as usize].refs;
        // As the arena does: a sole owner needs no locked read-modify-write.
        if refs.load(Ordering::Acquire) == 1 {
            refs.store(0, Ordering::Relaxed);
            return true;
        }
        refs.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

fn idle(spins: &mut u32) {
    *spins += 1;
    if *spins < SPINS {
        spin_loop();
    } else {
        *spins = 0;
        thread::yield_now();
    }
}

/// Whether the limit can run `topology` placed on `node_cores` (graph
/// order): one source and its sinks (through at most a broadcast, which is
/// not a thread here), no sink on the source's core (a bare hop is between
/// cores).
pub fn supports(topology: Topology, node_cores: &[CoreId]) -> Result<(), String> {
    super::hop_sink_cores(topology, node_cores).map(|_| ())
}

/// One consumer thread's share: the rings of the sinks placed on its core,
/// each with its sink's measurements.
struct ConsumerPart {
    core: CoreId,
    sinks: Vec<(Consumer<u32>, Recorder)>,
    back: Producer<u32>,
}

/// Runs the workload once: the producer on the source's core, one consumer
/// thread per distinct sink core.
pub fn run(w: &Workload, graph: &Graph, cores: &[CoreId]) -> Result<RunOutcome, String> {
    supports(w.topology, cores)?;
    let sinks = graph.sinks();
    let branches = sinks.len().max(1);
    let src_core = cores[0];
    let batch = batch();
    let capacity = w.capacity.max(batch);
    // Every ring full at once, plus a batch in flight on each side.
    let n_slots = capacity * branches + 4 * batch;
    let slot_size = w.size.max(64).next_power_of_two();
    let slots = Arc::new(Slots::new(n_slots, slot_size));

    // Group the sinks by core: one consumer thread per core.
    let mut parts: Vec<ConsumerPart> = Vec::new();
    let mut returns: Vec<Consumer<u32>> = Vec::new();
    let mut outs: Vec<Producer<u32>> = Vec::new();
    for (k, &s) in sinks.iter().enumerate() {
        let core = cores[s];
        let (p, c) = RingBuffer::new(capacity);
        outs.push(p);
        // The first sink takes the allocation snapshots (one delivery per
        // element created).
        let sink = (c, Recorder::new((k == 0).then(|| Snapshots::new(w.count))));
        match parts.iter_mut().find(|p| p.core.id == core.id) {
            Some(part) => part.sinks.push(sink),
            None => {
                let (back, ret) = RingBuffer::new(n_slots);
                returns.push(ret);
                parts.push(ConsumerPart {
                    core,
                    sinks: vec![sink],
                    back,
                });
            }
        }
    }
    if outs.is_empty() {
        return Err("no sink".to_string());
    }

    let barrier = Arc::new(Barrier::new(parts.len() + 1));
    let mut handles = Vec::new();
    for part in parts {
        let slots = Arc::clone(&slots);
        let barrier = Arc::clone(&barrier);
        handles.push(
            thread::Builder::new()
                .name(format!("limit-consumer-{}", part.core.id))
                .spawn(move || consume(part, &slots, batch, &barrier))
                .map_err(|e| format!("cannot spawn a thread: {e}"))?,
        );
    }
    let (count, size, rate) = (w.count, w.size, w.rate);
    let producer = {
        let slots = Arc::clone(&slots);
        let barrier = Arc::clone(&barrier);
        thread::Builder::new()
            .name("limit-producer".to_string())
            .spawn(move || {
                core_affinity::set_for_current(src_core);
                barrier.wait();
                produce(&slots, outs, returns, n_slots, count, size, rate, batch);
            })
            .map_err(|e| format!("cannot spawn a thread: {e}"))?
    };
    producer
        .join()
        .map_err(|_| "the limit producer panicked".to_string())?;
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.extend(
            h.join()
                .map_err(|_| "a limit consumer panicked".to_string())?,
        );
    }
    Ok(RunOutcome::from_sinks(count, outcomes, 1.0, None))
}

/// The producer: takes free slots, fills a batch, pushes its indices on
/// every branch's ring with one chunk commit each.
#[allow(clippy::too_many_arguments)]
fn produce(
    slots: &Slots,
    mut outs: Vec<Producer<u32>>,
    mut returns: Vec<Consumer<u32>>,
    n_slots: usize,
    count: u64,
    size: usize,
    rate: Option<f64>,
    batch: usize,
) {
    let mut free: Vec<u32> = (0..n_slots as u32).rev().collect();
    let mut taken: Vec<u32> = Vec::with_capacity(batch);
    let refs = outs.len() as u32;
    let start = now_ns();
    let ns_per = rate.map(|r| 1e9 / r);
    let mut seq = 0u64;
    let mut spins = 0;
    while seq < count {
        for r in &mut returns {
            let n = r.slots();
            if n > 0 {
                let chunk = r.read_chunk(n).expect("n is at most the filled slots");
                let (a, b) = chunk.as_slices();
                free.extend_from_slice(a);
                free.extend_from_slice(b);
                chunk.commit_all();
            }
        }
        let room = outs.iter().map(Producer::slots).min().unwrap_or(0);
        let mut n = (batch.min(room).min(free.len()) as u64).min(count - seq);
        let now = now_ns();
        if let Some(per) = ns_per {
            // Under a fixed rate: only the elements already due.
            let due = ((now.saturating_sub(start)) as f64 / per) as u64 + 1;
            n = n.min(due.saturating_sub(seq));
        }
        if n == 0 {
            idle(&mut spins);
            continue;
        }
        spins = 0;
        taken.clear();
        for _ in 0..n {
            let i = free.pop().expect("n is at most the free slots");
            let stamp = match ns_per {
                Some(per) => start + (seq as f64 * per) as u64,
                None => now,
            };
            slots.write(i, seq, stamp, size, refs);
            taken.push(i);
            seq += 1;
        }
        for out in &mut outs {
            let chunk = out
                .write_chunk_uninit(taken.len())
                .expect("n is at most the free space");
            chunk.fill_from_iter(taken.iter().copied());
        }
    }
    // Dropping the producers tells the consumers the stream is complete.
}

/// A consumer thread: drains its rings round robin, one chunk and one
/// clock read per batch, records latency per run of equal stamps, returns
/// each slot whose last reference it dropped.
fn consume(part: ConsumerPart, slots: &Slots, batch: usize, barrier: &Barrier) -> Vec<SinkOutcome> {
    core_affinity::set_for_current(part.core);
    let ConsumerPart {
        mut sinks,
        mut back,
        ..
    } = part;
    barrier.wait();
    let mut freed: Vec<u32> = Vec::with_capacity(batch * sinks.len());
    let mut checksum = 0u8;
    let mut spins = 0;
    loop {
        let mut moved = false;
        let mut finished = true;
        for (ring, rec) in &mut sinks {
            let abandoned = ring.is_abandoned();
            let n = ring.slots().min(batch);
            if n == 0 {
                finished &= abandoned;
                continue;
            }
            finished = false;
            moved = true;
            let now = now_ns();
            let chunk = ring.read_chunk(n).expect("n is at most the filled slots");
            let (a, b) = chunk.as_slices();
            rec.record_batch(
                now,
                a.iter().chain(b).map(|&i| {
                    let (stamp, byte) = slots.read(i);
                    checksum ^= byte;
                    if slots.release(i) {
                        freed.push(i);
                    }
                    stamp
                }),
            );
            chunk.commit_all();
        }
        if !freed.is_empty() {
            let chunk = back
                .write_chunk_uninit(freed.len())
                .expect("the return ring holds every slot");
            chunk.fill_from_iter(freed.drain(..));
        }
        if finished {
            break;
        }
        if moved {
            spins = 0;
        } else {
            idle(&mut spins);
        }
    }
    std::hint::black_box(checksum);
    sinks.into_iter().map(|(_, rec)| rec.finish()).collect()
}
