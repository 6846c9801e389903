//! The end of a run: waiting for the workers, within the drain deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::worker::Shared;
use super::POLL;

/// Waits until every worker has finished, or until the drain deadline
/// passes: `drain_timeout_ms` after the sources stopped (all of them
/// finished, or the stop flag was raised). Returns the workers still
/// running then (empty when all finished).
pub(super) fn wait_for_workers(
    stop: &AtomicBool,
    drain_timeout_ms: u64,
    shared: &Shared,
    done: &mpsc::Receiver<usize>,
    workers: usize,
) -> Vec<usize> {
    let mut running: Vec<bool> = vec![true; workers];
    let mut left = workers;
    let mut draining_since: Option<Instant> = None;
    let limit = Duration::from_millis(drain_timeout_ms);
    while left > 0 {
        if draining_since.is_none()
            && (stop.load(Ordering::Relaxed) || shared.sources_left.load(Ordering::Acquire) == 0)
        {
            draining_since = Some(Instant::now());
        }
        let wait = match draining_since {
            Some(t) if drain_timeout_ms > 0 => match limit.checked_sub(t.elapsed()) {
                Some(d) => d.min(POLL),
                None => break,
            },
            _ => POLL,
        };
        match done.recv_timeout(wait) {
            Ok(w) => {
                if std::mem::replace(&mut running[w], false) {
                    left -= 1;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    (0..workers).filter(|&w| running[w]).collect()
}
