//! Channel baselines: the pipeline a Rust user would write without the
//! engine. One thread per stage, bounded channels between them (capacity =
//! the engine's ring capacity), each element a heap `Vec<u8>` with its
//! stamp, cloned for every extra fan-out branch, blocking `send`/`recv`.
//! Fan-in is the idiomatic form: the sources' senders are clones of one
//! channel's sender.

use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use core_affinity::CoreId;

use crate::measure::{now_ns, write_payload, Pacer, Recorder, RunOutcome, SinkOutcome, Snapshots};
use crate::scenario::{Graph, Kind, Workload};

/// One element: its creation stamp and its payload.
#[derive(Clone, Debug)]
pub struct Msg {
    /// Creation (or intended send) time, [`now_ns`].
    pub stamp: u64,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A bounded channel flavour.
pub trait Channel {
    /// Sending half.
    type Tx: Clone + Send + 'static;
    /// Receiving half.
    type Rx: Send + 'static;
    /// A channel holding at most `capacity` elements.
    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx);
    /// Blocking send; false if the receiver is gone.
    fn send(tx: &Self::Tx, msg: Msg) -> bool;
    /// Blocking receive; `None` once every sender is gone and it is empty.
    fn recv(rx: &Self::Rx) -> Option<Msg>;
}

/// `crossbeam_channel::bounded`.
pub struct Crossbeam;

impl Channel for Crossbeam {
    type Tx = crossbeam_channel::Sender<Msg>;
    type Rx = crossbeam_channel::Receiver<Msg>;

    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx) {
        crossbeam_channel::bounded(capacity)
    }

    #[inline]
    fn send(tx: &Self::Tx, msg: Msg) -> bool {
        tx.send(msg).is_ok()
    }

    #[inline]
    fn recv(rx: &Self::Rx) -> Option<Msg> {
        rx.recv().ok()
    }
}

/// `std::sync::mpsc::sync_channel`.
pub struct StdMpsc;

impl Channel for StdMpsc {
    type Tx = mpsc::SyncSender<Msg>;
    type Rx = mpsc::Receiver<Msg>;

    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx) {
        mpsc::sync_channel(capacity)
    }

    #[inline]
    fn send(tx: &Self::Tx, msg: Msg) -> bool {
        tx.send(msg).is_ok()
    }

    #[inline]
    fn recv(rx: &Self::Rx) -> Option<Msg> {
        rx.recv().ok()
    }
}

/// Runs `graph` once with channel flavour `C`, stage `i` on `cores[i]`.
pub fn run<C: Channel>(
    w: &Workload,
    graph: &Graph,
    cores: &[CoreId],
) -> Result<RunOutcome, String> {
    let n = graph.nodes.len();
    // One input channel per consuming node (fan-in shares it).
    let mut inputs: Vec<Option<(C::Tx, C::Rx)>> = graph
        .nodes
        .iter()
        .map(|node| match node.kind {
            Kind::Source { .. } => None,
            _ => Some(C::bounded(w.capacity)),
        })
        .collect();
    // Output senders per node, per port.
    let mut outputs: Vec<Vec<Option<C::Tx>>> = graph
        .nodes
        .iter()
        .map(|node| match node.kind {
            Kind::Broadcast(k) => (0..k).map(|_| None).collect(),
            Kind::Sink => Vec::new(),
            _ => vec![None],
        })
        .collect();
    for e in &graph.edges {
        let tx = inputs[e.to].as_ref().expect("a consumer").0.clone();
        outputs[e.from][e.port] = Some(tx);
    }
    let barrier = Arc::new(Barrier::new(n));
    let sinks = graph.sinks();
    let mut handles = Vec::with_capacity(n);
    for (i, node) in graph.nodes.iter().enumerate() {
        // The original senders are dropped here: only the producing
        // threads hold senders, so completion flows downstream.
        let rx = inputs[i].take().map(|(_, rx)| rx);
        let txs: Vec<C::Tx> = std::mem::take(&mut outputs[i])
            .into_iter()
            .map(|t| t.ok_or_else(|| format!("port of '{}' not connected", node.name)))
            .collect::<Result<_, _>>()?;
        let snaps = (sinks.first() == Some(&i))
            .then(|| Snapshots::new((w.count as f64 * graph.deliveries_per_element(i)) as u64));
        let core = cores[i];
        let kind = node.kind;
        let (size, rate, total) = (w.size, w.rate, w.count.max(1));
        let barrier = Arc::clone(&barrier);
        let h = thread::Builder::new()
            .name(node.name.clone())
            .spawn(move || {
                core_affinity::set_for_current(core);
                barrier.wait();
                match kind {
                    Kind::Source { count } => {
                        let rate = rate.map(|r| r * count as f64 / total as f64);
                        source::<C>(&txs[0], count, size, rate);
                        None
                    }
                    Kind::Forward => {
                        let rx = rx.expect("an input");
                        while let Some(m) = C::recv(&rx) {
                            if !C::send(&txs[0], m) {
                                break;
                            }
                        }
                        None
                    }
                    Kind::Broadcast(_) => {
                        let rx = rx.expect("an input");
                        let (last, rest) = txs.split_last().expect("a port");
                        'outer: while let Some(m) = C::recv(&rx) {
                            for tx in rest {
                                if !C::send(tx, m.clone()) {
                                    break 'outer;
                                }
                            }
                            if !C::send(last, m) {
                                break;
                            }
                        }
                        None
                    }
                    Kind::Sink => {
                        let rx = rx.expect("an input");
                        let mut rec = Recorder::new(snaps);
                        while let Some(m) = C::recv(&rx) {
                            rec.record(m.stamp);
                        }
                        Some(rec.finish())
                    }
                }
            })
            .map_err(|e| format!("cannot spawn a thread: {e}"))?;
        handles.push(h);
    }
    let mut outcomes: Vec<SinkOutcome> = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Some(o)) => outcomes.push(o),
            Ok(None) => {}
            Err(_) => return Err("a baseline thread panicked".to_string()),
        }
    }
    let factor = sinks
        .first()
        .map_or(1.0, |&s| graph.deliveries_per_element(s));
    Ok(RunOutcome::from_sinks(w.count, outcomes, factor, None))
}

/// A source: builds each payload like the engine's generator, stamps it
/// (creation time, or intended send time under a rate) and sends it.
fn source<C: Channel>(tx: &C::Tx, count: u64, size: usize, rate: Option<f64>) {
    let pacer = rate.map(Pacer::new);
    for seq in 0..count {
        let due = pacer.as_ref().map(|p| p.wait(seq));
        let mut payload = Vec::with_capacity(size);
        write_payload(&mut payload, seq, size);
        let stamp = due.unwrap_or_else(now_ns);
        if !C::send(tx, Msg { stamp, payload }) {
            return;
        }
    }
}
