//! A source node's step: pull into fresh slots, stamp, send.

use super::*;

impl Node {
    /// Fills slots from the source; returns true when it is exhausted.
    pub(super) fn step_source(&mut self, ctx: &mut StepCtx<'_>, moved: &mut bool) -> bool {
        if ctx.stop.load(Ordering::Relaxed) {
            return true;
        }
        let budget = self.out_budget().min(ctx.batch);
        let t0 = self.report.service.is_some().then(now_ns);
        let before = self.seq;
        let event_time = self
            .timing
            .as_ref()
            .is_some_and(|t| t.event_time().is_some());
        // One guard per batch; the pending slot stays for the next pull.
        let filled = guard(|| {
            if event_time {
                self.fill_with_event_time(ctx, moved, budget)
            } else {
                self.fill_batch(ctx, moved, budget)
            }
        });
        let done = match filled {
            Ok(done) => done,
            Err(m) => {
                if event_time {
                    // What the batch sent before the panic is `seq - before`.
                    self.report.count_sent(0, self.seq - before);
                } else {
                    // What the batch sealed or rejected before the panic
                    // still goes out, or is counted, once.
                    self.settle_batch(ctx);
                }
                *moved = true;
                !self.on_failure(ctx, m, 0, FailedIn::Running)
            }
        };
        if let (Some(t0), Some(h)) = (t0, self.report.service.as_mut()) {
            let n = self.seq - before;
            if let Some(per) = (now_ns() - t0).checked_div(n) {
                h.saturating_record_n(per.max(1), n);
            }
        }
        done
    }

    /// Lets the source fill up to `budget` slots in one call
    /// ([`Source::pull_batch`]), then sends what it sealed.
    fn fill_batch(&mut self, ctx: &mut StepCtx<'_>, moved: &mut bool, budget: usize) -> bool {
        let Stage::Source(source) = &mut self.stage else {
            unreachable!("step_source on a source")
        };
        // Sized once: the batch never grows past its first size.
        self.filled.reserve(budget);
        let mut slots = SlotBatch::new(
            ctx.arena,
            ctx.pool,
            &mut self.pending,
            &mut self.seq,
            &mut self.filled,
            &mut self.rejected,
            self.info.index as u16,
            budget,
        );
        let pulled = source.pull_batch(&mut slots);
        let done = slots.done;
        *moved |= self.settle_batch(ctx);
        match pulled {
            Ok(()) => done,
            // A `pull_batch` of its own may return what `fill_all` counts
            // for `pull`: the same drop, with its reason.
            Err(StageError::Rejected(reason) | StageError::Failed(reason)) => {
                self.report.drop_with(reason);
                *moved = true;
                done
            }
            Err(StageError::Fatal(m)) => {
                // Restarting: not done (the new source starts over).
                *moved = true;
                !self.on_failure(ctx, m, 0, FailedIn::Running)
            }
        }
    }

    /// Sends the elements the source sealed in this batch on port 0 and
    /// counts them, and counts the pulls it rejected; true if there was
    /// any. Both lists are empty afterwards, so nothing is counted twice.
    fn settle_batch(&mut self, ctx: &mut StepCtx<'_>) -> bool {
        let sent = self.filled.len() as u64;
        ring::fan_out_all(
            ctx.arena,
            &mut self.filled,
            &mut self.ports,
            0,
            self.refusing,
        );
        if sent > 0 {
            self.report.count_sent(0, sent);
        }
        let rejected = !self.rejected.is_empty();
        for reason in self.rejected.drain(..) {
            self.report.drop_with(reason);
        }
        sent > 0 || rejected
    }

    /// Pulls up to `budget` elements, one `pull` each, from a source that
    /// declares `event_time`: each element's timestamp is read (an
    /// unreadable one sends it to the `error` port) and the highest is kept.
    fn fill_with_event_time(
        &mut self,
        ctx: &mut StepCtx<'_>,
        moved: &mut bool,
        budget: usize,
    ) -> bool {
        let Stage::Source(source) = &mut self.stage else {
            unreachable!("step_source on a source")
        };
        let event_time = self.timing.as_ref().and_then(|t| t.event_time());
        let mut max_ts = 0;
        // One clock read per batch, on the first element that has no stamp
        // of its own: every element of the batch is stamped with it (they
        // were all accepted within this batch, microseconds).
        let mut batch_ns = 0;
        let mut sent = 0;
        let mut done = false;
        for _ in 0..budget {
            if self.pending.is_none() {
                match ctx.arena.alloc_fresh(ctx.pool) {
                    Some(h) => self.pending = Some(h),
                    // Arena exhausted: wait for downstream to release.
                    None => break,
                }
            }
            let handle = self.pending.as_mut().expect("just ensured");
            let mut writer = SlotWriter::new(ctx.arena, handle);
            let pulled = source.pull(&mut writer);
            let (len, stamped, content_type) = (writer.len, writer.ingest_ns, writer.content_type);
            let mut pulled = pulled;
            if let (Some(et), Ok(Pull::Ready)) = (event_time, &pulled) {
                match et.extract(&writer.buffer()[..len]).map_err(Reason::from) {
                    Ok(ts) => max_ts = max_ts.max(ts),
                    Err(reason) => match self.error_port {
                        Some(port) => {
                            let fresh = self.pending.take().expect("pending slot");
                            let meta = Meta {
                                seq: self.seq,
                                ingest_ns: now_ns(),
                                source: self.info.index as u16,
                                content_type,
                                reason: Some(reason.kind),
                            };
                            self.seq += 1;
                            let h = ctx.arena.seal(fresh, len, meta);
                            self.report.divert(reason);
                            emit_port(&mut self.ports, port, h, ctx.arena, self.refusing);
                            self.report.count_sent(port, 1);
                            *moved = true;
                            continue;
                        }
                        None => pulled = Err(StageError::Rejected(reason)),
                    },
                }
            }
            match pulled {
                Ok(Pull::Ready) => {
                    let ingest_ns = if stamped != 0 {
                        stamped
                    } else {
                        if batch_ns == 0 {
                            batch_ns = now_ns();
                        }
                        batch_ns
                    };
                    let meta = Meta {
                        seq: self.seq,
                        ingest_ns,
                        source: self.info.index as u16,
                        content_type,
                        reason: None,
                    };
                    self.seq += 1;
                    let fresh = self.pending.take().expect("pending slot");
                    let h = ctx.arena.seal(fresh, len, meta);
                    emit_port(&mut self.ports, 0, h, ctx.arena, self.refusing);
                    sent += 1;
                }
                Ok(Pull::Pending) => break,
                Ok(Pull::Done) => {
                    done = true;
                    break;
                }
                Err(StageError::Rejected(reason) | StageError::Failed(reason)) => {
                    // Nothing was sent; the slot is reused for the next pull.
                    self.report.drop_with(reason);
                    *moved = true;
                }
                Err(StageError::Fatal(m)) => {
                    // Restarting: not done (the new source starts over).
                    done = !self.on_failure(ctx, m, 0, FailedIn::Running);
                    *moved = true;
                    break;
                }
            }
        }
        if sent > 0 {
            self.report.count_sent(0, sent);
            *moved = true;
        }
        if let Some(t) = self.timing.as_mut() {
            t.saw(max_ts);
        }
        done
    }
}
