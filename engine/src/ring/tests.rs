//! Unit tests of `ring/mod.rs`.

use super::*;

/// `n` fresh slots of `arena`, as raw indices in an outbox.
fn queue(out: &mut EdgeOut, arena: &Arena, pool: &mut LocalPool, n: usize) {
    for _ in 0..n {
        // What `fan_out` does for a port with one edge.
        let h = arena.alloc(pool).expect("a free slot");
        out.outbox.push(h.into_raw());
    }
}

fn drain(rx: &mut EdgeIn, arena: &Arena, pool: &mut LocalPool) -> Vec<u32> {
    rx.shed(arena, pool);
    let mut seen = Vec::new();
    while let Some((h, _)) = rx.pop(arena) {
        seen.push(h.index());
        arena.release(h, pool);
    }
    seen
}

#[test]
fn block_keeps_what_does_not_fit() {
    let arena = Arena::new(64, 64);
    let mut pool = LocalPool::new(8);
    let (mut tx, mut rx, stats) = edge(4, WhenFull::Block);
    queue(&mut tx, &arena, &mut pool, 6);
    assert_eq!(tx.flush(&arena, &mut pool), 4);
    assert!(!tx.is_flushed());
    assert_eq!(drain(&mut rx, &arena, &mut pool).len(), 4);
    assert_eq!(tx.flush(&arena, &mut pool), 2);
    assert_eq!(drain(&mut rx, &arena, &mut pool).len(), 2);
    assert_eq!(stats.dropped(), 0);
    arena.flush(&mut pool);
    assert_eq!(arena.leaked_quiescent(), 0);
}

#[test]
fn drop_newest_releases_the_elements_that_found_the_ring_full() {
    let arena = Arena::new(64, 64);
    let mut pool = LocalPool::new(8);
    let (mut tx, mut rx, stats) = edge(4, WhenFull::DropNewest);
    queue(&mut tx, &arena, &mut pool, 6);
    let first: Vec<u32> = tx.outbox[..4].to_vec();
    assert_eq!(tx.flush(&arena, &mut pool), 6);
    assert!(tx.is_flushed(), "nothing is held back");
    assert_eq!(stats.dropped(), 2);
    assert_eq!(
        drain(&mut rx, &arena, &mut pool),
        first,
        "the oldest four stay"
    );
    arena.flush(&mut pool);
    assert_eq!(arena.leaked_quiescent(), 0);
}

#[test]
fn drop_oldest_sheds_the_head_of_the_ring() {
    let arena = Arena::new(64, 64);
    let mut pool = LocalPool::new(8);
    let (mut tx, mut rx, stats) = edge(4, WhenFull::DropOldest);
    queue(&mut tx, &arena, &mut pool, 4);
    tx.flush(&arena, &mut pool);
    queue(&mut tx, &arena, &mut pool, 3);
    let newest: Vec<u32> = tx.outbox.clone();
    tx.flush(&arena, &mut pool);
    assert_eq!(tx.outbox.len(), 3, "kept until the consumer makes room");
    // The consumer sheds the three oldest; the producer then publishes.
    assert_eq!(rx.shed(&arena, &mut pool), 3);
    assert_eq!(stats.dropped(), 3);
    tx.flush(&arena, &mut pool);
    assert!(tx.is_flushed());
    let seen = drain(&mut rx, &arena, &mut pool);
    assert_eq!(seen.len(), 4);
    assert_eq!(
        &seen[1..],
        &newest[..],
        "the newest three arrive, after the one old survivor"
    );
    arena.flush(&mut pool);
    assert_eq!(arena.leaked_quiescent(), 0);
}

#[test]
fn drop_oldest_bounds_what_a_stalled_consumer_makes_it_hold() {
    let arena = Arena::new(64, 64);
    let mut pool = LocalPool::new(8);
    let (mut tx, mut rx, stats) = edge(4, WhenFull::DropOldest);
    for _ in 0..5 {
        queue(&mut tx, &arena, &mut pool, 4);
        tx.flush(&arena, &mut pool);
    }
    // 20 offered: 4 in the ring, at most 4 held, the 12 oldest held ones
    // dropped by the producer.
    assert_eq!(tx.outbox.len(), 4);
    assert_eq!(stats.dropped(), 12);
    let newest: Vec<u32> = tx.outbox.clone();
    assert_eq!(
        rx.shed(&arena, &mut pool),
        4,
        "the ring's four are the oldest left"
    );
    tx.flush(&arena, &mut pool);
    assert_eq!(drain(&mut rx, &arena, &mut pool), newest);
    assert_eq!(stats.dropped(), 16);
    arena.flush(&mut pool);
    assert_eq!(arena.leaked_quiescent(), 0);
}

#[test]
fn a_full_drop_newest_edge_refuses_at_fan_out_without_a_reference() {
    let arena = Arena::new(64, 64);
    let mut pool = LocalPool::new(8);
    let (keep, mut keep_rx, keep_stats) = edge(8, WhenFull::Block);
    let (drop, mut drop_rx, drop_stats) = edge(2, WhenFull::DropNewest);
    let mut ports = vec![vec![keep, drop]];
    for _ in 0..5 {
        let h = arena.alloc(&mut pool).expect("a free slot");
        fan_out(&arena, h, &mut ports, 0, true);
    }
    let edges = &mut ports[0];
    assert_eq!(edges[0].outbox.len(), 5);
    assert_eq!(edges[1].outbox.len(), 2, "room for two, three refused");
    for e in edges.iter_mut() {
        e.flush(&arena, &mut pool);
    }
    assert_eq!(drop_stats.dropped(), 3);
    assert_eq!(keep_stats.dropped(), 0);
    assert_eq!(drain(&mut keep_rx, &arena, &mut pool).len(), 5);
    assert_eq!(drain(&mut drop_rx, &arena, &mut pool).len(), 2);
    arena.flush(&mut pool);
    assert_eq!(
        arena.leaked_quiescent(),
        0,
        "the refused ones took no reference"
    );
}

#[test]
fn when_full_parses_its_three_spellings_only() {
    for w in [WhenFull::Block, WhenFull::DropNewest, WhenFull::DropOldest] {
        assert_eq!(w.as_str().parse::<WhenFull>(), Ok(w));
    }
    assert!("drop"
        .parse::<WhenFull>()
        .unwrap_err()
        .contains("expected block"));
}

/// A chunk that wraps around the ring's end is two slices: `flush` writes
/// both and `take` reads both, in order.
#[test]
fn a_chunk_across_the_ring_end_keeps_its_order() {
    let arena = Arena::new(64, 64);
    let mut pool = LocalPool::new(8);
    let (mut tx, mut rx, _) = edge(4, WhenFull::Block);
    queue(&mut tx, &arena, &mut pool, 3);
    tx.flush(&arena, &mut pool);
    assert_eq!(drain(&mut rx, &arena, &mut pool).len(), 3);
    // Slots 3, 0 and 1 of the ring: the write and the read both wrap.
    queue(&mut tx, &arena, &mut pool, 3);
    let sent = tx.outbox.clone();
    assert_eq!(tx.flush(&arena, &mut pool), 3);
    let mut seen = Vec::new();
    let taken = rx.take(&arena, 3, |h| {
        seen.push(h.index());
        arena.release(h, &mut pool);
        Taken::Yes
    });
    assert_eq!((taken, seen), ((3, false), sent));
    assert_eq!(rx.available(), 0);
    arena.flush(&mut pool);
    assert_eq!(arena.leaked_quiescent(), 0);
}

/// `Taken::Last` consumes its element and ends the batch; `Taken::Defer`
/// leaves its element first in the ring. Both hold across the wrap.
#[test]
fn take_stops_after_last_and_before_defer() {
    let arena = Arena::new(64, 64);
    let mut pool = LocalPool::new(8);
    let (mut tx, mut rx, _) = edge(4, WhenFull::Block);
    queue(&mut tx, &arena, &mut pool, 2);
    tx.flush(&arena, &mut pool);
    drain(&mut rx, &arena, &mut pool);
    // Ring slots 2, 3, 0, 1.
    queue(&mut tx, &arena, &mut pool, 4);
    let sent = tx.outbox.clone();
    tx.flush(&arena, &mut pool);
    let mut k = 0;
    let taken = rx.take(&arena, 4, |h| {
        k += 1;
        arena.release(h, &mut pool);
        if k == 3 {
            Taken::Last
        } else {
            Taken::Yes
        }
    });
    assert_eq!(
        taken,
        (3, false),
        "the third ends the batch, in the ring's second slice"
    );
    assert_eq!(rx.available(), 1);
    let taken = rx.take(&arena, 4, Taken::Defer);
    assert_eq!(taken, (0, false));
    assert_eq!(drain(&mut rx, &arena, &mut pool), &sent[3..]);
    arena.flush(&mut pool);
    assert_eq!(arena.leaked_quiescent(), 0);
}

/// A batch of fresh handles to a port of two edges: each edge's outbox
/// gets the batch in order and each slot counts a reference per edge, as
/// `fan_out` one by one gives.
#[test]
fn fan_out_all_gives_each_edge_the_batch() {
    let arena = Arena::new(64, 64);
    let mut pool = LocalPool::new(8);
    let (a, mut ra, _) = edge(16, WhenFull::Block);
    let (b, mut rb, _) = edge(16, WhenFull::Block);
    let mut ports = vec![vec![a, b]];
    let mut handles: Vec<Handle> = (0..5).map(|_| arena.alloc(&mut pool).unwrap()).collect();
    let indices: Vec<u32> = handles.iter().map(Handle::index).collect();
    fan_out_all(&arena, &mut handles, &mut ports, 0, false);
    assert!(handles.is_empty());
    for edge in &ports[0] {
        assert_eq!(edge.outbox, indices);
    }
    for edge in &mut ports[0] {
        edge.flush(&arena, &mut pool);
    }
    let mut refcounts = Vec::new();
    let _ = ra.take(&arena, 5, |h| {
        refcounts.push(arena.refcount(&h));
        arena.release(h, &mut pool);
        Taken::Yes
    });
    assert_eq!(refcounts, [2; 5]);
    assert_eq!(drain(&mut rb, &arena, &mut pool), indices);
    arena.flush(&mut pool);
    assert_eq!(arena.leaked_quiescent(), 0);
}

/// `take` stops before a control element and says so, leaving it at the
/// head of the ring; here in the ring's second slice.
#[test]
fn take_stops_before_a_control_element() {
    let arena = Arena::new(64, 64);
    let mut pool = LocalPool::new(8);
    let (mut tx, mut rx, _) = edge(4, WhenFull::Block);
    queue(&mut tx, &arena, &mut pool, 3);
    tx.flush(&arena, &mut pool);
    drain(&mut rx, &arena, &mut pool);
    // Ring slots 3, 0, 1, 2: data, data, control, data.
    queue(&mut tx, &arena, &mut pool, 2);
    let c = arena.alloc(&mut pool).expect("a free slot");
    tx.outbox.push(c.into_raw() | CONTROL);
    queue(&mut tx, &arena, &mut pool, 1);
    let sent = tx.outbox.clone();
    tx.flush(&arena, &mut pool);
    let mut seen = Vec::new();
    let taken = rx.take(&arena, 4, |h| {
        seen.push(h.index());
        arena.release(h, &mut pool);
        Taken::Yes
    });
    assert_eq!((taken, seen.as_slice()), ((2, true), &sent[..2]));
    // Still at the head: a take moves nothing.
    let taken = rx.take(&arena, 2, |_| -> Taken {
        unreachable!("past a control element")
    });
    assert_eq!((taken, rx.available()), ((0, true), 2));
    let (h, control) = rx.pop(&arena).expect("the control element");
    assert!(control);
    arena.release(h, &mut pool);
    assert_eq!(drain(&mut rx, &arena, &mut pool), &sent[3..]);
    arena.flush(&mut pool);
    assert_eq!(arena.leaked_quiescent(), 0);
}
