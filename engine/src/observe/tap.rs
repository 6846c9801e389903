//! Taps: copies of a port's elements for readers outside the pipeline
//! (`mux` subscribers, `dataplane tap`), taken without ever slowing the
//! port down.
//!
//! A [`TapPoint`] is shared by one producer (a worker, through its
//! [`TapWriter`]) and the control endpoint's thread. While nobody reads,
//! the producer checks one atomic per batch and copies nothing. While
//! someone reads, it copies each payload of the batch into a [`Chunk`] and
//! offers the chunk to the point with a `try_lock`: a worker never waits on
//! the reader. The point keeps a bounded log of chunks; when the reader
//! falls behind, the oldest chunks are discarded and counted (every chunk
//! carries the sequence number of its first element, so the reader sees the
//! gap and charges it to each subscriber that missed it).
//!
//! Payloads are copied, not referenced: a reader that holds elements must
//! never hold arena slots, or a slow client could starve the pipeline of
//! slots.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Most elements a point's log holds before it discards its oldest chunks.
pub const LOG_ELEMENTS: usize = 1 << 16;
/// Most payload bytes a point's log holds.
pub const LOG_BYTES: usize = 32 << 20;

/// One batch of copied payloads, in order.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Sequence number (elements copied at this point since the run began)
    /// of the first element.
    pub first: u64,
    data: Vec<u8>,
    /// End offset of each element in `data`.
    ends: Vec<u32>,
}

impl Chunk {
    /// Elements in the chunk.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the chunk holds no element.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`th payload.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }

    /// The payloads in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    fn push(&mut self, payload: &[u8]) {
        self.data.extend_from_slice(payload);
        self.ends.push(self.data.len() as u32);
    }

    fn bytes(&self) -> usize {
        self.data.len()
    }

    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
}

/// Chunks kept for reuse: a producer fills warm, already sized buffers
/// instead of growing a fresh allocation every batch.
const SPARE_CHUNKS: usize = 16;

#[derive(Debug, Default)]
struct Log {
    chunks: VecDeque<Chunk>,
    elements: usize,
    bytes: usize,
    /// Elements discarded because the reader fell behind.
    overrun: u64,
    /// Emptied chunks, for the producer's next batches.
    spare: Vec<Chunk>,
}

impl Log {
    fn keep_spare(&mut self, mut chunk: Chunk) {
        if self.spare.len() < SPARE_CHUNKS {
            chunk.clear();
            self.spare.push(chunk);
        }
    }
}

/// Where a port's (or a `mux` sink's) elements are copied for readers.
#[derive(Debug, Default)]
pub struct TapPoint {
    /// Attached readers; zero means the producer copies nothing.
    readers: AtomicUsize,
    log: Mutex<Log>,
}

impl TapPoint {
    /// A new point with no reader.
    pub fn new() -> Arc<TapPoint> {
        Arc::default()
    }

    /// Whether anyone reads (the producer copies only then).
    #[inline]
    pub fn is_watched(&self) -> bool {
        self.readers.load(Ordering::Relaxed) > 0
    }

    /// Readers attached now.
    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::Relaxed)
    }

    /// One more reader: the producer starts copying at its next batch.
    pub fn attach(&self) {
        self.readers.fetch_add(1, Ordering::Relaxed);
    }

    /// One reader fewer; with none left, whatever the log holds is dropped.
    pub fn detach(&self) {
        if self.readers.fetch_sub(1, Ordering::Relaxed) == 1 {
            let mut log = self.lock();
            let overrun = log.overrun;
            let spare = std::mem::take(&mut log.spare);
            *log = Log {
                overrun,
                spare,
                ..Log::default()
            };
        }
    }

    /// Takes every chunk the producer offered since the last call, oldest
    /// first (gaps between their sequence numbers were discarded).
    pub fn drain(&self) -> Vec<Chunk> {
        let mut log = self.lock();
        log.elements = 0;
        log.bytes = 0;
        log.chunks.drain(..).collect()
    }

    /// Elements in the log, not drained yet.
    pub fn pending(&self) -> usize {
        self.lock().elements
    }

    /// Gives chunks the reader is done with back to the producer.
    pub fn recycle(&self, chunks: impl IntoIterator<Item = Chunk>) {
        let mut log = self.lock();
        for c in chunks {
            log.keep_spare(c);
        }
    }

    /// Elements discarded so far because the reader fell behind.
    pub fn overrun(&self) -> u64 {
        self.lock().overrun
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        // A panic while holding the lock leaves a consistent log (every
        // update is a push or pop): keep using it.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The producing side of a [`TapPoint`], owned by one worker.
#[derive(Debug)]
pub struct TapWriter {
    point: Arc<TapPoint>,
    /// The batch being copied (kept when the point was busy).
    chunk: Chunk,
    /// Sequence number of the next element copied.
    next: u64,
    /// Whether this batch copies (the point was watched when it began).
    copying: bool,
}

impl TapWriter {
    /// A writer into `point`.
    pub fn new(point: Arc<TapPoint>) -> TapWriter {
        TapWriter {
            point,
            chunk: Chunk::default(),
            next: 0,
            copying: false,
        }
    }

    /// The point written to.
    pub fn point(&self) -> &Arc<TapPoint> {
        &self.point
    }

    /// Starts a batch; returns whether its elements are to be copied (one
    /// atomic load).
    #[inline]
    pub fn begin(&mut self) -> bool {
        self.copying = self.point.is_watched();
        self.copying
    }

    /// Copies one payload of the batch (only after `begin` returned true).
    #[inline]
    pub fn push(&mut self, payload: &[u8]) {
        debug_assert!(self.copying);
        if self.chunk.is_empty() {
            self.chunk.first = self.next;
        }
        self.chunk.push(payload);
        self.next += 1;
    }

    /// Ends a batch: offers what was copied to the point without waiting.
    /// When the reader holds the lock, the chunk is kept and offered with
    /// the next batch (past the log's bounds, it is discarded and counted).
    pub fn commit(&mut self) {
        if !self.copying || self.chunk.is_empty() {
            return;
        }
        let Ok(log) = self.point.log.try_lock() else {
            if self.chunk.len() > LOG_ELEMENTS || self.chunk.bytes() > LOG_BYTES {
                // Counted as a gap by the reader (the sequence moved on).
                self.chunk = Chunk::default();
            }
            return;
        };
        let chunk = std::mem::take(&mut self.chunk);
        if let Some(next) = Self::append(log, chunk) {
            self.chunk = next;
        }
    }

    /// Offers what is left, waiting for the lock if need be (the reader
    /// holds it only to swap the log out): the producer's last batch.
    pub fn finish(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.chunk);
        Self::append(self.point.lock(), chunk);
    }

    /// Appends a chunk to the log (discarding its oldest past the bounds);
    /// returns a spare chunk for the next batch, if one is kept.
    fn append(mut log: std::sync::MutexGuard<'_, Log>, chunk: Chunk) -> Option<Chunk> {
        log.elements += chunk.len();
        log.bytes += chunk.bytes();
        log.chunks.push_back(chunk);
        while log.elements > LOG_ELEMENTS || log.bytes > LOG_BYTES {
            let Some(old) = log.chunks.pop_front() else {
                break;
            };
            log.elements -= old.len();
            log.bytes -= old.bytes();
            log.overrun += old.len() as u64;
            log.keep_spare(old);
        }
        log.spare.pop()
    }
}

impl Drop for TapWriter {
    /// An edge's writer goes with its edge when the node finishes, before
    /// the node says so: its last batch is in the log by then.
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_nothing_while_nobody_reads() {
        let point = TapPoint::new();
        let mut w = TapWriter::new(Arc::clone(&point));
        assert!(!w.begin());
        w.commit();
        point.attach();
        assert!(w.begin());
        w.push(b"a");
        w.push(b"bc");
        w.commit();
        let chunks = point.drain();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].iter().collect::<Vec<_>>(), [&b"a"[..], b"bc"]);
        assert_eq!(chunks[0].first, 0);
    }

    #[test]
    fn a_reader_that_falls_behind_sees_a_counted_gap() {
        let point = TapPoint::new();
        point.attach();
        let mut w = TapWriter::new(Arc::clone(&point));
        let batches = LOG_ELEMENTS / 64 + 10;
        for _ in 0..batches {
            assert!(w.begin());
            for _ in 0..64 {
                w.push(b"x");
            }
            w.commit();
        }
        let chunks = point.drain();
        let kept: usize = chunks.iter().map(Chunk::len).sum();
        assert!(kept <= LOG_ELEMENTS);
        assert_eq!(kept as u64 + point.overrun(), (batches * 64) as u64);
        // The first chunk kept starts where the discarded ones ended.
        assert_eq!(chunks[0].first, point.overrun());
    }

    #[test]
    fn a_busy_point_keeps_the_batch_for_the_next_offer() {
        let point = TapPoint::new();
        point.attach();
        let mut w = TapWriter::new(Arc::clone(&point));
        let guard = point.log.lock().unwrap();
        w.begin();
        w.push(b"1");
        w.commit();
        drop(guard);
        w.begin();
        w.push(b"2");
        w.commit();
        let chunks = point.drain();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].iter().collect::<Vec<_>>(), [&b"1"[..], b"2"]);
        // The last batch of a finishing producer is never left behind.
        let guard = point.log.lock().unwrap();
        w.begin();
        w.push(b"3");
        w.commit();
        drop(guard);
        drop(w);
        assert_eq!(point.drain()[0].get(0), b"3");
    }

    #[test]
    fn the_last_reader_leaving_empties_the_log() {
        let point = TapPoint::new();
        point.attach();
        let mut w = TapWriter::new(Arc::clone(&point));
        w.begin();
        w.push(b"1");
        w.commit();
        point.detach();
        assert!(point.drain().is_empty());
        assert!(!w.begin());
    }
}

/// A `mux` sink's point: the producer hands over references to arena slots
/// (a refcount bump and a `u32` per element) instead of copying payloads,
/// within a bound on how many the reader may hold; the reader reads the
/// payloads from the arena on its own thread and releases them. A worker
/// thus neither reads nor writes payload bytes for subscribers.
#[derive(Debug, Default)]
pub struct RefPoint {
    readers: AtomicUsize,
    /// References handed over and not yet released by the reader.
    held: AtomicUsize,
    /// Most references the reader may hold: the arena's slots beyond what
    /// the pipeline itself needs (set when the run starts; 0 until then).
    cap: AtomicUsize,
    log: Mutex<VecDeque<RefBatch>>,
}

/// References to one batch's elements, in order.
#[derive(Debug, Default)]
pub struct RefBatch {
    /// Sequence number of the first element (elements offered while
    /// watched; a jump is what the bound made the producer skip).
    pub first: u64,
    /// The references, each owned by the batch.
    pub handles: Vec<crate::arena::Handle>,
}

impl RefPoint {
    /// A new point with no reader.
    pub fn new() -> Arc<RefPoint> {
        Arc::default()
    }

    /// Sets how many references the reader may hold.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// Whether anyone reads.
    #[inline]
    pub fn is_watched(&self) -> bool {
        self.readers.load(Ordering::Relaxed) > 0
    }

    /// Readers attached now.
    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::Relaxed)
    }

    /// References the reader holds now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// One more reader.
    pub fn attach(&self) {
        self.readers.fetch_add(1, Ordering::Relaxed);
    }

    /// One reader fewer. The caller (the reader) then drains and releases
    /// what the log holds when it was the last.
    pub fn detach(&self) {
        self.readers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes every batch offered since the last call, oldest first.
    pub fn drain(&self) -> Vec<RefBatch> {
        self.lock().drain(..).collect()
    }

    /// Says that the reader released `n` references.
    pub fn released(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<RefBatch>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The producing side of a [`RefPoint`] (the `mux` sink).
#[derive(Debug)]
pub struct RefWriter {
    point: Arc<RefPoint>,
    batch: RefBatch,
    next: u64,
}

impl RefWriter {
    /// A writer into `point`.
    pub fn new(point: Arc<RefPoint>) -> RefWriter {
        RefWriter {
            point,
            batch: RefBatch::default(),
            next: 0,
        }
    }

    /// The point written to.
    pub fn point(&self) -> &Arc<RefPoint> {
        &self.point
    }

    /// Whether the next element may be handed over: someone reads, and the
    /// reader holds fewer references than its bound. Counts the element in
    /// the sequence either way (a skipped one is a gap the reader counts).
    #[inline]
    pub fn offer(&mut self) -> bool {
        if self.batch.handles.is_empty() {
            self.batch.first = self.next;
        }
        self.next += 1;
        let held = self.point.held.load(Ordering::Relaxed) + self.batch.handles.len();
        if held < self.point.cap.load(Ordering::Relaxed) {
            true
        } else {
            // The gap starts here: the batch so far goes out first.
            self.next_batch_after_gap();
            false
        }
    }

    #[cold]
    fn next_batch_after_gap(&mut self) {
        if !self.batch.handles.is_empty() {
            self.flush_blocking();
        }
        self.batch.first = self.next;
    }

    /// Hands over a reference taken for the element just offered.
    #[inline]
    pub fn push(&mut self, handle: crate::arena::Handle) {
        self.batch.handles.push(handle);
    }

    /// Ends a batch: offers it without waiting (kept for the next batch
    /// when the reader holds the lock).
    pub fn commit(&mut self) {
        if self.batch.handles.is_empty() {
            return;
        }
        if let Ok(mut log) = self.point.log.try_lock() {
            hand_over(&self.point, &mut self.batch, &mut log);
        }
    }

    /// Offers what is left, waiting for the lock if need be.
    pub fn flush_blocking(&mut self) {
        if self.batch.handles.is_empty() {
            return;
        }
        let mut log = self.point.lock();
        hand_over(&self.point, &mut self.batch, &mut log);
    }
}

/// Moves `batch` into the log, counting its references as held.
fn hand_over(point: &RefPoint, batch: &mut RefBatch, log: &mut VecDeque<RefBatch>) {
    let n = batch.handles.len();
    point.held.fetch_add(n, Ordering::Relaxed);
    let first = batch.first;
    log.push_back(std::mem::replace(
        batch,
        RefBatch {
            first: first + n as u64,
            handles: Vec::with_capacity(n),
        },
    ));
}
