//! Model-based property test: random sequences of arena operations against a
//! plain model (refcount and bytes per live reference), plus a many-thread
//! stress test of the real concurrent protocol.

use std::collections::HashMap;
use std::sync::Arc;

use dataplane::{Arena, Handle, LocalPool};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc(Vec<u8>),
    Share(usize),
    Release(usize),
    Write(usize, Vec<u8>),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..20).prop_map(Op::Alloc),
        2 => any::<usize>().prop_map(Op::Share),
        3 => any::<usize>().prop_map(Op::Release),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(i, b)| Op::Write(i, b)),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #[test]
    fn arena_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
        const SLOTS: u32 = 8;
        const SIZE: usize = 16;
        let arena = Arena::new(SLOTS, SIZE);
        let mut pool = LocalPool::new(2);
        // Live references and what each must read.
        let mut held: Vec<(Handle, Vec<u8>)> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc(bytes) => {
                    let live: std::collections::HashSet<u32> = held.iter().map(|(h, _)| h.index()).collect();
                    match arena.alloc(&mut pool) {
                        Some(mut h) => {
                            prop_assert!(live.len() < SLOTS as usize);
                            prop_assert!(!live.contains(&h.index()), "allocated a live slot");
                            let r = arena.write_payload(&mut h, &bytes, &mut pool);
                            if bytes.len() > SIZE {
                                prop_assert!(r.is_err());
                                arena.release(h, &mut pool);
                            } else {
                                prop_assert_eq!(r, Ok(true));
                                held.push((h, bytes));
                            }
                        }
                        None => prop_assert_eq!(live.len(), SLOTS as usize, "alloc failed with free slots"),
                    }
                }
                Op::Share(i) if !held.is_empty() => {
                    let i = i % held.len();
                    let h2 = arena.share(&held[i].0);
                    let bytes = held[i].1.clone();
                    held.push((h2, bytes));
                }
                Op::Release(i) if !held.is_empty() => {
                    let i = i % held.len();
                    let (h, _) = held.swap_remove(i);
                    arena.release(h, &mut pool);
                }
                Op::Write(i, bytes) if !held.is_empty() && bytes.len() <= SIZE => {
                    let i = i % held.len();
                    let before = held[i].0.index();
                    let shared = held.iter().filter(|(h, _)| h.index() == before).count() > 1;
                    let (h, model) = &mut held[i];
                    match arena.write_payload(h, &bytes, &mut pool) {
                        Ok(true) => {
                            // Copy on write: a shared slot moves; a sole one stays.
                            prop_assert_eq!(h.index() != before, shared);
                            *model = bytes;
                        }
                        Ok(false) => prop_assert!(shared, "in-place write refused"),
                        Err(e) => prop_assert!(false, "{}", e),
                    }
                }
                Op::Flush => { arena.flush(&mut pool); }
                _ => {}
            }
            // Every live reference reads its bytes; refcounts match.
            let mut counts: HashMap<u32, u32> = HashMap::new();
            for (h, bytes) in &held {
                prop_assert_eq!(arena.payload(h), &bytes[..]);
                *counts.entry(h.index()).or_default() += 1;
            }
            for (h, _) in &held {
                prop_assert_eq!(arena.refcount(h), counts[&h.index()]);
            }
        }
        for (h, _) in held.drain(..) {
            arena.release(h, &mut pool);
        }
        arena.flush(&mut pool);
        prop_assert_eq!(arena.leaked_quiescent(), 0);
    }
}

/// Many threads pass shared slots around a ring of rtrb queues; every reader
/// checks the payload it was promised; at the end every slot is free.
#[test]
fn stress_many_threads() {
    const THREADS: usize = 6;
    const PER_THREAD: u64 = 50_000;
    let arena = Arc::new(Arena::new(256, 16));
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for _ in 0..THREADS {
        let (p, c) = rtrb::RingBuffer::<(Handle, u64)>::new(32);
        producers.push(Some(p));
        consumers.push(Some(c));
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let arena = Arc::clone(&arena);
            let mut tx = producers[(t + 1) % THREADS].take().unwrap();
            let mut rx = consumers[t].take().unwrap();
            std::thread::spawn(move || {
                let mut pool = LocalPool::new(8);
                let mut sent = 0;
                let mut received = 0;
                while sent < PER_THREAD || received < PER_THREAD {
                    let mut idle = true;
                    if sent < PER_THREAD && tx.slots() > 0 {
                        if let Some(mut h) = arena.alloc(&mut pool) {
                            let v = (t as u64) << 32 | sent;
                            arena
                                .write_payload(&mut h, &v.to_le_bytes(), &mut pool)
                                .unwrap();
                            // Keep a second reference a moment, read, drop it.
                            let extra = arena.share(&h);
                            tx.push((h, v)).ok().unwrap();
                            assert_eq!(arena.payload(&extra), v.to_le_bytes());
                            arena.release(extra, &mut pool);
                            sent += 1;
                            idle = false;
                        }
                    }
                    if let Ok((h, v)) = rx.pop() {
                        assert_eq!(
                            arena.payload(&h),
                            v.to_le_bytes(),
                            "payload changed in flight"
                        );
                        arena.release(h, &mut pool);
                        received += 1;
                        idle = false;
                    }
                    if idle {
                        arena.flush(&mut pool);
                        std::thread::yield_now();
                    }
                }
                arena.flush(&mut pool);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(arena.leaked_quiescent(), 0);
}
