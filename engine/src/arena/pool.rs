//! The free-slot pool: one global lock-free stack of slot indices, plus a
//! per-worker [`LocalPool`] cache in front of it.
//!
//! # Why this shape
//! The Disruptor paper's warning is that a structure every element touches
//! becomes one cache line bouncing between cores. Here the global stack's head
//! is touched once per *batch*: a worker's cache refills `batch` indices with a
//! single CAS (it walks the chain, then swings the head past it) and returns a
//! full batch with a single CAS (it links the batch privately, then publishes
//! it). Per element, allocation and release only touch the worker's own
//! `Vec` and the slot's refcount.
//!
//! # ABA
//! The head is a `u64` packing the top index (low 32 bits) and a tag (high
//! 32 bits) that every successful CAS increments. A popper that read a stale
//! head fails its CAS because the tag moved, so the chain it walked is never
//! installed. The tag wraps after 2^32 operations; a thread would have to
//! stall between its load and its CAS for exactly that many operations by
//! other threads for ABA to occur.
//!
//! # Memory ordering
//! Pushes publish with a `Release` CAS, pops read the head with `Acquire`.
//! Successful CASes on the head form a release sequence, so a popper that
//! acquires the head also sees every link written by every earlier pusher,
//! and every payload access made before the slot was freed.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// "No slot": terminates the free chain.
pub(crate) const NIL: u32 = u32::MAX;

fn pack(index: u32, tag: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(index)
}

fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// Global stack of free slot indices, threaded through a dense `next` array.
pub(crate) struct FreeStack {
    head: crossbeam_utils::CachePadded<Head>,
    next: Box<[AtomicU32]>,
}

/// The stack's head word and, on the same cache line (it changes with
/// every batch push or pop, right after the head), how many indices it
/// holds: a live count for the drain deadline's report, never used to
/// decide anything.
struct Head {
    word: AtomicU64,
    free: AtomicU64,
}

impl FreeStack {
    /// A stack holding every index in `0..slots`, lowest on top.
    pub(crate) fn full(slots: u32) -> Self {
        let next: Box<[AtomicU32]> = (0..slots)
            .map(|i| AtomicU32::new(if i + 1 < slots { i + 1 } else { NIL }))
            .collect();
        let top = if slots == 0 { NIL } else { 0 };
        FreeStack {
            head: crossbeam_utils::CachePadded::new(Head {
                word: AtomicU64::new(pack(top, 0)),
                free: AtomicU64::new(u64::from(slots)),
            }),
            next,
        }
    }

    /// Pushes all of `batch` (which the caller owns) with one successful CAS.
    pub(crate) fn push_batch(&self, batch: &[u32]) {
        let (Some(&first), Some(&last)) = (batch.first(), batch.last()) else {
            return;
        };
        // Link the batch privately; nobody else can see these slots yet.
        for pair in batch.windows(2) {
            self.next[pair[0] as usize].store(pair[1], Ordering::Relaxed);
        }
        let mut head = self.head.word.load(Ordering::Relaxed);
        loop {
            let (top, tag) = unpack(head);
            self.next[last as usize].store(top, Ordering::Relaxed);
            match self.head.word.compare_exchange_weak(
                head,
                pack(first, tag.wrapping_add(1)),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.head
                        .free
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return;
                }
                Err(actual) => head = actual,
            }
        }
    }

    /// Pops up to `max` indices into `out` with one successful CAS; returns
    /// how many were taken (0 when the stack is empty).
    pub(crate) fn pop_batch(&self, max: usize, out: &mut Vec<u32>) -> usize {
        let start = out.len();
        let mut head = self.head.word.load(Ordering::Acquire);
        loop {
            let (top, tag) = unpack(head);
            if top == NIL || max == 0 {
                return 0;
            }
            // Walk the chain. If another thread changes the stack meanwhile,
            // the links read here may be stale, but the CAS below then fails
            // (the tag moved) and the walk is discarded.
            let mut cur = top;
            while cur != NIL && out.len() - start < max {
                out.push(cur);
                cur = self.next[cur as usize].load(Ordering::Relaxed);
            }
            match self.head.word.compare_exchange_weak(
                head,
                pack(cur, tag.wrapping_add(1)),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let n = out.len() - start;
                    self.head.free.fetch_sub(n as u64, Ordering::Relaxed);
                    return n;
                }
                Err(actual) => {
                    out.truncate(start);
                    head = actual;
                }
            }
        }
    }

    /// Indices on the stack now (not counting worker caches), read while
    /// other threads use it: exact once they stop, a snapshot before.
    pub(crate) fn free_live(&self) -> usize {
        self.head.free.load(Ordering::Relaxed) as usize
    }

    /// Counts the free indices. Only meaningful when no thread is using the
    /// stack (shutdown, tests); also checks the chain is well formed.
    pub(crate) fn count_quiescent(&self) -> usize {
        let (mut cur, _) = unpack(self.head.word.load(Ordering::Acquire));
        let mut n = 0;
        while cur != NIL {
            n += 1;
            assert!(n <= self.next.len(), "free chain has a cycle");
            cur = self.next[cur as usize].load(Ordering::Relaxed);
        }
        n
    }
}

/// A worker's private cache of free slots in front of the global stack.
///
/// Holds at most as many indices as its capacity, allocated once (`2 *
/// batch`; `Vec` may round it up): it refills `batch` at a time when empty
/// and gives back all but `batch` when full, so a worker that only frees (a
/// sink) and a worker that only allocates (a source) each touch the global
/// head once per `batch` elements. Owned by one worker thread; never
/// shared.
pub struct LocalPool {
    batch: usize,
    cached: Vec<u32>,
    /// The arena whose slots `cached` holds (0: none yet). A cache holding
    /// one arena's slots refuses another arena (its indices would name
    /// live slots there); an empty cache may move to another arena.
    arena: u32,
}

impl LocalPool {
    /// An empty cache moving `batch` slots at a time (at least 1).
    pub fn new(batch: usize) -> Self {
        let batch = batch.max(1);
        LocalPool {
            batch,
            cached: Vec::with_capacity(2 * batch),
            arena: 0,
        }
    }

    /// Checks (one compare) that this cache holds slots of `arena` or none.
    #[inline(always)]
    fn bind(&mut self, arena: u32) {
        if self.arena != arena {
            self.rebind(arena);
        }
    }

    #[cold]
    fn rebind(&mut self, arena: u32) {
        assert!(
            self.cached.is_empty(),
            "a LocalPool holding slots of arena #{} was used with arena #{arena}",
            self.arena
        );
        self.arena = arena;
    }

    /// A free slot: from the cache, refilled with a batch when empty.
    #[inline]
    pub(crate) fn take(&mut self, arena: u32, stack: &FreeStack) -> Option<u32> {
        self.bind(arena);
        if self.cached.is_empty() {
            self.refill(stack);
        }
        self.cached.pop()
    }

    #[inline(never)]
    fn refill(&mut self, stack: &FreeStack) {
        stack.pop_batch(self.batch, &mut self.cached);
    }

    /// Takes a freed slot back, returning a batch to the stack when full.
    #[inline]
    pub(crate) fn give(&mut self, arena: u32, stack: &FreeStack, index: u32) {
        self.bind(arena);
        // Full at its capacity (`2 * batch`, allocated once): the push's
        // own capacity check is then the same compare.
        if self.cached.len() == self.cached.capacity() {
            self.spill(stack);
        }
        self.cached.push(index);
    }

    #[inline(never)]
    fn spill(&mut self, stack: &FreeStack) {
        let keep = self.batch;
        stack.push_batch(&self.cached[keep..]);
        self.cached.truncate(keep);
    }

    /// Returns every cached slot to the global stack (an idle worker does
    /// this so that a starved source elsewhere can make progress).
    pub(crate) fn flush(&mut self, arena: u32, stack: &FreeStack) -> bool {
        self.bind(arena);
        if self.cached.is_empty() {
            return false;
        }
        stack.push_batch(&self.cached);
        self.cached.clear();
        true
    }

    /// How many free slots this cache holds.
    pub fn len(&self) -> usize {
        self.cached.len()
    }

    /// Whether the cache holds no free slot.
    pub fn is_empty(&self) -> bool {
        self.cached.is_empty()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip() {
        let stack = FreeStack::full(10);
        let mut out = Vec::new();
        assert_eq!(stack.pop_batch(4, &mut out), 4);
        assert_eq!(out, [0, 1, 2, 3]);
        assert_eq!(stack.count_quiescent(), 6);
        assert_eq!(stack.free_live(), 6);
        stack.push_batch(&out[1..3]);
        assert_eq!(stack.count_quiescent(), 8);
        assert_eq!(stack.free_live(), 8);
        out.clear();
        assert_eq!(stack.pop_batch(100, &mut out), 8);
        assert_eq!(out, [1, 2, 4, 5, 6, 7, 8, 9]);
        assert_eq!(stack.pop_batch(1, &mut out), 0);
    }

    #[test]
    fn local_pool_bounds_its_cache() {
        let stack = FreeStack::full(64);
        let mut pool = LocalPool::new(4);
        let taken: Vec<u32> = (0..20).map(|_| pool.take(1, &stack).unwrap()).collect();
        assert_eq!(stack.count_quiescent(), 64 - 20);
        for i in taken {
            pool.give(1, &stack, i);
            assert!(pool.len() <= 8);
        }
        assert!(pool.flush(1, &stack));
        assert_eq!(stack.count_quiescent(), 64);
        assert_eq!(stack.free_live(), 64);
    }
}
