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

pub mod wait;

use rtrb::{Consumer, Producer, RingBuffer};

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

/// The producing end of an edge, with its batch outbox.
pub(crate) struct EdgeOut {
    producer: Producer<u32>,
    /// Handles produced in this batch, not yet published.
    pub(crate) outbox: Vec<u32>,
}

impl EdgeOut {
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

/// The consuming end of an edge.
pub(crate) struct EdgeIn {
    pub(crate) consumer: Consumer<u32>,
}

impl EdgeIn {
    /// Whether the producer finished and everything it sent was consumed.
    /// Checks abandonment *before* emptiness so that a last batch published
    /// just before the drop is never missed.
    pub(crate) fn is_finished(&self) -> bool {
        self.consumer.is_abandoned() && self.consumer.is_empty()
    }
}
