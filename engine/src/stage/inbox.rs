//! How a batch of a consuming stage's input is handed to it: the loop
//! over the batch's handles, what each element's answer does to its
//! handle (passed on, fanned out, released, diverted to the `error` port)
//! and the counters it moves.
//!
//! The runtime takes a batch from the input rings and lends it to the
//! stage as an [`Inbox`]; [`Sink::push_batch`] and
//! [`Router::route_batch`] run the loop. Their default bodies are
//! compiled once for each stage type, so the stage's own `push` or
//! `route` is a direct call the compiler may inline into the loop: one
//! virtual call per batch, none per element.
//!
//! [`Sink::push_batch`]: super::Sink::push_batch
//! [`Router::route_batch`]: super::Router::route_batch

use crate::arena::{Arena, Handle, LocalPool};
use crate::metrics::StageReport;
use crate::ring::{self, EdgeIn, EdgeOut, Taken};
use crate::stage::{Element, PortMask, StageError};

/// One batch of a router's or sink's input, lent by the runtime to
/// [`Sink::push_batch`](super::Sink::push_batch) or
/// [`Router::route_batch`](super::Router::route_batch), which hand it
/// back through [`push_each`](Inbox::push_each) or
/// [`route_each`](Inbox::route_each).
pub struct Inbox<'b, 'l> {
    pub(crate) batch: Batch<'b, 'l>,
    /// A sink's run of deliveries with equal ingest stamps.
    pub(crate) latency: &'b mut LatencyRun,
    /// The stage is a sink (else a router or a processor).
    pub(crate) sink: bool,
}

/// An [`Inbox`]'s elements and where their answers go.
pub(crate) struct Batch<'b, 'l> {
    pub(crate) input: &'b mut EdgeIn,
    pub(crate) arena: &'b Arena,
    pub(crate) pool: &'b mut LocalPool,
    /// Elements to take, at most (0 once taken).
    pub(crate) n: usize,
    pub(crate) lane: &'b mut Lane<'l>,
    pub(crate) out: BatchOut<'b>,
}

impl Inbox<'_, '_> {
    /// Hands each element of the batch to `push`, in order: a delivered
    /// one has its latency noted and is released; a rejected or
    /// undelivered one goes to the `error` port when one is connected.
    ///
    /// Called again, it finds nothing left. Panics in a router's inbox.
    #[inline(always)]
    pub fn push_each(&mut self, mut push: impl FnMut(&Element<'_>) -> Result<(), StageError>) {
        assert!(self.sink, "Inbox::push_each in a router's inbox");
        let Inbox { batch, latency, .. } = self;
        // The run in locals for the loop (in memory, it would be loaded
        // and stored around every element), stored back after it, a panic
        // included.
        let mut run = Restore {
            run: **latency,
            to: latency,
        };
        batch.each(|handle, lane, arena, pool| {
            consume_sink(&mut push, lane, &mut run.run, handle, arena, pool)
        });
    }

    /// Hands each element of the batch to `route`, in order, and moves
    /// its handle to the ports it names: one refcount bump and a push per
    /// edge, or a drop when it names none.
    ///
    /// Called again, it finds nothing left. Panics in a sink's inbox.
    #[inline(always)]
    pub fn route_each(
        &mut self,
        mut route: impl FnMut(&Element<'_>, &mut PortMask) -> Result<(), StageError>,
    ) {
        assert!(!self.sink, "Inbox::route_each in a sink's inbox");
        self.batch.each(|handle, lane, arena, pool| {
            consume_router(&mut route, lane, handle, arena, pool)
        });
    }
}

/// A [`LatencyRun`] copied into a local, stored back when dropped.
struct Restore<'a> {
    run: LatencyRun,
    to: &'a mut LatencyRun,
}

impl Drop for Restore<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        *self.to = self.run;
    }
}

impl Batch<'_, '_> {
    /// Hands up to `n` elements of the input to `one`, the first call
    /// only; each one consumed counts as received (a processor's deferred
    /// one is not consumed). After a fatal error the rest of the batch
    /// waits in the ring: for the restarted stage, or for the failed
    /// stage's drain.
    #[inline(always)]
    pub(crate) fn each(
        &mut self,
        mut one: impl FnMut(Handle, &mut Lane<'_>, &Arena, &mut LocalPool) -> Result<Taken, String>,
    ) {
        let Batch {
            input,
            arena,
            pool,
            n,
            lane,
            out,
        } = self;
        let arena = *arena;
        // The whole batch, once: a second call finds nothing left.
        let n = std::mem::take(n);
        if n == 0 {
            return;
        }
        // Where the count of received elements stood when this read began:
        // a panic inside it tells how many it handled.
        *out.taking = Some(lane.report.received);
        let (fatal, deferred, in_flight) =
            (&mut *out.fatal, &mut *out.deferred, &mut *out.in_flight);
        // A fatal error ends the batch after the element it came with.
        let consume = |handle| match one(handle, lane, arena, pool) {
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
        // The batch stops before a control element, which is left at the
        // head of the ring for the runtime; a pipeline without them never
        // has one there. One loop for both keeps the stage's call in one
        // place, where the compiler inlines it.
        let (_, at_control) = input.take(arena, n, consume);
        *out.taking = None;
        out.at_control = at_control;
    }
}

/// A consuming node's outputs and counters, borrowed for one batch.
pub(crate) struct Lane<'a> {
    pub(crate) ports: &'a mut [Vec<EdgeOut>],
    pub(crate) report: &'a mut StageReport,
    pub(crate) seq: &'a mut u64,
    pub(crate) source: u16,
    pub(crate) error_port: Option<usize>,
    /// The ports a router may name (its declared ones).
    pub(crate) routable: PortMask,
    /// The node refuses new elements on its outputs (see the runtime's
    /// `Node::refusing`).
    pub(crate) refusing: bool,
    /// With stage metrics: when this batch was dequeued.
    pub(crate) stamp: Option<u64>,
    /// New elements a processor may still emit in this batch (see
    /// [`Outlet::room`](super::Outlet)).
    pub(crate) room: usize,
}

impl Lane<'_> {
    /// With stage metrics: how long `handle` waited in the ring.
    #[inline(always)]
    pub(crate) fn note_arrival(&mut self, arena: &Arena, handle: &Handle) {
        // The stamp first: it is `None` unless the stage is measured.
        if let Some(t0) = self.stamp {
            if let Some(h) = self.report.arrival.as_mut() {
                h.saturating_record(t0.saturating_sub(arena.meta(handle).ingest_ns));
            }
        }
    }

    /// A router or sink takes `handle`: its wait is noted and it counts as
    /// received (a processor counts it after `process`, which may defer it).
    #[inline(always)]
    fn receive(&mut self, arena: &Arena, handle: &Handle) {
        self.note_arrival(arena, handle);
        self.report.received += 1;
    }
}

/// A sink's current run of deliveries with equal ingest stamps (a source
/// stamps a whole batch with one clock read): they have the same latency,
/// recorded once with their count.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LatencyRun {
    /// The sink's clock for this batch (latency = dequeue time - ingest).
    pub(crate) now: u64,
    ingest: u64,
    len: u64,
}

impl LatencyRun {
    /// Counts one more delivery of an element ingested at `ingest`.
    #[inline(always)]
    fn note(&mut self, ingest: u64, report: &mut StageReport) {
        if ingest == self.ingest {
            self.len += 1;
        } else {
            self.start(ingest, report);
        }
    }

    /// A new run, once per batch of a source: out of the loop's way.
    #[cold]
    #[inline(never)]
    fn start(&mut self, ingest: u64, report: &mut StageReport) {
        self.flush(report);
        self.ingest = ingest;
        self.len = 1;
    }

    /// Records the current run (before `now` changes, and at batch end).
    #[inline]
    pub(crate) fn flush(&mut self, report: &mut StageReport) {
        if self.len > 0 {
            if let Some(h) = report.latency.as_mut() {
                h.saturating_record_n(self.now.saturating_sub(self.ingest), self.len);
            }
            self.len = 0;
        }
    }
}

/// What a batch's elements did, beyond being consumed: a fatal error (the
/// rest of the batch then waits in the ring), a deferral, a control
/// element at the head.
pub(crate) struct BatchOut<'a> {
    pub(crate) fatal: &'a mut Option<String>,
    pub(crate) deferred: &'a mut bool,
    /// 1 when the stage failed on an element it had received.
    pub(crate) in_flight: &'a mut u64,
    pub(crate) at_control: bool,
    /// During a ring read: the stage report's `received` when it began
    /// (a panic then leaves the read uncommitted).
    pub(crate) taking: &'a mut Option<u64>,
}

/// Routes one input element: one refcount bump and a push per edge of the
/// chosen ports, or a drop when it names none.
#[inline(always)]
fn consume_router(
    route: &mut impl FnMut(&Element<'_>, &mut PortMask) -> Result<(), StageError>,
    lane: &mut Lane<'_>,
    mut handle: Handle,
    arena: &Arena,
    pool: &mut LocalPool,
) -> Result<Taken, String> {
    lane.receive(arena, &handle);
    let mut mask = PortMask::default();
    let routed = route(&Element::input(arena, &mut handle, pool), &mut mask);
    // A router may only name its declared ports.
    let mask = PortMask(mask.0 & lane.routable.0);
    match routed {
        Ok(()) if mask.is_empty() => {
            lane.report.drop_static("no route");
            arena.release(handle, pool);
            Ok(Taken::Yes)
        }
        Ok(()) => {
            emit_mask(lane.ports, lane.report, mask, handle, arena, lane.refusing);
            Ok(Taken::Yes)
        }
        Err(e) => reject(e, lane, handle, arena, pool),
    }
}

/// Delivers one input element to a sink, notes its latency and releases
/// it (or diverts it when the sink could not deliver it).
#[inline(always)]
fn consume_sink(
    push: &mut impl FnMut(&Element<'_>) -> Result<(), StageError>,
    lane: &mut Lane<'_>,
    run: &mut LatencyRun,
    mut handle: Handle,
    arena: &Arena,
    pool: &mut LocalPool,
) -> Result<Taken, String> {
    lane.receive(arena, &handle);
    let ingest = arena.meta(&handle).ingest_ns;
    let pushed = push(&Element::input(arena, &mut handle, pool));
    run.note(ingest, lane.report);
    match pushed {
        Ok(()) => {
            arena.release(handle, pool);
            Ok(Taken::Yes)
        }
        Err(e) => reject(e, lane, handle, arena, pool),
    }
}

/// A processor panicked on `handle`: it counts as received, is released,
/// and is counted by the runtime's failure handling.
#[cold]
pub(crate) fn in_flight(
    m: String,
    lane: &mut Lane<'_>,
    handle: Handle,
    arena: &Arena,
    pool: &mut LocalPool,
) -> Result<Taken, String> {
    lane.report.received += 1;
    arena.release(handle, pool);
    Err(m)
}

/// A rejected element goes, untouched and with its reason in the metadata,
/// to the `error` port when one is connected; otherwise it is dropped and
/// counted with its reason.
pub(crate) fn reject(
    e: StageError,
    lane: &mut Lane<'_>,
    mut handle: Handle,
    arena: &Arena,
    pool: &mut LocalPool,
) -> Result<Taken, String> {
    match e {
        StageError::Rejected(reason) => {
            // A shared slot is copied so the other branches stay unmarked.
            if let Some(port) = lane
                .error_port
                .filter(|_| arena.make_mut(&mut handle, pool))
            {
                let mut meta = arena.meta(&handle);
                meta.reason = Some(reason.kind);
                arena.set_meta(&mut handle, meta);
                lane.report.divert(reason);
                emit_port(lane.ports, port, handle, arena, lane.refusing);
                lane.report.count_sent(port, 1);
            } else {
                arena.release(handle, pool);
                lane.report.drop_with(reason);
            }
            Ok(Taken::Yes)
        }
        // A sink's undelivered element goes to its `error` port when one
        // is connected (then it is routed, not failed), as a rejected one.
        StageError::Failed(reason) => match lane.error_port {
            Some(_) => reject(StageError::Rejected(reason), lane, handle, arena, pool),
            None => {
                arena.release(handle, pool);
                lane.report.fail_with(reason, 1);
                Ok(Taken::Yes)
            }
        },
        // Counted by the runtime's failure handling, which knows whether
        // the stage restarts.
        StageError::Fatal(m) => {
            arena.release(handle, pool);
            Err(m)
        }
    }
}

/// Queues `handle` on every edge of `port` that takes it (see
/// [`ring::fan_out`]).
#[inline]
pub(crate) fn emit_port(
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
fn emit_mask(
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
