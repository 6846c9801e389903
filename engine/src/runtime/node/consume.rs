//! A consuming node's step (processor, router, sink): take a batch from
//! the input rings, hand each element to the stage, move its handle on.

use super::*;
use crate::stage::{Processor, Router, Sink};

impl Node {
    /// Processes one batch of input (fairly over fan-in edges); returns true
    /// when every input has completed.
    ///
    /// `CONTROL`: the pipeline carries control elements; a batch then
    /// stops at one, which is handled after the batch ([`Node::on_control`]),
    /// and inputs blocked on a barrier are skipped.
    pub(super) fn step_consumer<const CONTROL: bool>(
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
            routable: PortMask::all(*routable),
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
            // One guard per batch for routers and sinks (a processor's
            // panic is caught per element, in `consume_processor`). The
            // stage kind is matched once per batch, not per element.
            let consumed = guard(|| {
                let mut out = BatchOut {
                    fatal: &mut fatal,
                    deferred: &mut deferred,
                    in_flight: &mut in_flight,
                    at_control: false,
                };
                // The stage's trait object is taken out of its box once per
                // batch: a local, not reloaded from the node around every
                // call.
                let consumed = match stage {
                    Stage::Processor(p) => {
                        let p = p.as_mut();
                        take_batch::<CONTROL>(input, arena, n, &mut out, |h| {
                            consume_processor(p, &mut lane, h, ctx)
                        })
                    }
                    Stage::Router(r, _) => {
                        let r = r.as_mut();
                        take_batch::<CONTROL>(input, arena, n, &mut out, |h| {
                            consume_router(r, &mut lane, h, ctx)
                        })
                    }
                    Stage::Sink(s) => {
                        let s = s.as_mut();
                        take_batch::<CONTROL>(input, arena, n, &mut out, |h| {
                            consume_sink(s, &mut lane, h, ctx)
                        })
                    }
                    Stage::Source(_) => unreachable!("sources have no input"),
                };
                if out.at_control {
                    control_at = Some(i);
                }
                consumed
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
    pub(super) fn drain_failed(&mut self, ctx: &mut StepCtx<'_>, moved: &mut bool) -> bool {
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

pub(super) fn report_sink_error(
    report: &mut StageReport,
    e: StageError,
    fatal: &mut Option<String>,
) {
    match e {
        StageError::Rejected(r) => report.drop_with(r),
        StageError::Failed(r) => report.fail_with(r, 1),
        StageError::Fatal(m) => *fatal = Some(m),
    }
}

/// Counts a non-fatal error from `tick`/`finish` (no input element to
/// divert).
pub(super) fn note_error(report: &mut StageReport, e: StageError) {
    match e {
        StageError::Rejected(r) => report.drop_with(r),
        StageError::Failed(r) => report.fail_with(r, 1),
        StageError::Fatal(_) => unreachable!("with_emitter returns fatal errors"),
    }
}

/// A consuming node's outputs and counters, borrowed for one batch.
pub(super) struct Lane<'a> {
    ports: &'a mut [Vec<EdgeOut>],
    report: &'a mut StageReport,
    seq: &'a mut u64,
    source: u16,
    error_port: Option<usize>,
    /// The ports a router may name (its declared ones).
    routable: PortMask,
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
    /// With stage metrics: how long `handle` waited in the ring.
    #[inline(always)]
    fn note_arrival(&mut self, arena: &Arena, handle: &Handle) {
        if let (Some(t0), Some(h)) = (self.stamp, self.report.arrival.as_mut()) {
            h.saturating_record(t0.saturating_sub(arena.meta(handle).ingest_ns));
        }
    }

    /// A router or sink takes `handle`: its wait is noted and it counts as
    /// received (a processor counts it after `process`, which may defer it).
    #[inline(always)]
    fn receive(&mut self, arena: &Arena, handle: &Handle) {
        self.note_arrival(arena, handle);
        self.report.received += 1;
    }

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

/// What a batch's elements did, beyond being consumed: a fatal error (the
/// rest of the batch then waits in the ring), a deferral, a control
/// element at the head.
pub(super) struct BatchOut<'a> {
    fatal: &'a mut Option<String>,
    deferred: &'a mut bool,
    /// 1 when the stage failed on an element it had received.
    in_flight: &'a mut u64,
    at_control: bool,
}

/// Hands up to `n` elements of `input` to `one` (one stage kind's consume
/// function, so the kind is matched once per batch); returns how many were
/// consumed. After a fatal error the rest of the batch waits in the ring:
/// for the restarted stage, or for `drain_failed`.
#[inline(always)]
fn take_batch<const CONTROL: bool>(
    input: &mut EdgeIn,
    arena: &Arena,
    n: usize,
    out: &mut BatchOut<'_>,
    mut one: impl FnMut(Handle) -> Result<Taken, String>,
) -> usize {
    let (fatal, deferred, in_flight) = (&mut *out.fatal, &mut *out.deferred, &mut *out.in_flight);
    // A fatal error ends the batch after the element it came with.
    let consume = |handle| match one(handle) {
        Ok(Taken::Defer(handle)) => {
            *deferred = true;
            Taken::Defer(handle)
        }
        Ok(taken) => taken,
        Err(m) => {
            *fatal = Some(m);
            *in_flight = 1;
            Taken::Last
        }
    };
    if CONTROL {
        let (consumed, at_control) = input.take_data(arena, n, consume);
        out.at_control = at_control;
        consumed
    } else {
        input.take(arena, n, consume)
    }
}

/// Hands one input element to a processor and moves its handle
/// accordingly. `Taken::Defer`: the processor deferred it (it stays in
/// the ring). `Err` carries a fatal error or panic message; the element
/// then counts as received and is released, its outcome left to
/// `Node::on_failure`.
#[inline(always)]
pub(super) fn consume_processor(
    p: &mut dyn Processor,
    lane: &mut Lane<'_>,
    mut handle: Handle,
    ctx: &mut StepCtx<'_>,
) -> Result<Taken, String> {
    let arena = ctx.arena;
    let raw = handle.index();
    lane.note_arrival(arena, &handle);
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

/// Routes one input element: one refcount bump and a push per edge of the
/// chosen ports, or a drop when it names none.
#[inline(always)]
pub(super) fn consume_router(
    r: &mut dyn Router,
    lane: &mut Lane<'_>,
    mut handle: Handle,
    ctx: &mut StepCtx<'_>,
) -> Result<Taken, String> {
    let arena = ctx.arena;
    lane.receive(arena, &handle);
    let mut mask = PortMask::default();
    let routed = r.route(&Element::input(arena, &mut handle, ctx.pool), &mut mask);
    // A router may only name its declared ports.
    let mask = PortMask(mask.0 & lane.routable.0);
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

/// Delivers one input element to a sink, notes its latency and releases
/// it (or diverts it when the sink could not deliver it).
#[inline(always)]
pub(super) fn consume_sink(
    s: &mut dyn Sink,
    lane: &mut Lane<'_>,
    mut handle: Handle,
    ctx: &mut StepCtx<'_>,
) -> Result<Taken, String> {
    let arena = ctx.arena;
    lane.receive(arena, &handle);
    let ingest = arena.meta(&handle).ingest_ns;
    let pushed = s.push(&Element::input(arena, &mut handle, ctx.pool));
    lane.note_latency(ingest);
    match pushed {
        Ok(()) => {
            arena.release(handle, ctx.pool);
            Ok(Taken::Yes)
        }
        Err(e) => reject(e, lane, handle, ctx),
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
pub(super) fn after_panic_in_take(
    input: &mut EdgeIn,
    ctx: &mut StepCtx<'_>,
    handled: usize,
) -> usize {
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
pub(super) fn in_flight(
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
pub(super) fn reject(
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
pub(super) fn emit_port(
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
#[inline(always)]
pub(super) fn emit_mask(
    ports: &mut [Vec<EdgeOut>],
    report: &mut StageReport,
    mask: PortMask,
    handle: Handle,
    arena: &Arena,
    refusing: bool,
) {
    if mask.0 & (mask.0 - 1) == 0 {
        // One port, the usual route: no walk over the mask's bits.
        let port = mask.0.trailing_zeros() as usize;
        report.count_sent(port, 1);
        ring::fan_out(arena, handle, ports, port, refusing);
        return;
    }
    for p in mask.iter() {
        report.count_sent(p, 1);
    }
    ring::fan_out_ports(arena, handle, ports, mask.0, refusing);
}
