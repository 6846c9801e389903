//! A scheduled stage: the stage object plus its ring ends, counters and
//! completion state. [`Node::step`] runs one batch and says whether anything
//! moved; a worker calls it round robin with its other nodes.

mod timing;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::arena::{Arena, Handle, LocalPool, Meta};
use crate::clock::now_ns;
use crate::metrics::{LiveCounters, LiveState, StageReport, RESTART_REASON};
use crate::ring::{self, EdgeIn, EdgeOut, Taken};
use crate::runtime::restart::{guard, Decision, FailedIn, Tracker};
use crate::stage::{
    Element, Emitter, Flush, Outlet, PortMask, Pull, Reason, SlotWriter, Stage, StageError,
    StageInfo, Verdict, ERROR_PORT,
};
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
    pending: Option<Handle>,
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
pub(crate) use crate::topology::builder::Rebuild;

/// A node's restart state (see [`crate::runtime::restart`]).
pub(crate) struct Restart {
    pub(crate) tracker: Tracker,
    pub(crate) rebuild: Rebuild,
    /// While `Restarting`: when to call `init` on the new stage.
    until_ns: u64,
}

impl Restart {
    pub(crate) fn new(tracker: Tracker, rebuild: Rebuild) -> Restart {
        Restart {
            tracker,
            rebuild,
            until_ns: 0,
        }
    }
}

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

    fn fail(&mut self, message: String) {
        self.report.failure = Some(message);
        if let Some(line) = self.report.failure_line() {
            log::error!("{line}");
        }
        self.state = State::Failed;
    }

    /// The stage failed (`message` says how): restart it when its policy
    /// allows, counting the `in_flight` element (received, already
    /// released, not yet counted) as failed; otherwise fail it for good and
    /// raise the stop flag, so that the sources finish and the pipeline
    /// drains. Returns whether the stage is restarting.
    #[cold]
    #[inline(never)]
    fn on_failure(
        &mut self,
        ctx: &StepCtx<'_>,
        message: String,
        in_flight: u64,
        at: FailedIn,
    ) -> bool {
        // With checkpoints, a restart replays the whole pipeline from its
        // last checkpoint (nothing is lost: the element in flight is read
        // again); without, the stage restarts fresh on its own.
        let barriers = self.timing.as_ref().and_then(|t| t.barriers.clone());
        let decision = match (&mut self.restart, &barriers) {
            (Some(r), Some(_)) => crate::runtime::restart::replay_decision(
                &self.info.name,
                *r.tracker.policy(),
                now_ns(),
                at,
            ),
            (Some(r), None) => r.tracker.on_failure(now_ns(), at),
            (None, _) => Decision::GiveUp(String::new()),
        };
        if let (Decision::Restart { after_ns }, Some(b)) = (&decision, &barriers) {
            log::warn!(
                "stage '{}' failed ({message}); replaying the pipeline from its last checkpoint in {} ms",
                self.report.name,
                after_ns / 1_000_000
            );
            self.report
                .fail_with(Reason::new(RESTART_REASON, message.clone()), in_flight);
            self.report.restarts += 1;
            b.request_replay(crate::checkpoint::Replay {
                stage: self.info.name.clone(),
                reason: message.clone(),
                after_ms: after_ns / 1_000_000,
            });
            self.fail(format!("{message} (replaying from the last checkpoint)"));
            ctx.stop.store(true, Ordering::Relaxed);
            return false;
        }
        let after_ns = match decision {
            Decision::Restart { after_ns } => after_ns,
            Decision::GiveUp(why) => {
                if in_flight > 0 {
                    self.report
                        .drop_with(Reason::new("stage failed", message.clone()));
                }
                self.fail(if why.is_empty() {
                    message
                } else {
                    format!("after {why}: {message}")
                });
                ctx.stop.store(true, Ordering::Relaxed);
                return false;
            }
        };
        log::warn!(
            "stage '{}' failed ({message}); restarting in {} ms",
            self.report.name,
            after_ns / 1_000_000
        );
        self.report
            .fail_with(Reason::new(RESTART_REASON, message), in_flight);
        self.retire_stage();
        let Some(r) = self.restart.as_mut() else {
            unreachable!("a restart decision needs a restart policy")
        };
        let rebuild = Arc::clone(&r.rebuild);
        match guard(|| rebuild()).and_then(|built| built) {
            Ok(stage) => {
                r.until_ns = now_ns().saturating_add(after_ns);
                self.stage = stage;
                self.next_tick = 0;
                self.report.restarts += 1;
                self.state = State::Restarting;
                true
            }
            Err(m) => {
                self.fail(format!("cannot rebuild the stage for a restart: {m}"));
                ctx.stop.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    /// The last calls into a failed stage before its replacement: what it
    /// counted, what a sink still held (failed: lost with the stage), its
    /// teardown.
    fn retire_stage(&mut self) {
        let (stage, report) = (&mut self.stage, &mut self.report);
        let _ = guard(|| match stage {
            Stage::Source(s) => {
                merge_counts(&mut report.counts, s.counts());
                s.teardown();
            }
            Stage::Processor(p) => {
                merge_counts(&mut report.counts, p.counts());
                p.teardown();
            }
            Stage::Router(r, _) => r.teardown(),
            Stage::Sink(s) => {
                merge_counts(&mut report.counts, s.counts());
                let left = s.undelivered();
                report.fail_with(Reason::new(RESTART_REASON, "held by the sink"), left);
                s.teardown();
            }
        });
    }

    /// `Restarting`: once the backoff has passed (at once for a source
    /// when the pipeline is stopping), the new stage gets its `init`.
    fn restart_when_due(&mut self, ctx: &StepCtx<'_>) -> bool {
        let due = self.restart.as_ref().map_or(0, |r| r.until_ns);
        let stopping = matches!(self.stage, Stage::Source(_)) && ctx.stop.load(Ordering::Relaxed);
        if now_ns() < due && !stopping {
            return false;
        }
        self.state = State::New;
        true
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
        if let Some(h) = self.pending.take() {
            ctx.arena.release(h, ctx.pool);
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

    /// Fills slots from the source; returns true when it is exhausted.
    fn step_source(&mut self, ctx: &mut StepCtx<'_>, moved: &mut bool) -> bool {
        if ctx.stop.load(Ordering::Relaxed) {
            return true;
        }
        let budget = self.out_budget().min(ctx.batch);
        let t0 = self.report.service.is_some().then(now_ns);
        let before = self.seq;
        let event_time = self
            .timing
            .as_ref()
            .is_some_and(|t| t.event_time().is_some());
        // One guard per batch: after a panic in `pull`, what the batch
        // sent is `seq - before` (the pending slot stays for the next pull).
        let filled = guard(|| {
            if event_time {
                self.fill_from_source::<true>(ctx, moved, budget)
            } else {
                self.fill_from_source::<false>(ctx, moved, budget)
            }
        });
        let done = match filled {
            Ok(done) => done,
            Err(m) => {
                self.report.count_sent(0, self.seq - before);
                *moved = true;
                !self.on_failure(ctx, m, 0, FailedIn::Running)
            }
        };
        if let (Some(t0), Some(h)) = (t0, self.report.service.as_mut()) {
            let n = self.seq - before;
            if let Some(per) = (now_ns() - t0).checked_div(n) {
                h.saturating_record_n(per.max(1), n);
            }
        }
        done
    }

    /// Pulls up to `budget` elements. `EVENT_TIME`: the source declares
    /// `event_time`, so each element's timestamp is read (an unreadable one
    /// sends it to the `error` port) and the highest is kept.
    fn fill_from_source<const EVENT_TIME: bool>(
        &mut self,
        ctx: &mut StepCtx<'_>,
        moved: &mut bool,
        budget: usize,
    ) -> bool {
        let Stage::Source(source) = &mut self.stage else {
            unreachable!("step_source on a source")
        };
        let event_time = if EVENT_TIME {
            self.timing.as_ref().and_then(|t| t.event_time())
        } else {
            None
        };
        let mut max_ts = 0;
        // One clock read per batch, on the first element that has no stamp
        // of its own: every element of the batch is stamped with it (they
        // were all accepted within this batch, microseconds).
        let mut batch_ns = 0;
        let mut sent = 0;
        let mut done = false;
        for _ in 0..budget {
            if self.pending.is_none() {
                match ctx.arena.alloc(ctx.pool) {
                    Some(h) => self.pending = Some(h),
                    // Arena exhausted: wait for downstream to release.
                    None => break,
                }
            }
            let handle = self.pending.as_mut().expect("just ensured");
            let mut writer = SlotWriter::new(ctx.arena, handle);
            let pulled = source.pull(&mut writer);
            let (len, stamped, content_type) = (writer.len, writer.ingest_ns, writer.content_type);
            let mut pulled = pulled;
            if let (true, Some(et), Ok(Pull::Ready)) = (EVENT_TIME, event_time, &pulled) {
                match et.extract(&writer.buffer()[..len]) {
                    Ok(ts) => max_ts = max_ts.max(ts),
                    Err(reason) => match self.error_port {
                        Some(port) => {
                            let mut h = self.pending.take().expect("pending slot");
                            let meta = Meta {
                                seq: self.seq,
                                ingest_ns: now_ns(),
                                source: self.info.index as u16,
                                content_type,
                                reason: Some(reason.kind),
                            };
                            self.seq += 1;
                            ctx.arena.seal(&mut h, len, meta);
                            self.report.divert(reason);
                            emit_port(&mut self.ports, port, h, ctx.arena, self.refusing);
                            self.report.count_sent(port, 1);
                            *moved = true;
                            continue;
                        }
                        None => pulled = Err(StageError::Rejected(reason)),
                    },
                }
            }
            match pulled {
                Ok(Pull::Ready) => {
                    let ingest_ns = if stamped != 0 {
                        stamped
                    } else {
                        if batch_ns == 0 {
                            batch_ns = now_ns();
                        }
                        batch_ns
                    };
                    let meta = Meta {
                        seq: self.seq,
                        ingest_ns,
                        source: self.info.index as u16,
                        content_type,
                        reason: None,
                    };
                    self.seq += 1;
                    let mut h = self.pending.take().expect("pending slot");
                    ctx.arena.seal(&mut h, len, meta);
                    emit_port(&mut self.ports, 0, h, ctx.arena, self.refusing);
                    sent += 1;
                }
                Ok(Pull::Pending) => break,
                Ok(Pull::Done) => {
                    done = true;
                    break;
                }
                Err(StageError::Rejected(reason) | StageError::Failed(reason)) => {
                    // Nothing was sent; the slot is reused for the next pull.
                    self.report.drop_with(reason);
                    *moved = true;
                }
                Err(StageError::Fatal(m)) => {
                    // Restarting: not done (the new source starts over).
                    done = !self.on_failure(ctx, m, 0, FailedIn::Running);
                    *moved = true;
                    break;
                }
            }
        }
        if sent > 0 {
            self.report.count_sent(0, sent);
            *moved = true;
        }
        if EVENT_TIME {
            if let Some(t) = self.timing.as_mut() {
                t.saw(max_ts);
            }
        }
        done
    }

    /// Processes one batch of input (fairly over fan-in edges); returns true
    /// when every input has completed.
    ///
    /// `CONTROL`: the pipeline carries control elements; a batch then
    /// stops at one, which is handled after the batch ([`Node::on_control`]),
    /// and inputs blocked on a barrier are skipped.
    fn step_consumer<const CONTROL: bool>(
        &mut self,
        ctx: &mut StepCtx<'_>,
        moved: &mut bool,
    ) -> bool {
        let budget = self.out_budget().min(ctx.batch);
        if budget == 0 {
            return false;
        }
        let n_inputs = self.inputs.len();
        let start = self.next_input;
        let mut taken = 0;
        let mut deferred = false;
        let mut fatal = None;
        let mut control_at = None;
        // The element the stage failed on (received, not yet counted).
        let mut in_flight = 0;
        let Node {
            timing,
            inputs,
            ports,
            report,
            stage,
            seq,
            info,
            error_port,
            routable,
            refusing,
            ..
        } = self;
        let stamp = report.service.is_some().then(now_ns);
        let mut lane = Lane {
            ports,
            report,
            seq,
            source: info.index as u16,
            error_port: *error_port,
            routable: *routable,
            refusing: *refusing,
            stamp,
            now: 0,
            run_ingest: 0,
            run_len: 0,
            room: budget,
        };
        let is_sink = matches!(stage, Stage::Sink(_));
        for k in 0..n_inputs {
            if taken == budget || fatal.is_some() {
                break;
            }
            let i = (start + k) % n_inputs;
            if CONTROL && !timing.as_ref().is_some_and(|t| t.reads(i)) {
                continue;
            }
            let input = &mut inputs[i];
            if input.shed(ctx.arena, ctx.pool) > 0 {
                *moved = true;
            }
            let n = input.available().min(budget - taken);
            if n == 0 {
                continue;
            }
            // One clock read per dequeued batch: every element of it reached
            // the sink now (the error is at most the batch's own processing
            // time, microseconds), and a read per element would cost a sink
            // as much as the rest of its work.
            if is_sink {
                lane.flush_latency();
                lane.now = stamp.unwrap_or_else(now_ns);
            }
            let arena = ctx.arena;
            let received = lane.report.received;
            let consume = |handle| {
                if fatal.is_some() {
                    // The rest of the batch waits in the ring: for the
                    // restarted stage, or for `drain_failed`.
                    return Taken::Defer(handle);
                }
                match consume_one(stage, &mut lane, handle, ctx) {
                    Ok(Taken::Defer(handle)) => {
                        deferred = true;
                        Taken::Defer(handle)
                    }
                    Ok(Taken::Yes) => Taken::Yes,
                    Err(m) => {
                        fatal = Some(m);
                        in_flight = 1;
                        Taken::Yes
                    }
                }
            };
            // One guard per batch for routers and sinks (a processor's
            // panic is caught per element, in `consume_one`).
            let consumed = guard(|| {
                if CONTROL {
                    let (consumed, at_control) = input.take_data(arena, n, consume);
                    if at_control {
                        control_at = Some(i);
                    }
                    consumed
                } else {
                    input.take(arena, n, consume)
                }
            });
            let consumed = match consumed {
                Ok(c) => c,
                Err(m) => {
                    fatal = Some(m);
                    in_flight = 1;
                    let handled = (lane.report.received - received) as usize;
                    after_panic_in_take(input, ctx, handled)
                }
            };
            taken += consumed;
            if deferred || control_at.is_some() {
                break;
            }
        }
        lane.flush_latency();
        if n_inputs > 0 {
            self.next_input = (self.next_input + 1) % n_inputs;
        }
        if let (Some(t0), Some(h)) = (stamp, self.report.service.as_mut()) {
            if taken > 0 {
                let per = (now_ns() - t0) / taken as u64;
                h.saturating_record_n(per.max(1), taken as u64);
            }
        }
        if taken > 0 {
            *moved = true;
            if let Stage::Sink(sink) = &mut self.stage {
                match guard(|| sink.end_batch()) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => report_sink_error(&mut self.report, e, &mut fatal),
                    Err(m) => fatal = Some(m),
                }
            }
        }
        if let Some(m) = fatal {
            self.on_failure(ctx, m, in_flight, FailedIn::Running);
            return false;
        }
        if let Some(i) = control_at {
            *moved |= self.on_control(ctx, i);
            return false;
        }
        !deferred && taken == 0 && self.inputs.iter().all(EdgeIn::is_finished)
    }

    /// A failed stage keeps consuming so upstream never blocks, counting
    /// every element as dropped; true once the inputs completed.
    fn drain_failed(&mut self, ctx: &mut StepCtx<'_>, moved: &mut bool) -> bool {
        for input in &mut self.inputs {
            input.shed(ctx.arena, ctx.pool);
            while let Some((handle, control)) = input.pop(ctx.arena) {
                // A failed stage passes no control element on: it will
                // never complete a checkpoint.
                if !control {
                    self.report.received += 1;
                    self.report.drop_static("stage failed");
                }
                ctx.arena.release(handle, ctx.pool);
                *moved = true;
            }
        }
        self.inputs.iter().all(EdgeIn::is_finished)
    }
}

fn report_sink_error(report: &mut StageReport, e: StageError, fatal: &mut Option<String>) {
    match e {
        StageError::Rejected(r) => report.drop_with(r),
        StageError::Failed(r) => report.fail_with(r, 1),
        StageError::Fatal(m) => *fatal = Some(m),
    }
}

/// Counts a non-fatal error from `tick`/`finish` (no input element to
/// divert).
fn note_error(report: &mut StageReport, e: StageError) {
    match e {
        StageError::Rejected(r) => report.drop_with(r),
        StageError::Failed(r) => report.fail_with(r, 1),
        StageError::Fatal(_) => unreachable!("with_emitter returns fatal errors"),
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

/// A consuming node's outputs and counters, borrowed for one batch.
struct Lane<'a> {
    ports: &'a mut [Vec<EdgeOut>],
    report: &'a mut StageReport,
    seq: &'a mut u64,
    source: u16,
    error_port: Option<usize>,
    routable: usize,
    /// See [`Node::refusing`].
    refusing: bool,
    /// With stage metrics: when this batch was dequeued.
    stamp: Option<u64>,
    /// A sink's clock for this batch (latency = dequeue time - ingest).
    now: u64,
    /// A sink's current run of elements with equal ingest stamps (a
    /// source stamps a whole batch with one clock read): they have the
    /// same latency, recorded once with their count.
    run_ingest: u64,
    run_len: u64,
    /// New elements a processor may still emit in this batch (see
    /// [`Outlet::room`]).
    room: usize,
}

impl Lane<'_> {
    /// Counts one more sink delivery of an element ingested at `ingest`.
    #[inline]
    fn note_latency(&mut self, ingest: u64) {
        if ingest == self.run_ingest {
            self.run_len += 1;
        } else {
            self.flush_latency();
            self.run_ingest = ingest;
            self.run_len = 1;
        }
    }

    /// Records the current run (before `now` changes, and at batch end).
    #[inline]
    fn flush_latency(&mut self) {
        if self.run_len > 0 {
            if let Some(h) = self.report.latency.as_mut() {
                h.saturating_record_n(self.now.saturating_sub(self.run_ingest), self.run_len);
            }
            self.run_len = 0;
        }
    }
}

/// Hands one input element to the stage and moves its handle accordingly.
/// `Ok(false)`: the processor deferred it (it stays in the ring). `Err`
/// carries a fatal error or panic message; the element then counts as
/// received and is released, its outcome left to `Node::on_failure`.
#[inline(always)]
fn consume_one(
    stage: &mut Stage,
    lane: &mut Lane<'_>,
    mut handle: Handle,
    ctx: &mut StepCtx<'_>,
) -> Result<Taken, String> {
    let arena = ctx.arena;
    let raw = handle.index();
    if let (Some(t0), Some(h)) = (lane.stamp, lane.report.arrival.as_mut()) {
        h.saturating_record(t0.saturating_sub(arena.meta(&handle).ingest_ns));
    }
    match stage {
        Stage::Processor(p) => {
            let verdict = {
                let (ports, report) = (&mut *lane.ports, &mut *lane.report);
                let mut out = |h: Handle| {
                    emit_port(ports, 0, h, arena, lane.refusing);
                    report.count_sent(0, 1);
                };
                guard(|| {
                    p.process(&mut Element {
                        arena,
                        handle: &mut handle,
                        pool: ctx.pool,
                        outlet: Some(Outlet {
                            out: &mut out,
                            source: lane.source,
                            seq: lane.seq,
                            room: &mut lane.room,
                        }),
                    })
                })
            };
            let verdict = match verdict {
                Ok(v) => v,
                Err(m) => return in_flight(m, lane, handle, ctx),
            };
            if verdict == Ok(Verdict::Defer) {
                if handle.index() == raw {
                    // Still the ring's element: it stays there.
                    return Ok(Taken::Defer(handle));
                }
                lane.report.received += 1;
                arena.release(handle, ctx.pool);
                return Err("deferred an element after modifying it".to_string());
            }
            lane.report.received += 1;
            match verdict {
                Ok(Verdict::Emit) => {
                    emit_port(lane.ports, 0, handle, arena, lane.refusing);
                    lane.report.count_sent(0, 1);
                    Ok(Taken::Yes)
                }
                Ok(Verdict::Drop) | Ok(Verdict::Defer) => {
                    lane.report.drop_static(p.drop_reason());
                    arena.release(handle, ctx.pool);
                    Ok(Taken::Yes)
                }
                Ok(Verdict::Side(s)) => {
                    let port = 1 + s as usize;
                    match p.side_ports().get(s as usize) {
                        Some(_) if !lane.ports[port].is_empty() => {
                            emit_port(lane.ports, port, handle, arena, lane.refusing);
                            lane.report.count_sent(port, 1);
                        }
                        Some(name) => {
                            lane.report.drop_static(name);
                            arena.release(handle, ctx.pool);
                        }
                        None => {
                            arena.release(handle, ctx.pool);
                            return Err(format!(
                                "sent an element to side port {s}, which it does not declare"
                            ));
                        }
                    }
                    Ok(Taken::Yes)
                }
                Err(e) => reject(e, lane, handle, ctx),
            }
        }
        Stage::Router(r, _) => {
            lane.report.received += 1;
            let mut mask = PortMask::default();
            let routed = r.route(
                &Element {
                    arena,
                    handle: &mut handle,
                    pool: ctx.pool,
                    outlet: None,
                },
                &mut mask,
            );
            // A router may only name its declared ports.
            let mask = PortMask(mask.0 & PortMask::all(lane.routable).0);
            match routed {
                Ok(()) if mask.is_empty() => {
                    lane.report.drop_static("no route");
                    arena.release(handle, ctx.pool);
                    Ok(Taken::Yes)
                }
                Ok(()) => {
                    emit_mask(lane.ports, lane.report, mask, handle, arena, lane.refusing);
                    Ok(Taken::Yes)
                }
                Err(e) => reject(e, lane, handle, ctx),
            }
        }
        Stage::Sink(s) => {
            lane.report.received += 1;
            let ingest = arena.meta(&handle).ingest_ns;
            let pushed = s.push(&Element {
                arena,
                handle: &mut handle,
                pool: ctx.pool,
                outlet: None,
            });
            lane.note_latency(ingest);
            match pushed {
                Ok(()) => {
                    arena.release(handle, ctx.pool);
                    Ok(Taken::Yes)
                }
                Err(e) => reject(e, lane, handle, ctx),
            }
        }
        Stage::Source(_) => unreachable!("sources have no input"),
    }
}

/// A router or sink panicked inside [`EdgeIn::take`] (see `step_consumer`):
/// the ring's read was not committed. The first `handled - 1` elements of
/// it were passed on or released already: they are committed without
/// being read again. The last one is the one the stage panicked on, still
/// the ring's own handle (a router or sink only reads it): it counts as
/// received (already) and in flight, and is released. Returns `handled`.
#[cold]
#[inline(never)]
fn after_panic_in_take(input: &mut EdgeIn, ctx: &mut StepCtx<'_>, handled: usize) -> usize {
    input.skip(handled.saturating_sub(1));
    if handled > 0 {
        if let Some((h, _)) = input.pop(ctx.arena) {
            ctx.arena.release(h, ctx.pool);
        }
    }
    handled
}

/// A processor panicked on `handle`: it counts as received, is released,
/// and is counted by `Node::on_failure`.
#[cold]
fn in_flight(
    m: String,
    lane: &mut Lane<'_>,
    handle: Handle,
    ctx: &mut StepCtx<'_>,
) -> Result<Taken, String> {
    lane.report.received += 1;
    ctx.arena.release(handle, ctx.pool);
    Err(m)
}

/// A rejected element goes, untouched and with its reason in the metadata,
/// to the `error` port when one is connected; otherwise it is dropped and
/// counted with its reason.
fn reject(
    e: StageError,
    lane: &mut Lane<'_>,
    mut handle: Handle,
    ctx: &mut StepCtx<'_>,
) -> Result<Taken, String> {
    let arena = ctx.arena;
    match e {
        StageError::Rejected(reason) => {
            // A shared slot is copied so the other branches stay unmarked.
            if let Some(port) = lane
                .error_port
                .filter(|_| arena.make_mut(&mut handle, ctx.pool))
            {
                let mut meta = arena.meta(&handle);
                meta.reason = Some(reason.kind);
                arena.set_meta(&mut handle, meta);
                lane.report.divert(reason);
                emit_port(lane.ports, port, handle, arena, lane.refusing);
                lane.report.count_sent(port, 1);
            } else {
                arena.release(handle, ctx.pool);
                lane.report.drop_with(reason);
            }
            Ok(Taken::Yes)
        }
        // A sink's undelivered element goes to its `error` port when one
        // is connected (then it is routed, not failed), as a rejected one.
        StageError::Failed(reason) => match lane.error_port {
            Some(_) => reject(StageError::Rejected(reason), lane, handle, ctx),
            None => {
                arena.release(handle, ctx.pool);
                lane.report.fail_with(reason, 1);
                Ok(Taken::Yes)
            }
        },
        // Counted by `Node::on_failure`, which knows whether it restarts.
        StageError::Fatal(m) => {
            arena.release(handle, ctx.pool);
            Err(m)
        }
    }
}

/// Queues `handle` on every edge of `port` that takes it (see
/// [`ring::fan_out`]).
#[inline]
fn emit_port(
    ports: &mut [Vec<EdgeOut>],
    port: usize,
    handle: Handle,
    arena: &Arena,
    refusing: bool,
) {
    ring::fan_out(arena, handle, ports, port, refusing);
}

/// Queues `handle` on every edge of every port in `mask`: one slot, one
/// refcount bump, no copy.
#[inline]
fn emit_mask(
    ports: &mut [Vec<EdgeOut>],
    report: &mut StageReport,
    mask: PortMask,
    handle: Handle,
    arena: &Arena,
    refusing: bool,
) {
    for p in mask.iter() {
        report.count_sent(p, 1);
    }
    ring::fan_out_ports(arena, handle, ports, mask.0, refusing);
}
