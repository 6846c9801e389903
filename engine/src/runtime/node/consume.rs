//! A consuming node's step (processor, router, sink): take a batch from
//! the input rings, hand each element to the stage, move its handle on.

use super::*;
use crate::stage::inbox::{in_flight, reject, Batch, BatchOut, Lane, LatencyRun};
use crate::stage::{Inbox, Processor};

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
            room: budget,
        };
        let mut latency = LatencyRun::default();
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
                latency.flush(lane.report);
                latency.now = stamp.unwrap_or_else(now_ns);
            }
            let arena = ctx.arena;
            // Every element consumed counts as received, so the count
            // tells how many a batch consumed.
            let received = lane.report.received;
            let mut taking = None;
            // One guard per batch for routers and sinks (a processor's
            // panic is caught per element, in `consume_processor`). The
            // stage kind is matched once per batch, not per element.
            let result = guard(|| {
                let pool = &mut *ctx.pool;
                let mut inbox = Inbox {
                    batch: Batch {
                        input,
                        arena,
                        pool,
                        n,
                        lane: &mut lane,
                        out: BatchOut {
                            fatal: &mut fatal,
                            deferred: &mut deferred,
                            in_flight: &mut in_flight,
                            at_control: false,
                            taking: &mut taking,
                        },
                    },
                    latency: &mut latency,
                    sink: is_sink,
                };
                // One virtual call per batch: a router's and a sink's loop
                // is compiled for its own type (see `Inbox`); a
                // processor's trait object is taken out of its box once.
                match stage {
                    Stage::Processor(p) => {
                        let p = p.as_mut();
                        inbox.batch.each(|h, lane, arena, pool| {
                            consume_processor(p, lane, h, arena, pool)
                        });
                    }
                    Stage::Router(r, _) => r.route_batch(&mut inbox),
                    Stage::Sink(s) => s.push_batch(&mut inbox),
                    Stage::Source(_) => unreachable!("sources have no input"),
                }
                if inbox.batch.out.at_control {
                    control_at = Some(i);
                }
            });
            let consumed = match result {
                Ok(()) => (lane.report.received - received) as usize,
                Err(m) => {
                    fatal = Some(m);
                    // A panic inside a ring read left it uncommitted; one
                    // elsewhere in the stage's batch call (before or after
                    // its loop) left nothing half read.
                    let now = lane.report.received;
                    let (committed, handled) = match taking {
                        Some(at) => (at - received, now - at),
                        None => (now - received, 0),
                    };
                    in_flight = u64::from(handled > 0);
                    committed as usize + after_panic_in_take(input, ctx, handled as usize)
                }
            };
            taken += consumed;
            if deferred || control_at.is_some() {
                break;
            }
        }
        latency.flush(lane.report);
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
    arena: &Arena,
    pool: &mut LocalPool,
) -> Result<Taken, String> {
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
                pool,
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
        Err(m) => return in_flight(m, lane, handle, arena, pool),
    };
    if verdict == Ok(Verdict::Defer) {
        if handle.index() == raw {
            // Still the ring's element: it stays there.
            return Ok(Taken::Defer(handle));
        }
        lane.report.received += 1;
        arena.release(handle, pool);
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
            arena.release(handle, pool);
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
                    arena.release(handle, pool);
                }
                None => {
                    arena.release(handle, pool);
                    return Err(format!(
                        "sent an element to side port {s}, which it does not declare"
                    ));
                }
            }
            Ok(Taken::Yes)
        }
        Err(e) => reject(e, lane, handle, arena, pool),
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
