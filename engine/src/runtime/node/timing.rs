//! A node's part in event time and checkpoints: the watermarks it reads
//! and forwards, its timers, barrier alignment and snapshots.
//!
//! Only nodes of a pipeline that uses event time or checkpoints have a
//! [`Timing`]; the others read their rings without looking for control
//! elements at all (see [`Node::step`]), so they run the same instructions
//! per element as a pipeline that never heard of them.

use std::collections::VecDeque;

use super::{Node, State, StepCtx};
use crate::checkpoint::{Ack, Barriers, StateReader, StateWriter};
use crate::clock::now_ns;
use crate::event_time::{EventTime, Timer, WatermarkSpec};
use crate::ring::{self, Control};
use crate::runtime::restart::FailedIn;
use crate::stage::{Flush, Stage, StageError};

/// What one input has said about time.
#[derive(Clone, Copy, Debug, Default)]
struct InputTime {
    /// Its watermark (Unix ms; 0 before the first).
    watermark: u64,
    /// Its source declared itself idle and has not sent a watermark since.
    idle: bool,
    /// Its barrier for the checkpoint being aligned has arrived: nothing
    /// more is read from it until the others' have.
    blocked: bool,
}

/// A source's event-time declaration.
pub(crate) struct SourceTime {
    pub(crate) event_time: EventTime,
    pub(crate) watermark: WatermarkSpec,
}

/// Event time and checkpoint state of one node (see the module docs).
pub(crate) struct Timing {
    /// A source's event time, if it declares one.
    source: Option<SourceTime>,
    /// Highest timestamp a source has seen.
    max_ts: u64,
    /// Last watermark sent downstream (0: none).
    sent: u64,
    /// Whether downstream was last told this node's output is idle.
    sent_idle: bool,
    /// A source's last data (monotonic ns), for its idle timeout.
    last_data_ns: u64,
    /// Control elements waiting for a free slot.
    queued: VecDeque<Control>,
    inputs: Vec<InputTime>,
    /// Inputs seen finished, to notice when one more finishes.
    finished_inputs: usize,
    /// A processor's timer that found no room, fired again first.
    held_timer: Option<Timer>,
    /// The watermark whose event-time timers are being fired; it is sent
    /// on once they all ran.
    firing: Option<u64>,
    /// Checkpoints, when the pipeline takes them.
    pub(crate) barriers: Option<Barriers>,
    /// A source's last barrier sent.
    injected: u64,
    /// The checkpoint whose barrier is being aligned across inputs.
    aligning: Option<u64>,
}

impl Timing {
    pub(crate) fn new(
        source: Option<SourceTime>,
        inputs: usize,
        barriers: Option<Barriers>,
        last_checkpoint: u64,
    ) -> Timing {
        Timing {
            source,
            max_ts: 0,
            sent: 0,
            sent_idle: false,
            last_data_ns: now_ns(),
            queued: VecDeque::new(),
            inputs: vec![InputTime::default(); inputs],
            finished_inputs: 0,
            held_timer: None,
            firing: None,
            barriers,
            injected: last_checkpoint,
            aligning: None,
        }
    }

    /// Whether the node reads input `i` now (not blocked on a barrier).
    #[inline]
    pub(crate) fn reads(&self, i: usize) -> bool {
        !self.inputs[i].blocked
    }

    /// A source's event time, to read each element's timestamp.
    pub(crate) fn event_time(&self) -> Option<&EventTime> {
        self.source.as_ref().map(|s| &s.event_time)
    }

    /// A source saw a timestamp.
    #[inline]
    pub(crate) fn saw(&mut self, ts: u64) {
        self.max_ts = self.max_ts.max(ts);
    }
}

/// The node-level part of a snapshot, around the stage's own.
fn encode(seq: u64, t: &Timing, stage: &[u8]) -> Vec<u8> {
    StateWriter::new()
        .u64(seq)
        .u64(t.max_ts)
        .u64(t.sent)
        .bytes(stage)
        .finish()
}

/// Splits a node snapshot into (seq, max_ts, sent watermark, stage state).
pub(crate) fn decode(state: &[u8]) -> Result<(u64, u64, u64, &[u8]), StageError> {
    let mut r = StateReader::new(state);
    let out = (r.u64()?, r.u64()?, r.u64()?, r.bytes()?);
    r.done()?;
    Ok(out)
}

impl Node {
    /// Restores the node-level part of a snapshot; the stage's part is
    /// handed to the stage before its `init`.
    pub(crate) fn restore_timing(&mut self, seq: u64, max_ts: u64, sent: u64) {
        self.seq = seq;
        if let Some(t) = self.timing.as_mut() {
            t.max_ts = max_ts;
            t.sent = sent;
        }
    }

    /// Queues a control element for all outputs.
    fn queue_control(&mut self, c: Control) {
        if let Some(t) = self.timing.as_mut() {
            t.queued.push_back(c);
        }
    }

    /// Sends queued control elements while the arena has slots for them;
    /// returns whether any went.
    #[inline]
    pub(crate) fn send_controls(&mut self, ctx: &mut StepCtx<'_>) -> bool {
        let Some(t) = self.timing.as_mut() else {
            return false;
        };
        if t.queued.is_empty() {
            return false;
        }
        let mut moved = false;
        while let Some(&c) = t.queued.front() {
            let Some(h) = c.alloc(ctx.arena, ctx.pool, self.info.index as u16) else {
                break;
            };
            t.queued.pop_front();
            ring::fan_out_control(ctx.arena, ctx.pool, h, &mut self.ports);
            moved = true;
        }
        moved
    }

    /// Whether control elements still wait for a slot.
    pub(crate) fn controls_queued(&self) -> bool {
        self.timing.as_ref().is_some_and(|t| !t.queued.is_empty())
    }

    /// The stage's snapshot wrapped with the node's, or the error that
    /// fails the stage.
    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        let stage = match &mut self.stage {
            Stage::Source(s) => s.snapshot(),
            Stage::Processor(p) => p.snapshot(),
            Stage::Router(r, _) => r.snapshot(),
            Stage::Sink(s) => s.snapshot(),
        }?;
        let t = self.timing.as_ref().expect("checkpoints have timing");
        Ok(encode(self.seq, t, &stage))
    }

    /// The node's state before it runs (checkpoint 0 of a fresh run).
    pub(crate) fn initial_state(&mut self) -> Result<Vec<u8>, StageError> {
        self.snapshot()
    }

    /// Takes this node's snapshot for checkpoint `id` and sends it to the
    /// coordinator; a stage that cannot snapshot fails.
    fn ack(&mut self, id: u64) {
        match self.snapshot() {
            Ok(state) => {
                let t = self.timing.as_ref().expect("checkpoints have timing");
                if let Some(b) = &t.barriers {
                    b.ack(Ack::State {
                        id,
                        node: self.info.index,
                        state,
                    });
                }
            }
            Err(e) => self.fail(format!("checkpoint {id}: {e}")),
        }
    }

    /// At completion (before teardown): the node's final state stands for
    /// it in every later checkpoint.
    pub(crate) fn ack_finished(&mut self) {
        if self.timing.as_ref().is_none_or(|t| t.barriers.is_none()) {
            return;
        }
        match self.snapshot() {
            Ok(state) => {
                let t = self.timing.as_ref().expect("just checked");
                if let Some(b) = &t.barriers {
                    b.ack(Ack::Finished {
                        node: self.info.index,
                        state,
                    });
                }
            }
            Err(e) => log::error!("stage '{}': final snapshot: {e}", self.info.name),
        }
    }

    /// A source's duties before its batch: a barrier when a checkpoint is
    /// asked for (after everything it sent so far, with its position now).
    pub(crate) fn source_before_batch(&mut self) {
        let Some(t) = self.timing.as_mut() else {
            return;
        };
        let Some(b) = &t.barriers else { return };
        let requested = b.requested();
        if requested > t.injected {
            t.injected = requested;
            self.ack(requested);
            self.queue_control(Control::Barrier(requested));
        }
    }

    /// A source's duties after its batch: the watermark when it advanced,
    /// idleness after `idle_timeout_ms` without data, and the final
    /// watermark when it is exhausted.
    pub(crate) fn source_after_batch(&mut self, sent: usize, done: bool) {
        let Some(t) = self.timing.as_mut() else {
            return;
        };
        let Some(src) = &t.source else { return };
        let bound = src.watermark.max_out_of_orderness_ms;
        let idle_after = src.watermark.idle_timeout_ms;
        let mut out = None;
        if done {
            // Nothing follows: every window may close.
            out = Some(Control::Watermark(u64::MAX));
        } else if sent > 0 {
            t.last_data_ns = now_ns();
            let wm = t.max_ts.saturating_sub(bound);
            if wm > t.sent || t.sent_idle {
                out = Some(Control::Watermark(wm.max(t.sent)));
            }
        } else if let Some(ms) = idle_after {
            if !t.sent_idle && now_ns().saturating_sub(t.last_data_ns) >= ms * 1_000_000 {
                out = Some(Control::Idle);
            }
        }
        match out {
            Some(Control::Watermark(w)) => {
                t.sent = w;
                t.sent_idle = false;
            }
            Some(Control::Idle) => t.sent_idle = true,
            _ => {}
        }
        if let Some(c) = out {
            self.queue_control(c);
        }
    }

    /// When an idle source should be looked at again (its idle timeout).
    pub(crate) fn idle_due_ns(&self) -> Option<u64> {
        let t = self.timing.as_ref()?;
        let ms = t.source.as_ref()?.watermark.idle_timeout_ms?;
        (!t.sent_idle).then(|| t.last_data_ns + ms * 1_000_000)
    }

    /// A consumer's duties before reading input: timers held or due, an
    /// alignment that inputs finishing have completed. Returns (moved,
    /// blocked): `blocked` means output is held and no input may be taken.
    pub(crate) fn consumer_before_batch(&mut self, ctx: &mut StepCtx<'_>) -> (bool, bool) {
        let mut moved = false;
        // An input that ends can advance the least watermark or complete an
        // alignment only when there are others (one input ending ends the
        // stage, whose `finish` closes what is open).
        let changed = self.inputs.len() > 1 && {
            let finished = self.inputs.iter().filter(|i| i.is_finished()).count();
            self.timing
                .as_mut()
                .is_some_and(|t| std::mem::replace(&mut t.finished_inputs, finished) != finished)
        };
        if changed {
            moved |= self.advance_watermark();
            moved |= self.check_aligned(ctx);
        }
        if !self.fire_timers(ctx, &mut moved) {
            return (moved, true);
        }
        (moved, false)
    }

    /// Fires what is due: a held timer first, then event-time timers up
    /// to the watermark being fired (then that watermark goes on), then
    /// processing-time timers. Returns false while output is held.
    fn fire_timers(&mut self, ctx: &mut StepCtx<'_>, moved: &mut bool) -> bool {
        let Stage::Processor(p) = &mut self.stage else {
            return true;
        };
        let Some(t) = self.timing.as_mut() else {
            return true;
        };
        if t.held_timer.is_none() && t.firing.is_none() {
            match p
                .timers()
                .and_then(|timers| timers.pop_processing_due(now_ns()))
            {
                Some(timer) => t.held_timer = Some(timer),
                None => return true,
            }
        }
        loop {
            let t = self.timing.as_mut().expect("checked above");
            let timer = match t.held_timer.take() {
                Some(timer) => timer,
                None => {
                    let Stage::Processor(p) = &mut self.stage else {
                        unreachable!()
                    };
                    let due = match t.firing {
                        Some(wm) => p.timers().and_then(|ts| ts.pop_event_due(wm)),
                        None => None,
                    }
                    .or_else(|| p.timers().and_then(|ts| ts.pop_processing_due(now_ns())));
                    match due {
                        Some(timer) => timer,
                        None => {
                            if let Some(wm) = t.firing.take() {
                                self.queue_control(Control::Watermark(wm));
                                *moved = true;
                            }
                            return true;
                        }
                    }
                }
            };
            let before = self.seq;
            let flush = match self.with_emitter(ctx, |p, out| p.on_timer(timer, out)) {
                Ok(flush) => flush,
                Err(m) => {
                    *moved = true;
                    self.on_failure(ctx, format!("timer: {m}"), 0, FailedIn::Running);
                    return false;
                }
            };
            *moved |= self.seq != before;
            if flush == Flush::More {
                let t = self.timing.as_mut().expect("checked above");
                t.held_timer = Some(timer);
                return false;
            }
        }
    }

    /// Handles the control element at the head of input `i`.
    pub(crate) fn on_control(&mut self, ctx: &mut StepCtx<'_>, i: usize) -> bool {
        let Some(control) = self.inputs[i].head_control(ctx.arena) else {
            return false;
        };
        let t = self.timing.as_mut().expect("control elements need timing");
        match control {
            Control::Watermark(w) => {
                self.inputs[i].pop_control(ctx.arena, ctx.pool);
                let input = &mut t.inputs[i];
                input.watermark = input.watermark.max(w);
                input.idle = false;
                self.advance_watermark();
            }
            Control::Idle => {
                self.inputs[i].pop_control(ctx.arena, ctx.pool);
                t.inputs[i].idle = true;
                self.advance_watermark();
            }
            Control::Barrier(id) => {
                // Stays at the head of the ring (which blocks the input)
                // until every input has its barrier.
                t.inputs[i].blocked = true;
                t.aligning = Some(id);
                self.check_aligned(ctx);
            }
        }
        true
    }

    /// Forwards the least watermark of the inputs that are not idle (a
    /// finished input counts as the end of time) when it advanced (a processor fires its timers first),
    /// or idleness when every live input is idle.
    fn advance_watermark(&mut self) -> bool {
        let Some(t) = self.timing.as_mut() else {
            return false;
        };
        let mut least: Option<u64> = None;
        let mut live = 0;
        for (input, ring) in t.inputs.iter().zip(&self.inputs) {
            if ring.is_finished() {
                // Nothing more comes from it: it holds nothing back.
                least = Some(least.unwrap_or(u64::MAX));
                continue;
            }
            live += 1;
            if !input.idle {
                least = Some(least.map_or(input.watermark, |l| l.min(input.watermark)));
            }
        }
        let Some(wm) = least else {
            if live > 0 && !t.sent_idle {
                t.sent_idle = true;
                self.queue_control(Control::Idle);
                return true;
            }
            return false;
        };
        let wm = wm.max(t.sent);
        if wm == t.sent && !t.sent_idle {
            return false;
        }
        t.sent = wm;
        t.sent_idle = false;
        match &mut self.stage {
            Stage::Processor(p) => {
                p.on_watermark(wm);
                // The watermark goes on once its timers have run.
                let firing = &mut self.timing.as_mut().expect("checked above").firing;
                *firing = Some(firing.map_or(wm, |f| f.max(wm)));
            }
            _ => self.queue_control(Control::Watermark(wm)),
        }
        true
    }

    /// Completes the alignment of a barrier once every input has delivered
    /// it or finished: takes the barriers off the rings, snapshots, acks
    /// and sends the barrier on.
    fn check_aligned(&mut self, ctx: &mut StepCtx<'_>) -> bool {
        let Some(t) = self.timing.as_mut() else {
            return false;
        };
        let Some(id) = t.aligning else { return false };
        // Timers due before the barrier belong before it.
        if t.firing.is_some() || t.held_timer.is_some() {
            return false;
        }
        let aligned = t
            .inputs
            .iter()
            .zip(&self.inputs)
            .all(|(i, ring)| i.blocked || ring.is_finished());
        if !aligned {
            return false;
        }
        for (input, ring) in t.inputs.iter_mut().zip(self.inputs.iter_mut()) {
            if std::mem::take(&mut input.blocked) {
                ring.pop_control(ctx.arena, ctx.pool);
            }
        }
        t.aligning = None;
        if self.state == State::Running {
            self.ack(id);
        }
        self.queue_control(Control::Barrier(id));
        true
    }
}
