//! Running a validated pipeline: one pinned worker thread per core in use,
//! stages packed onto workers, rings wired between them, completion flowing
//! from sources to sinks, then a [`RunReport`].

mod checkpoints;
mod drain;
pub(crate) mod node;
pub mod restart;
mod wiring;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::arena::Arena;
use crate::checkpoint::{self, Snapshot};
use crate::metrics::{DrainTimeout, LiveCounters, PlacementEntry, RunReport, StageReport};
use crate::observe::tap::RefPoint;
use crate::observe::{LiveHandle, LiveView, NodeLive};
use crate::ring::{self, wait::Parker};
use crate::stage::StageInfo;
use crate::topology::decl::{NodeDecl, Settings};
use crate::topology::{ConfigError, ConfigErrors, PipelineBuilder, Plan};
use drain::wait_for_workers;
use node::{Node, Restart, SourceTime, Timing};
use wiring::Wiring;
use worker::{Shared, Worker};

/// How often the main thread looks at the drain state while it waits.
const POLL: Duration = Duration::from_millis(50);

/// Tells the main thread that worker `.0` has finished (or panicked): sent
/// when the worker's thread drops it.
struct Finished(usize, mpsc::Sender<usize>);

impl Drop for Finished {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

/// A running pipeline's arena, readable from another thread (a signal
/// handler's thread, say) to count what is still in flight.
#[derive(Clone, Default)]
pub struct InFlight(Arc<OnceLock<Arc<Arena>>>);

impl InFlight {
    /// Arena slots held right now (elements in flight, plus free slots
    /// cached by running workers); `None` before the run starts.
    pub fn held_slots(&self) -> Option<usize> {
        self.0.get().map(|a| a.held_slots())
    }
}

/// A validated pipeline, ready to run: its [`Plan`] and what a run shares
/// with the outside (the stop flag, the arena, the live view). Made by
/// [`PipelineBuilder::build`].
pub struct Pipeline {
    plan: Plan,
    stop: Arc<AtomicBool>,
    held: Arc<OnceLock<Arc<Arena>>>,
    live: LiveHandle,
    /// The checkpoint to resume from, once [`Pipeline::resume`] has looked.
    resume: Option<Option<Snapshot>>,
    /// Whether [`Pipeline::open`] has run.
    opened: bool,
}

impl PipelineBuilder {
    /// Validates everything and returns a runnable pipeline, or every
    /// problem found (see [`PipelineBuilder::plan`]).
    ///
    /// Reads the usable cores with `core_affinity::get_core_ids()`, which
    /// reports the *calling thread's* affinity: call this from the main
    /// thread, before anything is pinned.
    pub fn build(self) -> Result<Pipeline, ConfigErrors> {
        self.plan().map(Pipeline::new)
    }
}

impl Pipeline {
    /// A pipeline that runs `plan`.
    pub fn new(plan: Plan) -> Pipeline {
        Pipeline {
            plan,
            stop: Arc::new(AtomicBool::new(false)),
            held: Arc::default(),
            live: LiveHandle::default(),
            resume: None,
            opened: false,
        }
    }

    /// Opens what the sources take from outside (their sockets), on this
    /// thread: every failure, each naming its node, as config errors.
    /// [`run`](Self::run) calls this itself when it was not.
    pub fn open(&mut self) -> Result<(), ConfigErrors> {
        self.opened = true;
        let mut errors = Vec::new();
        for n in &mut self.plan.nodes {
            if let crate::stage::Stage::Source(s) = &mut n.stage {
                if let Err(e) = s.open() {
                    errors.push(
                        ConfigError::resource(&n.origin, format!("node '{}': {e}", n.name))
                            .at_node(n.name.as_str()),
                    );
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// What runs where: nodes, edges, placement, settings.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The hash a checkpoint of this pipeline carries (see
    /// [`Plan::shape`]).
    pub fn shape(&self) -> u64 {
        self.plan.shape()
    }

    /// With checkpoints on, looks for the newest usable checkpoint in the
    /// checkpoint directory to resume from, and returns its id (`None`:
    /// the run starts fresh). `fresh`: removes the existing checkpoints
    /// instead. A checkpoint of another pipeline shape is an error naming
    /// `--fresh`. [`run`](Self::run) calls this itself when it was not.
    pub fn resume(&mut self, fresh: bool) -> Result<Option<u64>, String> {
        let Some(c) = &self.plan.settings.checkpoint else {
            self.resume = Some(None);
            return Ok(None);
        };
        let dir = c.dir.clone();
        if fresh {
            for l in checkpoint::list(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
                std::fs::remove_file(&l.path)
                    .map_err(|e| format!("cannot remove {}: {e}", l.path.display()))?;
            }
            self.resume = Some(None);
            return Ok(None);
        }
        let latest = checkpoint::latest(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some(s) = &latest {
            if s.shape != self.shape() {
                return Err(format!(
                    "checkpoint {} in {} was taken from a pipeline of another shape (its nodes or edges changed); run with --fresh to discard it and start over",
                    s.id,
                    dir.display()
                ));
            }
        }
        let id = latest.as_ref().map(|s| s.id);
        self.resume = Some(latest);
        Ok(id)
    }

    /// The arena's slot count.
    pub fn arena_slots(&self) -> u32 {
        self.plan.slots
    }

    /// The engine settings in force.
    pub fn settings(&self) -> &Settings {
        &self.plan.settings
    }

    /// A flag that, once set, makes every source finish: the pipeline then
    /// drains and completes normally (nothing already accepted is lost).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// A view of the run's arena for counting what is in flight (e.g. when a
    /// second signal ends the process before the drain finished).
    pub fn in_flight(&self) -> InFlight {
        InFlight(Arc::clone(&self.held))
    }

    /// Where the run publishes its [`LiveView`] (counters, queues, taps)
    /// when it starts: for a control endpoint started before `run`.
    pub fn live(&self) -> LiveHandle {
        self.live.clone()
    }

    /// Where each stage will run, in topological order.
    pub fn placement(&self) -> Vec<PlacementEntry> {
        self.plan.placement()
    }

    /// The stage names in topological order.
    pub fn stage_names(&self) -> Vec<&str> {
        self.plan.stage_names()
    }

    /// Runs the pipeline to completion on pinned worker threads and returns
    /// what happened. Blocks the calling thread.
    pub fn run(mut self) -> RunReport {
        if !self.opened {
            if let Err(errors) = self.open() {
                let lines = errors.0.iter().map(ToString::to_string).collect();
                return not_started(
                    self.placement(),
                    &self.plan.settings,
                    self.plan.slots,
                    lines,
                );
            }
        }
        if self.resume.is_none() {
            if let Err(e) = self.resume(false) {
                return not_started(
                    self.placement(),
                    &self.plan.settings,
                    self.plan.slots,
                    vec![e],
                );
            }
        }
        let snapshot = self.resume.take().flatten();
        let shape = self.shape();
        let placement = self.placement();
        let worker_of = self.plan.worker_of();
        let n_workers = worker_of.iter().copied().max().map_or(0, |m| m + 1);
        let arena = Arc::new(Arena::new(self.plan.slots, self.plan.settings.slot_size));

        let n = self.plan.nodes.len();
        let Wiring {
            inputs,
            outputs,
            mut neighbours,
            stats: edge_stats,
            mut taps,
            mut edge_inputs,
        } = wiring::wire(&self.plan, &worker_of, n_workers);
        let edges_live = wiring::edges_live(&self.plan, &edge_stats);
        let mut nodes_live = Vec::with_capacity(n);

        let mut edge_reports = wiring::edge_reports(&self.plan);

        // Build the nodes and hand them to their workers in topological order
        // (upstream stages first within a round).
        let n_sources = self
            .plan
            .nodes
            .iter()
            .filter(|d| d.stage.role() == crate::stage::Role::Source)
            .count();
        let mut decls: Vec<Option<NodeDecl>> = self.plan.nodes.into_iter().map(Some).collect();
        let mut inputs: Vec<Option<_>> = inputs.into_iter().map(Some).collect();
        let mut outputs: Vec<Option<_>> = outputs.into_iter().map(Some).collect();
        let mut workers: Vec<Worker> = (0..n_workers)
            .map(|id| Worker {
                id,
                core: None,
                nodes: Vec::new(),
                neighbours: std::mem::take(&mut neighbours[id]),
            })
            .collect();
        // Event time, checkpoints and timers: only a pipeline that uses
        // one of them gives its nodes a `Timing` (and so looks for control
        // elements).
        let (coordinator, commits) = checkpoints::coordinator(
            &mut decls,
            self.plan.settings.checkpoint.as_ref(),
            shape,
            snapshot.as_ref().map_or(0, |s| s.id),
        );
        // A processor with timers sends the final watermark on when its
        // inputs end, so every consumer must then read control elements.
        let timers = decls.iter_mut().flatten().any(|d| match &mut d.stage {
            crate::stage::Stage::Processor(p) => p.timers().is_some(),
            _ => false,
        });
        let uses_timing = self.plan.settings.checkpoint.is_some()
            || commits
            || timers
            || decls.iter().flatten().any(|d| d.source_time.is_some());
        let barriers = coordinator.as_ref().map(|(_, b)| b.clone());
        let replay = barriers.clone();
        let last_checkpoint = snapshot.as_ref().map_or(0, |s| s.id);
        let mut restore_errors = Vec::new();
        let mut targets = Vec::new();
        // Per stage: what a report needs if its worker is still running at
        // the drain deadline.
        let mut live: Vec<Arc<LiveCounters>> = Vec::with_capacity(n);
        for &i in &self.plan.order {
            let d = decls[i].take().expect("each node once");
            let w = &mut workers[worker_of[i]];
            if self.plan.settings.pin {
                w.core = Some(self.plan.cores[i]);
            }
            let info = StageInfo {
                name: d.name.clone(),
                index: i,
                slot_size: self.plan.settings.slot_size,
            };
            let report = StageReport::new(
                &d.name,
                &d.component,
                d.stage.role(),
                d.stage.output_ports(),
                self.plan.settings.stage_metrics,
            );
            if !d.targets.is_empty() {
                targets.push((d.name.clone(), d.targets.clone()));
            }
            let ports = d.stage.output_ports();
            let counters = Arc::new(LiveCounters::new(ports.len()));
            live.push(Arc::clone(&counters));
            nodes_live.push(NodeLive {
                name: d.name.clone(),
                component: d.component.clone(),
                role: d.stage.role(),
                worker: worker_of[i],
                ports,
                counters: Arc::clone(&counters),
                taps: std::mem::take(&mut taps[i]),
                mux: match &d.stage {
                    crate::stage::Stage::Sink(s) => s.mux_point(),
                    _ => None,
                },
                inputs: std::mem::take(&mut edge_inputs[i]),
            });
            let restart = d
                .rebuild
                .map(|rebuild| Restart::new(restart::Tracker::new(d.restart), rebuild));
            let node_inputs: Vec<ring::EdgeIn> = inputs[i]
                .take()
                .expect("each node once")
                .into_iter()
                .collect();
            let timing = uses_timing.then(|| {
                Box::new(Timing::new(
                    d.source_time
                        .clone()
                        .map(|(event_time, watermark)| SourceTime {
                            event_time,
                            watermark,
                        }),
                    node_inputs.len(),
                    barriers.clone(),
                    last_checkpoint,
                ))
            });
            let mut node = Node::new(
                info,
                d.stage,
                report,
                node_inputs,
                outputs[i].take().expect("each node once"),
                counters,
                timing,
                restart,
            );
            if let Some(state) = snapshot.as_ref().and_then(|s| s.state_of(&d.name)) {
                if let Err(e) = node.restore(state) {
                    restore_errors.push(format!("stage '{}': restoring checkpoint: {e}", d.name));
                }
            }
            w.nodes.push(node);
        }
        drop(barriers);
        if let (Some(c), None) = (&self.plan.settings.checkpoint, &snapshot) {
            checkpoints::write_zero(c, shape, &mut workers, &mut restore_errors);
        }
        if !restore_errors.is_empty() {
            return not_started(
                placement,
                &self.plan.settings,
                self.plan.slots,
                restore_errors,
            );
        }
        let coordinator_stop = Arc::new(AtomicBool::new(false));
        let coordinator = coordinator.map(|(c, _)| {
            let stop = Arc::clone(&coordinator_stop);
            std::thread::Builder::new()
                .name("dataplane-checkpoints".into())
                .spawn(move || c.run(stop))
                .expect("spawn the checkpoint coordinator")
        });

        let shared = Arc::new(Shared {
            arena: Arc::clone(&arena),
            parkers: (0..n_workers).map(|_| Parker::default()).collect(),
            stop: Arc::clone(&self.stop),
            sources_left: AtomicUsize::new(n_sources),
            wait: self.plan.settings.wait,
            batch: self.plan.settings.batch,
        });
        let _ = self.held.set(Arc::clone(&arena));
        // The run's clock starts when the workers do: arena pre-faulting and
        // ring wiring are set-up, not throughput.
        let started = Instant::now();
        // Subscribers may hold the slots the pipeline itself never needs
        // (see `required_slots`), shared among the muxes.
        let required =
            Plan::required_slots(&self.plan.edges, n, n_workers, self.plan.settings.batch);
        let spare = (self.plan.slots as u64).saturating_sub(required) as usize;
        let muxes: Vec<Arc<RefPoint>> = nodes_live.iter().filter_map(|n| n.mux.clone()).collect();
        for m in &muxes {
            m.set_cap(spare / muxes.len().max(1));
        }
        let _ = self.live.0.set(Arc::new(LiveView {
            nodes: nodes_live,
            edges: edges_live,
            arena: Arc::clone(&arena),
            started,
        }));
        let (done_tx, done_rx) = mpsc::channel();
        let mut handles: Vec<Option<_>> = workers
            .into_iter()
            .map(|w| {
                let shared = Arc::clone(&shared);
                let done = Finished(w.id, done_tx.clone());
                Some(
                    std::thread::Builder::new()
                        .name(format!("dataplane-w{}", w.id))
                        .spawn(move || {
                            let _done = done;
                            w.run(shared)
                        })
                        .expect("spawn worker thread"),
                )
            })
            .collect();
        drop(done_tx);

        let stuck = wait_for_workers(
            &self.stop,
            self.plan.settings.drain_timeout_ms,
            &shared,
            &done_rx,
            handles.len(),
        );
        let mut stages = Vec::with_capacity(n);
        let mut panics = Vec::new();
        let mut pinned_all = self.plan.settings.pin;
        for (w, slot) in handles.iter_mut().enumerate() {
            if stuck.contains(&w) {
                // Left running: the process is about to report and exit.
                continue;
            }
            let Some(h) = slot.take() else { continue };
            match h.join() {
                Ok(result) => {
                    pinned_all &= result.pinned;
                    stages.extend(result.reports);
                }
                Err(p) => {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_string());
                    panics.push(format!("worker {w} panicked: {msg}"));
                }
            }
        }
        let stuck_stages: Vec<String> = placement
            .iter()
            .filter(|p| stuck.contains(&p.worker))
            .map(|p| p.stage.clone())
            .collect();
        // Stages of a worker still running: their counters as last
        // published, marked as such.
        // `live` and `placement` both follow the topological order.
        for (p, counters) in placement.iter().zip(&live) {
            if !stuck.contains(&p.worker) {
                continue;
            }
            let mut r = StageReport::new(&p.stage, &p.component, p.role, Vec::new(), false);
            r.latency = None;
            r.worker = p.worker;
            (r.received, r.sent, r.dropped) = counters.snapshot();
            r.failure = Some(
                "still running at the drain deadline (counters as last published)".to_string(),
            );
            stages.push(r);
        }
        let elapsed = started.elapsed();
        coordinator_stop.store(true, Ordering::Release);
        let checkpoints = coordinator.and_then(|h| h.join().ok()).map(|mut stats| {
            stats.restored_from = snapshot.as_ref().map(|s| s.id);
            stats
        });
        let undelivered = (!stuck.is_empty()).then(|| arena.held_slots() as u64);
        drop(shared);
        // Slots a mux handed to the control endpoint come back once it has
        // read them (its thread runs on what the workers leave, and they
        // are done): wait for them before counting leaks, within bounds.
        let deadline = Instant::now() + Duration::from_secs(10);
        while muxes.iter().any(|m| m.held() > 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let leaked_slots = if panics.is_empty() && stuck.is_empty() {
            arena.leaked_quiescent()
        } else {
            0
        };
        let mut report = RunReport::new(
            stages,
            placement,
            elapsed,
            leaked_slots,
            self.plan.slots,
            self.plan.settings.slot_size,
            pinned_all,
            panics,
        );
        for (r, stats) in edge_reports.iter_mut().zip(&edge_stats) {
            r.dropped = stats.dropped();
        }
        report.edges = edge_reports;
        // Barriers run only for commits are not checkpoints to report.
        report.checkpoints = checkpoints.filter(|_| self.plan.settings.checkpoint.is_some());
        report.replay = replay.and_then(|b| b.replay());
        if let Some(held) = undelivered {
            report.drain = Some(DrainTimeout {
                timeout_ms: self.plan.settings.drain_timeout_ms,
                stuck: stuck_stages,
                undelivered: held,
            });
        }
        report.check_targets(&targets);
        report
    }
}

/// The report of a run that could not start (a socket, a checkpoint):
/// every reason logged, and kept as the run's failures.
fn not_started(
    placement: Vec<PlacementEntry>,
    settings: &Settings,
    slots: u32,
    errors: Vec<String>,
) -> RunReport {
    for e in &errors {
        log::error!("{e}");
    }
    RunReport::new(
        Vec::new(),
        placement,
        Duration::ZERO,
        0,
        slots,
        settings.slot_size,
        false,
        errors,
    )
}
