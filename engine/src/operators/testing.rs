//! Test helpers: run one operator on payloads without a pipeline, through a
//! small private arena, the way the runtime calls it.

use crate::arena::{Arena, ContentType, Handle, LocalPool, Meta};
use crate::stage::{
    Element, Emitter, Flush, Outlet, PortMask, Processor, Pull, Router, Sink, SlotBatch,
    SlotWriter, Source, StageError, StageInfo, Verdict,
};

/// A private arena and pool for driving one operator.
pub(crate) struct Harness {
    arena: Arena,
    pool: LocalPool,
    seq: u64,
}

/// What one `process` call did.
pub(crate) struct Processed {
    pub(crate) verdict: Result<Verdict, StageError>,
    /// The input element's payload afterwards.
    pub(crate) payload: Vec<u8>,
    /// Payloads of new elements, in order.
    pub(crate) emitted: Vec<Vec<u8>>,
}

impl Harness {
    pub(crate) fn new(slot_size: usize) -> Harness {
        Harness {
            arena: Arena::new(64, slot_size),
            pool: LocalPool::new(8),
            seq: 0,
        }
    }

    /// The harness's arena and pool (to read and release handles a stage
    /// kept).
    pub(crate) fn arena_and_pool(&mut self) -> (&Arena, &mut LocalPool) {
        (&self.arena, &mut self.pool)
    }

    pub(crate) fn info(&self) -> StageInfo {
        StageInfo {
            name: "test.node".to_string(),
            index: 0,
            slot_size: self.arena.slot_size(),
        }
    }

    fn element(&mut self, payload: &[u8], ingest_ns: u64) -> Handle {
        let mut h = self.arena.alloc(&mut self.pool).expect("a free slot");
        self.arena
            .write_payload(&mut h, payload, &mut self.pool)
            .expect("payload fits");
        self.arena.set_meta(
            &mut h,
            Meta {
                seq: self.seq,
                ingest_ns,
                content_type: ContentType::Json,
                ..Meta::default()
            },
        );
        self.seq += 1;
        h
    }

    fn drain(&mut self, handles: Vec<Handle>) -> Vec<Vec<u8>> {
        handles
            .into_iter()
            .map(|h| {
                let p = self.arena.payload(&h).to_vec();
                self.arena.release(h, &mut self.pool);
                p
            })
            .collect()
    }

    /// Runs `process` on a new element with `payload` and ingest time
    /// `ingest_ns`.
    pub(crate) fn process_at(
        &mut self,
        p: &mut dyn Processor,
        payload: &[u8],
        ingest_ns: u64,
    ) -> Processed {
        let mut handle = self.element(payload, ingest_ns);
        let mut out = Vec::new();
        let mut seq = 0;
        let mut room = usize::MAX;
        let verdict = {
            let mut push = |h: Handle| out.push(h);
            p.process(&mut Element {
                arena: &self.arena,
                handle: &mut handle,
                pool: &mut self.pool,
                outlet: Some(Outlet {
                    out: &mut push,
                    source: 0,
                    seq: &mut seq,
                    room: &mut room,
                }),
            })
        };
        let after = self.arena.payload(&handle).to_vec();
        self.arena.release(handle, &mut self.pool);
        Processed {
            verdict,
            payload: after,
            emitted: self.drain(out),
        }
    }

    /// Runs `process` with the current time as ingest time.
    pub(crate) fn process(&mut self, p: &mut dyn Processor, payload: &[u8]) -> Processed {
        self.process_at(p, payload, crate::clock::now_ns())
    }

    fn emitter_call(
        &mut self,
        f: impl FnOnce(&mut Emitter<'_>) -> Result<Flush, StageError>,
    ) -> (Result<Flush, StageError>, Vec<Vec<u8>>) {
        let mut out = Vec::new();
        let mut seq = 0;
        let r = {
            let mut push = |h: Handle| out.push(h);
            let mut e = Emitter {
                arena: &self.arena,
                pool: &mut self.pool,
                out: &mut push,
                source: 0,
                seq: &mut seq,
                room: usize::MAX,
            };
            f(&mut e)
        };
        (r, self.drain(out))
    }

    /// Runs `tick(now_ns)`, again while it holds output (the runtime's
    /// later steps); returns the emitted payloads.
    pub(crate) fn tick(&mut self, p: &mut dyn Processor, now_ns: u64) -> Vec<Vec<u8>> {
        self.until_done(|h| h.emitter_call(|e| p.tick(now_ns, e)))
    }

    /// Runs `finish` until it is done; returns the emitted payloads.
    pub(crate) fn finish(&mut self, p: &mut dyn Processor) -> Vec<Vec<u8>> {
        self.until_done(|h| h.emitter_call(|e| p.finish(e)))
    }

    fn until_done(
        &mut self,
        mut call: impl FnMut(&mut Self) -> (Result<Flush, StageError>, Vec<Vec<u8>>),
    ) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let (r, out) = call(self);
            let more = r.expect("the call succeeds") == Flush::More;
            assert!(!more || !out.is_empty(), "held output without progress");
            all.extend(out);
            if !more {
                return all;
            }
        }
    }

    /// Routes an element with `payload`.
    pub(crate) fn route(
        &mut self,
        r: &mut dyn Router,
        payload: &[u8],
    ) -> Result<PortMask, StageError> {
        let mut handle = self.element(payload, 1);
        let mut mask = PortMask::default();
        let res = r.route(
            &Element::input(&self.arena, &mut handle, &mut self.pool),
            &mut mask,
        );
        self.arena.release(handle, &mut self.pool);
        res.map(|()| mask)
    }

    /// Pushes an element with `payload` (and `reason` in its metadata).
    pub(crate) fn push(
        &mut self,
        s: &mut dyn Sink,
        payload: &[u8],
        reason: Option<&'static str>,
    ) -> Result<(), StageError> {
        let mut handle = self.element(payload, 1);
        let mut meta = self.arena.meta(&handle);
        meta.reason = reason;
        self.arena.set_meta(&mut handle, meta);
        let r = s.push(&Element::input(&self.arena, &mut handle, &mut self.pool));
        self.arena.release(handle, &mut self.pool);
        r
    }

    /// Pulls once from a source: the outcome and, when ready, the payload.
    pub(crate) fn pull(&mut self, s: &mut dyn Source) -> (Result<Pull, StageError>, Vec<u8>) {
        let mut fresh = self.arena.alloc_fresh(&mut self.pool).expect("a free slot");
        let mut writer = SlotWriter::new(&self.arena, &mut fresh);
        let r = s.pull(&mut writer);
        let len = writer.len;
        let meta = Meta {
            ingest_ns: writer.ingest_ns,
            content_type: writer.content_type,
            ..Meta::default()
        };
        let handle = self.arena.seal(fresh, len, meta);
        let payload = self.arena.payload(&handle).to_vec();
        self.arena.release(handle, &mut self.pool);
        (r, payload)
    }

    /// Pulls until `Done`, an error or `limit` elements; `Pending` is
    /// retried up to `patience` times in a row (with a short sleep).
    pub(crate) fn pull_all(
        &mut self,
        s: &mut dyn Source,
        limit: usize,
        patience: usize,
    ) -> (Vec<Vec<u8>>, Vec<StageError>) {
        let mut got = Vec::new();
        let mut errors = Vec::new();
        let mut idle = 0;
        while got.len() < limit {
            match self.pull(s) {
                (Ok(Pull::Ready), p) => {
                    idle = 0;
                    got.push(p);
                }
                (Ok(Pull::Pending), _) => {
                    idle += 1;
                    if idle > patience {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                (Ok(Pull::Done), _) => break,
                (Err(e), _) => {
                    let fatal = matches!(e, StageError::Fatal(_));
                    errors.push(e);
                    if fatal {
                        break;
                    }
                }
            }
        }
        (got, errors)
    }

    /// Pulls through [`Source::pull_batch`], `room` slots a call, as the
    /// runtime does, until `Done`, a fatal error or `limit` elements: the
    /// payloads, and the errors (rejected pulls as `Rejected`).
    pub(crate) fn pull_batches(
        &mut self,
        s: &mut dyn Source,
        room: usize,
        limit: usize,
    ) -> (Vec<Vec<u8>>, Vec<StageError>) {
        let (mut got, mut errors) = (Vec::new(), Vec::new());
        let (mut pending, mut filled, mut rejected) = (None, Vec::new(), Vec::new());
        while got.len() < limit {
            let mut batch = SlotBatch::new(
                &self.arena,
                &mut self.pool,
                &mut pending,
                &mut self.seq,
                &mut filled,
                &mut rejected,
                0,
                room,
            );
            let pulled = s.pull_batch(&mut batch);
            let done = batch.done;
            for h in filled.drain(..) {
                got.push(self.arena.payload(&h).to_vec());
                self.arena.release(h, &mut self.pool);
            }
            errors.extend(rejected.drain(..).map(StageError::Rejected));
            if let Err(e) = pulled {
                errors.push(e);
                break;
            }
            if done {
                break;
            }
        }
        if let Some(fresh) = pending {
            self.arena.discard_fresh(fresh, &mut self.pool);
        }
        (got, errors)
    }
}

/// `payloads` as UTF-8 strings, for readable assertions.
pub(crate) fn strings(payloads: &[Vec<u8>]) -> Vec<String> {
    payloads
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}
