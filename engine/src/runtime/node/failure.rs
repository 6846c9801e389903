//! A node whose stage failed: its restart policy's decision, the last
//! calls into the failed stage, and its replacement once the backoff has
//! passed.

use super::*;

/// A node's restart state (see [`crate::runtime::restart`]).
pub(crate) struct Restart {
    pub(crate) tracker: Tracker,
    pub(crate) rebuild: Rebuild,
    /// While `Restarting`: when to call `init` on the new stage.
    pub(super) until_ns: u64,
}

impl Restart {
    pub(crate) fn new(tracker: Tracker, rebuild: Rebuild) -> Restart {
        Restart {
            tracker,
            rebuild,
            until_ns: 0,
        }
    }
}

impl Node {
    pub(super) fn fail(&mut self, message: String) {
        self.report.failure = Some(message);
        if let Some(line) = self.report.failure_line() {
            log::error!("{line}");
        }
        self.state = State::Failed;
    }

    /// The stage failed (`message` says how): restart it when its policy
    /// allows, counting the `in_flight` element (received, already
    /// released, not yet counted) as failed; otherwise fail it for good and
    /// raise the stop flag, so that the sources finish and the pipeline
    /// drains. Returns whether the stage is restarting.
    #[cold]
    #[inline(never)]
    pub(super) fn on_failure(
        &mut self,
        ctx: &StepCtx<'_>,
        message: String,
        in_flight: u64,
        at: FailedIn,
    ) -> bool {
        // With checkpoints, a restart replays the whole pipeline from its
        // last checkpoint (nothing is lost: the element in flight is read
        // again); without, the stage restarts fresh on its own.
        let barriers = self.timing.as_ref().and_then(|t| t.barriers.clone());
        let decision = match (&mut self.restart, &barriers) {
            (Some(r), Some(_)) => crate::runtime::restart::replay_decision(
                &self.info.name,
                *r.tracker.policy(),
                now_ns(),
                at,
            ),
            (Some(r), None) => r.tracker.on_failure(now_ns(), at),
            (None, _) => Decision::GiveUp(String::new()),
        };
        if let (Decision::Restart { after_ns }, Some(b)) = (&decision, &barriers) {
            log::warn!(
                "stage '{}' failed ({message}); replaying the pipeline from its last checkpoint in {} ms",
                self.report.name,
                after_ns / 1_000_000
            );
            self.report
                .fail_with(Reason::new(RESTART_REASON, message.clone()), in_flight);
            self.report.restarts += 1;
            b.request_replay(crate::checkpoint::Replay {
                stage: self.info.name.clone(),
                reason: message.clone(),
                after_ms: after_ns / 1_000_000,
            });
            self.fail(format!("{message} (replaying from the last checkpoint)"));
            ctx.stop.store(true, Ordering::Relaxed);
            return false;
        }
        let after_ns = match decision {
            Decision::Restart { after_ns } => after_ns,
            Decision::GiveUp(why) => {
                if in_flight > 0 {
                    self.report
                        .drop_with(Reason::new("stage failed", message.clone()));
                }
                self.fail(if why.is_empty() {
                    message
                } else {
                    format!("after {why}: {message}")
                });
                ctx.stop.store(true, Ordering::Relaxed);
                return false;
            }
        };
        log::warn!(
            "stage '{}' failed ({message}); restarting in {} ms",
            self.report.name,
            after_ns / 1_000_000
        );
        self.report
            .fail_with(Reason::new(RESTART_REASON, message), in_flight);
        self.retire_stage();
        let Some(r) = self.restart.as_mut() else {
            unreachable!("a restart decision needs a restart policy")
        };
        let rebuild = Arc::clone(&r.rebuild);
        match guard(|| rebuild()).and_then(|built| built) {
            Ok(stage) => {
                r.until_ns = now_ns().saturating_add(after_ns);
                self.stage = stage;
                self.next_tick = 0;
                self.report.restarts += 1;
                self.state = State::Restarting;
                true
            }
            Err(m) => {
                self.fail(format!("cannot rebuild the stage for a restart: {m}"));
                ctx.stop.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    /// The last calls into a failed stage before its replacement: what it
    /// counted, what a sink still held (failed: lost with the stage), its
    /// teardown.
    pub(super) fn retire_stage(&mut self) {
        let (stage, report) = (&mut self.stage, &mut self.report);
        let _ = guard(|| match stage {
            Stage::Source(s) => {
                merge_counts(&mut report.counts, s.counts());
                s.teardown();
            }
            Stage::Processor(p) => {
                merge_counts(&mut report.counts, p.counts());
                p.teardown();
            }
            Stage::Router(r, _) => r.teardown(),
            Stage::Sink(s) => {
                merge_counts(&mut report.counts, s.counts());
                let left = s.undelivered();
                report.fail_with(Reason::new(RESTART_REASON, "held by the sink"), left);
                s.teardown();
            }
        });
    }

    /// `Restarting`: once the backoff has passed (at once for a source
    /// when the pipeline is stopping), the new stage gets its `init`.
    pub(super) fn restart_when_due(&mut self, ctx: &StepCtx<'_>) -> bool {
        let due = self.restart.as_ref().map_or(0, |r| r.until_ns);
        let stopping = matches!(self.stage, Stage::Source(_)) && ctx.stop.load(Ordering::Relaxed);
        if now_ns() < due && !stopping {
            return false;
        }
        self.state = State::New;
        true
    }
}
