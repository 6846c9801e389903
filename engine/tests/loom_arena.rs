//! Loom model of the arena protocol: allocate / share / release / recycle.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test -p dataplane-engine --release --test loom_arena`
//! (scripts/test.sh does). The "payload" here is a loom `UnsafeCell` per slot,
//! written only by a slot's sole owner and read by its co-owners, so loom
//! reports any interleaving in which the arena's refcount and free-stack
//! orderings fail to separate a reader from the slot's next writer.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use dataplane::{Arena, Handle, LocalPool};

struct Cells(Vec<UnsafeCell<u64>>);

impl Cells {
    fn new(n: usize) -> Arc<Cells> {
        Arc::new(Cells((0..n).map(|_| UnsafeCell::new(0)).collect()))
    }
    fn write(&self, h: &Handle, v: u64) {
        // SAFETY: the model writes a cell only through the slot's sole
        // handle (refcount 1), so no other thread reads or writes it; loom
        // checks exactly that (an overlapping access fails the model).
        self.0[h.index() as usize].with_mut(|p| unsafe { *p = v });
    }
    fn read(&self, h: &Handle) -> u64 {
        // SAFETY: a read happens through a live handle after the write that
        // published it (the arena's release/acquire); loom reports any
        // access that races with a write.
        self.0[h.index() as usize].with(|p| unsafe { *p })
    }
}

fn alloc_spin(arena: &Arena, pool: &mut LocalPool) -> Handle {
    loop {
        if let Some(h) = arena.alloc(pool) {
            return h;
        }
        thread::yield_now();
    }
}

/// Allocates a slot (spinning until one is free), writes it as its new
/// owner and gives it back.
fn reuse(arena: &Arena, cells: &Cells, pool: &mut LocalPool) {
    let again = alloc_spin(arena, pool);
    cells.write(&again, 9);
    arena.release(again, pool);
    arena.flush(pool);
}

/// A thread that reads `h`'s cell (which must hold `expect`), releases `h`
/// and returns its cached slots to the arena.
fn read_and_release(
    arena: &Arc<Arena>,
    cells: &Arc<Cells>,
    h: Handle,
    expect: u64,
) -> thread::JoinHandle<()> {
    let (arena, cells) = (Arc::clone(arena), Arc::clone(cells));
    thread::spawn(move || {
        let mut pool = LocalPool::new(1);
        assert_eq!(cells.read(&h), expect);
        arena.release(h, &mut pool);
        arena.flush(&mut pool);
    })
}

/// A fan-out: the owner shares a slot with a second thread; both read it and
/// release in either order; then the slot is reused by a new writer.
#[test]
fn share_release_recycle() {
    loom::model(|| {
        let arena = Arc::new(Arena::new(1, 8));
        let cells = Cells::new(1);
        let mut pool = LocalPool::new(1);
        let h = arena.alloc(&mut pool).unwrap();
        cells.write(&h, 7);
        let shared = arena.share(&h);

        let t = read_and_release(&arena, &cells, shared, 7);
        assert_eq!(cells.read(&h), 7);
        arena.release(h, &mut pool);
        arena.flush(&mut pool);
        // Reuse: whoever released last pushed the slot back; the new owner's
        // write must be ordered after the other thread's read.
        reuse(&arena, &cells, &mut pool);
        t.join().unwrap();
        assert_eq!(arena.leaked_quiescent(), 0);
    });
}

/// Two threads allocate, write, read back and release concurrently through
/// the shared free stack (exercises the tagged head and batch links).
#[test]
fn concurrent_alloc_release() {
    loom::model(|| {
        let arena = Arc::new(Arena::new(2, 8));
        let cells = Cells::new(2);
        let threads: Vec<_> = (0..2u64)
            .map(|id| {
                let (arena, cells) = (Arc::clone(&arena), Arc::clone(&cells));
                thread::spawn(move || {
                    let mut pool = LocalPool::new(1);
                    for round in 0..2 {
                        let h = alloc_spin(&arena, &mut pool);
                        let v = id * 10 + round;
                        cells.write(&h, v);
                        assert_eq!(cells.read(&h), v, "slot written by two owners");
                        arena.release(h, &mut pool);
                        arena.flush(&mut pool);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(arena.leaked_quiescent(), 0);
    });
}

/// A co-owner reads and releases while the owner, left alone with the slot
/// or not, shares it again through its own handle (`share_mut` stores
/// instead of adding when the count is 1): whoever frees the slot last, its
/// next writer must still be ordered after the first co-owner's read.
#[test]
fn reshare_after_a_co_owner_released() {
    loom::model(|| {
        let arena = Arc::new(Arena::new(1, 8));
        let cells = Cells::new(1);
        let mut pool = LocalPool::new(1);
        let h = arena.alloc(&mut pool).unwrap();
        cells.write(&h, 7);
        let first = arena.share(&h);
        let reader = read_and_release(&arena, &cells, first, 7);
        // Shared again, perhaps after `first` was released (count 1).
        let mut h = h;
        let second = arena.share_mut(&mut h);
        let recycler = read_and_release(&arena, &cells, second, 7);
        arena.release(h, &mut pool);
        arena.flush(&mut pool);
        recycler.join().unwrap();
        // The slot is free once the reader is done too; its next owner
        // writes it, which must not race with the reader's read.
        reuse(&arena, &cells, &mut pool);
        reader.join().unwrap();
        assert_eq!(arena.leaked_quiescent(), 0);
    });
}

/// Two threads share one `&Handle` at once: every reference counts (a
/// store of "count + 1" from both would lose one, and the slot would be
/// freed under a live handle).
#[test]
fn concurrent_shares_of_one_handle_all_count() {
    loom::model(|| {
        let arena = Arc::new(Arena::new(1, 8));
        let mut pool = LocalPool::new(1);
        let h = Arc::new(arena.alloc(&mut pool).unwrap());
        let sharer = {
            let (arena, h) = (Arc::clone(&arena), Arc::clone(&h));
            thread::spawn(move || arena.share(&h))
        };
        let mine = arena.share(&h);
        let theirs = sharer.join().unwrap();
        assert_eq!(arena.refcount(&mine), 3, "a concurrent share was lost");
        let h = Arc::try_unwrap(h).expect("the sharer is done");
        for handle in [h, mine, theirs] {
            arena.release(handle, &mut pool);
        }
        arena.flush(&mut pool);
        assert_eq!(arena.leaked_quiescent(), 0);
    });
}
