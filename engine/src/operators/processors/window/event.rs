//! `window` with `time = "event"`: tumbling and sliding windows over the
//! timestamps the elements carry, closed by the watermark.
//!
//! Time is cut into panes of `slide_ms` (aligned on the Unix epoch); a
//! window is `size_ms / slide_ms` consecutive panes, named by its last
//! one, and covers `[start, end)` in Unix ms. An element adds its value to
//! its key's aggregate in its timestamp's pane, whatever order elements
//! arrive in. When a pane first gets an element, the windows it belongs to
//! register an event-time timer at `end + allowed_lateness_ms`; when the
//! watermark reaches it, the window's panes are merged per key and one
//! result per key goes out, and panes no open window needs are dropped.
//!
//! An element is *late* when every window it belongs to has closed, or
//! would close at once (the watermark is past its end plus the allowed
//! lateness): it goes, untouched, to the port `late` and is counted
//! ("late"). An element some of whose sliding windows are still open
//! counts in those only.
//!
//! Memory is one aggregate per key per pane with data between the
//! watermark and the newest timestamp, at most `max_keys` keys per pane.
//! Results that find no room are held (the timer fires again), as
//! processing-time windows hold theirs.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use super::{format_result, Agg, Aggregates};
use crate::arena::ContentType;
use crate::checkpoint::{StateReader, StateWriter};
use crate::event_time::{EventTime, Timer, Timers};
use crate::operators::json::find_members;
use crate::operators::util::FnvBuild;
use crate::stage::{Element, Emitter, Flush, Processor, Reason, StageError, Verdict};

/// The port late elements go to.
const LATE: &str = "late";

/// Per key (raw JSON) its aggregate, keys in order of first appearance.
type Groups = IndexMap<Box<[u8]>, Agg, FnvBuild>;

/// An event-time window (see the module docs).
pub struct EventWindow {
    size: u64,
    slide: u64,
    panes: u64,
    lateness: u64,
    key: Option<String>,
    key_json: Vec<u8>,
    field: Option<String>,
    aggregates: Aggregates,
    max_keys: usize,
    event_time: Option<EventTime>,
    /// Pane -> key (raw JSON) -> aggregate.
    data: BTreeMap<u64, Groups>,
    timers: Timers,
    watermark: u64,
    /// The last window (by its last pane) that has gone out.
    closed_through: Option<u64>,
    /// A window going out: its merged groups and the next key to emit.
    closing: Option<(u64, Groups, usize)>,
    late: u64,
    keys_refused: u64,
    last_ingest: u64,
    scratch: Vec<u8>,
}

impl EventWindow {
    /// Windows of `size_ms` advancing by `slide_ms` (equal for tumbling;
    /// must divide it), kept open `lateness_ms` past their end.
    pub fn new(
        size_ms: u64,
        slide_ms: u64,
        lateness_ms: u64,
        key: Option<&str>,
        field: Option<&str>,
        aggregates: Aggregates,
        max_keys: usize,
    ) -> Result<EventWindow, String> {
        if size_ms == 0 || slide_ms == 0 {
            return Err("size_ms and slide_ms must be positive".into());
        }
        if slide_ms > size_ms || !size_ms.is_multiple_of(slide_ms) {
            return Err(format!(
                "slide_ms ({slide_ms}) must divide size_ms ({size_ms})"
            ));
        }
        if size_ms / slide_ms > 10_000 {
            return Err("size_ms / slide_ms is at most 10000 panes per window".into());
        }
        if aggregates.needs_field() && field.is_none() {
            return Err("sum, min, max and avg need a 'field'".into());
        }
        if aggregates == Aggregates::default() {
            return Err("choose at least one aggregate".into());
        }
        Ok(EventWindow {
            size: size_ms,
            slide: slide_ms,
            panes: size_ms / slide_ms,
            lateness: lateness_ms,
            key_json: key.map_or(Vec::new(), |k| {
                serde_json::to_vec(k).expect("a string serializes")
            }),
            key: key.map(str::to_string),
            field: field.map(str::to_string),
            aggregates,
            max_keys: max_keys.max(1),
            event_time: None,
            data: BTreeMap::new(),
            timers: Timers::new(),
            watermark: 0,
            closed_through: None,
            closing: None,
            late: 0,
            keys_refused: 0,
            last_ingest: 0,
            scratch: Vec::with_capacity(256),
        })
    }

    /// When window `last` (its last pane) closes: its end plus the lateness.
    fn close_time(&self, last: u64) -> u64 {
        (last + 1)
            .saturating_mul(self.slide)
            .saturating_add(self.lateness)
    }

    /// Whether window `last` still takes elements.
    fn is_open(&self, last: u64) -> bool {
        self.closed_through.is_none_or(|c| last > c) && self.close_time(last) > self.watermark
    }

    /// The windows pane `p` belongs to, by last pane.
    fn windows_of(&self, p: u64) -> std::ops::RangeInclusive<u64> {
        p..=p.saturating_add(self.panes - 1)
    }

    fn extract<'p>(&self, payload: &'p [u8]) -> Result<(u64, &'p [u8], f64), StageError> {
        let et = self
            .event_time
            .as_ref()
            .ok_or_else(|| StageError::Fatal("event time was never set".into()))?;
        let keys = [
            et.field.as_str(),
            self.key.as_deref().unwrap_or(""),
            self.field.as_deref().unwrap_or(""),
        ];
        let mut found = [None; 3];
        find_members(payload, &keys, &mut found)
            .map_err(|e| StageError::Rejected(Reason::new("invalid JSON", e.to_string())))?;
        // One scan of the payload for all three fields.
        let ts = et
            .read(found[0].map(|m| m.value))
            .map_err(|e| StageError::Rejected(e.into()))?;
        let missing = |name: &str| StageError::Rejected(Reason::new("missing field", name));
        let key: &[u8] = match &self.key {
            None => &[],
            Some(k) => found[1].ok_or_else(|| missing(k))?.value.raw.as_bytes(),
        };
        let value = match &self.field {
            None => 0.0,
            Some(f) => found[2]
                .ok_or_else(|| missing(f))?
                .value
                .as_f64()
                .filter(|v| v.is_finite())
                .ok_or_else(|| StageError::Rejected(Reason::new("not a number", f.clone())))?,
        };
        Ok((ts, key, value))
    }

    /// Registers the timers of the open windows pane `p` belongs to.
    fn register(&mut self, p: u64) {
        for last in self.windows_of(p) {
            if self.is_open(last) {
                let at = self.close_time(last);
                self.timers.register_event_time(at, last);
            }
        }
    }

    /// Emits window `last` (merging its panes per key, keys in order of
    /// first appearance), as far as the output takes it.
    fn emit_window(&mut self, last: u64, out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        let (mut groups, mut next) = match self.closing.take() {
            Some((l, g, k)) if l == last => (g, k),
            _ => {
                let first = (last + 1).saturating_sub(self.panes);
                let mut merged = Groups::default();
                for (_, keys) in self.data.range(first..=last) {
                    for (k, a) in keys {
                        merged.entry(k.clone()).or_insert(Agg::EMPTY).merge(a);
                    }
                }
                (merged, 0)
            }
        };
        let end = (last + 1).saturating_mul(self.slide);
        let start = end.saturating_sub(self.size);
        let mut error = None;
        while let Some((key, total)) = groups.get_index(next) {
            let key_json = self.key.is_some().then_some(&self.key_json[..]);
            format_result(
                &mut self.scratch,
                key_json,
                key,
                start,
                end,
                self.aggregates,
                total,
            );
            match out.emit(&self.scratch, ContentType::Json, self.last_ingest) {
                Err(e) if e.is_no_room() => {
                    self.closing = Some((last, std::mem::take(&mut groups), next));
                    return Ok(Flush::More);
                }
                Err(e) => error = Some(e),
                Ok(()) => {}
            }
            next += 1;
        }
        self.closed_through = Some(self.closed_through.map_or(last, |c| c.max(last)));
        // Panes no open window needs any more.
        let keep_from = (last + 2).saturating_sub(self.panes);
        self.data = self.data.split_off(&keep_from);
        match error {
            Some(e) => Err(e),
            None => Ok(Flush::Done),
        }
    }
}

impl Processor for EventWindow {
    fn drop_reason(&self) -> &'static str {
        "absorbed into window"
    }

    fn side_ports(&self) -> &'static [&'static str] {
        &[LATE]
    }

    fn uses_event_time(&self) -> bool {
        true
    }

    fn set_event_time(&mut self, event_time: &EventTime) {
        self.event_time = Some(event_time.clone());
    }

    fn on_watermark(&mut self, watermark_ms: u64) {
        self.watermark = self.watermark.max(watermark_ms);
    }

    fn timers(&mut self) -> Option<&mut Timers> {
        Some(&mut self.timers)
    }

    fn counts(&self) -> Vec<(&'static str, u64)> {
        let mut c = vec![("late elements", self.late)];
        if self.key.is_some() {
            c.push(("keys refused (max_keys)", self.keys_refused));
        }
        c
    }

    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError> {
        let (ts, key, value) = self.extract(element.payload())?;
        let p = ts / self.slide;
        if !self.windows_of(p).any(|last| self.is_open(last)) {
            self.late += 1;
            return Ok(Verdict::Side(0));
        }
        let new_pane = !self.data.contains_key(&p);
        let groups = self.data.entry(p).or_default();
        let full = groups.len() >= self.max_keys;
        match groups.get_mut(key) {
            Some(a) => a.add(value),
            None if full => {
                self.keys_refused += 1;
                return Err(StageError::Rejected(Reason::new(
                    "too many keys",
                    format!("more than max_keys = {} keys in a pane", self.max_keys),
                )));
            }
            None => {
                let mut a = Agg::EMPTY;
                a.add(value);
                groups.insert(key.into(), a);
            }
        }
        self.last_ingest = self.last_ingest.max(element.meta().ingest_ns);
        if new_pane {
            self.register(p);
        }
        Ok(Verdict::Drop)
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        if self.closed_through.is_some_and(|c| timer.key <= c) {
            return Ok(Flush::Done);
        }
        self.emit_window(timer.key, out)
    }

    fn finish(&mut self, out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        // The end of the input is the final watermark: every window closes.
        self.watermark = u64::MAX;
        while let Some(t) = self.timers.pop_event_due(u64::MAX) {
            if self.on_timer(t, out)? == Flush::More {
                self.timers.push_back(t);
                return Ok(Flush::More);
            }
        }
        Ok(Flush::Done)
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        let mut w = StateWriter::new();
        w.u64(self.watermark)
            .u64(self.closed_through.map_or(0, |c| c + 1))
            .u64(self.late)
            .u64(self.keys_refused)
            .u64(self.data.len() as u64);
        for (p, groups) in &self.data {
            w.u64(*p).u64(groups.len() as u64);
            for (k, a) in groups {
                w.bytes(k).u64(a.count).f64(a.sum).f64(a.min).f64(a.max);
            }
        }
        Ok(w.finish())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let mut r = StateReader::new(state);
        self.watermark = r.u64()?;
        self.closed_through = r.u64()?.checked_sub(1);
        self.late = r.u64()?;
        self.keys_refused = r.u64()?;
        let panes = r.u64()?;
        self.data.clear();
        for _ in 0..panes {
            let p = r.u64()?;
            let n = r.u64()?;
            let mut groups = IndexMap::default();
            for _ in 0..n {
                let k: Box<[u8]> = r.bytes()?.into();
                let a = Agg {
                    count: r.u64()?,
                    sum: r.f64()?,
                    min: r.f64()?,
                    max: r.f64()?,
                };
                groups.insert(k, a);
            }
            self.data.insert(p, groups);
        }
        r.done()?;
        let panes: Vec<u64> = self.data.keys().copied().collect();
        for p in panes {
            self.register(p);
        }
        Ok(())
    }
}
