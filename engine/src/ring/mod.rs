//! Handle rings: one [`rtrb`] SPSC ring of `u32` slot indices per edge.
//!
//! A stage never pushes element by element. It reserves output space up front
//! (the minimum free space over its output edges bounds the batch), collects
//! the batch's handles in a per-edge [`EdgeOut::outbox`], and publishes each
//! outbox with one chunk write: one Release store per edge per batch. Input is
//! read the same way, one chunk per ring per batch.
//!
//! Completion needs no sentinel: when a stage finishes it drops its
//! producers, and a consumer whose ring is abandoned and empty has seen
//! everything (rtrb 0.4's `is_abandoned` synchronizes with the drop).
//!
//! Rings carry raw slot indices; this module is the only place that turns a
//! [`Handle`] into one ([`fan_out`]) or back ([`EdgeIn::take`],
//! [`EdgeIn::pop`]), and the only user of `rtrb`.

pub mod wait;

use rtrb::{Consumer, Producer, RingBuffer};

use crate::arena::{Arena, Handle};

/// Default ring capacity (handles per edge) when a config does not say.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Creates one edge's ring.
pub(crate) fn edge(capacity: usize) -> (EdgeOut, EdgeIn) {
    let (producer, consumer) = RingBuffer::new(capacity);
    (
        EdgeOut {
            producer,
            outbox: Vec::with_capacity(capacity.min(4096)),
        },
        EdgeIn { consumer },
    )
}

/// Queues `handle` on each of the `count` edges of `edges`: one slot, its
/// refcount raised by `count - 1`, the same index on every edge, no copy.
#[inline]
pub(crate) fn fan_out<'e>(
    arena: &Arena,
    handle: Handle,
    count: usize,
    edges: impl Iterator<Item = &'e mut EdgeOut>,
) {
    debug_assert!(count > 0, "fan_out to no edge");
    arena.add_refs(&handle, count as u32 - 1);
    let raw = handle.into_raw();
    for edge in edges {
        edge.outbox.push(raw);
    }
}

/// Queues `handle` on every edge of every port set in `mask` (bit `p`:
/// `ports[p]`): one slot, one refcount bump for all of them, no copy.
#[inline]
pub(crate) fn fan_out_ports(arena: &Arena, handle: Handle, ports: &mut [Vec<EdgeOut>], mask: u64) {
    let mut total = 0;
    let mut bits = mask;
    while bits != 0 {
        total += ports[bits.trailing_zeros() as usize].len();
        bits &= bits - 1;
    }
    debug_assert!(total > 0, "fan_out_ports to no edge");
    arena.add_refs(&handle, total as u32 - 1);
    let raw = handle.into_raw();
    let mut bits = mask;
    while bits != 0 {
        for edge in &mut ports[bits.trailing_zeros() as usize] {
            edge.outbox.push(raw);
        }
        bits &= bits - 1;
    }
}

/// The producing end of an edge, with its batch outbox.
pub(crate) struct EdgeOut {
    producer: Producer<u32>,
    /// Handles produced in this batch, not yet published (each owns one
    /// reference, given to the consumer when published).
    outbox: Vec<u32>,
}

impl EdgeOut {
    /// Whether everything queued has been published.
    #[inline]
    pub(crate) fn is_flushed(&self) -> bool {
        self.outbox.is_empty()
    }

    /// Space left for this batch: ring free space minus what is queued.
    #[inline]
    pub(crate) fn free(&self) -> usize {
        self.producer.slots().saturating_sub(self.outbox.len())
    }

    /// Publishes as much of the outbox as fits; returns how many.
    #[inline]
    pub(crate) fn flush(&mut self) -> usize {
        if self.outbox.is_empty() {
            return 0;
        }
        let n = self.outbox.len().min(self.producer.slots());
        if n == 0 {
            return 0;
        }
        let chunk = self
            .producer
            .write_chunk_uninit(n)
            .expect("n is at most the free space");
        let written = chunk.fill_from_iter(self.outbox.drain(..n));
        debug_assert_eq!(written, n);
        written
    }
}

/// What a consumer did with an element [`EdgeIn::take`] handed it.
pub(crate) enum Taken {
    /// Consumed (its reference passed on or released).
    Yes,
    /// Not now: the handle is given back and stays first in the ring; the
    /// batch stops here.
    Defer(Handle),
}

/// The consuming end of an edge.
pub(crate) struct EdgeIn {
    consumer: Consumer<u32>,
}

impl EdgeIn {
    /// Elements waiting in the ring.
    #[inline]
    pub(crate) fn available(&self) -> usize {
        self.consumer.slots()
    }

    /// Hands up to `n` (at most [`available`](Self::available)) elements to
    /// `f` in order, as handles of `arena`, with one chunk read and one
    /// commit; returns how many were consumed.
    #[inline]
    pub(crate) fn take(
        &mut self,
        arena: &Arena,
        n: usize,
        mut f: impl FnMut(Handle) -> Taken,
    ) -> usize {
        let Ok(chunk) = self.consumer.read_chunk(n) else {
            return 0;
        };
        let (a, b) = chunk.as_slices();
        let mut consumed = 0;
        for &raw in a.iter().chain(b) {
            // SAFETY: every index in a ring was put there by `fan_out`, from
            // a handle of this pipeline's arena whose reference (or an extra
            // one it added) it carries. It becomes a handle once per
            // read: consumed, it is committed below and never read again; a
            // deferred one gives its handle back (`into_raw`) before its
            // index is left in the ring.
            let handle = unsafe { arena.handle_from_raw(raw) };
            match f(handle) {
                Taken::Yes => consumed += 1,
                Taken::Defer(handle) => {
                    let _ = handle.into_raw();
                    break;
                }
            }
        }
        chunk.commit(consumed);
        consumed
    }

    /// One element, if any.
    pub(crate) fn pop(&mut self, arena: &Arena) -> Option<Handle> {
        let raw = self.consumer.pop().ok()?;
        // SAFETY: as in `take`; a popped index is never read again.
        Some(unsafe { arena.handle_from_raw(raw) })
    }

    /// Whether the producer finished and everything it sent was consumed.
    /// Checks abandonment *before* emptiness so that a last batch published
    /// just before the drop is never missed.
    pub(crate) fn is_finished(&self) -> bool {
        self.consumer.is_abandoned() && self.consumer.is_empty()
    }
}
