//! A global allocator that counts allocations, for "allocations per element
//! in steady state".
//!
//! It wraps mimalloc (the allocator of the `dataplane` binary, so the engine
//! and the baselines run on the allocator a production build uses). Counting
//! must not distort what it measures: one shared counter would bounce a cache
//! line between cores on every allocation of a channel pipeline, so each
//! thread counts on its own cache-padded shard and [`allocations`] adds the
//! shards up. A snapshot is taken at two points of a run by the measuring
//! sink; the difference over the elements delivered in between is the
//! steady-state figure.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Number of counter shards (threads beyond this share shards, which is
/// still correct, only slower).
const SHARDS: usize = 64;

/// One counter on its own pair of cache lines (adjacent-line prefetch).
#[repr(align(128))]
struct Shard(AtomicU64);

static COUNTS: [Shard; SHARDS] = [const { Shard(AtomicU64::new(0)) }; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and no destructor: usable inside the allocator, even while a
    // thread is being torn down.
    static MY_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn count_one() {
    let shard = MY_SHARD
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
                s.set(i);
            }
            i
        })
        .unwrap_or(0);
    // Relaxed: a statistic; the snapshot readers tolerate a few in flight.
    COUNTS[shard].0.fetch_add(1, Ordering::Relaxed);
}

/// Allocations (including reallocations) made by every thread so far.
pub fn allocations() -> u64 {
    COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
}

/// mimalloc, counting every allocation and reallocation.
///
/// Install it in a binary with
/// `#[global_allocator] static GLOBAL: bench::alloc::Counting = bench::alloc::Counting;`.
pub struct Counting;

// SAFETY: every method forwards to mimalloc with the caller's arguments
// unchanged, so mimalloc's guarantees are ours; counting touches no memory
// the allocator hands out.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded contract (non-zero size layout from the caller).
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded contract.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, i.e. by mimalloc,
        // with `layout`.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: forwarded contract; `ptr` came from mimalloc via us.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}
