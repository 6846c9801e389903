//! Checkpoints: a consistent snapshot of every stage's state, taken while
//! the pipeline runs, from which a later run resumes.
//!
//! The [`Coordinator`] asks for checkpoint `id` every `interval_ms`. Each
//! source, at the end of its current batch, snapshots its position (a
//! file's offset, a generator's sequence number) and sends a barrier in
//! band behind its data. A stage with several inputs *aligns*: it stops
//! reading an input once that input's barrier arrives, until every input
//! has delivered it (Chandy-Lamport, as Flink and LaminarDB do); then it
//! snapshots its state and passes the barrier on. Each snapshot goes to the
//! coordinator, and once every stage has sent its own for `id` the
//! checkpoint is complete and written to `dir` atomically (temporary
//! file, fsync, rename, fsync of the directory) with a version and a
//! checksum. The last two are kept; a corrupt newest one falls back to the
//! one before.
//!
//! A stage that has finished (its inputs ended) contributes its final
//! state to every later checkpoint, so a pipeline whose parts end at
//! different times still completes its checkpoints.
//!
//! Exactly-once output follows from this: `file-out` flushes and fsyncs
//! at the barrier and records its length in its snapshot; a run resumed
//! from that checkpoint truncates the file to that length and reads its
//! input again from the matching offset.

mod file;
mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub use file::{latest, list, read_file, shape_hash, Listed, Snapshot, FORMAT_VERSION};
pub use state::{StateReader, StateWriter};

/// Writes a checkpoint atomically (see [`file`]).
pub(crate) fn write_snapshot(dir: &std::path::Path, s: &Snapshot) -> std::io::Result<PathBuf> {
    file::write(dir, s)
}

/// `[engine] checkpoint = { dir = "state", interval_ms = 1000 }`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSettings {
    /// Where checkpoints are written (created if missing).
    pub dir: PathBuf,
    /// Time between checkpoints (default 1000).
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
}

fn default_interval() -> u64 {
    1000
}

/// What a stage sends the coordinator.
pub(crate) enum Ack {
    /// Its state for checkpoint `id`.
    State {
        id: u64,
        node: usize,
        state: Vec<u8>,
    },
    /// It has finished; `state` stands for it in every later checkpoint.
    Finished { node: usize, state: Vec<u8> },
}

/// The stages' side of the coordinator: which checkpoint is asked for, and
/// where snapshots go. Cloned into every node of a checkpointed pipeline.
#[derive(Clone)]
pub(crate) struct Barriers {
    requested: Arc<AtomicU64>,
    acks: mpsc::Sender<Ack>,
    replay: Arc<std::sync::Mutex<Option<Replay>>>,
}

/// A stage of a checkpointed pipeline failed and its restart policy says
/// to go on: the run stops, and the pipeline is to run again from its last
/// checkpoint (its state, its sources' positions) after `after_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    /// The stage that failed.
    pub stage: String,
    /// How it failed.
    pub reason: String,
    /// The backoff its policy asks for before the replay.
    pub after_ms: u64,
}

impl Barriers {
    /// The newest checkpoint asked for (0: none yet).
    #[inline]
    pub(crate) fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Asks for the pipeline to be replayed from its last checkpoint (the
    /// first request of a run counts).
    pub(crate) fn request_replay(&self, r: Replay) {
        let mut slot = self
            .replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(r);
    }

    /// The replay asked for during the run, if any.
    pub(crate) fn replay(&self) -> Option<Replay> {
        self.replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sends a stage's snapshot (a run that is ending may have stopped
    /// listening: nothing to do then).
    pub(crate) fn ack(&self, ack: Ack) {
        let _ = self.acks.send(ack);
    }
}

/// What the coordinator did, for the run report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints completed and written.
    pub completed: u64,
    /// The id of the last one written (0: none).
    pub last_id: u64,
    /// Checkpoints that could not be written (I/O errors, logged).
    pub write_errors: u64,
    /// The checkpoint the run resumed from, if any.
    pub restored_from: Option<u64>,
}

/// A source's [`Commits`] listener: `on_complete` gets the node state the
/// completed checkpoint holds for node `node`.
pub(crate) struct Listener {
    pub(crate) node: usize,
    pub(crate) on_complete: crate::stage::OnComplete,
}

/// Asks for checkpoints on a timer, collects the stages' snapshots, writes
/// each complete checkpoint (when the pipeline stores them) and tells the
/// sources that listen for completions. Runs on its own thread.
///
/// Without a directory it only learns completions: a pipeline whose source
/// commits what its sinks finished with (Kafka offsets) runs its barriers
/// for that alone, at the source's commit interval.
///
/// [`Commits`]: crate::stage::Commits
pub(crate) struct Coordinator {
    dir: Option<PathBuf>,
    interval_ms: u64,
    listeners: Vec<Listener>,
    nodes: Vec<String>,
    shape: u64,
    requested: Arc<AtomicU64>,
    acks: mpsc::Receiver<Ack>,
    /// Node states per checkpoint id still being collected.
    pending: BTreeMap<u64, Vec<Option<Vec<u8>>>>,
    /// Final states of finished nodes.
    finished: Vec<Option<Vec<u8>>>,
    /// Whether the checkpoint of the finished pipeline was written.
    final_written: bool,
    stats: CheckpointStats,
}

impl Coordinator {
    /// A coordinator for `nodes` (names, in node index order) whose ids
    /// continue after `last_id`, and the handle its stages use.
    pub(crate) fn new(
        dir: Option<PathBuf>,
        interval_ms: u64,
        nodes: Vec<String>,
        shape: u64,
        last_id: u64,
        listeners: Vec<Listener>,
    ) -> (Coordinator, Barriers) {
        let requested = Arc::new(AtomicU64::new(last_id));
        let (tx, rx) = mpsc::channel();
        let n = nodes.len();
        (
            Coordinator {
                dir,
                interval_ms,
                listeners,
                nodes,
                shape,
                requested: Arc::clone(&requested),
                acks: rx,
                pending: BTreeMap::new(),
                finished: vec![None; n],
                final_written: false,
                stats: CheckpointStats {
                    last_id,
                    ..CheckpointStats::default()
                },
            },
            Barriers {
                requested,
                acks: tx,
                replay: Arc::default(),
            },
        )
    }

    /// Runs until `stop` is set (the workers have finished), then returns
    /// what it did. A new checkpoint is asked for once the interval has
    /// passed and the previous one is complete, so a slow stage delays
    /// checkpoints instead of piling them up.
    pub(crate) fn run(mut self, stop: Arc<AtomicBool>) -> CheckpointStats {
        let interval = Duration::from_millis(self.interval_ms.max(1));
        let mut next = Instant::now() + interval;
        let poll = Duration::from_millis(20).min(interval);
        loop {
            match self.acks.recv_timeout(poll) {
                Ok(ack) => self.take(ack),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(ack) = self.acks.try_recv() {
                self.take(ack);
            }
            if stop.load(Ordering::Acquire) {
                // The workers have finished: every ack they sent is in the
                // channel by now, the last ones (the final checkpoint, and
                // with it a source's last commit) maybe after the drain
                // above.
                while let Ok(ack) = self.acks.try_recv() {
                    self.take(ack);
                }
                break;
            }
            if Instant::now() >= next && self.pending.is_empty() {
                let id = self.requested.load(Ordering::Relaxed) + 1;
                self.pending.insert(id, vec![None; self.nodes.len()]);
                self.requested.store(id, Ordering::Release);
                next = Instant::now() + interval;
            }
        }
        self.stats
    }

    fn take(&mut self, ack: Ack) {
        match ack {
            Ack::State { id, node, state } => {
                if let Some(states) = self.pending.get_mut(&id) {
                    states[node] = Some(state);
                }
            }
            Ack::Finished { node, state } => {
                self.finished[node] = Some(state);
            }
        }
        // Complete checkpoints, oldest first.
        let complete: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, states)| {
                states
                    .iter()
                    .zip(&self.finished)
                    .all(|(s, f)| s.is_some() || f.is_some())
            })
            .map(|(&id, _)| id)
            .collect();
        let mut complete = complete;
        if !self.final_written && self.finished.iter().all(Option::is_some) {
            // Every stage has finished: one last checkpoint holds where the
            // run ended, so a later start resumes after it.
            self.final_written = true;
            let id = self.requested.load(Ordering::Relaxed) + 1;
            self.requested.store(id, Ordering::Release);
            self.pending.insert(id, vec![None; self.nodes.len()]);
            complete.push(id);
        }
        for id in complete {
            let states = self.pending.remove(&id).expect("listed above");
            let nodes: Vec<(String, Vec<u8>)> = states
                .into_iter()
                .zip(&self.finished)
                .zip(&self.nodes)
                .map(|((s, f), name)| (name.clone(), s.or_else(|| f.clone()).unwrap_or_default()))
                .collect();
            let snapshot = Snapshot {
                id,
                unix_ms: unix_ms(),
                shape: self.shape,
                nodes,
            };
            if let Some(dir) = &self.dir {
                if let Err(e) = file::write(dir, &snapshot) {
                    // Not durable: nobody may act on it.
                    self.stats.write_errors += 1;
                    log::error!(
                        "checkpoint {id} could not be written to {}: {e}",
                        dir.display()
                    );
                    continue;
                }
            }
            self.stats.completed += 1;
            self.stats.last_id = id;
            for l in &mut self.listeners {
                (l.on_complete)(id, &snapshot.nodes[l.node].1);
            }
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
