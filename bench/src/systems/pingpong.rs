//! The physical floor of one core-to-core hop: two pinned threads bounce
//! one cache line. The initiator writes an odd value and spins until the
//! responder answers with the next even one; half of each round trip is
//! one hop. No queue, no batching, no payload: nothing a pipeline can beat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use core_affinity::CoreId;

use crate::measure::{latency_histogram, now_ns, RunOutcome};

#[repr(align(128))]
struct Line(AtomicU64);

/// Round trips for a workload of `count` elements (bounded: the floor
/// converges fast and spinning costs two whole cores).
pub fn rounds(count: u64) -> u64 {
    (count / 4).clamp(10_000, 500_000)
}

/// Runs `rounds` round trips between cores `a` and `b`. Throughput is
/// one-way hops per second, one at a time (no pipelining).
pub fn run(rounds: u64, a: CoreId, b: CoreId) -> RunOutcome {
    let line = Arc::new(Line(AtomicU64::new(0)));
    let responder = {
        let line = Arc::clone(&line);
        thread::spawn(move || {
            core_affinity::set_for_current(b);
            for i in 0..rounds {
                let ping = 2 * i + 1;
                // Acquire/Release: the message is the value itself; the
                // orderings only keep the compiler honest about the loop.
                while line.0.load(Ordering::Acquire) != ping {
                    std::hint::spin_loop();
                }
                line.0.store(ping + 1, Ordering::Release);
            }
        })
    };
    let initiator = thread::spawn(move || {
        core_affinity::set_for_current(a);
        let mut hist = latency_histogram();
        let start = now_ns();
        for i in 0..rounds {
            let t0 = now_ns();
            line.0.store(2 * i + 1, Ordering::Release);
            while line.0.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
            hist.saturating_record((now_ns() - t0) / 2);
        }
        (hist, start, now_ns())
    });
    let (latency, start_ns, end_ns) = initiator.join().expect("ping-pong initiator");
    responder.join().expect("ping-pong responder");
    RunOutcome {
        elements: 2 * rounds,
        delivered: 2 * rounds,
        start_ns,
        end_ns,
        latency,
        allocs_per_element: None,
    }
}
