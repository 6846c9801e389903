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

use crate::arena::ContentType;
use crate::checkpoint::{StateReader, StateWriter};
use crate::clock::now_ns;
use crate::operators::json::find_members;
use crate::operators::params::params;
use crate::operators::util::{fnv1a64, write_json_f64, FnvBuild, PrehashedBuild};
use crate::stage::{Element, Emitter, Flush, Processor, Reason, StageError, Verdict};

mod event;
mod processing;

pub use event::EventWindow;
pub use processing::Window;

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

params! {
    /// Parameters of `window`.
    pub(crate) struct WindowParams {
        /// "tumbling" (default) or "sliding"
        #[serde(default = "tumbling")]
        kind: String,
        /// window length in elements (count windows; whole stream, all keys)
        size: Option<u64>,
        /// window length in ms, aligned on the Unix epoch (time windows)
        size_ms: Option<u64>,
        /// "processing" (default: the clock when an element arrives) or "event"
        /// (the timestamps its upstream sources declare with event_time; windows
        /// close as the watermark passes their end)
        time: Option<String>,
        /// event time: keep a window open this long after the watermark passed its
        /// end (default 0); later elements go to the port 'late'
        allowed_lateness_ms: Option<u64>,
        /// sliding count windows: advance by this many elements (must divide size)
        slide: Option<u64>,
        /// sliding time windows: advance by this many ms (must divide size_ms)
        slide_ms: Option<u64>,
        /// top-level field to group by (default: one group)
        key: Option<String>,
        /// top-level numeric field to aggregate
        field: Option<String>,
        /// any of count, sum, min, max, avg (default: all with a field, else count)
        aggregates: Option<Vec<String>>,
        /// keys per window at most; elements of more keys are rejected, and the
        /// keys refused counted in the summary (default 10000)
        #[serde(default = "default_max_keys")]
        max_keys: usize,
    }
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
mod tests;
