//! A scheduled stage: the stage object plus its ring ends, counters and
//! completion state. [`Node::step`] runs one batch and says whether anything
//! moved; a worker calls it round robin with its other nodes.

mod consume;
mod failure;
mod source;
mod timing;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::arena::{Arena, Fresh, Handle, LocalPool, Meta};
use crate::clock::now_ns;
use crate::metrics::{LiveCounters, LiveState, StageReport, RESTART_REASON};
use crate::ring::{self, EdgeIn, EdgeOut, Taken};
use crate::runtime::restart::{guard, Decision, FailedIn, Tracker};
use crate::stage::inbox::emit_port;
use crate::stage::{
    Element, Emitter, Flush, Outlet, PortMask, Pull, Reason, SlotBatch, SlotWriter, Stage,
    StageError, StageInfo, Verdict, ERROR_PORT,
};
use consume::note_error;
pub(crate) use failure::Restart;
pub(crate) use timing::{decode as decode_state, SourceTime, Timing};

/// What a worker hands each node for one step.
pub(crate) struct StepCtx<'a> {
    pub(crate) arena: &'a Arena,
    pub(crate) pool: &'a mut LocalPool,
    pub(crate) stop: &'a AtomicBool,
    /// Sources not finished yet (the drain deadline starts at zero).
    pub(crate) sources_left: &'a AtomicUsize,
    pub(crate) batch: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// `init` not called yet.
    New,
    /// Processing.
    Running,
    /// Stage failed: inputs are drained and counted as dropped.
    Failed,
    /// Stage failed and was rebuilt; waiting out the backoff (input held,
    /// upstream sees backpressure) before `init` is called again.
    Restarting,
    /// Inputs completed; a processor's `finish` holds output for want of
    /// room and is called again each step until it is done.
    Finishing,
    /// Stage finished; publishing what is left in the outboxes.
    Draining,
    /// Outputs dropped (downstream sees completion); nothing more to do.
    Done,
}

/// Result of one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Something moved (handles published or consumed, or a state change).
    pub(crate) moved: bool,
}

pub(crate) struct Node {
    pub(crate) report: StageReport,
    pub(crate) info: StageInfo,
    stage: Stage,
    inputs: Vec<EdgeIn>,
    next_input: usize,
    /// Output edges per port.
    ports: Vec<Vec<EdgeOut>>,
    state: State,
    /// A source's allocated, not yet filled slot.
    pending: Option<Fresh>,
    /// A source's batch: the elements it sealed, to send ([`SlotBatch`]).
    filled: Vec<Handle>,
    /// A source's batch: the pulls it rejected, to count.
    rejected: Vec<Reason>,
    seq: u64,
    /// Index of the connected `error` port, if any.
    error_port: Option<usize>,
    /// Output ports a router may name (its declared ports, not `error`).
    routable: usize,
    /// When a ticking processor's next `tick` is due.
    next_tick: u64,
    /// Whether an output edge may refuse elements at fan-out
    /// (`drop_newest`); without one, fan-outs skip the check.
    refusing: bool,
    /// Where the counters are published for readers outside the worker.
    live: Arc<LiveCounters>,
    /// Event time and checkpoints, in a pipeline that uses them (see
    /// [`timing`]); `None` keeps the data path free of their checks.
    timing: Option<Box<Timing>>,
    /// The stage's state from a checkpoint, handed to it before `init`.
    restored: Option<Vec<u8>>,
    /// A sink's `complete` has run (before its final snapshot).
    completed: bool,
    /// How to rebuild the stage and when, for a restart policy.
    restart: Option<Box<Restart>>,
}
pub(crate) use crate::topology::decl::Rebuild;

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        info: StageInfo,
        stage: Stage,
        report: StageReport,
        inputs: Vec<EdgeIn>,
        ports: Vec<Vec<EdgeOut>>,
        live: Arc<LiveCounters>,
        timing: Option<Box<Timing>>,
        restart: Option<Restart>,
    ) -> Node {
        let names = stage.output_ports();
        let error_port = names
            .iter()
            .position(|p| p == ERROR_PORT)
            .filter(|&p| !ports[p].is_empty());
        let routable = match &stage {
            Stage::Router(_, declared) => declared.len(),
            _ => 1,
        };
        let refusing = ports.iter().flatten().any(EdgeOut::refuses);
        Node {
            report,
            info,
            stage,
            inputs,
            next_input: 0,
            ports,
            state: State::New,
            pending: None,
            filled: Vec::new(),
            rejected: Vec::new(),
            seq: 0,
            error_port,
            routable,
            next_tick: 0,
            refusing,
            live,
            timing,
            restored: None,
            completed: false,
            restart: restart.map(Box::new),
        }
    }

    /// Resumes from a checkpoint: the node's own counters now, the stage's
    /// state before its `init`.
    pub(crate) fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let (seq, max_ts, sent, stage) = decode_state(state)?;
        self.restore_timing(seq, max_ts, sent);
        self.restored = Some(stage.to_vec());
        Ok(())
    }

    /// Publishes the counters (after a step that moved something).
    pub(crate) fn publish(&self) {
        let state = if self.report.failure.is_some() {
            LiveState::Failed
        } else if self.state == State::Done {
            LiveState::Finished
        } else {
            LiveState::Running
        };
        self.live.publish(&self.report, state);
    }

    /// When a waiting source wants to run again (see `Source::next_due_ns`).
    pub(crate) fn due_ns(&self) -> Option<u64> {
        match (&self.stage, self.state) {
            (Stage::Source(s), State::Running) => match (s.next_due_ns(), self.idle_due_ns()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            (_, State::Restarting) => self.restart.as_ref().map(|r| r.until_ns),
            _ => None,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Space for this batch: the least free space over the output edges
    /// that block when full (a dropping edge never holds the batch back).
    fn out_budget(&self) -> usize {
        self.ports
            .iter()
            .flatten()
            .filter(|e| e.blocks())
            .map(EdgeOut::free)
            .min()
            .unwrap_or(usize::MAX)
    }

    fn flush_outputs(&mut self, ctx: &mut StepCtx<'_>) -> bool {
        let mut moved = false;
        for edge in self.ports.iter_mut().flatten() {
            moved |= edge.flush(ctx.arena, ctx.pool) > 0;
        }
        moved
    }

    /// Whether the last batch is out on every edge that blocks (a
    /// `drop_oldest` edge may keep leftovers while its consumer sheds).
    fn blocking_outboxes_empty(&self) -> bool {
        self.ports
            .iter()
            .flatten()
            .all(|e| !e.blocks() || e.is_flushed())
    }

    fn outboxes_empty(&self) -> bool {
        self.ports.iter().flatten().all(EdgeOut::is_flushed)
    }

    /// Runs one batch.
    pub(crate) fn step(&mut self, ctx: &mut StepCtx<'_>) -> Progress {
        let mut moved = false;
        if self.state == State::New {
            let restored = match (self.restored.take(), &mut self.stage) {
                (None, _) => Ok(()),
                (Some(st), Stage::Source(s)) => s.restore(&st),
                (Some(st), Stage::Processor(p)) => p.restore(&st),
                (Some(st), Stage::Router(r, _)) => r.restore(&st),
                (Some(st), Stage::Sink(s)) => s.restore(&st),
            };
            let (stage, info) = (&mut self.stage, &self.info);
            let result = match restored {
                Err(e) => Ok(Err(e)),
                Ok(()) => guard(|| match stage {
                    Stage::Source(s) => s.init(info),
                    Stage::Processor(p) => p.init(info),
                    Stage::Router(r, _) => r.init(info),
                    Stage::Sink(s) => s.init(info),
                }),
            };
            self.state = State::Running;
            let failed = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(m) => Some(m),
            };
            if let Some(m) = failed {
                self.on_failure(ctx, format!("init: {m}"), 0, FailedIn::Init);
            }
            moved = true;
        }
        // Publish leftovers first: a stage takes new input only once its
        // previous batch is fully out, which keeps per-edge order and bounds
        // what it holds.
        if self.timing.is_some() {
            moved |= self.send_controls(ctx);
        }
        moved |= self.flush_outputs(ctx);
        if !self.blocking_outboxes_empty() {
            return Progress { moved };
        }
        match self.state {
            State::Running => {
                moved |= self.maybe_tick(ctx);
                if self.state != State::Running {
                    return Progress { moved: true };
                }
                let finished = match self.stage {
                    Stage::Source(_) if self.timing.is_some() => {
                        self.source_before_batch();
                        moved |= self.send_controls(ctx);
                        let sent_before = self.report.sent;
                        let done = self.step_source(ctx, &mut moved);
                        self.source_after_batch((self.report.sent - sent_before) as usize, done);
                        moved |= self.send_controls(ctx);
                        done
                    }
                    Stage::Source(_) => self.step_source(ctx, &mut moved),
                    _ if self.timing.is_some() => {
                        let (m, held) = self.consumer_before_batch(ctx);
                        moved |= m;
                        moved |= self.send_controls(ctx);
                        if held {
                            moved |= self.flush_outputs(ctx);
                            return Progress { moved };
                        }
                        let finished = self.step_consumer::<true>(ctx, &mut moved);
                        moved |= self.send_controls(ctx);
                        finished
                    }
                    _ => self.step_consumer::<false>(ctx, &mut moved),
                };
                moved |= self.flush_outputs(ctx);
                if finished {
                    self.finish(ctx);
                    moved = true;
                }
            }
            State::Finishing => {
                // Timers still fire while a processor finishes (it may wait
                // for them); one holding output waits for room first.
                let held = self.timing.is_some() && {
                    let (m, held) = self.consumer_before_batch(ctx);
                    moved |= m;
                    held
                };
                if !held {
                    moved |= self.finish(ctx);
                }
                moved |= self.flush_outputs(ctx);
            }
            State::Failed => {
                let finished = self.drain_failed(ctx, &mut moved);
                if finished {
                    self.finish(ctx);
                    moved = true;
                }
            }
            State::Restarting => moved |= self.restart_when_due(ctx),
            State::Draining => {}
            State::New | State::Done => return Progress { moved },
        }
        if self.state == State::Draining && self.timing.is_some() {
            moved |= self.send_controls(ctx);
            moved |= self.flush_outputs(ctx);
        }
        if self.state == State::Draining && self.outboxes_empty() && !self.controls_queued() {
            // Dropping the producers is how downstream learns we are done.
            self.ports.iter_mut().for_each(Vec::clear);
            self.state = State::Done;
            moved = true;
        }
        Progress { moved }
    }

    /// Completion: the stage's last calls, then drain the outboxes. A
    /// processor whose `finish` holds output stays `Finishing` and is called
    /// again on the next step; returns whether anything moved.
    fn finish(&mut self, ctx: &mut StepCtx<'_>) -> bool {
        if let Some(fresh) = self.pending.take() {
            ctx.arena.discard_fresh(fresh, ctx.pool);
        }
        let failed = self.state == State::Failed;
        if !failed {
            let before = self.seq;
            let flushed = match self.with_emitter(ctx, |p, out| p.finish(out)) {
                Ok(flush) => flush,
                Err(m) => {
                    // Nothing left to restart for: final under any policy.
                    self.report.failure = Some(format!("finish: {m}"));
                    if let Some(line) = self.report.failure_line() {
                        log::error!("{line}");
                    }
                    ctx.stop.store(true, Ordering::Relaxed);
                    Flush::Done
                }
            };
            if flushed == Flush::More {
                let moved = self.state != State::Finishing || self.seq != before;
                self.state = State::Finishing;
                return moved;
            }
        }
        if !failed && self.timing.is_some() {
            if let Stage::Sink(s) = &mut self.stage {
                // A sink's final state is taken once everything is
                // delivered.
                if let Err(e) = s.complete() {
                    self.report.failure = Some(format!("complete: {e}"));
                }
                self.completed = true;
            }
            self.ack_finished();
        }
        match &mut self.stage {
            Stage::Source(s) => {
                let _ = guard(|| {
                    merge_counts(&mut self.report.counts, s.counts());
                    s.teardown();
                });
                ctx.sources_left.fetch_sub(1, Ordering::Release);
            }
            Stage::Processor(p) => {
                let _ = guard(|| {
                    merge_counts(&mut self.report.counts, p.counts());
                    p.teardown();
                });
            }
            Stage::Router(r, _) => {
                let _ = guard(|| r.teardown());
            }
            Stage::Sink(s) => {
                if !failed && !self.completed {
                    match guard(|| s.complete()) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => self.report.failure = Some(format!("complete: {e}")),
                        Err(m) => self.report.failure = Some(format!("complete: {m}")),
                    }
                }
                let report = &mut self.report;
                let _ = guard(|| {
                    merge_counts(&mut report.counts, s.counts());
                    let left = s.undelivered();
                    report.fail_with(
                        Reason::new("undelivered at the end of the stream", ""),
                        left,
                    );
                    s.teardown();
                });
            }
        }
        self.state = State::Draining;
        true
    }

    /// Runs a ticking processor's `tick` when due, and on every step while
    /// the last one held output (`Flush::More`).
    fn maybe_tick(&mut self, ctx: &mut StepCtx<'_>) -> bool {
        let Stage::Processor(p) = &mut self.stage else {
            return false;
        };
        let Some(interval) = p.tick_interval() else {
            return false;
        };
        let now = now_ns();
        if now < self.next_tick {
            return false;
        }
        // `next_tick == 0` after a `More` (or before the first tick).
        let retry = self.next_tick == 0;
        let before = self.seq;
        self.next_tick = match self.with_emitter(ctx, |p, out| p.tick(now, out)) {
            Ok(Flush::Done) => now + interval.max(1),
            Ok(Flush::More) => 0,
            Err(m) => {
                self.on_failure(ctx, format!("tick: {m}"), 0, FailedIn::Running);
                return true;
            }
        };
        !retry || self.seq != before
    }

    /// Calls `f` with a processor stage and an [`Emitter`] onto its `output`
    /// port, with the room a source would get, counting what it returns as
    /// an error of the stage (an error counts as done). `Err`: the stage
    /// failed (a fatal error or a panic), with its message.
    fn with_emitter(
        &mut self,
        ctx: &mut StepCtx<'_>,
        f: impl FnOnce(&mut dyn crate::stage::Processor, &mut Emitter<'_>) -> Result<Flush, StageError>,
    ) -> Result<Flush, String> {
        let room = self.out_budget().min(ctx.batch);
        let Stage::Processor(p) = &mut self.stage else {
            return Ok(Flush::Done);
        };
        let result = {
            let (ports, report, refusing) = (&mut self.ports, &mut self.report, self.refusing);
            let mut out = |h: Handle| {
                emit_port(ports, 0, h, ctx.arena, refusing);
                report.count_sent(0, 1);
            };
            let mut emitter = Emitter {
                arena: ctx.arena,
                pool: ctx.pool,
                out: &mut out,
                source: self.info.index as u16,
                seq: &mut self.seq,
                room,
            };
            guard(|| f(p.as_mut(), &mut emitter))?
        };
        match result {
            Ok(flush) => Ok(flush),
            Err(StageError::Fatal(m)) => Err(m),
            Err(e) => {
                note_error(&mut self.report, e);
                Ok(Flush::Done)
            }
        }
    }
}

/// Adds a processor's event counts to those of its earlier incarnations.
fn merge_counts(into: &mut Vec<(&'static str, u64)>, counts: Vec<(&'static str, u64)>) {
    for (name, n) in counts {
        match into.iter_mut().find(|(k, _)| *k == name) {
            Some((_, total)) => *total += n,
            None => into.push((name, n)),
        }
    }
}
