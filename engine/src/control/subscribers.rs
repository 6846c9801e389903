//! Subscribers: clients reading a tap point (a `mux` sink or a tapped
//! port), each with a predicate, a bounded `drop_oldest` queue and its own
//! counters. Runs on the control endpoint's thread only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::arena::{Arena, LocalPool};
use crate::metrics::{LiveCounters, LiveState};
use crate::observe::tap::{Chunk, RefBatch, RefPoint, TapPoint};
use crate::operators::Filter;

use super::prometheus::SubscriberCounts;

/// Bytes a subscriber's queue may hold, whatever its element count.
pub const QUEUE_BYTES: usize = 4 << 20;

/// Identifies a subscriber (its connection's token).
pub type SubId = usize;

/// Where a subscriber's elements come from.
#[derive(Clone)]
pub enum Feed {
    /// Copies of a port's payloads (`/tap`).
    Copies(Arc<TapPoint>),
    /// References to a `mux` sink's slots (`/subscribe`), read from `arena`.
    Refs(Arc<RefPoint>, Arc<Arena>),
}

impl Feed {
    fn key(&self) -> usize {
        match self {
            Feed::Copies(p) => Arc::as_ptr(p) as usize,
            Feed::Refs(p, _) => Arc::as_ptr(p) as usize,
        }
    }

    fn readers(&self) -> usize {
        match self {
            Feed::Copies(p) => p.readers(),
            Feed::Refs(p, _) => p.readers(),
        }
    }

    fn attach(&self) {
        match self {
            Feed::Copies(p) => p.attach(),
            Feed::Refs(p, _) => p.attach(),
        }
    }

    fn drain(&self) -> Vec<Batch> {
        match self {
            Feed::Copies(p) => p.drain().into_iter().map(Batch::Copies).collect(),
            Feed::Refs(p, _) => p.drain().into_iter().map(Batch::Refs).collect(),
        }
    }
}

/// One drained batch of either kind.
enum Batch {
    Copies(Chunk),
    Refs(RefBatch),
}

impl Batch {
    fn first(&self) -> u64 {
        match self {
            Batch::Copies(c) => c.first,
            Batch::Refs(r) => r.first,
        }
    }

    fn len(&self) -> usize {
        match self {
            Batch::Copies(c) => c.len(),
            Batch::Refs(r) => r.handles.len(),
        }
    }
}

/// One attached client.
pub struct Subscriber {
    node: String,
    feed: Feed,
    /// The watched node's counters (its state ends the stream).
    counters: Arc<LiveCounters>,
    filter: Option<Filter>,
    queue: VecDeque<Arc<[u8]>>,
    queued_bytes: usize,
    /// Elements accepted so far (matched, queued or lost).
    matched: u64,
    limit: Option<u64>,
    /// The node finished and everything it sent was matched.
    source_done: bool,
}

/// Every subscriber, grouped by the point it reads.
pub struct Hub {
    subs: HashMap<SubId, Subscriber>,
    /// Per point (by address): the sequence number expected next, to see
    /// what the log discarded.
    expect: HashMap<usize, Option<u64>>,
    /// Per point: batches drained from its log, not yet handed out.
    backlog: HashMap<usize, Backlog>,
    /// Per node: attached count and totals, departed subscribers included.
    counts: BTreeMap<String, SubscriberCounts>,
    capacity: usize,
    /// Where references read from a mux's slots are released.
    pool: LocalPool,
}

#[derive(Default)]
struct Backlog {
    batches: VecDeque<Batch>,
    /// The node had finished before these batches were drained.
    node_done: bool,
}

/// What a new subscriber asks for.
pub struct Subscription {
    /// Node name (the label its counts go under).
    pub node: String,
    /// Where it reads.
    pub feed: Feed,
    /// The node's counters.
    pub counters: Arc<LiveCounters>,
    /// Only the elements this accepts.
    pub filter: Option<Filter>,
    /// End the stream after this many elements.
    pub limit: Option<u64>,
}

impl Hub {
    /// A hub whose subscribers queue at most `capacity` elements each.
    pub fn new(capacity: usize) -> Hub {
        Hub {
            subs: HashMap::new(),
            expect: HashMap::new(),
            backlog: HashMap::new(),
            counts: BTreeMap::new(),
            capacity: capacity.max(1),
            pool: LocalPool::new(64),
        }
    }

    /// Subscribers attached now.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether nobody is attached.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Per node: attached now, sent and dropped (for `/metrics`, `/stats`).
    pub fn counts(&self) -> &BTreeMap<String, SubscriberCounts> {
        &self.counts
    }

    /// Attaches a subscriber: its point starts handing over at its next
    /// batch.
    pub fn attach(&mut self, id: SubId, s: Subscription) {
        if s.feed.readers() == 0 {
            // Whatever the point counted before is nobody's gap.
            self.expect.insert(s.feed.key(), None);
        }
        s.feed.attach();
        self.counts.entry(s.node.clone()).or_default().attached += 1;
        self.subs.insert(
            id,
            Subscriber {
                node: s.node,
                feed: s.feed,
                counters: s.counters,
                filter: s.filter,
                queue: VecDeque::new(),
                queued_bytes: 0,
                matched: 0,
                limit: s.limit,
                source_done: false,
            },
        );
    }

    /// Detaches a subscriber (its client left, or its stream ended).
    pub fn detach(&mut self, id: SubId) {
        let Some(s) = self.subs.remove(&id) else {
            return;
        };
        let c = self.counts.entry(s.node).or_default();
        c.attached -= 1;
        // What it had queued never reached it.
        c.dropped += s.queue.len() as u64;
        if s.feed.readers() == 1 {
            // The last reader: nothing more is read from this point.
            let key = s.feed.key();
            let left: Vec<Batch> = self
                .backlog
                .remove(&key)
                .map(|b| b.batches.into_iter().collect())
                .unwrap_or_default();
            self.discard(&s.feed, left);
            let logged = s.feed.drain();
            self.discard(&s.feed, logged);
        }
        match &s.feed {
            Feed::Copies(p) => p.detach(),
            Feed::Refs(p, _) => p.detach(),
        }
    }

    /// Gives batches nobody will read back: references are released.
    fn discard(&mut self, feed: &Feed, batches: Vec<Batch>) {
        for b in batches {
            self.finish_batch(feed, b);
        }
    }

    /// Done with a batch: copies go back to their producer for reuse,
    /// references to the arena.
    fn finish_batch(&mut self, feed: &Feed, batch: Batch) {
        match (feed, batch) {
            (Feed::Copies(p), Batch::Copies(c)) => p.recycle([c]),
            (Feed::Refs(p, arena), Batch::Refs(r)) => {
                let n = r.handles.len();
                for h in r.handles {
                    arena.release(h, &mut self.pool);
                }
                // Back on the free stack before the point says so: the
                // run's leak check waits for `held` to reach zero.
                arena.flush(&mut self.pool);
                p.released(n);
            }
            _ => unreachable!("a point's batches are of its kind"),
        }
    }

    /// Moves one batch per point from what the points collected into the
    /// subscribers' queues; returns whether batches are left (the caller
    /// writes to the clients between calls, so that a queue holds what one
    /// client has not taken yet, not what the endpoint has not written).
    pub fn pump(&mut self) -> bool {
        let mut by_point: HashMap<usize, Vec<SubId>> = HashMap::new();
        for (&id, s) in &self.subs {
            by_point.entry(s.feed.key()).or_default().push(id);
        }
        let mut more = false;
        for (key, mut ids) in by_point {
            ids.sort_unstable();
            let feed = self.subs[&ids[0]].feed.clone();
            let backlog = self.backlog.entry(key).or_default();
            if backlog.batches.is_empty() {
                // Read the state before draining: once the node is done,
                // this drain holds its last elements.
                backlog.node_done = self.subs[&ids[0]].counters.state() != LiveState::Running;
                backlog.batches.extend(feed.drain());
            }
            if let Some(batch) = backlog.batches.pop_front() {
                let expect = self.expect.entry(key).or_default();
                if let Some(gap) = expect.and_then(|e| batch.first().checked_sub(e)) {
                    self.charge(&ids, gap);
                }
                *self.expect.entry(key).or_default() = Some(batch.first() + batch.len() as u64);
                match (&batch, &feed) {
                    (Batch::Copies(c), _) => {
                        for payload in c.iter() {
                            self.offer(&ids, payload);
                        }
                    }
                    (Batch::Refs(r), Feed::Refs(_, arena)) => {
                        for h in &r.handles {
                            self.offer(&ids, arena.payload(h));
                        }
                    }
                    _ => unreachable!("a point's batches are of its kind"),
                }
                self.finish_batch(&feed, batch);
            }
            let backlog = &self.backlog[&key];
            if backlog.batches.is_empty() && backlog.node_done {
                for id in &ids {
                    self.subs.get_mut(id).expect("listed").source_done = true;
                }
            }
            more |= !backlog.batches.is_empty();
        }
        more
    }

    /// Counts `n` elements lost by each of `ids` still wanting elements.
    fn charge(&mut self, ids: &[SubId], n: u64) {
        for id in ids {
            let s = &self.subs[id];
            if s.limit.is_none_or(|l| s.matched < l) {
                self.counts.get_mut(&s.node).expect("counted").dropped += n;
            }
        }
    }

    /// Queues `payload` for each of `ids` whose predicate it satisfies.
    fn offer(&mut self, ids: &[SubId], payload: &[u8]) {
        let mut line: Option<Arc<[u8]>> = None;
        for id in ids {
            let s = self.subs.get_mut(id).expect("listed");
            if s.limit.is_some_and(|l| s.matched >= l)
                || s.filter
                    .as_ref()
                    .is_some_and(|f| f.matches(payload) != Ok(true))
            {
                continue;
            }
            s.matched += 1;
            let line = line.get_or_insert_with(|| ndjson_line(payload).into());
            s.queued_bytes += line.len();
            s.queue.push_back(Arc::clone(line));
            while s.queue.len() > self.capacity
                || (s.queued_bytes > QUEUE_BYTES && s.queue.len() > 1)
            {
                let old = s.queue.pop_front().expect("not empty");
                s.queued_bytes -= old.len();
                self.counts.get_mut(&s.node).expect("counted").dropped += 1;
            }
        }
    }

    /// Charges every attached subscriber with the elements its point
    /// collected that were never examined (backlog and log), and gives
    /// them back: called when streams are ended before the endpoint caught
    /// up (shutdown).
    pub fn charge_unseen(&mut self) {
        let mut feeds: HashMap<usize, (Feed, Vec<SubId>)> = HashMap::new();
        for (&id, s) in &self.subs {
            feeds
                .entry(s.feed.key())
                .or_insert_with(|| (s.feed.clone(), Vec::new()))
                .1
                .push(id);
        }
        for (key, (feed, ids)) in feeds {
            let mut left: Vec<Batch> = self
                .backlog
                .remove(&key)
                .map(|b| b.batches.into_iter().collect())
                .unwrap_or_default();
            left.extend(feed.drain());
            let unseen: u64 = left.iter().map(|b| b.len() as u64).sum();
            self.charge(&ids, unseen);
            self.discard(&feed, left);
        }
    }

    /// Releases what a mux handed over after its last reader left (it
    /// decided per batch, before the reader left).
    pub fn sweep(&mut self, mux: &Arc<RefPoint>, arena: &Arc<Arena>) {
        if mux.readers() == 0 && mux.held() > 0 {
            let feed = Feed::Refs(Arc::clone(mux), Arc::clone(arena));
            let left = feed.drain();
            self.discard(&feed, left);
        }
    }

    /// Appends up to `max` bytes of `id`'s queued lines to `out`; returns
    /// how many lines.
    pub fn take(&mut self, id: SubId, out: &mut Vec<u8>, max: usize) -> usize {
        let Some(s) = self.subs.get_mut(&id) else {
            return 0;
        };
        let mut n = 0;
        while let Some(line) = s.queue.front() {
            if n > 0 && out.len() + line.len() > max {
                break;
            }
            out.extend_from_slice(line);
            s.queued_bytes -= line.len();
            s.queue.pop_front();
            n += 1;
        }
        self.counts.get_mut(&s.node).expect("counted").sent += n as u64;
        n
    }

    /// Whether `id`'s stream is over: its limit reached, or its node done,
    /// and nothing left queued.
    pub fn finished(&self, id: SubId) -> bool {
        self.subs.get(&id).is_none_or(|s| {
            s.queue.is_empty() && (s.source_done || s.limit.is_some_and(|l| s.matched >= l))
        })
    }
}

/// One element as an NDJSON line: the payload as it is when it is JSON (made
/// compact if it spans lines), else a JSON string (invalid UTF-8 replaced).
pub fn ndjson_line(payload: &[u8]) -> Vec<u8> {
    let mut line = match serde_json::from_slice::<serde::de::IgnoredAny>(payload) {
        Ok(_) if !payload.contains(&b'\n') => trim(payload).to_vec(),
        Ok(_) => serde_json::from_slice::<serde_json::Value>(payload)
            .and_then(|v| serde_json::to_vec(&v))
            .unwrap_or_default(),
        Err(_) => serde_json::to_vec(&String::from_utf8_lossy(payload)).unwrap_or_default(),
    };
    line.push(b'\n');
    line
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::tap::TapWriter;

    fn sub(point: &Arc<TapPoint>, counters: &Arc<LiveCounters>, w: Option<&str>) -> Subscription {
        Subscription {
            node: "mux".into(),
            feed: Feed::Copies(Arc::clone(point)),
            counters: Arc::clone(counters),
            filter: w.map(|w| Filter::from_json(w).unwrap()),
            limit: None,
        }
    }

    fn lines(hub: &mut Hub, id: SubId) -> Vec<String> {
        let mut out = Vec::new();
        hub.take(id, &mut out, usize::MAX);
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_subscriber_gets_what_its_predicate_matches() {
        let point = TapPoint::new();
        let counters = Arc::new(LiveCounters::new(0));
        let mut hub = Hub::new(100);
        hub.attach(1, sub(&point, &counters, Some(r#"{"field":"k","eq":1}"#)));
        hub.attach(2, sub(&point, &counters, None));
        let mut w = TapWriter::new(Arc::clone(&point));
        assert!(w.begin());
        for p in [r#"{"k":1}"#, r#"{"k":2}"#, "plain text"] {
            w.push(p.as_bytes());
        }
        w.commit();
        while hub.pump() {}
        assert_eq!(lines(&mut hub, 1), [r#"{"k":1}"#]);
        assert_eq!(
            lines(&mut hub, 2),
            [r#"{"k":1}"#, r#"{"k":2}"#, r#""plain text""#]
        );
        assert_eq!(hub.counts()["mux"].sent, 4);
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_counts_them() {
        let point = TapPoint::new();
        let counters = Arc::new(LiveCounters::new(0));
        let mut hub = Hub::new(2);
        hub.attach(7, sub(&point, &counters, None));
        let mut w = TapWriter::new(Arc::clone(&point));
        w.begin();
        for i in 0..5 {
            w.push(format!("{i}").as_bytes());
        }
        w.commit();
        while hub.pump() {}
        assert_eq!(lines(&mut hub, 7), ["3", "4"]);
        assert_eq!(hub.counts()["mux"].dropped, 3);
        hub.detach(7);
        assert_eq!(hub.counts()["mux"].attached, 0);
        assert_eq!(point.readers(), 0);
    }

    #[test]
    fn the_stream_ends_after_the_node_and_the_limit() {
        let point = TapPoint::new();
        let counters = Arc::new(LiveCounters::new(0));
        let mut hub = Hub::new(10);
        let mut s = sub(&point, &counters, None);
        s.limit = Some(1);
        hub.attach(1, s);
        hub.attach(2, sub(&point, &counters, None));
        let mut w = TapWriter::new(Arc::clone(&point));
        w.begin();
        w.push(b"1");
        w.push(b"2");
        w.commit();
        while hub.pump() {}
        assert!(!hub.finished(1), "a line is still queued");
        assert_eq!(lines(&mut hub, 1), ["1"]);
        assert!(hub.finished(1));
        assert!(!hub.finished(2));
        let report =
            crate::metrics::StageReport::new("mux", "mux", crate::Role::Sink, Vec::new(), false);
        counters.publish(&report, LiveState::Finished);
        while hub.pump() {}
        assert_eq!(lines(&mut hub, 2), ["1", "2"]);
        assert!(hub.finished(2));
    }

    #[test]
    fn lines_are_json() {
        assert_eq!(ndjson_line(b" {\"a\":1} "), b"{\"a\":1}\n");
        assert_eq!(ndjson_line(b"{\"a\":\n1}"), b"{\"a\":1}\n");
        assert_eq!(ndjson_line(b"x\"y"), b"\"x\\\"y\"\n");
        assert_eq!(ndjson_line(b"\xff"), "\"\u{fffd}\"\n".as_bytes());
    }
}
