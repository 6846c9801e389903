//! The shared, preallocated, refcounted buffer arena.
//!
//! Every element's payload lives in one fixed-size slot of one arena created
//! at start-up. Stages exchange [`Handle`]s (a `u32` slot index) through
//! rings; the payload is written once and never copied between stages. A
//! fan-out to N branches adds N-1 to the slot's refcount and pushes the same
//! index to each branch. A stage that wants to change a payload writes in
//! place when it holds the only reference and copies into a fresh slot
//! otherwise ([`Arena::make_mut`]).
//!
//! Free slots are kept by [`pool`](self::pool): a global lock-free stack that
//! is touched once per batch, behind a per-worker [`LocalPool`]. The module
//! docs there explain why.
//!
//! This module (with the ring adapter) is the only place with payload
//! `unsafe`: exclusive access is derived from the refcount and from `Handle`
//! being a move-only token.

mod pool;

use pool::FreeStack;
pub use pool::LocalPool;

use std::cell::UnsafeCell;
use std::fmt;

use crate::sync::{fence, AtomicU32, Ordering};

/// Default number of slots when a config does not say.
pub const DEFAULT_SLOTS: u32 = 16 * 1024;
/// Default slot size in bytes when a config does not say.
pub const DEFAULT_SLOT_SIZE: usize = 2048;

/// Metadata carried with every element, beside its payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Sequence number assigned by the source (per source, from 0).
    pub seq: u64,
    /// Ingest time: nanoseconds on the engine's monotonic clock
    /// ([`crate::clock::now_ns`]) when the source accepted or created the
    /// element, or the *intended* send time for rate-controlled sources.
    pub ingest_ns: u64,
    /// Index of the source stage that created the element.
    pub source: u16,
    /// Content type of the payload.
    pub content_type: ContentType,
    /// Why a stage rejected this element, when it was sent to an `error`
    /// port (the payload itself is untouched).
    pub reason: Option<&'static str>,
}

/// What the payload bytes are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum ContentType {
    /// Opaque bytes.
    #[default]
    Bytes = 0,
    /// A UTF-8 JSON document.
    Json = 1,
    /// UTF-8 text.
    Text = 2,
}

/// A counted reference to one arena slot.
///
/// Move-only: owning a `Handle` means owning one unit of the slot's refcount.
/// Give it back with [`Arena::release`]; dropping it without releasing leaks
/// the slot, which the engine reports at shutdown.
///
/// A handle is branded with the arena that made it: every arena method
/// checks the brand (one compare) and panics on a handle of another arena,
/// so a handle can never give access to a slot it does not own.
///
/// ```should_panic
/// use dataplane::{Arena, LocalPool};
/// let (a, b) = (Arena::new(4, 16), Arena::new(4, 16));
/// let (mut pa, mut pb) = (LocalPool::new(1), LocalPool::new(1));
/// let h = a.alloc(&mut pa).unwrap();
/// let _live = b.alloc(&mut pb).unwrap(); // slot 0 of `b`, in use
/// // `h` is slot 0 of `a`: with `b` it would alias `_live`. Refused:
/// let _ = b.payload_mut(&mut { h });
/// ```
#[derive(PartialEq, Eq)]
#[must_use = "a Handle owns a slot reference; release it or pass it on"]
pub struct Handle {
    index: u32,
    arena: u32,
}

impl Handle {
    /// The slot index this handle refers to.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Gives up the handle as a raw index (to travel through a ring; the
    /// ring module turns it back with [`Arena::handle_from_raw`]).
    pub(crate) fn into_raw(self) -> u32 {
        self.index
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({})", self.index)
    }
}

/// A slot taken by [`Arena::alloc_fresh`] and not yet published: the only
/// way to it, written through [`Arena::fresh_buffer`] and made a [`Handle`]
/// by [`Arena::seal`] (or given back by [`Arena::discard_fresh`]). Not
/// `Clone`, so it cannot be shared before it is sealed.
#[must_use = "a Fresh slot must be sealed or given back"]
#[derive(Debug)]
pub(crate) struct Fresh {
    index: u32,
    arena: u32,
}

/// Brands for arenas: each arena gets the next one (0 is never used).
static NEXT_ARENA: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

#[cold]
#[inline(never)]
fn wrong_arena(handle: u32, arena: u32) -> ! {
    panic!("a Handle of arena #{handle} was used with arena #{arena}: handles belong to the arena that made them")
}

/// Error returned when a payload does not fit in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    /// Size of the rejected payload in bytes.
    pub len: usize,
    /// The arena's slot size in bytes.
    pub slot_size: usize,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payload of {} bytes exceeds the arena slot size of {} bytes",
            self.len, self.slot_size
        )
    }
}

impl std::error::Error for TooLarge {}

#[repr(align(64))]
struct SlotMeta {
    refs: AtomicU32,
    len: UnsafeCell<u32>,
    meta: UnsafeCell<Meta>,
}

/// The preallocated slot arena shared by every stage of a pipeline.
pub struct Arena {
    /// This arena's brand (see [`Handle`]).
    id: u32,
    slot_size: usize,
    slots: u32,
    data: Box<[UnsafeCell<u8>]>,
    meta: Box<[SlotMeta]>,
    free: FreeStack,
}

// SAFETY: the cells are only accessed through handles. A slot's payload and
// metadata are written only by the holder of its sole reference (refcount 1,
// checked in `payload_mut`/`make_mut`, or a fresh slot from `alloc`), and read
// by holders of a reference. Handles move between threads through rings whose
// push/pop are Release/Acquire, and a slot is recycled only after the last
// `release` (Release decrement + Acquire fence), so every access is ordered
// with the next owner's accesses.
unsafe impl Sync for Arena {}
// SAFETY: the arena owns its buffers; nothing in it is tied to a thread.
unsafe impl Send for Arena {}

impl Arena {
    /// Allocates and pre-faults `slots` slots of `slot_size` bytes each.
    ///
    /// # Panics
    /// If `slots` is 0 or `u32::MAX`, or the total size overflows `usize`.
    pub fn new(slots: u32, slot_size: usize) -> Arena {
        assert!(slots > 0 && slots < pool::NIL, "slot count out of range");
        let total = (slots as usize)
            .checked_mul(slot_size)
            .expect("arena size overflows usize");
        // Writing every byte faults the pages in now, not on the hot path.
        let data: Box<[UnsafeCell<u8>]> = (0..total).map(|_| UnsafeCell::new(0)).collect();
        let meta = (0..slots)
            .map(|_| SlotMeta {
                refs: AtomicU32::new(0),
                len: UnsafeCell::new(0),
                meta: UnsafeCell::new(Meta::default()),
            })
            .collect();
        // Ids are never reused (the counter stops instead of wrapping): a
        // handle that outlived its arena can never pass another's check.
        let id = NEXT_ARENA
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| n.checked_add(1),
            )
            .expect("more than 2^32 - 2 arenas in one process");
        Arena {
            id,
            slot_size,
            slots,
            data,
            meta,
            free: FreeStack::full(slots),
        }
    }

    /// The slot of `handle`, after checking it belongs to this arena.
    #[inline(always)]
    fn slot(&self, handle: &Handle) -> &SlotMeta {
        if handle.arena != self.id {
            wrong_arena(handle.arena, self.id);
        }
        self.meta_at(handle.index)
    }

    /// The slot at `index`, an index this arena gave out: one of a handle
    /// or fresh slot whose arena id is this arena's (checked by the
    /// caller), or one just taken from its free stack.
    ///
    /// The id check makes a bounds check redundant: only this module
    /// makes handles and fresh slots, each with an index from this
    /// arena's free stack, which holds the indices below `slots` and
    /// nothing else, or copied from such a handle (`share`); no two arenas
    /// share an id; and `handle_from_raw` is unsafe and must be given only
    /// what `into_raw` gave out (the ring module strips its control bit
    /// first, and `EdgeIn::take` stops before a control element).
    #[inline(always)]
    fn meta_at(&self, index: u32) -> &SlotMeta {
        debug_assert!(index < self.slots, "slot {index} of {}", self.slots);
        // SAFETY: `index < self.slots == self.meta.len()`, as above.
        unsafe { self.meta.get_unchecked(index as usize) }
    }

    /// Rebuilds a handle from a raw index that travelled through a ring.
    ///
    /// # Safety
    /// `raw` must come from [`Handle::into_raw`] on a handle of this arena
    /// (or be a reference added with [`Arena::add_refs`] for it) and be
    /// turned back into a handle exactly once.
    #[inline]
    pub(crate) unsafe fn handle_from_raw(&self, raw: u32) -> Handle {
        debug_assert!(raw < self.slots, "raw index {raw} of {} slots", self.slots);
        Handle {
            index: raw,
            arena: self.id,
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Payload capacity of one slot, in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Takes a free slot (refcount 1, empty payload, default metadata), or
    /// `None` when the arena is exhausted: the caller waits (backpressure).
    #[inline]
    pub fn alloc(&self, cache: &mut LocalPool) -> Option<Handle> {
        let index = cache.take(self.id, &self.free)?;
        let slot = self.meta_at(index);
        debug_assert_eq!(
            slot.refs.load(Ordering::Relaxed),
            0,
            "allocated a live slot"
        );
        slot.refs.store(1, Ordering::Relaxed);
        // SAFETY: the slot was free, so no other handle refers to it; the pop
        // from the free stack (Acquire) ordered us after its last user.
        unsafe {
            *slot.len.get() = 0;
            *slot.meta.get() = Meta::default();
        }
        Some(Handle {
            index,
            arena: self.id,
        })
    }

    /// Gives one reference back; the slot returns to the pool with the last.
    #[inline(always)]
    pub fn release(&self, handle: Handle, cache: &mut LocalPool) {
        let slot = self.slot(&handle);
        // This arena's id (`slot` checked), as the handle holds it: likely
        // still in a register, where `self.id` would be loaded again.
        let id = handle.arena;
        let index = handle.into_raw();
        // Fast path (the common, unshared case): if the count is 1, we hold
        // the only reference, so nobody else can change it and no locked
        // read-modify-write on this (probably remote) cache line is needed.
        // Acquire pairs with earlier co-owners' Release decrements, as the
        // fence below does on the slow path.
        if slot.refs.load(Ordering::Acquire) == 1 {
            slot.refs.store(0, Ordering::Relaxed);
            cache.give(id, &self.free, index);
            return;
        }
        // Release: our accesses to the slot happen before the final release.
        let prev = slot.refs.fetch_sub(1, Ordering::Release);
        debug_assert!(prev > 0, "released a free slot {index}");
        if prev == 1 {
            // Acquire: pairs with every other holder's Release decrement, so
            // their reads finish before the slot is reused.
            fence(Ordering::Acquire);
            cache.give(id, &self.free, index);
        }
    }

    /// Adds `extra` references to the slot (fan-out). The caller then owns
    /// `extra` more raw references to pass on.
    #[inline]
    pub fn add_refs(&self, handle: &Handle, extra: u32) {
        if extra > 0 {
            // Relaxed is enough, as for `Arc::clone`: the new references are
            // handed to other threads through rings, which synchronize.
            let prev = self.slot(handle).refs.fetch_add(extra, Ordering::Relaxed);
            debug_assert!(prev > 0, "shared a free slot");
        }
    }

    /// [`Arena::add_refs`] for a caller that owns `handle` (a fan-out
    /// about to pass it on). A count of 1 is then `handle` alone: no other
    /// handle exists and nobody else can use this one (it is borrowed
    /// mutably), so a plain store does what the locked add would, and a
    /// fan-out of a fresh element, the usual case, pays no read-modify-
    /// write. (`add_refs` itself cannot do this: a shared `&Handle` may be
    /// used by two threads at once, and two stores of 2 would lose one
    /// reference.)
    #[inline]
    pub fn add_refs_owned(&self, handle: &mut Handle, extra: u32) {
        if extra == 0 {
            return;
        }
        let refs = &self.slot(handle).refs;
        // The store ends the release sequence of earlier co-owners'
        // decrements, so the load acquires them instead (as `release`'s
        // fast path does): their accesses stay ordered before whoever frees
        // the slot later.
        if refs.load(Ordering::Acquire) == 1 {
            refs.store(1 + extra, Ordering::Relaxed);
            return;
        }
        let prev = refs.fetch_add(extra, Ordering::Relaxed);
        debug_assert!(prev > 0, "shared a free slot");
    }

    /// A second handle to the same slot.
    pub fn share(&self, handle: &Handle) -> Handle {
        self.add_refs(handle, 1);
        Handle {
            index: handle.index,
            arena: self.id,
        }
    }

    /// [`Arena::share`] for a caller that owns `handle`: see
    /// [`Arena::add_refs_owned`].
    pub fn share_mut(&self, handle: &mut Handle) -> Handle {
        self.add_refs_owned(handle, 1);
        Handle {
            index: handle.index,
            arena: self.id,
        }
    }

    /// Current refcount of the slot (for tests and diagnostics).
    pub fn refcount(&self, handle: &Handle) -> u32 {
        self.slot(handle).refs.load(Ordering::Acquire)
    }

    /// The element's payload bytes.
    #[inline]
    pub fn payload<'a>(&'a self, handle: &'a Handle) -> &'a [u8] {
        let slot = self.slot(handle);
        // SAFETY: we hold a reference, so the slot is live; writers need the
        // sole reference (see `payload_mut`), which nobody has while
        // `handle` is borrowed here, so `len` and the bytes are stable.
        unsafe {
            let len = *slot.len.get() as usize;
            std::slice::from_raw_parts(self.slot_ptr(handle.index), len)
        }
    }

    /// The element's metadata.
    #[inline]
    pub fn meta(&self, handle: &Handle) -> Meta {
        // SAFETY: as in `payload`.
        unsafe { *self.slot(handle).meta.get() }
    }

    /// Sets the metadata, if `handle` is the slot's only reference.
    pub fn set_meta(&self, handle: &mut Handle, meta: Meta) -> bool {
        let slot = self.slot(handle);
        if slot.refs.load(Ordering::Acquire) != 1 {
            return false;
        }
        // SAFETY: sole reference, and `handle` is mutably borrowed, so no one
        // else can read or write this slot meanwhile.
        unsafe { *slot.meta.get() = meta };
        true
    }

    /// The whole slot as a writable buffer, if `handle` is the only
    /// reference. Set the payload length with [`Arena::set_len`] after.
    #[inline]
    pub fn payload_mut<'a>(&'a self, handle: &'a mut Handle) -> Option<&'a mut [u8]> {
        let slot = self.slot(handle);
        // Acquire: pairs with the Release decrements of former co-owners, so
        // their reads are done before we write.
        if slot.refs.load(Ordering::Acquire) != 1 {
            return None;
        }
        // SAFETY: sole reference and `handle` mutably borrowed for 'a: no
        // other handle to this slot exists and none can be made from this
        // one while the returned slice lives.
        Some(unsafe { std::slice::from_raw_parts_mut(self.slot_ptr(handle.index), self.slot_size) })
    }

    /// Takes a free slot for a source to fill: a [`Fresh`] slot, which no
    /// one else can see until [`Arena::seal`] makes it a [`Handle`]. Unlike
    /// [`Arena::alloc`] it resets nothing: `seal` writes the refcount, the
    /// length and the metadata, once, on the one cache line they share.
    #[inline]
    pub(crate) fn alloc_fresh(&self, cache: &mut LocalPool) -> Option<Fresh> {
        let index = cache.take(self.id, &self.free)?;
        debug_assert_eq!(
            self.meta[index as usize].refs.load(Ordering::Relaxed),
            0,
            "allocated a live slot"
        );
        Some(Fresh {
            index,
            arena: self.id,
        })
    }

    /// The whole slot of `fresh`, to write the payload into.
    #[inline]
    pub(crate) fn fresh_buffer<'a>(&'a self, fresh: &'a mut Fresh) -> &'a mut [u8] {
        if fresh.arena != self.id {
            wrong_arena(fresh.arena, self.id);
        }
        // SAFETY: a `Fresh` came from this arena's free pool (checked just
        // above), so its index is in range and nothing else refers to the
        // slot: its refcount is 0 until `seal`, no handle to it exists, and
        // `fresh` is mutably borrowed for 'a, so this is the only access.
        unsafe { std::slice::from_raw_parts_mut(self.slot_ptr(fresh.index), self.slot_size) }
    }

    /// Publishes a slot a source filled: its refcount becomes 1, its length
    /// `len`, its metadata `meta`; the returned handle is its one reference.
    ///
    /// # Panics
    /// If `len` exceeds the slot size.
    #[inline]
    pub(crate) fn seal(&self, fresh: Fresh, len: usize, meta: Meta) -> Handle {
        if fresh.arena != self.id {
            wrong_arena(fresh.arena, self.id);
        }
        assert!(len <= self.slot_size, "seal: a length that fits the slot");
        let slot = self.meta_at(fresh.index);
        // Relaxed: the handle reaches other threads through a ring, whose
        // push (Release) publishes these writes with it.
        slot.refs.store(1, Ordering::Relaxed);
        // SAFETY: `fresh` is consumed here, and until now it was the only
        // way to the slot (see `fresh_buffer`).
        unsafe {
            *slot.len.get() = len as u32;
            *slot.meta.get() = meta;
        }
        Handle {
            index: fresh.index,
            arena: fresh.arena,
        }
    }

    /// Gives an unsealed slot back to the free pool.
    pub(crate) fn discard_fresh(&self, fresh: Fresh, cache: &mut LocalPool) {
        if fresh.arena != self.id {
            wrong_arena(fresh.arena, self.id);
        }
        cache.give(self.id, &self.free, fresh.index);
    }

    /// Sets the payload length, if `handle` is the only reference.
    pub fn set_len(&self, handle: &mut Handle, len: usize) -> Result<(), TooLarge> {
        if len > self.slot_size {
            return Err(TooLarge {
                len,
                slot_size: self.slot_size,
            });
        }
        let slot = self.slot(handle);
        assert_eq!(
            slot.refs.load(Ordering::Acquire),
            1,
            "set_len on a shared slot"
        );
        // SAFETY: sole reference, `handle` mutably borrowed.
        unsafe { *slot.len.get() = len as u32 };
        Ok(())
    }

    /// Replaces the payload with `bytes`, in place when `handle` is the only
    /// reference, otherwise in a freshly allocated slot (copy on write; the
    /// old reference is released and `handle` now names the new slot, which
    /// keeps the metadata). Returns `Ok(false)` without changing anything when
    /// a copy is needed and the arena is exhausted.
    pub fn write_payload(
        &self,
        handle: &mut Handle,
        bytes: &[u8],
        cache: &mut LocalPool,
    ) -> Result<bool, TooLarge> {
        if bytes.len() > self.slot_size {
            return Err(TooLarge {
                len: bytes.len(),
                slot_size: self.slot_size,
            });
        }
        if !self.make_mut(handle, cache) {
            return Ok(false);
        }
        let buf = self
            .payload_mut(handle)
            .expect("make_mut gave a sole reference");
        buf[..bytes.len()].copy_from_slice(bytes);
        self.set_len(handle, bytes.len())?;
        Ok(true)
    }

    /// Makes `handle` the only reference to its slot: a no-op when it already
    /// is, else copies payload and metadata into a new slot and releases the
    /// shared one. Returns false (nothing changed) if the arena is exhausted.
    pub fn make_mut(&self, handle: &mut Handle, cache: &mut LocalPool) -> bool {
        if self.slot(handle).refs.load(Ordering::Acquire) == 1 {
            return true;
        }
        let Some(mut fresh) = self.alloc(cache) else {
            return false;
        };
        let src = self.payload(handle);
        let len = src.len();
        let meta = self.meta(handle);
        let dst = self.payload_mut(&mut fresh).expect("fresh slot is unique");
        dst[..len].copy_from_slice(src);
        self.set_len(&mut fresh, len).expect("same slot size");
        self.set_meta(&mut fresh, meta);
        let old = std::mem::replace(handle, fresh);
        self.release(old, cache);
        true
    }

    /// Returns a worker's cached free slots to the global pool.
    pub fn flush(&self, cache: &mut LocalPool) -> bool {
        cache.flush(self.id, &self.free)
    }

    /// Free slots in the global pool. Exact only when no worker is running
    /// and every [`LocalPool`] has been flushed (shutdown, tests).
    pub fn free_slots_quiescent(&self) -> usize {
        self.free.count_quiescent()
    }

    /// Slots not on the global free stack right now: elements somewhere in
    /// the pipeline plus the free slots cached by running workers (at most
    /// two batches each). Safe to read while workers run; exact once every
    /// worker has flushed its cache.
    pub fn held_slots(&self) -> usize {
        (self.slots as usize).saturating_sub(self.free.free_live())
    }

    /// Slots that are not free at shutdown: 0 unless something leaked.
    pub fn leaked_quiescent(&self) -> usize {
        self.slots as usize - self.free_slots_quiescent()
    }

    fn slot_ptr(&self, index: u32) -> *mut u8 {
        debug_assert!(index < self.slots);
        let offset = index as usize * self.slot_size;
        // SAFETY: `index < slots`, so `offset .. offset + slot_size` is inside
        // `data`; the pointer is derived from the whole slice, and
        // `UnsafeCell<u8>` has the layout of `u8`.
        unsafe { UnsafeCell::raw_get(self.data.as_ptr().add(offset)) }
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("slots", &self.slots)
            .field("slot_size", &self.slot_size)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn alloc_write_share_release() {
        let arena = Arena::new(4, 16);
        let mut cache = LocalPool::new(2);
        let mut h = arena.alloc(&mut cache).unwrap();
        assert!(arena.write_payload(&mut h, b"hello", &mut cache).unwrap());
        assert_eq!(arena.payload(&h), b"hello");
        let h2 = arena.share(&h);
        assert_eq!(arena.refcount(&h), 2);
        assert!(
            arena.payload_mut(&mut h).is_none(),
            "shared slot is read-only"
        );
        // Copy on write: h moves to a new slot, h2 keeps the original.
        assert!(arena.write_payload(&mut h, b"bye", &mut cache).unwrap());
        assert_ne!(h.index(), h2.index());
        assert_eq!(arena.payload(&h2), b"hello");
        assert_eq!(arena.payload(&h), b"bye");
        arena.release(h, &mut cache);
        arena.release(h2, &mut cache);
        arena.flush(&mut cache);
        assert_eq!(arena.leaked_quiescent(), 0);
    }

    /// A handle only works with the arena that made it: with another one
    /// it would alias a live slot there, so every method refuses it.
    #[test]
    fn handles_of_another_arena_are_refused() {
        use std::panic::{catch_unwind, AssertUnwindSafe};
        let (a, b) = (Arena::new(4, 16), Arena::new(4, 16));
        let (mut pa, mut pb) = (LocalPool::new(1), LocalPool::new(1));
        let mut ha = a.alloc(&mut pa).unwrap();
        let hb = b.alloc(&mut pb).unwrap();
        assert_eq!(ha.index(), hb.index(), "the same slot index in both");
        let refused = |f: &mut dyn FnMut()| {
            let err = catch_unwind(AssertUnwindSafe(f)).expect_err("refused");
            let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(msg.contains("was used with arena"), "{msg}");
        };
        refused(&mut || {
            let _ = b.payload(&ha);
        });
        refused(&mut || {
            let _ = b.payload_mut(&mut ha);
        });
        refused(&mut || {
            let _ = b.meta(&ha);
        });
        refused(&mut || b.add_refs(&ha, 1));
        refused(&mut || {
            let _ = b.write_payload(&mut ha, b"x", &mut pb);
        });
        // A pool holding `a`'s slots cannot serve `b`.
        a.release(ha, &mut pa);
        refused(&mut || {
            let h = b.alloc(&mut pa).unwrap();
            b.release(h, &mut pb);
        });
        // Nothing was touched: both arenas are whole.
        b.release(hb, &mut pb);
        a.flush(&mut pa);
        b.flush(&mut pb);
        assert_eq!(a.leaked_quiescent(), 0);
        assert_eq!(b.leaked_quiescent(), 0);
    }

    #[test]
    fn exhaustion_and_too_large() {
        let arena = Arena::new(2, 8);
        let mut cache = LocalPool::new(1);
        let mut a = arena.alloc(&mut cache).unwrap();
        let b = arena.alloc(&mut cache).unwrap();
        assert!(arena.alloc(&mut cache).is_none());
        let err = arena
            .write_payload(&mut a, b"123456789", &mut cache)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload of 9 bytes exceeds the arena slot size of 8 bytes"
        );
        // Copy on write with an exhausted arena changes nothing.
        let shared = arena.share(&b);
        let mut b = b;
        assert!(!arena.write_payload(&mut b, b"x", &mut cache).unwrap());
        for h in [a, b, shared] {
            arena.release(h, &mut cache);
        }
        arena.flush(&mut cache);
        assert_eq!(arena.leaked_quiescent(), 0);
    }
}
