//! A worker: one thread, pinned to one core, running its nodes round robin
//! (run to completion: each node gets one batch per round).

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::Backoff;

use crate::arena::{Arena, LocalPool};
use crate::clock::now_ns;
use crate::metrics::StageReport;
use crate::ring::wait::{wake_all, Parker, WaitStrategy, PARK_TIMEOUT};
use crate::runtime::node::{Node, StepCtx};

/// Below this, waiting for a due source yields rather than parks: even with
/// a 1 ns timer slack, falling asleep and waking costs a few microseconds.
const SPIN_BELOW: Duration = Duration::from_micros(15);

pub(crate) struct Worker {
    pub(crate) id: usize,
    pub(crate) core: Option<core_affinity::CoreId>,
    pub(crate) nodes: Vec<Node>,
    /// Workers this one exchanges handles with (woken after progress).
    pub(crate) neighbours: Vec<usize>,
}

pub(crate) struct Shared {
    pub(crate) arena: Arc<Arena>,
    pub(crate) parkers: Vec<Parker>,
    pub(crate) stop: Arc<AtomicBool>,
    /// Sources still running; see [`StepCtx::sources_left`].
    pub(crate) sources_left: AtomicUsize,
    pub(crate) wait: WaitStrategy,
    pub(crate) batch: usize,
}

/// What a worker hands back when all its nodes are done.
pub(crate) struct WorkerResult {
    pub(crate) reports: Vec<StageReport>,
    pub(crate) pinned: bool,
}

impl Worker {
    pub(crate) fn run(mut self, shared: Arc<Shared>) -> WorkerResult {
        let pinned = self.core.is_some_and(core_affinity::set_for_current);
        if self.core.is_some() && !pinned {
            log::warn!(
                "worker {} could not be pinned to core {:?}",
                self.id,
                self.core
            );
        }
        // A timed park (waiting for a paced source's next element) otherwise
        // wakes up to the kernel's default timer slack (50 us) late, and the
        // element's intended-time stamp makes that show as latency. Linux
        // only; elsewhere parks keep the platform's slack.
        #[cfg(target_os = "linux")]
        // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only
        // changes this thread's timer slack; it cannot fail in a way that
        // matters here (the default slack stays).
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        }
        // A stage's panic is the node's to report (see `restart::guard`).
        crate::runtime::restart::quiet_panics_on_this_thread();
        let me = &shared.parkers[self.id];
        me.register();
        let mut pool = LocalPool::new(shared.batch);
        let backoff = Backoff::new();
        loop {
            let (moved, done) = self.round(&shared, &mut pool);
            if done {
                break;
            }
            if moved {
                backoff.reset();
                wake_all(self.neighbours.iter().map(|&w| &shared.parkers[w]));
                continue;
            }
            // Idle: give cached free slots back so a starved source elsewhere
            // can use them, and wake everyone who might be waiting on them.
            if shared.arena.flush(&mut pool) {
                wake_all(&shared.parkers);
            }
            match shared.wait {
                WaitStrategy::BusySpin => std::hint::spin_loop(),
                WaitStrategy::Yield => backoff.snooze(),
                WaitStrategy::Park if !backoff.is_completed() => backoff.snooze(),
                WaitStrategy::Park => {
                    me.prepare();
                    let (moved, done) = self.round(&shared, &mut pool);
                    if moved || done {
                        me.cancel();
                        if done {
                            break;
                        }
                        backoff.reset();
                        wake_all(self.neighbours.iter().map(|&w| &shared.parkers[w]));
                        continue;
                    }
                    match self.due_in() {
                        // Due very soon: a park would overshoot (timer
                        // slack); keep yielding instead.
                        Some(d) if d < SPIN_BELOW => {
                            me.cancel();
                            std::thread::yield_now();
                        }
                        Some(d) => {
                            me.park(d);
                            backoff.reset();
                        }
                        None => {
                            me.park(PARK_TIMEOUT);
                            backoff.reset();
                        }
                    }
                }
            }
        }
        // Everything downstream of us may be waiting for our completion.
        shared.arena.flush(&mut pool);
        wake_all(&shared.parkers);
        let core = self.core.map(|c| c.id);
        let reports = self
            .nodes
            .into_iter()
            .map(|n| {
                let mut r = n.report;
                r.core = core.filter(|_| pinned);
                r.worker = self.id;
                r
            })
            .collect();
        WorkerResult { reports, pinned }
    }

    /// Time until the earliest due source on this worker, if any says.
    fn due_in(&self) -> Option<Duration> {
        let due = self.nodes.iter().filter_map(Node::due_ns).min()?;
        Some(Duration::from_nanos(due.saturating_sub(now_ns())))
    }

    /// One batch for every node; returns (anything moved, all done).
    fn round(&mut self, shared: &Shared, pool: &mut LocalPool) -> (bool, bool) {
        let mut ctx = StepCtx {
            arena: &shared.arena,
            pool,
            stop: &shared.stop,
            sources_left: &shared.sources_left,
            batch: shared.batch,
        };
        let mut moved = false;
        let mut done = true;
        for node in &mut self.nodes {
            if node.is_done() {
                continue;
            }
            if node.step(&mut ctx).moved {
                node.publish();
                moved = true;
            }
            done &= node.is_done();
        }
        (moved, done)
    }
}
