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
//! [`EdgeIn::pop`], the drops of [`WhenFull`]), and the only user of `rtrb`.
//!
//! # When a ring is full
//!
//! Each edge has its own [`WhenFull`] policy. A `Block` edge bounds its
//! producer's batch (backpressure). A dropping edge never does: the producer
//! batches as its other edges allow and the edge sheds what does not fit.
//! `DropNewest` releases the handles of this batch that found no room.
//! `DropOldest` keeps them and asks the consumer, through a shared counter,
//! to release that many elements from the head of the ring before its next
//! read (only the consumer may pop an SPSC ring); the oldest queued elements
//! go and the new ones get their room. A consumer that is stalled altogether
//! never answers, so the producer also bounds its leftovers to the ring's
//! capacity, dropping the oldest of those. Drops are counted per edge in
//! [`EdgeStats`].

pub mod control;
mod policy;
pub mod wait;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rtrb::{Consumer, Producer, RingBuffer};

use crate::arena::{Arena, Handle, LocalPool};
use crate::observe::tap::{TapPoint, TapWriter};
pub use control::Control;
use control::CONTROL;
pub use policy::{EdgeStats, WhenFull};

/// Default ring capacity (handles per edge) when a config does not say.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Creates one edge's ring with its policy; the stats outlive both ends.
pub(crate) fn edge(capacity: usize, when_full: WhenFull) -> (EdgeOut, EdgeIn, Arc<EdgeStats>) {
    let (producer, consumer) = RingBuffer::new(capacity);
    let stats = Arc::new(EdgeStats::default());
    (
        EdgeOut {
            producer,
            outbox: Vec::with_capacity(capacity.min(4096)),
            when_full,
            capacity,
            room: capacity,
            refused: 0,
            stats: Arc::clone(&stats),
            tap: None,
            tapped: 0,
        },
        EdgeIn {
            consumer,
            shed_from: (when_full == WhenFull::DropOldest).then(|| Arc::clone(&stats)),
            stats: Arc::clone(&stats),
        },
        stats,
    )
}

/// Releases handles that never reached a ring.
fn release_raw(arena: &Arena, pool: &mut LocalPool, raws: impl Iterator<Item = u32>) {
    for raw in raws {
        // SAFETY: every index in an outbox or a ring was put there by
        // `fan_out` (or `fan_out_control`, with the tag stripped here) and
        // carries one reference of this pipeline's arena; the callers remove
        // it as they pass it here (drained from the outbox, or read from the
        // ring and committed), so it is never read again.
        arena.release(unsafe { arena.handle_from_raw(raw & !CONTROL) }, pool);
    }
}

/// Queues `handle` on each edge of `ports[port]` that takes it: one slot,
/// its refcount raised once for all of them, the same index on every edge,
/// no copy. A `drop_newest` edge whose ring has no room left for this batch
/// refuses the element (counted) without touching the refcount, unless no
/// edge takes it (then the first edge queues it and sheds it at flush).
///
/// `refusing`: whether any of the node's edges is `drop_newest` (the caller
/// knows it per node); without, every edge takes and nothing is checked.
#[inline(always)]
pub(crate) fn fan_out(
    arena: &Arena,
    mut handle: Handle,
    ports: &mut [Vec<EdgeOut>],
    port: usize,
    refusing: bool,
) {
    let edges = &mut ports[port];
    debug_assert!(!edges.is_empty(), "fan_out to no edge");
    if let [edge] = edges.as_mut_slice() {
        edge.outbox.push(handle.into_raw());
        return;
    }
    if !refusing {
        arena.add_refs_owned(&mut handle, edges.len() as u32 - 1);
        let raw = handle.into_raw();
        for edge in edges {
            edge.outbox.push(raw);
        }
        return;
    }
    fan_out_refusing(arena, handle, ports, 1 << port);
}

/// Queues every handle of `handles` (emptied) on `port`, as [`fan_out`]
/// does one by one, a batch at a time: each edge's outbox takes the batch
/// in one `extend`, after one refcount raise per handle for the extra
/// edges.
#[inline]
pub(crate) fn fan_out_all(
    arena: &Arena,
    handles: &mut Vec<Handle>,
    ports: &mut [Vec<EdgeOut>],
    port: usize,
    refusing: bool,
) {
    match ports[port].as_mut_slice() {
        [edge] => edge.outbox.extend(handles.drain(..).map(Handle::into_raw)),
        [rest @ .., last] if !refusing => {
            let extra = rest.len() as u32;
            for handle in handles.iter_mut() {
                arena.add_refs_owned(handle, extra);
            }
            for edge in rest {
                edge.outbox.extend(handles.iter().map(Handle::index));
            }
            last.outbox.extend(handles.drain(..).map(Handle::into_raw));
        }
        _ => {
            for handle in handles.drain(..) {
                fan_out(arena, handle, ports, port, refusing);
            }
        }
    }
}

/// Queues `handle` on every edge of every port set in `mask` (bit `p`:
/// `ports[p]`) that takes it, as [`fan_out`] does.
#[inline(always)]
pub(crate) fn fan_out_ports(
    arena: &Arena,
    mut handle: Handle,
    ports: &mut [Vec<EdgeOut>],
    mask: u64,
    refusing: bool,
) {
    if !refusing {
        let mut total = 0;
        let mut bits = mask;
        while bits != 0 {
            total += ports[bits.trailing_zeros() as usize].len();
            bits &= bits - 1;
        }
        debug_assert!(total > 0, "fan_out_ports to no edge");
        arena.add_refs_owned(&mut handle, total as u32 - 1);
        let raw = handle.into_raw();
        let mut bits = mask;
        while bits != 0 {
            for edge in &mut ports[bits.trailing_zeros() as usize] {
                edge.outbox.push(raw);
            }
            bits &= bits - 1;
        }
        return;
    }
    fan_out_refusing(arena, handle, ports, mask);
}

/// [`fan_out_ports`] when some edge may refuse: counts the edges that take
/// the element, raises the refcount for them only, counts the refusals.
#[inline(never)]
fn fan_out_refusing(arena: &Arena, mut handle: Handle, ports: &mut [Vec<EdgeOut>], mask: u64) {
    let mut taking = 0;
    let mut bits = mask;
    while bits != 0 {
        taking += ports[bits.trailing_zeros() as usize]
            .iter()
            .filter(|e| e.takes())
            .count();
        bits &= bits - 1;
    }
    let mut bits = mask;
    if taking == 0 {
        // Nobody has room: the first edge queues it and sheds it at flush,
        // the others count it refused.
        let mut raw = Some(handle.into_raw());
        while bits != 0 {
            for edge in &mut ports[bits.trailing_zeros() as usize] {
                match raw.take() {
                    Some(r) => edge.outbox.push(r),
                    None => edge.refused += 1,
                }
            }
            bits &= bits - 1;
        }
        debug_assert!(raw.is_none(), "fan_out_ports to no edge");
        return;
    }
    arena.add_refs_owned(&mut handle, taking as u32 - 1);
    let raw = handle.into_raw();
    while bits != 0 {
        for edge in &mut ports[bits.trailing_zeros() as usize] {
            edge.offer(raw);
        }
        bits &= bits - 1;
    }
}

/// Queues the control element `handle` on every edge of every port: one
/// slot, its refcount raised once per extra edge, the index tagged with
/// [`CONTROL`]. No edge refuses a control element, whatever its
/// `when_full` (a dropping edge sheds data around it, see
/// [`EdgeOut::flush`]). With no edge at all, the slot is released.
pub(crate) fn fan_out_control(
    arena: &Arena,
    pool: &mut LocalPool,
    mut handle: Handle,
    ports: &mut [Vec<EdgeOut>],
) {
    let total: usize = ports.iter().map(Vec::len).sum();
    if total == 0 {
        arena.release(handle, pool);
        return;
    }
    arena.add_refs_owned(&mut handle, total as u32 - 1);
    let raw = handle.into_raw() | CONTROL;
    for edge in ports.iter_mut().flatten() {
        edge.outbox.push(raw);
    }
}

/// Removes up to `n` data entries from the front of `outbox` (control
/// entries stay, in order) and releases them; returns how many went.
fn drop_data_front(outbox: &mut Vec<u32>, n: usize, arena: &Arena, pool: &mut LocalPool) -> usize {
    let mut dropped = 0;
    outbox.retain(|&raw| {
        if dropped < n && raw & CONTROL == 0 {
            release_raw(arena, pool, std::iter::once(raw));
            dropped += 1;
            false
        } else {
            true
        }
    });
    dropped
}

/// The producing end of an edge, with its batch outbox.
pub(crate) struct EdgeOut {
    producer: Producer<u32>,
    /// Handles produced in this batch, not yet published (each owns one
    /// reference, given to the consumer when published).
    outbox: Vec<u32>,
    when_full: WhenFull,
    capacity: usize,
    /// Ring space left after the last flush (`drop_newest`: what this
    /// batch may still queue).
    room: usize,
    /// Elements refused by [`fan_out`] since the last flush.
    refused: usize,
    stats: Arc<EdgeStats>,
    /// The port's tap, on the one edge of the port that carries it.
    tap: Option<TapWriter>,
    /// Outbox entries already offered to the tap (or passed while nobody
    /// watched): leftovers of a full ring are not copied twice.
    tapped: usize,
}

impl EdgeOut {
    /// Whether a fan-out should queue one more element here: always,
    /// except on a `drop_newest` edge whose ring is already spoken for.
    #[inline]
    fn takes(&self) -> bool {
        self.when_full != WhenFull::DropNewest || self.outbox.len() < self.room
    }

    /// Queues `raw` if this edge [`takes`](Self::takes) it, else counts it
    /// refused (the caller raised the refcount for the taking edges only).
    #[inline]
    fn offer(&mut self, raw: u32) {
        if self.takes() {
            self.outbox.push(raw);
        } else {
            self.refused += 1;
        }
    }

    /// Makes this edge carry its port's tap: what it publishes is copied to
    /// `point` while someone watches.
    pub(crate) fn set_tap(&mut self, point: Arc<TapPoint>) {
        self.tap = Some(TapWriter::new(point));
    }

    /// Copies the outbox's new entries to the tap when watched (one atomic
    /// load per flush otherwise).
    fn offer_to_tap(&mut self, arena: &Arena) {
        let Some(tap) = self.tap.as_mut() else { return };
        if self.tapped < self.outbox.len() && tap.begin() {
            for &raw in &self.outbox[self.tapped..] {
                if raw & CONTROL != 0 {
                    continue;
                }
                // SAFETY: the outbox owns one reference to each of its
                // indices (see `outbox`), so the slot stays allocated and
                // sealed while it is read here; the handle is given back
                // with `into_raw` without touching the refcount.
                let handle = unsafe { arena.handle_from_raw(raw) };
                tap.push(arena.payload(&handle));
                let _ = handle.into_raw();
            }
            tap.commit();
        }
        self.tapped = self.outbox.len();
    }

    /// Whether everything queued has been published.
    #[inline]
    pub(crate) fn is_flushed(&self) -> bool {
        self.outbox.is_empty()
    }

    /// Whether a fan-out must ask this edge before queueing
    /// (`WhenFull::DropNewest`).
    #[inline]
    pub(crate) fn refuses(&self) -> bool {
        self.when_full == WhenFull::DropNewest
    }

    /// Whether a full ring holds the producer back (`WhenFull::Block`).
    #[inline]
    pub(crate) fn blocks(&self) -> bool {
        self.when_full == WhenFull::Block
    }

    /// Space left for this batch: ring free space minus what is queued.
    #[inline]
    pub(crate) fn free(&self) -> usize {
        self.producer.slots().saturating_sub(self.outbox.len())
    }

    /// Publishes as much of the outbox as fits, then applies the edge's
    /// policy to the rest (see the module docs); returns how many were
    /// published or dropped.
    #[inline]
    pub(crate) fn flush(&mut self, arena: &Arena, pool: &mut LocalPool) -> usize {
        if self.outbox.is_empty() && self.when_full == WhenFull::Block {
            return 0;
        }
        if self.tap.is_some() {
            self.offer_to_tap(arena);
        }
        let n = self.outbox.len().min(self.producer.slots());
        if n > 0 {
            // Two slice copies (the chunk wraps around the ring's end at
            // most once), not a loop over an iterator, into slots left
            // uninitialized (`write_chunk` would zero them first).
            let mut chunk = self
                .producer
                .write_chunk_uninit(n)
                .expect("n is at most the free space");
            let (a, b) = chunk.as_mut_slices();
            let (head, tail) = self.outbox[..n].split_at(a.len());
            assert_eq!(tail.len(), b.len(), "a chunk of n slots");
            // SAFETY: `a` and `b` are the chunk's slots (`as_mut_slices`),
            // `head` and `tail` the same lengths (checked just above),
            // and an outbox never overlaps the ring's buffer; `u32` is
            // `Copy`, so a bitwise copy initializes each slot.
            unsafe {
                std::ptr::copy_nonoverlapping(head.as_ptr(), a.as_mut_ptr().cast(), a.len());
                std::ptr::copy_nonoverlapping(tail.as_ptr(), b.as_mut_ptr().cast(), b.len());
            }
            // SAFETY: every slot of the chunk was written just above.
            unsafe { chunk.commit_all() };
            self.outbox.drain(..n);
            self.stats
                .depth
                .store(self.capacity - self.producer.slots(), Ordering::Relaxed);
        }
        if self.when_full == WhenFull::Block {
            self.tapped = self.outbox.len();
            return n;
        }
        let rest = self.outbox.len();
        let refused = std::mem::take(&mut self.refused);
        if refused > 0 {
            self.stats.add_dropped(refused);
        }
        if rest > 0 {
            self.shed(arena, pool, rest);
        }
        self.tapped = self.outbox.len();
        self.room = self.producer.slots();
        n + rest + refused
    }

    #[cold]
    fn shed(&mut self, arena: &Arena, pool: &mut LocalPool, rest: usize) {
        match self.when_full {
            WhenFull::Block => {}
            WhenFull::DropNewest => {
                // Control elements are never dropped: they stay queued
                // and go out with the next flush.
                let dropped = drop_data_front(&mut self.outbox, rest, arena, pool);
                self.stats.add_dropped(dropped);
            }
            WhenFull::DropOldest => {
                // The consumer sheds this many from the ring's head before
                // its next read. A store, not an add: the same leftovers
                // are asked for again until they fit.
                self.stats.shed.store(rest, Ordering::Release);
                // A consumer that never reads must not make us hold more
                // than a ring's worth: the oldest leftovers go.
                if let Some(excess) = rest.checked_sub(self.capacity).filter(|&e| e > 0) {
                    let dropped = drop_data_front(&mut self.outbox, excess, arena, pool);
                    self.stats.add_dropped(dropped);
                }
            }
        }
    }
}

/// What a consumer did with an element [`EdgeIn::take`] handed it.
pub(crate) enum Taken {
    /// Consumed (its reference passed on or released).
    Yes,
    /// Consumed, and the batch stops after it (the stage failed).
    Last,
    /// Not now: the handle is given back and stays first in the ring; the
    /// batch stops here.
    Defer(Handle),
}

/// The consuming end of an edge.
pub(crate) struct EdgeIn {
    consumer: Consumer<u32>,
    /// `DropOldest` edges: where the producer asks for the head to be shed.
    shed_from: Option<Arc<EdgeStats>>,
    stats: Arc<EdgeStats>,
}

impl EdgeIn {
    /// On a `DropOldest` edge, releases the oldest elements the producer
    /// asked to make room for (counted as dropped on the edge); returns how
    /// many. One branch on other edges.
    #[inline]
    pub(crate) fn shed(&mut self, arena: &Arena, pool: &mut LocalPool) -> usize {
        match &self.shed_from {
            None => 0,
            Some(stats) => Self::shed_head(&mut self.consumer, stats, arena, pool),
        }
    }

    #[cold]
    fn shed_head(
        consumer: &mut Consumer<u32>,
        stats: &EdgeStats,
        arena: &Arena,
        pool: &mut LocalPool,
    ) -> usize {
        let asked = stats.shed.swap(0, Ordering::Acquire);
        let n = asked.min(consumer.slots());
        if n == 0 {
            return 0;
        }
        let Ok(chunk) = consumer.read_chunk(n) else {
            return 0;
        };
        let (a, b) = chunk.as_slices();
        // Shedding stops at a control element: it is never dropped, and
        // what follows it is newer than what the producer asked to shed.
        let n = a
            .iter()
            .chain(b)
            .position(|&raw| raw & CONTROL != 0)
            .unwrap_or(n);
        release_raw(arena, pool, a.iter().chain(b).take(n).copied());
        chunk.commit(n);
        stats.add_dropped(n);
        n
    }

    /// Elements waiting in the ring.
    #[inline]
    pub(crate) fn available(&self) -> usize {
        self.consumer.slots()
    }

    /// Hands up to `n` (at most [`available`](Self::available)) elements to
    /// `f` in order, as handles of `arena`, with one chunk read and one
    /// commit, stopping *before* a control element, which stays at the
    /// head of the ring (a pipeline without control elements never has
    /// one there). Returns how many elements were consumed and whether
    /// the batch stopped at a control element (see
    /// [`head_control`](Self::head_control)).
    #[inline(always)]
    pub(crate) fn take(
        &mut self,
        arena: &Arena,
        n: usize,
        mut f: impl FnMut(Handle) -> Taken,
    ) -> (usize, bool) {
        let Ok(chunk) = self.consumer.read_chunk(n) else {
            return (0, self.head_control(arena).is_some());
        };
        let (a, b) = chunk.as_slices();
        let mut consumed = 0;
        let mut at_control = false;
        // The chunk's one or two slices (two where it wraps around the
        // ring's end), each walked by a plain loop.
        'chunk: for part in [a, b] {
            for &raw in part {
                if raw & CONTROL != 0 {
                    at_control = true;
                    break 'chunk;
                }
                // SAFETY: every index in a ring was put there by `fan_out`,
                // from a handle of this pipeline's arena whose reference (or
                // an extra one it added) it carries. It becomes a handle
                // once per read: consumed, it is committed below and never
                // read again; a deferred one gives its handle back
                // (`into_raw`) before its index is left in the ring. Control
                // elements (`fan_out_control`) are stopped at above.
                let handle = unsafe { arena.handle_from_raw(raw) };
                match f(handle) {
                    Taken::Yes => consumed += 1,
                    Taken::Last => {
                        consumed += 1;
                        break 'chunk;
                    }
                    Taken::Defer(handle) => {
                        let _ = handle.into_raw();
                        break 'chunk;
                    }
                }
            }
        }
        chunk.commit(consumed);
        self.stats
            .depth
            .store(self.consumer.slots(), Ordering::Relaxed);
        (consumed, at_control)
    }

    /// The control element at the head of the ring, if the head is one
    /// (it stays there; [`pop_control`](Self::pop_control) removes it).
    pub(crate) fn head_control(&self, arena: &Arena) -> Option<Control> {
        let &raw = self.consumer.peek().ok()?;
        if raw & CONTROL == 0 {
            return None;
        }
        // SAFETY: the ring's reference to the slot keeps it allocated while
        // its record is read; the handle is given back with `into_raw`
        // without touching the refcount, and the index stays in the ring.
        let handle = unsafe { arena.handle_from_raw(raw & !CONTROL) };
        let control = Control::read(arena, &handle);
        let _ = handle.into_raw();
        Some(control)
    }

    /// Removes the control element at the head of the ring (see
    /// [`head_control`](Self::head_control)) and releases its slot.
    pub(crate) fn pop_control(&mut self, arena: &Arena, pool: &mut LocalPool) {
        debug_assert!(self.head_control(arena).is_some(), "no control at the head");
        if let Ok(raw) = self.consumer.pop() {
            release_raw(arena, pool, std::iter::once(raw));
        }
    }

    /// Commits the first `n` elements without reading them: what a `take`
    /// cut short by a stage's panic had passed on already (their handles
    /// are elsewhere now).
    pub(crate) fn skip(&mut self, n: usize) {
        if let Ok(chunk) = self.consumer.read_chunk(n) {
            chunk.commit_all();
        }
    }

    /// One element, if any, and whether it is a control element (its slot
    /// is then only to be released).
    pub(crate) fn pop(&mut self, arena: &Arena) -> Option<(Handle, bool)> {
        let raw = self.consumer.pop().ok()?;
        // SAFETY: as in `take`; a popped index is never read again.
        Some((
            unsafe { arena.handle_from_raw(raw & !CONTROL) },
            raw & CONTROL != 0,
        ))
    }

    /// Whether the producer finished and everything it sent was consumed.
    /// Checks abandonment *before* emptiness so that a last batch published
    /// just before the drop is never missed.
    pub(crate) fn is_finished(&self) -> bool {
        self.consumer.is_abandoned() && self.consumer.is_empty()
    }
}

#[cfg(test)]
mod tests;
