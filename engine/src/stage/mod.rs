//! The stage API: sources, processors, routers and sinks.
//!
//! A stage is plain Rust: a struct implementing one of the four traits below.
//! It never sees rings, cores or refcounts. The runtime calls it with an
//! element *view* ([`Element`], [`SlotWriter`]) that borrows the arena, and
//! turns the stage's answer into handle moves: forward, fan out (a refcount
//! bump), drop. Every trait has `init` and `teardown` (the seed's lifecycle);
//! `init` gets the stage's [`StageInfo`].

use std::fmt;

mod element;
pub(crate) mod guard;
pub(crate) mod inbox;

pub(crate) use element::Outlet;
pub use element::{Element, Emitter, SlotBatch, SlotWriter};
pub use inbox::Inbox;

use crate::arena::TooLarge;

/// What a stage knows about itself when it starts.
#[derive(Clone, Debug)]
pub struct StageInfo {
    /// Node name (`flow.node`).
    pub name: String,
    /// Stage index in the pipeline (sources use it as their source id).
    pub index: usize,
    /// The arena's slot size: the largest payload an element can carry.
    pub slot_size: usize,
}

/// Why one element was rejected (bad data). The run goes on; the element is
/// counted as dropped under `kind`, and the first `detail` is kept for the
/// run summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// Short, stable category, e.g. `"invalid JSON"`.
    pub kind: &'static str,
    /// Specifics of this occurrence, e.g. the parser's message.
    pub detail: String,
}

impl Reason {
    /// A reason with details.
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Reason {
        Reason {
            kind,
            detail: detail.into(),
        }
    }
}

impl From<crate::event_time::NoEventTime> for Reason {
    fn from(e: crate::event_time::NoEventTime) -> Reason {
        Reason::new("no event time", e.0)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.detail)
        }
    }
}

/// An error a stage returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StageError {
    /// This element is bad; count it as dropped with the reason and go on.
    Rejected(Reason),
    /// The stage cannot continue: its restart policy rebuilds it, or (by
    /// default) the pipeline stops, drains and reports failure. A panic in
    /// a stage call is handled the same way.
    Fatal(String),
    /// A sink could not deliver this element (an I/O error, a full send
    /// buffer): counted as `failed`, not `dropped`, and the run exits 74
    /// (EX_IOERR). The run goes on.
    Failed(Reason),
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::Rejected(r) => write!(f, "rejected: {r}"),
            StageError::Fatal(m) => write!(f, "fatal: {m}"),
            StageError::Failed(r) => write!(f, "not delivered: {r}"),
        }
    }
}

impl std::error::Error for StageError {}

impl StageError {
    /// Whether this is [`Emitter::emit`]'s (or [`Element::emit`]'s) "no
    /// room now": nothing was sent, for want of a free slot or of output
    /// space in this step. Not a fault: keep what was to be sent and emit it
    /// on a later call ([`Flush::More`], [`Verdict::Defer`]).
    pub fn is_no_room(&self) -> bool {
        matches!(self, StageError::Rejected(r) if r.kind == NO_ROOM)
    }
}

/// The [`Reason::kind`] of an emit that found no room (see
/// [`StageError::is_no_room`]).
const NO_ROOM: &str = "no room for an emitted element";

impl From<TooLarge> for StageError {
    fn from(e: TooLarge) -> StageError {
        StageError::Rejected(Reason::new("payload too large", e.to_string()))
    }
}

/// What a source's `pull` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pull {
    /// The slot holds a new element: send it.
    Ready,
    /// Nothing right now (the slot is kept for the next call).
    Pending,
    /// The source is exhausted; completion flows downstream.
    Done,
}

/// What a processor did with its input element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (possibly modified) input element on.
    Emit,
    /// Consume it without output (filtered, absorbed into a window...).
    Drop,
    /// Not now: leave it in the input ring and call `process` with it again
    /// later (a rate limiter delaying). Upstream sees backpressure. Return
    /// this before changing the element.
    Defer,
    /// Send the element to side port `i` (an index into
    /// [`Processor::side_ports`]; a window's `late` port) instead of
    /// `output`. Unconnected, the element is dropped and counted under the
    /// port's name.
    Side(u8),
}

/// Whether a processor's `tick` or `finish` emitted everything it had to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Nothing is held back.
    Done,
    /// Some output found no room ([`StageError::is_no_room`]) and is held
    /// by the processor: the runtime calls again on its next step, once
    /// the output has moved on. Meanwhile the processor defers its input
    /// ([`Verdict::Defer`]), so that what it holds stays bounded.
    More,
}

/// A set of router output ports (by index in the router's port list).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortMask(pub u64);

impl PortMask {
    /// Most output ports a router may declare.
    pub const MAX_PORTS: usize = 64;

    /// Adds port `i`.
    #[inline]
    pub fn add(&mut self, i: usize) {
        debug_assert!(i < Self::MAX_PORTS);
        self.0 |= 1 << i;
    }

    /// All ports `0..n`.
    pub fn all(n: usize) -> PortMask {
        PortMask(if n >= 64 { u64::MAX } else { (1u64 << n) - 1 })
    }

    /// Whether no port is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Iterates the set port indices.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }
}

/// Produces elements. Output port: `output`.
pub trait Source: Send {
    /// Called once on the stage's worker before the first `pull`.
    fn init(&mut self, _info: &StageInfo) -> Result<(), StageError> {
        Ok(())
    }
    /// Opens what the source takes from outside (binds its socket): called
    /// once by the runtime, on the main thread, before any stage starts.
    /// An error is reported as a config error naming the node (exit 78),
    /// and nothing runs. Building the pipeline opens nothing; a source
    /// rebuilt by its restart policy opens in `init`. Default: nothing.
    fn open(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// This stage's state for a checkpoint (see [`crate::checkpoint`]),
    /// taken when a barrier passes: everything before the barrier is in
    /// it, nothing after. Default: no state.
    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        Ok(Vec::new())
    }
    /// Restores what [`snapshot`](Self::snapshot) returned, before `init`,
    /// when a run resumes from a checkpoint. Default: accepts only the
    /// empty state.
    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        no_state(state)
    }
    /// Fills `slot` with the next element (or says there is none yet, or no
    /// more). Returning `Err(Rejected)` drops this attempt with the reason.
    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError>;
    /// Fills up to [`SlotBatch::room`] slots in one call, each as `pull`
    /// would (the runtime calls this, not `pull`, unless the source
    /// declares event time). The default calls `pull` once per slot; a
    /// source that makes elements in bulk overrides it to keep its state in
    /// registers across the batch. `Err(Rejected)` or `Err(Failed)` counts
    /// one drop with its reason, as from `pull`; `Err(Fatal)` fails the
    /// stage.
    fn pull_batch(&mut self, slots: &mut SlotBatch<'_>) -> Result<(), StageError> {
        slots.fill_all(|slot| self.pull(slot))
    }
    /// After `Pending`: the monotonic time ([`crate::clock::now_ns`]) at
    /// which the next element is due, if the source knows it (a paced
    /// generator, a ticker). An idle worker then sleeps until that moment
    /// instead of a full park interval.
    fn next_due_ns(&self) -> Option<u64> {
        None
    }
    /// A source that acknowledges what it read to an external system (a
    /// Kafka consumer committing offsets) asks here to be told which of
    /// its snapshots every sink has finished with. Called once, when the
    /// pipeline is built. With checkpoints on, that is each completed
    /// checkpoint; without, the pipeline still runs its barriers, every
    /// [`Commits::interval_ms`], only to learn this (nothing is written).
    /// Default: none.
    fn commits(&mut self) -> Option<Commits> {
        None
    }
    /// Events the source counted besides the elements it sent (Kafka
    /// elements that may be read again after a rebalance, say), as
    /// `(name, count)`; read once at the end of the run. Default: none.
    fn counts(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Called once after the last `pull`.
    fn teardown(&mut self) {}
}

/// What a source asks of [`Source::commits`].
pub struct Commits {
    /// How often barriers run when the pipeline takes no checkpoints
    /// (ms); with checkpoints, their `interval_ms` applies.
    pub interval_ms: u64,
    /// Called on the checkpoint coordinator's thread for each completed
    /// checkpoint, oldest first, with its id and the state this source's
    /// [`Source::snapshot`] gave for it: everything the source had sent
    /// before that snapshot has reached every sink (and every sink's own
    /// snapshot, a flush, succeeded). Also called after the source has
    /// finished, for the pipeline's final checkpoint.
    pub on_complete: OnComplete,
}

/// [`Commits::on_complete`]: called with a completed checkpoint's id and
/// the source's state in it.
pub type OnComplete = Box<dyn FnMut(u64, &[u8]) + Send>;

impl fmt::Debug for Commits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commits")
            .field("interval_ms", &self.interval_ms)
            .finish_non_exhaustive()
    }
}

/// Transforms, filters or absorbs elements. Ports: `input` -> `output`.
pub trait Processor: Send {
    /// Called once on the stage's worker before the first element.
    fn init(&mut self, _info: &StageInfo) -> Result<(), StageError> {
        Ok(())
    }
    /// This stage's state for a checkpoint (see [`crate::checkpoint`]),
    /// taken when a barrier passes: everything before the barrier is in
    /// it, nothing after. Default: no state.
    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        Ok(Vec::new())
    }
    /// Restores what [`snapshot`](Self::snapshot) returned, before `init`,
    /// when a run resumes from a checkpoint. Default: accepts only the
    /// empty state.
    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        no_state(state)
    }
    /// Handles one element: return `Emit` to send it on (possibly
    /// modified), `Drop` to consume it; [`Element::emit`] sends new ones.
    /// New elements that find no room ([`StageError::is_no_room`]) are for
    /// the processor to hold and send first on later calls, deferring its
    /// input until they are out.
    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError>;
    /// How the run summary names the elements this processor consumed with
    /// [`Verdict::Drop`] (default `"filtered"`; a window says it absorbed
    /// them, a rate limiter that it limited them).
    fn drop_reason(&self) -> &'static str {
        "filtered"
    }
    /// How often [`tick`](Processor::tick) should run, in nanoseconds
    /// (`None`, the default: never). Time windows close on ticks.
    fn tick_interval(&self) -> Option<u64> {
        None
    }
    /// Called about every `tick_interval` with the current time, also when
    /// no input arrives. [`Flush::More`]: output is held for want of room;
    /// `tick` is called again on the next step (before any `process`; the
    /// processor defers input while it holds output). An `Err` counts as
    /// done.
    fn tick(&mut self, _now_ns: u64, _out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        Ok(Flush::Done)
    }
    /// Called when every input has completed, before `teardown`: emit what
    /// is still buffered (an open window). [`Flush::More`]: output is held
    /// for want of room; `finish` is called again on later steps until it
    /// returns `Done` (or an `Err`, which counts as done), and only then
    /// does the stage complete.
    fn finish(&mut self, _out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        Ok(Flush::Done)
    }
    /// Events the stage counted that are not elements in or out (keys a
    /// dedupe forgot to stay within `max_keys`, say), as `(name, count)`;
    /// read once at the end of the run, shown in the summary and the JSON
    /// report. Default: none.
    fn counts(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Extra output ports besides `output` and `error`, for
    /// [`Verdict::Side`] (a window's `late`). Default: none.
    fn side_ports(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether the processor reads event time (an event-time window): the
    /// pipeline then checks that its upstream sources declare `event_time`
    /// and hands it the declaration with [`set_event_time`](Self::set_event_time).
    fn uses_event_time(&self) -> bool {
        false
    }
    /// How the elements' timestamps are read (the upstream sources'
    /// `event_time`), before `init`.
    fn set_event_time(&mut self, _event_time: &crate::event_time::EventTime) {}
    /// The input's watermark advanced to `watermark_ms` (Unix ms): no
    /// element older than it is expected any more. Called before the
    /// event-time timers it makes due fire.
    fn on_watermark(&mut self, _watermark_ms: u64) {}
    /// The processor's timers, when it uses any: the runtime fires the
    /// event-time ones as the watermark passes them and the
    /// processing-time ones as the clock does, with
    /// [`on_timer`](Self::on_timer). Default: none.
    fn timers(&mut self) -> Option<&mut crate::event_time::Timers> {
        None
    }
    /// A timer registered in [`timers`](Self::timers) is due.
    /// [`Flush::More`]: output is held for want of room; the same timer is
    /// fired again on the next step.
    fn on_timer(
        &mut self,
        _timer: crate::event_time::Timer,
        _out: &mut Emitter<'_>,
    ) -> Result<Flush, StageError> {
        Ok(Flush::Done)
    }
    /// Called once after the last element.
    fn teardown(&mut self) {}
}

/// Chooses output ports per element: a fan-out to several ports shares one
/// slot (refcount), it never copies. Ports: `input` -> the declared ports.
pub trait Router: Send {
    /// Called once on the stage's worker before the first element.
    fn init(&mut self, _info: &StageInfo) -> Result<(), StageError> {
        Ok(())
    }
    /// This stage's state for a checkpoint (see [`crate::checkpoint`]),
    /// taken when a barrier passes: everything before the barrier is in
    /// it, nothing after. Default: no state.
    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        Ok(Vec::new())
    }
    /// Restores what [`snapshot`](Self::snapshot) returned, before `init`,
    /// when a run resumes from a checkpoint. Default: accepts only the
    /// empty state.
    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        no_state(state)
    }
    /// Adds the element's destination ports to `ports` (none: dropped).
    fn route(&mut self, element: &Element<'_>, ports: &mut PortMask) -> Result<(), StageError>;
    /// Routes a batch of elements: [`route`](Self::route) for each, in
    /// order. The runtime calls this, once per batch; the default is
    /// compiled for each router, with `route` a direct call in its loop
    /// (see [`Inbox`]). Override it only to wrap that loop.
    #[inline]
    fn route_batch(&mut self, inbox: &mut Inbox<'_, '_>) {
        inbox.route_each(|element, ports| self.route(element, ports));
    }
    /// Called once after the last element.
    fn teardown(&mut self) {}
}

/// Consumes elements. Port: `input`.
pub trait Sink: Send {
    /// Called once on the stage's worker before the first element.
    fn init(&mut self, _info: &StageInfo) -> Result<(), StageError> {
        Ok(())
    }
    /// This stage's state for a checkpoint (see [`crate::checkpoint`]),
    /// taken when a barrier passes: everything before the barrier is in
    /// it, nothing after. Default: no state.
    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        Ok(Vec::new())
    }
    /// Restores what [`snapshot`](Self::snapshot) returned, before `init`,
    /// when a run resumes from a checkpoint. Default: accepts only the
    /// empty state.
    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        no_state(state)
    }
    /// Receives one element.
    fn push(&mut self, element: &Element<'_>) -> Result<(), StageError>;
    /// Receives a batch of elements: [`push`](Self::push) for each, in
    /// order, then the runtime calls [`end_batch`](Self::end_batch). The
    /// runtime calls this, once per batch; the default is compiled for
    /// each sink, with `push` a direct call in its loop (see [`Inbox`]).
    /// Override it only to wrap that loop.
    #[inline]
    fn push_batch(&mut self, inbox: &mut Inbox<'_, '_>) {
        inbox.push_each(|element| self.push(element));
    }
    /// Called after each batch of `push` calls (flush buffered output here).
    fn end_batch(&mut self) -> Result<(), StageError> {
        Ok(())
    }
    /// Called once when every input has completed.
    fn complete(&mut self) -> Result<(), StageError> {
        Ok(())
    }
    /// Events the sink counted besides the elements it received (Kafka
    /// delivery reports, say), as `(name, count)`; read once at the end
    /// of the run. Default: none.
    fn counts(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Elements accepted by `push` that were never delivered (still
    /// buffered when the stream ended or the sink failed); read once at the
    /// end, counted as `failed`. Default 0 (a sink that writes each element
    /// before `push` returns).
    fn undelivered(&self) -> u64 {
        0
    }
    /// Called once at the very end.
    fn teardown(&mut self) {}
    /// A sink that serves subscribers through the control endpoint (the
    /// `mux` component) returns the point they read from.
    fn mux_point(&self) -> Option<std::sync::Arc<crate::observe::tap::RefPoint>> {
        None
    }
}

/// The default of `restore`: a stage without state accepts only an empty
/// one.
fn no_state(state: &[u8]) -> Result<(), StageError> {
    if state.is_empty() {
        Ok(())
    } else {
        Err(StageError::Fatal(format!(
            "the checkpoint holds {} bytes of state for a stage that keeps none",
            state.len()
        )))
    }
}

/// The optional output port of processors and routers that receives
/// rejected elements untouched, with [`Meta::reason`] set. Unconnected, they
/// are counted as dropped with their reason.
pub const ERROR_PORT: &str = "error";

/// A built stage of one of the four roles, ready to be scheduled.
pub enum Stage {
    /// A source.
    Source(Box<dyn Source>),
    /// A processor.
    Processor(Box<dyn Processor>),
    /// A router with its output port names, in `PortMask` index order.
    Router(Box<dyn Router>, Vec<String>),
    /// A sink.
    Sink(Box<dyn Sink>),
}

impl Stage {
    /// The role's name, as used in messages.
    pub fn role(&self) -> Role {
        match self {
            Stage::Source(_) => Role::Source,
            Stage::Processor(_) => Role::Processor,
            Stage::Router(..) => Role::Router,
            Stage::Sink(_) => Role::Sink,
        }
    }

    /// Output port names. Every role has the optional [`ERROR_PORT`] (a
    /// source's receives elements whose event time cannot be read).
    pub fn output_ports(&self) -> Vec<String> {
        match self {
            Stage::Source(_) => vec!["output".to_string(), ERROR_PORT.to_string()],
            Stage::Processor(p) => {
                let mut ports = vec!["output".to_string()];
                ports.extend(p.side_ports().iter().map(|s| s.to_string()));
                ports.push(ERROR_PORT.to_string());
                ports
            }
            Stage::Router(_, ports) => {
                let mut p = ports.clone();
                p.push(ERROR_PORT.to_string());
                p
            }
            Stage::Sink(_) => vec![ERROR_PORT.to_string()],
        }
    }

    /// Whether output port `name` may be left unconnected.
    pub fn is_optional_port(&self, name: &str) -> bool {
        match self {
            Stage::Processor(p) => name == ERROR_PORT || p.side_ports().contains(&name),
            _ => name == ERROR_PORT,
        }
    }

    /// Whether the stage has an `input` port.
    pub fn has_input(&self) -> bool {
        !matches!(self, Stage::Source(_))
    }
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stage::{:?}", self.role())
    }
}

/// The four stage roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Produces elements.
    Source,
    /// One input, one output.
    Processor,
    /// One input, named outputs.
    Router,
    /// Consumes elements.
    Sink,
}

impl Role {
    /// Lower-case name (`source`, `processor`, `router`, `sink`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Processor => "processor",
            Role::Router => "router",
            Role::Sink => "sink",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
