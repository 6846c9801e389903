//! Restart policies: what a node does when its stage fails (a panic, or a
//! `StageError::Fatal`), and the guard that turns a panicking stage call
//! into such a failure instead of a dead worker.
//!
//! A node's `restart = { policy, max_restarts, within_ms, backoff_ms,
//! max_backoff_ms }` is parsed into a [`RestartPolicy`]. The [`Tracker`] is
//! the pure part: given the time of each failure it answers "restart after
//! this backoff" or "give up". Backoff doubles from `backoff_ms` with each
//! restart still inside the `within_ms` window, up to `max_backoff_ms`; a
//! failure that would make more than `max_restarts` restarts within that
//! sliding window gives up. Failures that spread out (fewer than
//! `max_restarts` per window) are restarted forever, and their backoff
//! falls back to `backoff_ms`.
//!
//! The policies:
//! * `never` (default): the first failure fails the stage and stops the run.
//! * `on-failure`: restart after a panic or a fatal error of a running
//!   stage (`pull`, `process`, `route`, `push`, `end_batch`, `tick`). An
//!   error from `init` (a file that cannot be opened, an address in use) is
//!   taken as a setup problem and fails the stage at once.
//! * `always`: as `on-failure`, and `init` errors too are restarted
//!   (something that may come right after a backoff: a port still held by a
//!   previous process, a file not created yet).
//!
//! None of them restarts a source that ended (`Pull::Done`): a finite
//! source stays finite. Failures in `finish` (the input has completed, there
//! is nothing left to restart for) are final under every policy.

use std::collections::VecDeque;

pub(crate) use crate::stage::guard::{guard, quiet_panics_on_this_thread};
pub use crate::topology::restart::{FailedIn, Policy, RestartPolicy};

/// What to do about a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Rebuild the stage and start it after this backoff, in nanoseconds.
    Restart {
        /// Backoff before `init` is called again.
        after_ns: u64,
    },
    /// Fail the stage for good; the text says why it was not restarted
    /// (empty for a policy that does not restart this failure).
    GiveUp(String),
}

/// The restarts of one stage: a pure function of the failure times.
#[derive(Clone, Debug)]
pub struct Tracker {
    policy: RestartPolicy,
    /// When each restart still inside the window was decided (ns).
    recent: VecDeque<u64>,
}

const NS_PER_MS: u64 = 1_000_000;

impl Tracker {
    /// A tracker with no failures yet.
    pub fn new(policy: RestartPolicy) -> Tracker {
        Tracker {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// The policy it applies.
    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// A failure `at` happened at `now_ns` (monotonic, non-decreasing).
    pub fn on_failure(&mut self, now_ns: u64, at: FailedIn) -> Decision {
        if !self.policy.restarts(at) {
            return Decision::GiveUp(String::new());
        }
        let window = self.policy.within_ms.saturating_mul(NS_PER_MS);
        while self
            .recent
            .front()
            .is_some_and(|&t| now_ns.saturating_sub(t) >= window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.policy.max_restarts as usize {
            return Decision::GiveUp(format!(
                "{} restarts in {} ms",
                self.recent.len(),
                self.policy.within_ms
            ));
        }
        let shift = self.recent.len().min(63) as u32;
        let backoff = self
            .policy
            .backoff_ms
            .checked_shl(shift)
            .filter(|b| b >> shift == self.policy.backoff_ms)
            .unwrap_or(u64::MAX)
            .min(self.policy.max_backoff_ms);
        self.recent.push_back(now_ns);
        Decision::Restart {
            after_ns: backoff * NS_PER_MS,
        }
    }
}

/// The trackers of stages whose failures replay the pipeline from its last
/// checkpoint: kept for the whole process, since each replay is a new run
/// (so `max_restarts` within `within_ms` holds across them).
static REPLAYS: std::sync::Mutex<Option<std::collections::HashMap<String, Tracker>>> =
    std::sync::Mutex::new(None);

/// What to do about a failure of `stage` in a checkpointed pipeline: replay
/// from the last checkpoint after a backoff, or give up.
pub(crate) fn replay_decision(
    stage: &str,
    policy: RestartPolicy,
    now_ns: u64,
    at: FailedIn,
) -> Decision {
    let mut all = REPLAYS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.get_or_insert_with(Default::default)
        .entry(stage.to_string())
        .or_insert_with(|| Tracker::new(policy))
        .on_failure(now_ns, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = NS_PER_MS;

    fn policy(
        max_restarts: u32,
        within_ms: u64,
        backoff_ms: u64,
        max_backoff_ms: u64,
    ) -> RestartPolicy {
        RestartPolicy {
            policy: Policy::OnFailure,
            max_restarts,
            within_ms,
            backoff_ms,
            max_backoff_ms,
        }
    }

    fn parse(text: &str) -> Result<RestartPolicy, Vec<String>> {
        let t: toml::Table = toml::from_str(&format!("restart = {text}")).unwrap();
        RestartPolicy::from_toml(&t["restart"])
    }

    #[test]
    fn defaults_and_parsing() {
        assert_eq!(parse("{}").unwrap(), RestartPolicy::default());
        let p = parse(r#"{ policy = "always", max_restarts = 2, backoff_ms = 5 }"#).unwrap();
        assert_eq!(p.policy, Policy::Always);
        assert_eq!((p.max_restarts, p.backoff_ms, p.within_ms), (2, 5, 60_000));
        assert_eq!(
            parse(r#"{ policy = "on-failure" }"#).unwrap().policy,
            Policy::OnFailure
        );
    }

    #[test]
    fn bad_tables_say_why() {
        let e = parse(r#"{ policy = "sometimes" }"#).unwrap_err();
        assert!(e[0].contains("unknown restart policy 'sometimes'"), "{e:?}");
        let e = parse(r#"{ policy = "always", max_restarts = 0 }"#).unwrap_err();
        assert!(e[0].contains("max_restarts = 0"), "{e:?}");
        let e = parse("{ backoff_ms = 20000 }").unwrap_err();
        assert!(e[0].contains("larger than max_backoff_ms"), "{e:?}");
        let e = parse("{ retries = 3 }").unwrap_err();
        assert!(e[0].contains("unknown field `retries`"), "{e:?}");
        let e = parse("{ max_restarts = -1 }").unwrap_err();
        assert!(!e.is_empty());
        let e = parse("3").unwrap_err();
        assert!(!e.is_empty());
        // Several problems at once.
        let e = parse(r#"{ policy = "x", backoff_ms = 5, max_backoff_ms = 1, within_ms = 0 }"#)
            .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        // `never` with max_restarts = 0 is fine (nothing to restart).
        assert!(parse(r#"{ policy = "never", max_restarts = 0 }"#).is_ok());
    }

    #[test]
    fn policies_and_init_failures() {
        let never = RestartPolicy::default();
        assert!(!never.restarts(FailedIn::Running) && !never.restarts(FailedIn::Init));
        let on = policy(5, 1000, 1, 1);
        assert!(on.restarts(FailedIn::Running) && !on.restarts(FailedIn::Init));
        let always = RestartPolicy {
            policy: Policy::Always,
            ..on
        };
        assert!(always.restarts(FailedIn::Running) && always.restarts(FailedIn::Init));
        assert_eq!(
            Tracker::new(never).on_failure(0, FailedIn::Running),
            Decision::GiveUp(String::new())
        );
        assert_eq!(
            Tracker::new(on).on_failure(0, FailedIn::Init),
            Decision::GiveUp(String::new())
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let mut t = Tracker::new(policy(6, 60_000, 100, 1000));
        let delays: Vec<u64> = (0..6)
            .map(|i| match t.on_failure(i * MS, FailedIn::Running) {
                Decision::Restart { after_ns } => after_ns / MS,
                d => panic!("{d:?}"),
            })
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            t.on_failure(10 * MS, FailedIn::Running),
            Decision::GiveUp("6 restarts in 60000 ms".to_string())
        );
    }

    #[test]
    fn the_window_slides() {
        let mut t = Tracker::new(policy(2, 1000, 10, 10_000));
        assert!(matches!(
            t.on_failure(0, FailedIn::Running),
            Decision::Restart { .. }
        ));
        assert!(
            matches!(t.on_failure(500 * MS, FailedIn::Running), Decision::Restart { after_ns } if after_ns == 20 * MS)
        );
        // Third within 1000 ms of the first: give up.
        assert!(matches!(
            t.on_failure(999 * MS, FailedIn::Running),
            Decision::GiveUp(_)
        ));
        // Once the first left the window, one more is allowed; the backoff
        // counts only what is still in the window.
        let mut t = Tracker::new(policy(2, 1000, 10, 10_000));
        t.on_failure(0, FailedIn::Running);
        t.on_failure(500 * MS, FailedIn::Running);
        assert_eq!(
            t.on_failure(1000 * MS, FailedIn::Running),
            Decision::Restart { after_ns: 20 * MS }
        );
        assert_eq!(
            t.on_failure(5000 * MS, FailedIn::Running),
            Decision::Restart { after_ns: 10 * MS }
        );
    }

    #[test]
    fn huge_backoffs_do_not_overflow() {
        let mut t = Tracker::new(policy(200, 1000, 1 << 40, 1 << 40));
        for i in 0..200 {
            assert!(
                matches!(t.on_failure(i, FailedIn::Running), Decision::Restart { after_ns } if after_ns == (1 << 40) * MS)
            );
        }
    }

    #[test]
    fn guard_turns_a_panic_into_its_message() {
        quiet_panics_on_this_thread();
        assert_eq!(guard(|| 7), Ok(7));
        let e = guard(|| -> u32 { panic!("boom {}", 3) }).unwrap_err();
        assert!(e.starts_with("panic: boom 3 (at "), "{e}");
        assert!(e.contains("restart.rs"), "{e}");
        let e = guard(|| -> u32 { std::panic::panic_any(5_u8) }).unwrap_err();
        assert!(e.starts_with("panic: (a panic without a message)"), "{e}");
    }

    proptest! {
        /// Against a model: never more than `max_restarts` restarts in any
        /// window of `within_ms`; every backoff within [backoff, cap]; a
        /// failure is refused only when the window is full.
        #[test]
        fn restarts_stay_within_the_window(
            max in 1u32..6,
            within in 1u64..50,
            backoff in 0u64..20,
            extra in 0u64..100,
            gaps in proptest::collection::vec(0u64..30, 1..60),
        ) {
            let p = policy(max, within, backoff, backoff + extra);
            let mut t = Tracker::new(p);
            let mut now = 0;
            let mut restarts: Vec<u64> = Vec::new();
            for g in gaps {
                now += g * MS;
                let in_window = restarts.iter().filter(|&&r| now - r < within * MS).count();
                match t.on_failure(now, FailedIn::Running) {
                    Decision::Restart { after_ns } => {
                        prop_assert!(in_window < max as usize);
                        let expected = (backoff << in_window.min(63)).min(backoff + extra);
                        prop_assert_eq!(after_ns, expected * MS);
                        restarts.push(now);
                    }
                    Decision::GiveUp(why) => {
                        prop_assert_eq!(in_window, max as usize);
                        prop_assert_eq!(why, format!("{max} restarts in {within} ms"));
                    }
                }
            }
            for (i, &r) in restarts.iter().enumerate() {
                let within_window = restarts[i..].iter().filter(|&&s| s - r < within * MS).count();
                prop_assert!(within_window <= max as usize);
            }
        }
    }
}
