//! The element views a stage works through: [`SlotWriter`] for a source's
//! fresh slot, [`Element`] for a processor's, router's or sink's input
//! (copy-on-write), [`Emitter`] for a processor's own new elements. They
//! borrow the arena; the stage never sees a handle or a refcount.

use super::{Reason, StageError, NO_ROOM};
use crate::arena::{Arena, ContentType, Fresh, Handle, LocalPool, Meta, TooLarge};

/// A freshly allocated slot for a source to fill.
pub struct SlotWriter<'a> {
    /// The whole slot (a fresh one: nobody else can see it).
    buf: &'a mut [u8],
    /// Payload length set by the source.
    pub(crate) len: usize,
    pub(crate) ingest_ns: u64,
    pub(crate) content_type: ContentType,
}

impl<'a> SlotWriter<'a> {
    /// A writer over a fresh slot, not yet sealed.
    #[inline]
    pub(crate) fn new(arena: &'a Arena, fresh: &'a mut Fresh) -> SlotWriter<'a> {
        SlotWriter {
            buf: arena.fresh_buffer(fresh),
            len: 0,
            ingest_ns: 0,
            content_type: ContentType::Bytes,
        }
    }

    /// Replaces the payload with `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), TooLarge> {
        self.set_len(bytes.len())?;
        self.buf[..bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    /// The whole slot, to fill directly; then call [`SlotWriter::set_len`].
    #[inline]
    pub fn buffer(&mut self) -> &mut [u8] {
        self.buf
    }

    /// Sets the payload length after writing into [`SlotWriter::buffer`].
    #[inline]
    pub fn set_len(&mut self, len: usize) -> Result<(), TooLarge> {
        if len > self.buf.len() {
            return Err(TooLarge {
                len,
                slot_size: self.buf.len(),
            });
        }
        self.len = len;
        Ok(())
    }

    /// Sets the payload length, which the caller knows fits the slot (it
    /// wrote that much into [`SlotWriter::buffer`]); sealing the slot
    /// checks it again.
    #[inline(always)]
    pub(crate) fn set_len_written(&mut self, len: usize) {
        debug_assert!(len <= self.buf.len());
        self.len = len;
    }

    /// Slot capacity in bytes.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Stamps the ingest time explicitly (rate-controlled sources stamp the
    /// *intended* send time so that stalls are not hidden). Default: the time
    /// `pull` returned.
    pub fn set_ingest_ns(&mut self, ns: u64) {
        self.ingest_ns = ns;
    }

    /// Sets the content type (default: bytes).
    pub fn set_content_type(&mut self, ct: ContentType) {
        self.content_type = ct;
    }
}

/// Fresh slots for a source to fill in one call ([`Source::pull_batch`]):
/// [`SlotBatch::fill_all`] takes a slot, lets the source write it as `pull`
/// would, seals it, and goes on while the source produces and there is
/// room; the runtime sends the batch on when the call returns. A source
/// that makes its elements in bulk keeps its own state in registers across
/// the batch instead of paying a call per element.
///
/// [`Source::pull_batch`]: super::Source::pull_batch
pub struct SlotBatch<'a> {
    arena: &'a Arena,
    pool: &'a mut LocalPool,
    /// The node's slot taken and not filled yet, and its next sequence
    /// number: left there by a `Pending`, a full batch or a panic.
    pending: &'a mut Option<Fresh>,
    seq: &'a mut u64,
    /// Sealed elements, in order, for the node to send.
    filled: &'a mut Vec<Handle>,
    /// Pulls the source rejected, with their reasons, for the node to count.
    rejected: &'a mut Vec<Reason>,
    source: u16,
    /// Slots this batch may still fill.
    room: usize,
    /// The batch's clock reading, taken for the first element that has no
    /// stamp of its own (0: none yet).
    batch_ns: u64,
    /// The source said `Done`.
    pub(crate) done: bool,
}

impl<'a> SlotBatch<'a> {
    /// A batch of up to `room` slots for source `source`, continuing from
    /// the node's pending slot and sequence number.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn new(
        arena: &'a Arena,
        pool: &'a mut LocalPool,
        pending: &'a mut Option<Fresh>,
        seq: &'a mut u64,
        filled: &'a mut Vec<Handle>,
        rejected: &'a mut Vec<Reason>,
        source: u16,
        room: usize,
    ) -> SlotBatch<'a> {
        SlotBatch {
            arena,
            pool,
            pending,
            seq,
            filled,
            rejected,
            source,
            room,
            batch_ns: 0,
            done: false,
        }
    }

    /// How many more slots this batch may fill.
    #[inline(always)]
    pub fn room(&self) -> usize {
        self.room
    }

    /// Fills at most `n` more slots in this batch: a source that knows
    /// how many elements it has left says so once, instead of checking
    /// for each.
    #[inline(always)]
    pub fn limit(&mut self, n: usize) {
        self.room = self.room.min(n);
    }

    /// Fills slots with `pull`, which answers for each as [`Source::pull`]
    /// does, until it says `Pending` or `Done`, the batch is full or the
    /// arena has no free slot (`pull` is then not called). `Ready` seals and
    /// queues the slot; `Rejected` or `Failed` is counted as a drop with its
    /// reason and the slot is reused. `Err`: a fatal error. The batch's
    /// counters live in registers for the whole loop.
    ///
    /// [`Source::pull`]: super::Source::pull
    #[inline(always)]
    pub fn fill_all(
        &mut self,
        mut pull: impl FnMut(&mut SlotWriter<'_>) -> Result<super::Pull, StageError>,
    ) -> Result<(), StageError> {
        let mut run = Run::new(self);
        while run.fill(&mut pull)? {}
        Ok(())
    }
}

/// A [`SlotBatch`]'s per-element state as locals, for one loop over the
/// batch (the batch itself is behind a reference, in memory); written
/// back when the loop ends, by `Drop`, so a panic in the source keeps
/// the pending slot and the count too.
struct Run<'r, 'a> {
    pending: Option<Fresh>,
    seq: u64,
    room: usize,
    batch_ns: u64,
    batch: &'r mut SlotBatch<'a>,
}

impl Drop for Run<'_, '_> {
    #[inline(always)]
    fn drop(&mut self) {
        *self.batch.pending = self.pending.take();
        *self.batch.seq = self.seq;
        self.batch.room = self.room;
        self.batch.batch_ns = self.batch_ns;
    }
}

impl<'r, 'a> Run<'r, 'a> {
    #[inline(always)]
    fn new(batch: &'r mut SlotBatch<'a>) -> Run<'r, 'a> {
        Run {
            pending: batch.pending.take(),
            seq: *batch.seq,
            room: batch.room,
            batch_ns: batch.batch_ns,
            batch,
        }
    }

    /// One slot of [`SlotBatch::fill_all`], on the locals: true to go on.
    #[inline(always)]
    fn fill(
        &mut self,
        pull: impl FnOnce(&mut SlotWriter<'_>) -> Result<super::Pull, StageError>,
    ) -> Result<bool, StageError> {
        if self.room == 0 {
            return Ok(false);
        }
        let arena = self.batch.arena;
        if self.pending.is_none() {
            match arena.alloc_fresh(self.batch.pool) {
                Some(fresh) => self.pending = Some(fresh),
                // Arena exhausted: wait for downstream to release.
                None => return Ok(false),
            }
        }
        self.room -= 1;
        let fresh = self.pending.as_mut().expect("just ensured");
        let mut writer = SlotWriter::new(arena, fresh);
        let pulled = pull(&mut writer);
        let (len, stamped, content_type) = (writer.len, writer.ingest_ns, writer.content_type);
        match pulled {
            Ok(super::Pull::Ready) => {
                let ingest_ns = if stamped != 0 {
                    stamped
                } else {
                    if self.batch_ns == 0 {
                        self.batch_ns = crate::clock::now_ns();
                    }
                    self.batch_ns
                };
                let meta = Meta {
                    seq: self.seq,
                    ingest_ns,
                    source: self.batch.source,
                    content_type,
                    reason: None,
                };
                self.seq += 1;
                let fresh = self.pending.take().expect("the slot just filled");
                self.batch.filled.push(arena.seal(fresh, len, meta));
                Ok(true)
            }
            Ok(super::Pull::Pending) => Ok(false),
            Ok(super::Pull::Done) => {
                self.batch.done = true;
                Ok(false)
            }
            // Nothing was sent; the slot is reused for the next pull.
            Err(StageError::Rejected(reason) | StageError::Failed(reason)) => {
                self.batch.rejected.push(reason);
                Ok(true)
            }
            Err(fatal) => Err(fatal),
        }
    }
}

/// A read view of an element, with copy-on-write for processors.
pub struct Element<'a> {
    pub(crate) arena: &'a Arena,
    pub(crate) handle: &'a mut Handle,
    pub(crate) pool: &'a mut LocalPool,
    pub(crate) outlet: Option<Outlet<'a>>,
}

impl<'a> Element<'a> {
    /// A router's or sink's view of `handle`: it may read the element and
    /// copy-on-write it, but not emit new ones.
    #[inline]
    pub(crate) fn input(
        arena: &'a Arena,
        handle: &'a mut Handle,
        pool: &'a mut LocalPool,
    ) -> Element<'a> {
        Element {
            arena,
            handle,
            pool,
            outlet: None,
        }
    }
}

impl Element<'_> {
    /// The payload bytes.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.arena.payload(self.handle)
    }

    /// The metadata (sequence number, ingest time, source, content type).
    #[inline]
    pub fn meta(&self) -> Meta {
        self.arena.meta(self.handle)
    }

    /// Replaces the payload: in place when this element is the slot's only
    /// reference, else in a new slot (the other branches keep the original).
    pub fn set_payload(&mut self, bytes: &[u8]) -> Result<(), StageError> {
        match self.arena.write_payload(self.handle, bytes, self.pool)? {
            true => Ok(()),
            false => Err(StageError::Rejected(Reason::new(
                "arena exhausted",
                "no free slot for a copy-on-write",
            ))),
        }
    }

    /// Sends a *new* element on the processor's `output` port (before this
    /// one, if this one is emitted too). Only processors can emit. Like a
    /// source, a processor gets at most its output's free space (and the
    /// batch size) of new elements per step, and none when the arena has no
    /// free slot: then this fails with [`StageError::is_no_room`].
    pub fn emit(
        &mut self,
        bytes: &[u8],
        content_type: ContentType,
        ingest_ns: u64,
    ) -> Result<(), StageError> {
        let outlet = self.outlet.as_mut().map(|o| Outlet {
            out: &mut *o.out,
            source: o.source,
            seq: &mut *o.seq,
            room: &mut *o.room,
        });
        emit_new(
            self.arena,
            self.pool,
            outlet,
            bytes,
            content_type,
            ingest_ns,
        )
    }

    /// Whether `set_payload` would write in place (no other reference).
    pub fn is_unique(&self) -> bool {
        self.arena.refcount(self.handle) == 1
    }
}

/// Lets a processor send elements of its own making (a window's aggregate)
/// from `tick` and `finish`. Inside `process`, use [`Element::emit`].
pub struct Emitter<'a> {
    pub(crate) arena: &'a Arena,
    pub(crate) pool: &'a mut LocalPool,
    pub(crate) out: &'a mut dyn FnMut(Handle),
    pub(crate) source: u16,
    pub(crate) seq: &'a mut u64,
    /// New elements this call may still send (see [`Outlet::room`]).
    pub(crate) room: usize,
}

impl Emitter<'_> {
    /// Sends a new element with payload `bytes` on the `output` port,
    /// stamped with `ingest_ns` (the newest contributing input's ingest time
    /// keeps latency end to end; or [`crate::clock::now_ns`]). Fails with
    /// [`StageError::is_no_room`] when this step's output space is used up
    /// or the arena has no free slot: hold the rest and return
    /// [`Flush::More`].
    pub fn emit(
        &mut self,
        bytes: &[u8],
        content_type: ContentType,
        ingest_ns: u64,
    ) -> Result<(), StageError> {
        let out = Outlet {
            out: &mut *self.out,
            source: self.source,
            seq: &mut *self.seq,
            room: &mut self.room,
        };
        emit_new(
            self.arena,
            self.pool,
            Some(out),
            bytes,
            content_type,
            ingest_ns,
        )
    }
}

/// Where a processor's new elements go.
pub(crate) struct Outlet<'a> {
    pub(crate) out: &'a mut dyn FnMut(Handle),
    pub(crate) source: u16,
    pub(crate) seq: &'a mut u64,
    /// New elements the processor may still send in this step: the output
    /// edges' free space (and the batch size) when the step began, as a
    /// source gets. It bounds what one processor holds in its outboxes,
    /// which the arena's sizing counts on.
    pub(crate) room: &'a mut usize,
}

fn no_room(detail: &str) -> StageError {
    StageError::Rejected(Reason::new(NO_ROOM, detail))
}

fn emit_new(
    arena: &Arena,
    pool: &mut LocalPool,
    outlet: Option<Outlet<'_>>,
    bytes: &[u8],
    content_type: ContentType,
    ingest_ns: u64,
) -> Result<(), StageError> {
    let Some(outlet) = outlet else {
        return Err(StageError::Fatal(
            "only processors can emit new elements".into(),
        ));
    };
    if *outlet.room == 0 {
        return Err(no_room("the output has no more space in this step"));
    }
    let Some(mut h) = arena.alloc(pool) else {
        return Err(no_room("no free slot in the arena"));
    };
    if let Err(e) = arena.write_payload(&mut h, bytes, pool) {
        arena.release(h, pool);
        return Err(e.into());
    }
    arena.set_meta(
        &mut h,
        Meta {
            seq: *outlet.seq,
            ingest_ns,
            source: outlet.source,
            content_type,
            reason: None,
        },
    );
    *outlet.seq += 1;
    *outlet.room -= 1;
    (outlet.out)(h);
    Ok(())
}
