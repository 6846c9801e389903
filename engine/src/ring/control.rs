//! Control elements: watermarks, idleness and checkpoint barriers, carried
//! in band through the same rings as data.
//!
//! A control element is an arena slot like any other (so a fan-out is a
//! refcount bump and a release gives it back), whose ring index carries the
//! [`CONTROL`] bit. The record lives in the slot's metadata, not its
//! payload, so it fits whatever the slot size. Being in the ring, a control
//! element can never overtake the data queued before it: that is what lets
//! a watermark say "nothing older follows" and a barrier cut the stream into
//! before and after a checkpoint.
//!
//! Pipelines without event time or checkpoints never make one, and their
//! consumers read rings without looking at the bit (see
//! [`EdgeIn::take`](super::EdgeIn::take)).

use crate::arena::{Arena, ContentType, Handle, LocalPool, Meta};

/// The bit that marks a ring index as a control element. Arena slot counts
/// are bounded far below it (see the engine's bounds on `slots`).
pub(crate) const CONTROL: u32 = 1 << 31;

/// What a control element says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Event time has reached this many Unix milliseconds on this input:
    /// no element with an older timestamp is expected (later ones are late).
    Watermark(u64),
    /// The input has had no data for its source's `idle_timeout_ms`: it no
    /// longer holds the minimum watermark back until it sends one again.
    Idle,
    /// Checkpoint barrier `id`: everything before it belongs to checkpoint
    /// `id`, everything after it to the next.
    Barrier(u64),
}

const KIND_WATERMARK: u64 = 1;
const KIND_IDLE: u64 = 2;
const KIND_BARRIER: u64 = 3;

impl Control {
    /// Writes the record into a fresh slot (its metadata), or `None` when
    /// the arena has no free slot (try again on a later step).
    pub(crate) fn alloc(self, arena: &Arena, pool: &mut LocalPool, source: u16) -> Option<Handle> {
        let mut h = arena.alloc(pool)?;
        let (kind, value) = match self {
            Control::Watermark(ms) => (KIND_WATERMARK, ms),
            Control::Idle => (KIND_IDLE, 0),
            Control::Barrier(id) => (KIND_BARRIER, id),
        };
        arena.set_meta(
            &mut h,
            Meta {
                seq: value,
                ingest_ns: kind,
                source,
                content_type: ContentType::Bytes,
                reason: None,
            },
        );
        Some(h)
    }

    /// Reads the record of a control slot.
    pub(crate) fn read(arena: &Arena, handle: &Handle) -> Control {
        let meta = arena.meta(handle);
        match meta.ingest_ns {
            KIND_WATERMARK => Control::Watermark(meta.seq),
            KIND_IDLE => Control::Idle,
            KIND_BARRIER => Control::Barrier(meta.seq),
            other => unreachable!("control slot of unknown kind {other}"),
        }
    }
}
