//! `window`: count- and time-based, tumbling and sliding windows that
//! aggregate a field per key and emit one element per key per window.
//!
//! A window is cut into *panes* of `slide` (elements or time); a tumbling
//! window is one pane, a sliding one `size / slide` panes. Each key keeps a
//! ring of pane aggregates; when a pane closes, the panes of the window that
//! ends there are merged and emitted, and the oldest pane is reset for
//! reuse. So memory is (keys x panes), whatever the rate, and nothing is
//! allocated per element (only for a key's first appearance).
//!
//! * Count windows count the elements of the whole stream: window `i`
//!   covers elements `[i*slide, i*slide + size)` (0-based, in arrival
//!   order), whatever their key; `start`/`end` in the output are those
//!   element indices. A window closes in `process`, on its last element.
//! * Time windows use processing time (when an element reaches the
//!   window), aligned on the Unix epoch: window `[t, t + size)` with `t` a
//!   multiple of `slide`; `start`/`end` are Unix milliseconds. Windows
//!   close on `tick`, so also when no input arrives.
//! * At end of stream (`finish`) the windows still open are emitted with
//!   what they hold.
//! * At most `max_keys` keys at a time: an element of one more key is
//!   rejected ("too many keys", counted per element like any rejection),
//!   and [`Processor::counts`] reports how many keys were turned away
//!   ("keys refused (max_keys)": each key once per pane it was refused in),
//!   which says how far `max_keys` falls short.
//! * No result is lost for want of room. A window emits its keys' results
//!   as the output takes them (free slots, the step's output space); when
//!   it has no room for the rest, it holds them (`Closing`: the window and
//!   the next key) and goes on with them on later calls, before anything
//!   else: `process` defers its input meanwhile ([`Verdict::Defer`]: the
//!   input backs up, as behind a slow sink), `tick` and `finish` return
//!   [`Flush::More`]. The panes stay as they are until every result is out.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use serde::Deserialize;

use crate::arena::ContentType;
use crate::checkpoint::{StateReader, StateWriter};
use crate::clock::now_ns;
use crate::operators::json::find_members;
use crate::operators::util::{fnv1a64, write_json_f64, FnvBuild, PrehashedBuild};
use crate::stage::{Element, Emitter, Flush, Processor, Reason, StageError, Verdict};

pub use super::event_window::EventWindow;

/// Where a window's output goes: `Element::emit` in `process`,
/// `Emitter::emit` in `tick` and `finish`.
type Emit<'a> = dyn FnMut(&[u8], u64) -> Result<(), StageError> + 'a;

/// What a window's length is measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// Elements.
    Count,
    /// Nanoseconds of processing time.
    Time,
}

/// Which aggregates to emit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Aggregates {
    /// Number of elements.
    pub count: bool,
    /// Sum of the field.
    pub sum: bool,
    /// Minimum of the field.
    pub min: bool,
    /// Maximum of the field.
    pub max: bool,
    /// Mean of the field.
    pub avg: bool,
}

impl Aggregates {
    pub(crate) fn needs_field(self) -> bool {
        self.sum || self.min || self.max || self.avg
    }
}

/// One group's aggregate over some elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Agg {
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

/// Writes one window result: `{"<key name>":<key>,"start":..,"end":..,`
/// then the chosen aggregates, into `out` (cleared first).
pub(crate) fn format_result(
    out: &mut Vec<u8>,
    key_json: Option<&[u8]>,
    key: &[u8],
    start: u64,
    end: u64,
    a: Aggregates,
    total: &Agg,
) {
    out.clear();
    out.push(b'{');
    if let Some(name) = key_json {
        out.extend_from_slice(name);
        out.push(b':');
        out.extend_from_slice(key);
        out.push(b',');
    }
    let mut int = itoa::Buffer::new();
    out.extend_from_slice(b"\"start\":");
    out.extend_from_slice(int.format(start).as_bytes());
    out.extend_from_slice(b",\"end\":");
    out.extend_from_slice(int.format(end).as_bytes());
    if a.count {
        out.extend_from_slice(b",\"count\":");
        out.extend_from_slice(int.format(total.count).as_bytes());
    }
    for (on, name, v) in [
        (a.sum, &b",\"sum\":"[..], total.sum),
        (a.min, b",\"min\":", total.min),
        (a.max, b",\"max\":", total.max),
        (a.avg, b",\"avg\":", total.sum / total.count as f64),
    ] {
        if on {
            out.extend_from_slice(name);
            write_json_f64(out, v);
        }
    }
    out.push(b'}');
}

impl Agg {
    pub(crate) const EMPTY: Agg = Agg {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    pub(crate) fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub(crate) fn merge(&mut self, o: &Agg) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// A window whose results are going out, key by key: what is left when the
/// output has no more room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Closing {
    /// First pane of the window.
    first: u64,
    /// Last pane of the window.
    last: u64,
    /// The next key to emit (index in `groups`, which holds still meanwhile:
    /// no input is absorbed while a window is closing).
    key: usize,
    /// What follows once every key is out.
    then: Then,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Pane `last` closed: reset the slot it frees ([`Window::pane_closed`]).
    Close,
    /// End of stream: the next window that holds pane `last`, until none is
    /// left; then the groups go.
    Finish,
}

/// A windowed aggregation (see the module docs).
pub struct Window {
    basis: Basis,
    size: u64,
    slide: u64,
    panes: u64,
    key: Option<String>,
    key_json: Vec<u8>,
    field: Option<String>,
    aggregates: Aggregates,
    max_keys: usize,
    /// Raw key JSON (empty without a key) -> pane ring.
    groups: IndexMap<Box<[u8]>, Vec<Agg>, FnvBuild>,
    /// Hashes of the keys refused in the open pane (at most `max_keys`), so
    /// that each is counted once per pane.
    refused: HashSet<u64, PrehashedBuild>,
    /// Keys refused for want of room (`max_keys`), once per pane each.
    keys_refused: u64,
    /// Elements per pane slot, all keys together.
    pane_counts: Vec<u64>,
    /// Elements seen (count windows).
    seen: u64,
    /// The open pane (time windows: `None` before the first element).
    current: Option<u64>,
    /// Unix ns minus monotonic ns, for aligning time windows.
    wall_offset: u64,
    /// Results held for want of room (see the module docs).
    closing: Option<Closing>,
    /// The last error emitting a result (not "no room"), reported when
    /// nothing is held any more.
    error: Option<StageError>,
    last_ingest: u64,
    scratch: Vec<u8>,
    key_buf: Vec<u8>,
    now: fn() -> u64,
}

impl Window {
    /// A window of `size` (elements or ns) advancing by `slide` (equal to
    /// `size` for tumbling; must divide it).
    pub fn new(basis: Basis, size: u64, slide: u64) -> Result<Window, String> {
        if size == 0 || slide == 0 {
            return Err("window size and slide must be positive".to_string());
        }
        if slide > size || size % slide != 0 {
            return Err(format!(
                "slide ({slide}) must divide the window size ({size})"
            ));
        }
        let panes = size / slide;
        if panes > 10_000 {
            return Err(format!(
                "size / slide is {panes}; at most 10000 panes per window"
            ));
        }
        Ok(Window {
            basis,
            size,
            slide,
            panes,
            key: None,
            key_json: Vec::new(),
            field: None,
            aggregates: Aggregates {
                count: true,
                ..Aggregates::default()
            },
            max_keys: 10_000,
            groups: IndexMap::default(),
            refused: HashSet::default(),
            keys_refused: 0,
            pane_counts: vec![0; panes as usize],
            seen: 0,
            current: None,
            wall_offset: wall_offset(),
            closing: None,
            error: None,
            last_ingest: 0,
            scratch: Vec::with_capacity(256),
            key_buf: Vec::with_capacity(64),
            now: now_ns,
        })
    }

    /// Groups by top-level field `key` (the output carries it under the
    /// same name), at most `max_keys` keys at a time.
    pub fn key(mut self, key: &str, max_keys: usize) -> Window {
        self.key_json = serde_json::to_vec(key).expect("a string serializes");
        self.key = Some(key.to_string());
        self.max_keys = max_keys.max(1);
        self
    }

    /// Aggregates top-level numeric field `field`.
    pub fn field(mut self, field: &str) -> Window {
        self.field = Some(field.to_string());
        self
    }

    /// Chooses the aggregates (sum, min, max and avg need a field).
    pub fn aggregates(mut self, a: Aggregates) -> Result<Window, String> {
        if a.needs_field() && self.field.is_none() {
            return Err("sum, min, max and avg need a 'field'".to_string());
        }
        if a == Aggregates::default() {
            return Err("choose at least one aggregate".to_string());
        }
        self.aggregates = a;
        Ok(self)
    }

    fn slot(&self, pane: u64) -> usize {
        (pane % self.panes) as usize
    }

    /// Wall-clock pane of monotonic time `mono`.
    fn time_pane(&self, mono: u64) -> u64 {
        mono.wrapping_add(self.wall_offset) / self.slide
    }

    /// Closes pane `p`: emits the window ending with it, then resets the
    /// slot of its oldest pane (the next pane's slot).
    fn close_pane(&mut self, p: u64, emit: &mut Emit<'_>) -> Flush {
        debug_assert!(self.closing.is_none(), "one window closes at a time");
        let first = p as i128 - self.panes as i128 + 1;
        // Count windows that would start before element 0 do not exist.
        if first < 0 && self.basis == Basis::Count {
            self.pane_closed(p);
            return Flush::Done;
        }
        self.closing = Some(Closing {
            first: first.max(0) as u64,
            last: p,
            key: 0,
            then: Then::Close,
        });
        self.drain(emit)
    }

    /// After pane `p`'s window is out: resets the slot of its oldest pane
    /// for the next one, forgets keys as due, opens the next pane.
    fn pane_closed(&mut self, p: u64) {
        let reuse = self.slot(p + 1);
        self.pane_counts[reuse] = 0;
        for ring in self.groups.values_mut() {
            ring[reuse] = Agg::EMPTY;
        }
        if self.groups.len() > self.max_keys / 2 {
            // Forget keys with nothing left in any pane.
            self.groups
                .retain(|_, ring| ring.iter().any(|a| a.count > 0));
        }
        if !self.refused.is_empty() {
            self.refused.clear();
        }
        if self.basis == Basis::Time {
            self.current = Some(p + 1);
        }
    }

    /// Emits what [`Closing`] holds, and what follows it, as far as the
    /// output takes it.
    fn drain(&mut self, emit: &mut Emit<'_>) -> Flush {
        while let Some(mut c) = self.closing {
            if self.emit_window(&mut c, emit) == Flush::More {
                self.closing = Some(c);
                return Flush::More;
            }
            self.closing = match c.then {
                Then::Close => {
                    self.pane_closed(c.last);
                    None
                }
                Then::Finish if c.first < c.last => Some(Closing {
                    first: c.first + 1,
                    key: 0,
                    ..c
                }),
                Then::Finish => {
                    self.groups.clear();
                    None
                }
            };
        }
        Flush::Done
    }

    /// Emits, per key from `c.key` on, window `[c.first, c.last]` (panes)
    /// merged from the ring (keys without elements in it emit nothing).
    /// `More`: the output had no room; `c.key` is the key to go on with.
    fn emit_window(&mut self, c: &mut Closing, emit: &mut Emit<'_>) -> Flush {
        let (first, last) = (c.first, c.last);
        let (start, end) = match self.basis {
            Basis::Count => (first * self.slide, first * self.slide + self.size),
            Basis::Time => (
                first * self.slide / 1_000_000,
                (first * self.slide + self.size) / 1_000_000,
            ),
        };
        while let Some((key, ring)) = self.groups.get_index(c.key) {
            let mut total = Agg::EMPTY;
            for pane in first..=last {
                total.merge(&ring[(pane % self.panes) as usize]);
            }
            if total.count == 0 {
                c.key += 1;
                continue;
            }
            let key_json = self.key.is_some().then_some(&self.key_json[..]);
            format_result(
                &mut self.scratch,
                key_json,
                key,
                start,
                end,
                self.aggregates,
                &total,
            );
            let out = &self.scratch;
            match emit(out, self.last_ingest) {
                Err(e) if e.is_no_room() => return Flush::More,
                Err(e) => self.error = Some(e),
                Ok(()) => {}
            }
            c.key += 1;
        }
        Flush::Done
    }

    /// Time windows: emits what is held, then closes every pane before
    /// `pane`.
    fn advance_to(&mut self, pane: u64, emit: &mut Emit<'_>) -> Flush {
        loop {
            if self.drain(emit) == Flush::More {
                return Flush::More;
            }
            let Some(cur) = self.current.filter(|&c| c < pane) else {
                return Flush::Done;
            };
            if self.pane_counts.iter().all(|&c| c == 0) {
                // Every pane is empty: nothing to emit until `pane`, jump.
                self.current = Some(pane);
                self.refused.clear();
                return Flush::Done;
            }
            if self.close_pane(cur, emit) == Flush::More {
                return Flush::More;
            }
        }
    }

    /// The outcome of a call: `More` while results are held, else the last
    /// error emitting one, if any.
    fn outcome(&mut self) -> Result<Flush, StageError> {
        if self.closing.is_some() {
            return Ok(Flush::More);
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(Flush::Done),
        }
    }

    /// Reads the key and value of one element.
    fn extract<'p>(&self, payload: &'p [u8]) -> Result<(&'p [u8], f64), StageError> {
        if self.key.is_none() && self.field.is_none() {
            return Ok((&[], 0.0));
        }
        let keys = [
            self.key.as_deref().unwrap_or(""),
            self.field.as_deref().unwrap_or(""),
        ];
        let mut found = [None; 2];
        find_members(payload, &keys, &mut found)
            .map_err(|e| StageError::Rejected(Reason::new("invalid JSON", e.to_string())))?;
        let missing = |name: &str| StageError::Rejected(Reason::new("missing field", name));
        let key: &[u8] = match &self.key {
            None => &[],
            Some(k) => found[0].ok_or_else(|| missing(k))?.value.raw.as_bytes(),
        };
        let value = match &self.field {
            None => 0.0,
            Some(f) => {
                let field = found[1].ok_or_else(|| missing(f))?.value;
                field
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| StageError::Rejected(Reason::new("not a number", f.clone())))?
            }
        };
        Ok((key, value))
    }

    fn add(&mut self, key: &[u8], value: f64, slot: usize) -> Result<(), StageError> {
        let ring = match self.groups.get_mut(key) {
            Some(ring) => ring,
            None => {
                if self.groups.len() >= self.max_keys {
                    // Past `max_keys` different refused keys in one pane,
                    // each refusal counts (an upper bound, in bounded memory).
                    if self.refused.len() >= self.max_keys || self.refused.insert(fnv1a64(key)) {
                        self.keys_refused += 1;
                    }
                    return Err(StageError::Rejected(Reason::new(
                        "too many keys",
                        format!("more than max_keys = {} keys in a window", self.max_keys),
                    )));
                }
                self.groups
                    .entry(key.into())
                    .or_insert_with(|| vec![Agg::EMPTY; self.panes as usize])
            }
        };
        ring[slot].add(value);
        self.pane_counts[slot] += 1;
        Ok(())
    }

    /// Adds one element's value to its key's open pane (`pane`, for time
    /// windows), closing the pane when it is full (count windows).
    fn absorb(
        &mut self,
        key: &[u8],
        value: f64,
        ingest: u64,
        pane: u64,
        emit: &mut Emit<'_>,
    ) -> Result<(), StageError> {
        match self.basis {
            Basis::Count => {
                let pane = self.seen / self.slide;
                self.add(key, value, self.slot(pane))?;
                self.last_ingest = self.last_ingest.max(ingest);
                self.seen += 1;
                if self.seen % self.slide == 0 {
                    // Results it has no room for are held (`closing`).
                    self.close_pane(pane, emit);
                }
            }
            Basis::Time => {
                // A clock step back never reopens a closed pane.
                let pane = pane.max(self.current.unwrap_or(pane));
                self.add(key, value, self.slot(pane))?;
                self.last_ingest = self.last_ingest.max(ingest);
            }
        }
        Ok(())
    }
}

fn wall_offset() -> u64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    unix.wrapping_sub(now_ns())
}

impl Processor for Window {
    fn drop_reason(&self) -> &'static str {
        "absorbed into window"
    }

    fn counts(&self) -> Vec<(&'static str, u64)> {
        if self.key.is_none() {
            return Vec::new(); // one group: never refuses
        }
        vec![("keys refused (max_keys)", self.keys_refused)]
    }

    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError> {
        let ingest = element.meta().ingest_ns;
        // Held results and panes past due go out first; until they have,
        // the element waits in its ring.
        let pane = {
            let mut emit =
                |bytes: &[u8], ingest: u64| element.emit(bytes, ContentType::Json, ingest);
            match self.basis {
                Basis::Count => {
                    self.drain(&mut emit);
                    0
                }
                Basis::Time => {
                    let pane = self.time_pane((self.now)());
                    self.current.get_or_insert(pane);
                    self.advance_to(pane, &mut emit);
                    pane
                }
            }
        };
        if self.closing.is_some() {
            return Ok(Verdict::Defer);
        }
        let (key, value) = self.extract(element.payload())?;
        // The key borrows the payload, which `emit` needs mutably: copy it
        // into a buffer the window keeps (no allocation once warm).
        let mut key_buf = std::mem::take(&mut self.key_buf);
        key_buf.clear();
        key_buf.extend_from_slice(key);
        let mut emit = |bytes: &[u8], ingest: u64| element.emit(bytes, ContentType::Json, ingest);
        let result = self.absorb(&key_buf, value, ingest, pane, &mut emit);
        self.key_buf = key_buf;
        result?;
        // Absorbed, even when the window it closed is still going out.
        self.outcome().map(|_| Verdict::Drop)
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        let mut w = StateWriter::new();
        w.u64(self.seen)
            .u64(self.current.map_or(0, |c| c + 1))
            .u64(self.keys_refused);
        match self.closing {
            None => w.u64(0),
            Some(c) => w
                .u64(1)
                .u64(c.first)
                .u64(c.last)
                .u64(c.key as u64)
                .u64(u64::from(c.then == Then::Finish)),
        };
        for &n in &self.pane_counts {
            w.u64(n);
        }
        w.u64(self.groups.len() as u64);
        for (k, ring) in &self.groups {
            w.bytes(k);
            for a in ring {
                w.u64(a.count).f64(a.sum).f64(a.min).f64(a.max);
            }
        }
        Ok(w.finish())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let mut r = StateReader::new(state);
        self.seen = r.u64()?;
        self.current = r.u64()?.checked_sub(1);
        self.keys_refused = r.u64()?;
        self.closing = match r.u64()? {
            0 => None,
            _ => Some(Closing {
                first: r.u64()?,
                last: r.u64()?,
                key: r.u64()? as usize,
                then: if r.u64()? == 1 {
                    Then::Finish
                } else {
                    Then::Close
                },
            }),
        };
        for n in &mut self.pane_counts {
            *n = r.u64()?;
        }
        self.groups.clear();
        for _ in 0..r.u64()? {
            let key: Box<[u8]> = r.bytes()?.into();
            let mut ring = Vec::with_capacity(self.panes as usize);
            for _ in 0..self.panes {
                ring.push(Agg {
                    count: r.u64()?,
                    sum: r.f64()?,
                    min: r.f64()?,
                    max: r.f64()?,
                });
            }
            self.groups.insert(key, ring);
        }
        r.done()
    }

    fn tick_interval(&self) -> Option<u64> {
        // Close time windows within a few percent of the slide (1..100 ms).
        (self.basis == Basis::Time).then(|| (self.slide / 20).clamp(1_000_000, 100_000_000))
    }

    fn tick(&mut self, now_ns: u64, out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        if self.basis != Basis::Time || self.current.is_none() {
            return Ok(Flush::Done);
        }
        let pane = self.time_pane(now_ns);
        let mut emit = |bytes: &[u8], ingest: u64| out.emit(bytes, ContentType::Json, ingest);
        self.advance_to(pane, &mut emit);
        self.outcome()
    }

    fn finish(&mut self, out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        let mut emit = |bytes: &[u8], ingest: u64| out.emit(bytes, ContentType::Json, ingest);
        // First what an earlier close holds; a call after `More` goes on.
        let finishing = matches!(self.closing, Some(c) if c.then == Then::Finish);
        if self.drain(&mut emit) == Flush::More || finishing {
            return self.outcome();
        }
        let cur = match self.basis {
            Basis::Count => self.seen / self.slide,
            Basis::Time => match self.current {
                Some(c) => c,
                None => return self.outcome(),
            },
        };
        // Every window that contains the open pane, oldest first.
        self.closing = Some(Closing {
            first: (cur + 1).saturating_sub(self.panes),
            last: cur,
            key: 0,
            then: Then::Finish,
        });
        self.drain(&mut emit);
        self.outcome()
    }
}

/// Parameters of `window`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowParams {
    #[serde(default = "tumbling")]
    kind: String,
    size: Option<u64>,
    size_ms: Option<u64>,
    slide: Option<u64>,
    slide_ms: Option<u64>,
    key: Option<String>,
    field: Option<String>,
    aggregates: Option<Vec<String>>,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
    /// `"processing"` (default) or `"event"`.
    time: Option<String>,
    allowed_lateness_ms: Option<u64>,
}

fn tumbling() -> String {
    "tumbling".to_string()
}

fn default_max_keys() -> usize {
    10_000
}

/// Builds a `window`: in event time ([`EventWindow`]) with `time =
/// "event"`, else by processing time or count.
pub(crate) fn build(p: WindowParams) -> Result<Box<dyn Processor>, String> {
    match p.time.as_deref() {
        None | Some("processing") => {
            if p.allowed_lateness_ms.is_some() {
                return Err(
                    "allowed_lateness_ms applies to event-time windows (time = \"event\")".into(),
                );
            }
            Ok(Box::new(build_processing(p)?))
        }
        Some("event") => Ok(Box::new(build_event(p)?)),
        Some(other) => Err(format!(
            "time must be \"processing\" or \"event\", not \"{other}\""
        )),
    }
}

/// Reads the aggregate names (default: all with a field, else count).
fn parse_aggregates(names: Option<&[String]>, has_field: bool) -> Result<Aggregates, String> {
    Ok(match names {
        Some(names) => {
            let mut a = Aggregates::default();
            for n in names {
                match n.as_str() {
                    "count" => a.count = true,
                    "sum" => a.sum = true,
                    "min" => a.min = true,
                    "max" => a.max = true,
                    "avg" => a.avg = true,
                    other => {
                        return Err(format!(
                            "aggregates: unknown '{other}' (known: count, sum, min, max, avg)"
                        ))
                    }
                }
            }
            a
        }
        None if has_field => Aggregates {
            count: true,
            sum: true,
            min: true,
            max: true,
            avg: true,
        },
        None => Aggregates {
            count: true,
            ..Aggregates::default()
        },
    })
}

fn build_event(p: WindowParams) -> Result<EventWindow, String> {
    if p.size.is_some() || p.slide.is_some() {
        return Err(
            "event-time windows are measured in time: size_ms (and slide_ms), not size".into(),
        );
    }
    let size = p.size_ms.ok_or("an event-time window needs size_ms")?;
    let slide = match (p.kind.as_str(), p.slide_ms) {
        ("tumbling", None) => size,
        ("tumbling", Some(_)) => return Err("a tumbling window takes no slide_ms".to_string()),
        ("sliding", Some(s)) => s,
        ("sliding", None) => return Err("a sliding window needs slide_ms".to_string()),
        (other, _) => {
            return Err(format!(
                "kind must be \"tumbling\" or \"sliding\", not \"{other}\""
            ))
        }
    };
    let aggregates = parse_aggregates(p.aggregates.as_deref(), p.field.is_some())?;
    EventWindow::new(
        size,
        slide,
        p.allowed_lateness_ms.unwrap_or(0),
        p.key.as_deref(),
        p.field.as_deref(),
        aggregates,
        p.max_keys,
    )
}

fn build_processing(p: WindowParams) -> Result<Window, String> {
    const MS: u64 = 1_000_000;
    let (basis, size, slide) = match (p.size, p.size_ms, p.slide, p.slide_ms) {
        (Some(n), None, s, None) => (Basis::Count, n, s),
        (None, Some(ms), None, s) => (
            Basis::Time,
            ms.saturating_mul(MS),
            s.map(|s| s.saturating_mul(MS)),
        ),
        (Some(_), Some(_), ..) | (None, None, ..) => {
            return Err("give exactly one of size (elements) or size_ms (time)".to_string())
        }
        (Some(_), None, _, Some(_)) => {
            return Err("count windows take slide, not slide_ms".to_string())
        }
        (None, Some(_), Some(_), _) => {
            return Err("time windows take slide_ms, not slide".to_string())
        }
    };
    let slide = match (p.kind.as_str(), slide) {
        ("tumbling", None) => size,
        ("tumbling", Some(_)) => return Err("a tumbling window takes no slide".to_string()),
        ("sliding", Some(s)) => s,
        ("sliding", None) => return Err("a sliding window needs slide (or slide_ms)".to_string()),
        (other, _) => {
            return Err(format!(
                "kind must be \"tumbling\" or \"sliding\", not \"{other}\""
            ))
        }
    };
    let mut w = Window::new(basis, size, slide)?;
    if let Some(k) = &p.key {
        w = w.key(k, p.max_keys);
    }
    if let Some(f) = &p.field {
        w = w.field(f);
    }
    let aggregates = parse_aggregates(p.aggregates.as_deref(), p.field.is_some())?;
    w.aggregates(aggregates)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::operators::testing::{strings, Harness};

    fn window(spec: &str) -> Window {
        let t: toml::Table = toml::from_str(spec).unwrap();
        build_processing(crate::operators::params(&t).unwrap()).unwrap()
    }

    fn feed(h: &mut Harness, w: &mut Window, docs: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for d in docs {
            let r = h.process(w, d.as_bytes());
            assert_eq!(r.verdict, Ok(Verdict::Drop), "{d}");
            out.extend(strings(&r.emitted));
        }
        out
    }

    fn docs(n: u64) -> Vec<String> {
        (0..n)
            .map(|i| format!(r#"{{"k":"{}","v":{i}}}"#, ["a", "b"][(i % 2) as usize]))
            .collect()
    }

    #[test]
    fn tumbling_count_per_key() {
        let mut w = window(
            r#"size = 4
key = "k"
field = "v""#,
        );
        let mut h = Harness::new(256);
        let out = feed(&mut h, &mut w, &docs(10));
        assert_eq!(
            out,
            [
                r#"{"k":"a","start":0,"end":4,"count":2,"sum":2,"min":0,"max":2,"avg":1}"#,
                r#"{"k":"b","start":0,"end":4,"count":2,"sum":4,"min":1,"max":3,"avg":2}"#,
                r#"{"k":"a","start":4,"end":8,"count":2,"sum":10,"min":4,"max":6,"avg":5}"#,
                r#"{"k":"b","start":4,"end":8,"count":2,"sum":12,"min":5,"max":7,"avg":6}"#,
            ]
        );
        let rest = strings(&h.finish(&mut w));
        assert_eq!(
            rest,
            [
                r#"{"k":"a","start":8,"end":12,"count":1,"sum":8,"min":8,"max":8,"avg":8}"#,
                r#"{"k":"b","start":8,"end":12,"count":1,"sum":9,"min":9,"max":9,"avg":9}"#,
            ]
        );
    }

    #[test]
    fn sliding_count_without_key() {
        let mut w = window(
            r#"kind = "sliding"
size = 4
slide = 2
field = "v"
aggregates = ["sum", "count"]"#,
        );
        let mut h = Harness::new(256);
        let out = feed(&mut h, &mut w, &docs(7));
        // Windows [0,4) at element 3 and [2,6) at element 5.
        assert_eq!(
            out,
            [
                r#"{"start":0,"end":4,"count":4,"sum":6}"#,
                r#"{"start":2,"end":6,"count":4,"sum":14}"#,
            ]
        );
        // Open: [4,8) holds 4,5,6 and [6,10) holds 6.
        assert_eq!(
            strings(&h.finish(&mut w)),
            [
                r#"{"start":4,"end":8,"count":3,"sum":15}"#,
                r#"{"start":6,"end":10,"count":1,"sum":6}"#,
            ]
        );
    }

    #[test]
    fn bad_elements_are_rejected_and_not_counted() {
        let mut w = window("size = 2\nfield = \"v\"");
        let mut h = Harness::new(256);
        for bad in [&b"nope"[..], br#"{"x":1}"#, br#"{"v":"high"}"#] {
            assert!(matches!(
                h.process(&mut w, bad).verdict,
                Err(StageError::Rejected(_))
            ));
        }
        let out = feed(
            &mut h,
            &mut w,
            &[r#"{"v":1}"#.into(), r#"{"v":2.5}"#.into()],
        );
        assert_eq!(
            out,
            [r#"{"start":0,"end":2,"count":2,"sum":3.5,"min":1,"max":2.5,"avg":1.75}"#]
        );
        assert!(h.finish(&mut w).is_empty());
    }

    /// Keys past `max_keys` are rejected per element and counted once per
    /// pane per key.
    #[test]
    fn counts_keys_refused_past_max_keys() {
        let mut w = window("size = 4\nkey = \"k\"\nmax_keys = 2");
        let mut h = Harness::new(256);
        let mut refused = 0;
        let mut out = Vec::new();
        for k in ["a", "b", "c", "c", "a", "b", "c", "d", "e", "e", "f", "c"] {
            let r = h.process(&mut w, format!(r#"{{"k":"{k}"}}"#).as_bytes());
            match r.verdict {
                Ok(v) => assert_eq!(v, Verdict::Drop),
                Err(StageError::Rejected(r)) if r.kind == "too many keys" => refused += 1,
                Err(e) => panic!("{e}"),
            }
            out.extend(strings(&r.emitted));
        }
        // Pane [0,4): a, b, a, b (c refused twice). Pane [4,8): c, d so
        // far (e twice and f refused).
        assert_eq!(
            out,
            [
                r#"{"k":"a","start":0,"end":4,"count":2}"#,
                r#"{"k":"b","start":0,"end":4,"count":2}"#,
            ]
        );
        assert_eq!(refused, 5);
        assert_eq!(w.counts(), [("keys refused (max_keys)", 1 + 2)]);
        let unkeyed = window("size = 4");
        assert!(unkeyed.counts().is_empty());
    }

    thread_local! {
        static NOW: Cell<u64> = const { Cell::new(1) };
    }

    fn fake_now() -> u64 {
        NOW.with(Cell::get)
    }

    #[test]
    fn time_windows_close_on_ticks() {
        const MS: u64 = 1_000_000;
        let mut w = window("kind = \"sliding\"\nsize_ms = 100\nslide_ms = 50\nkey = \"k\"");
        w.now = fake_now;
        w.wall_offset = 0; // the fake clock is "Unix time"
        assert_eq!(w.tick_interval(), Some(2_500_000));
        let mut h = Harness::new(256);
        let at = |ms: u64| NOW.with(|n| n.set(ms * MS));
        at(1_000_010);
        feed(
            &mut h,
            &mut w,
            &[r#"{"k":"a"}"#.into(), r#"{"k":"b"}"#.into()],
        );
        at(1_000_060);
        // The first pane closed when this element arrived: the window
        // [999_950, 1_000_050) that ends with it is emitted then.
        assert_eq!(
            feed(&mut h, &mut w, &[r#"{"k":"a"}"#.into()]),
            [
                r#"{"k":"a","start":999950,"end":1000050,"count":1}"#,
                r#"{"k":"b","start":999950,"end":1000050,"count":1}"#,
            ]
        );
        at(1_000_120);
        let ticked = strings(&h.tick(&mut w, fake_now()));
        assert_eq!(
            ticked,
            [
                r#"{"k":"a","start":1000000,"end":1000100,"count":2}"#,
                r#"{"k":"b","start":1000000,"end":1000100,"count":1}"#,
            ]
        );
        // Long silence: one more window holds the last pane, then nothing.
        at(1_009_000);
        assert_eq!(
            strings(&h.tick(&mut w, fake_now())),
            [r#"{"k":"a","start":1000050,"end":1000150,"count":1}"#]
        );
        at(1_009_500);
        assert!(h.tick(&mut w, fake_now()).is_empty());
        assert!(h.finish(&mut w).is_empty());
    }

    /// One element per key `0..n`, in order.
    fn keyed(n: u64) -> Vec<String> {
        (0..n).map(|i| format!(r#"{{"k":{i}}}"#)).collect()
    }

    fn results(first: u64, n: u64, start: u64, end: u64) -> Vec<String> {
        (first..first + n)
            .map(|i| format!(r#"{{"k":{i},"start":{start},"end":{end},"count":1}}"#))
            .collect()
    }

    /// A window closing with more results than the arena has slots (64
    /// in the harness) holds the rest and defers its input until they are
    /// out; nothing is lost or repeated, and the order stays.
    #[test]
    fn results_without_room_are_held_and_input_deferred() {
        let mut w = window("size = 200\nkey = \"k\"\nmax_keys = 1000");
        let mut h = Harness::new(256);
        let mut out = Vec::new();
        let mut deferred = 0;
        for d in keyed(200).iter().chain(&keyed(3)) {
            loop {
                let r = h.process(&mut w, d.as_bytes());
                out.extend(strings(&r.emitted));
                match r.verdict {
                    Ok(Verdict::Drop) => break,
                    Ok(Verdict::Defer) => {
                        assert!(!r.emitted.is_empty(), "deferred without progress");
                        deferred += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        assert!(deferred > 0, "the harness arena is smaller than the window");
        assert_eq!(out, results(0, 200, 0, 200));
        assert_eq!(strings(&h.finish(&mut w)), results(0, 3, 200, 400));
    }

    /// `finish` with more results than slots returns `More` until all are
    /// out (the harness calls it again, as the runtime does).
    #[test]
    fn finish_resumes_until_every_result_is_out() {
        let mut w = window("kind = \"sliding\"\nsize = 1000\nslide = 500\nkey = \"k\"");
        let mut h = Harness::new(256);
        feed(&mut h, &mut w, &keyed(150));
        // Only window [0,1000) holds the open pane: count windows before
        // element 0 do not exist.
        assert_eq!(strings(&h.finish(&mut w)), results(0, 150, 0, 1000));
        assert!(h.finish(&mut w).is_empty());
    }

    /// A time window closing on `tick` with more results than slots: the
    /// ticks that follow go on with them, then the next windows close.
    #[test]
    fn tick_resumes_until_every_result_is_out() {
        const MS: u64 = 1_000_000;
        let mut w = window("size_ms = 100\nkey = \"k\"\nmax_keys = 1000");
        w.now = fake_now;
        w.wall_offset = 0;
        let mut h = Harness::new(256);
        NOW.with(|n| n.set(2_000_010 * MS));
        feed(&mut h, &mut w, &keyed(150));
        NOW.with(|n| n.set(2_000_150 * MS));
        // This element's arrival closes the first window, with room in the
        // 64-slot arena for part of it: the element waits.
        let r = h.process(&mut w, br#"{"k":0}"#);
        assert_eq!(r.verdict, Ok(Verdict::Defer));
        let mut out = strings(&r.emitted);
        assert!(!out.is_empty() && out.len() < 150, "{}", out.len());
        // The ticks that follow emit the rest; then the element gets in.
        out.extend(strings(&h.tick(&mut w, fake_now())));
        assert_eq!(out, results(0, 150, 2_000_000, 2_000_100));
        feed(&mut h, &mut w, &keyed(1));
        assert_eq!(
            strings(&h.tick(&mut w, 2_000_250 * MS)),
            results(0, 1, 2_000_100, 2_000_200)
        );
    }

    #[test]
    fn a_restored_count_window_goes_on_where_the_snapshot_was_taken() {
        let docs = keyed(10);
        let mut h = Harness::new(256);
        let mut whole = window("size = 4\nkey = \"k\"");
        let expected = feed(&mut h, &mut whole, &docs);
        let mut first = window("size = 4\nkey = \"k\"");
        let mut out = feed(&mut h, &mut first, &docs[..6]);
        let state = first.snapshot().unwrap();
        let mut resumed = window("size = 4\nkey = \"k\"");
        resumed.restore(&state).unwrap();
        out.extend(feed(&mut h, &mut resumed, &docs[6..]));
        assert_eq!(out, expected);
        assert!(window("size = 4")
            .restore(&state[..state.len() - 1])
            .is_err());
    }

    #[test]
    fn config_errors() {
        let err = |spec: &str| {
            let t: toml::Table = toml::from_str(spec).unwrap();
            build(crate::operators::params(&t).unwrap()).err().unwrap()
        };
        assert!(err("size = 10\nsize_ms = 5").contains("exactly one"));
        assert!(err("kind = \"sliding\"\nsize = 10\nslide = 3").contains("divide"));
        assert!(err("kind = \"sliding\"\nsize = 10").contains("needs slide"));
        assert!(err("size = 10\naggregates = [\"sum\"]").contains("need a 'field'"));
        assert!(err("size = 10\naggregates = [\"median\"]").contains("unknown 'median'"));
        assert!(err("kind = \"hopping\"\nsize = 10").contains("kind must be"));
    }
}
