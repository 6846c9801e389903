//! How an idle worker waits, and how busy workers wake it.
//!
//! A worker with nothing to do spins briefly, then yields, then parks
//! (crossbeam-utils [`Backoff`]), unless the config selects `busy-spin` (for
//! users who own dedicated cores) or `yield`. Parking uses an eventcount-style
//! handshake so no wake-up is lost:
//!
//! * the sleeper sets its `sleeping` flag, issues a SeqCst fence, runs one
//!   more round over its stages, and parks only if that round found nothing;
//! * a worker that made progress (published handles, freed ring space,
//!   completed, returned slots to the pool) issues a SeqCst fence and unparks
//!   each neighbour whose flag is set.
//!
//! By the fence-fence rule, either the sleeper's extra round sees the
//! progress, or the waker sees the flag. The park also has a short timeout
//! as a backstop for sources that poll the outside world.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

use crossbeam_utils::CachePadded;

/// The idle-wait policy of every worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Spin forever: lowest wake latency, burns the core. Only for dedicated
    /// cores.
    BusySpin,
    /// Spin, then `yield` to the OS scheduler; never sleeps.
    Yield,
    /// Spin, then yield, then park until woken (the default).
    #[default]
    Park,
}

impl WaitStrategy {
    /// Parses the config spelling: `busy-spin`, `yield` or `park`.
    pub fn parse(s: &str) -> Option<WaitStrategy> {
        match s {
            "busy-spin" => Some(WaitStrategy::BusySpin),
            "yield" => Some(WaitStrategy::Yield),
            "park" => Some(WaitStrategy::Park),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitStrategy::BusySpin => "busy-spin",
            WaitStrategy::Yield => "yield",
            WaitStrategy::Park => "park",
        }
    }
}

/// Backstop for a parked worker (sources that poll need a periodic look).
pub(crate) const PARK_TIMEOUT: Duration = Duration::from_millis(1);

/// Per-worker state visible to other workers.
#[derive(Default)]
pub(crate) struct Parker {
    sleeping: CachePadded<AtomicBool>,
    thread: OnceLock<Thread>,
}

impl Parker {
    /// Registers the calling thread as this worker.
    pub(crate) fn register(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Announces the intent to sleep; follow with one more round of work.
    pub(crate) fn prepare(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Sleeps (after a `prepare` and a fruitless round) for at most
    /// `timeout` (capped at the backstop interval).
    pub(crate) fn park(&self, timeout: Duration) {
        std::thread::park_timeout(timeout.min(PARK_TIMEOUT));
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Cancels a `prepare` (the extra round found work).
    pub(crate) fn cancel(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Wakes the worker if it is parked or about to park.
    #[inline]
    pub(crate) fn wake(&self) {
        if self.sleeping.load(Ordering::Relaxed) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// Issues the waker's side of the handshake, then wakes each listed parker.
#[inline]
pub(crate) fn wake_all<'a>(parkers: impl IntoIterator<Item = &'a Parker>) {
    fence(Ordering::SeqCst);
    for p in parkers {
        p.wake();
    }
}
