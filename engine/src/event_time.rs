//! Event time: reading an element's timestamp, the watermark a source
//! derives from the timestamps it has seen, and timers.
//!
//! A source that declares `event_time = { field = "ts", unit = "ms" }`
//! reads each element's timestamp from that top-level JSON field (Unix
//! milliseconds or seconds, or an RFC 3339 string). With `watermark = {
//! max_out_of_orderness_ms = 2000, idle_timeout_ms = 5000 }` it sends, in
//! band after each batch that advanced it, the watermark "highest
//! timestamp seen minus the bound": a promise that nothing older follows.
//! An element older than the watermark when it reaches a window is late.
//! A stage with several inputs forwards the least of their watermarks; an
//! input whose source has had no data for `idle_timeout_ms` says so
//! ([`crate::ring::Control::Idle`]) and stops holding that minimum back
//! until it sends a watermark again.
//!
//! Timers ([`Timers`]) are how an operator acts on time: it registers one
//! for an event time (fired once the watermark reaches it) or for a
//! processing time (fired once the clock does), and the runtime calls
//! [`Processor::on_timer`](crate::stage::Processor::on_timer) when it is due.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::operators::json::{find_field, Field};

/// How a timestamp field is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Unix milliseconds (a JSON number, or a string holding one).
    Ms,
    /// Unix seconds (may have a fraction).
    S,
    /// An RFC 3339 date-time string, e.g. `"2026-11-30T08:15:00.250Z"`.
    Rfc3339,
}

/// A source's `event_time` declaration: where each element's timestamp is.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTime {
    /// The top-level JSON field holding the timestamp.
    pub field: String,
    /// How it is written (default `ms`).
    #[serde(default = "default_unit")]
    pub unit: TimeUnit,
}

fn default_unit() -> TimeUnit {
    TimeUnit::Ms
}

/// A source's `watermark` settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    /// How far behind the highest timestamp seen an element may arrive and
    /// still be on time (default 0: in-order input).
    #[serde(default)]
    pub max_out_of_orderness_ms: u64,
    /// After this long without data the source declares itself idle
    /// (default: never).
    pub idle_timeout_ms: Option<u64>,
}

/// Why an element's timestamp could not be read (a stage rejects the
/// element with the reason "no event time" and this detail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoEventTime(pub String);

impl std::fmt::Display for NoEventTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no event time: {}", self.0)
    }
}

fn bad(detail: String) -> NoEventTime {
    NoEventTime(detail)
}

impl EventTime {
    /// The element's timestamp in Unix milliseconds.
    pub fn extract(&self, payload: &[u8]) -> Result<u64, NoEventTime> {
        let lookup = find_field(payload, &self.field).map_err(|e| bad(e.to_string()))?;
        self.read(lookup.field)
    }

    /// The timestamp in a field already looked up (`None`: the payload has
    /// no such field), for an operator that scans the payload for other
    /// fields in the same pass.
    pub fn read(&self, field: Option<Field<'_>>) -> Result<u64, NoEventTime> {
        let field = field.ok_or_else(|| bad(format!("no field '{}'", self.field)))?;
        let text = field.as_text();
        match self.unit {
            TimeUnit::Ms => text
                .trim()
                .parse::<u64>()
                .ok()
                .or_else(|| {
                    let f: f64 = text.trim().parse().ok()?;
                    (f.is_finite() && f >= 0.0).then_some(f as u64)
                })
                .ok_or_else(|| bad(format!("'{}' is not Unix milliseconds", field.raw))),
            TimeUnit::S => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| (f * 1000.0).round() as u64)
                .ok_or_else(|| bad(format!("'{}' is not Unix seconds", field.raw))),
            TimeUnit::Rfc3339 => parse_rfc3339(&text)
                .ok_or_else(|| bad(format!("'{}' is not an RFC 3339 date-time", field.raw))),
        }
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` into Unix
/// milliseconds (the fraction truncated to milliseconds). Times before
/// 1970 are refused.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 60 + m;
            if *c == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_min * 60;
    u64::try_from(secs * 1000 + millis).ok()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix milliseconds as an RFC 3339 UTC date-time with milliseconds,
/// e.g. `2026-11-30T08:15:00.250Z` (the inverse of [`parse_rfc3339`]).
pub fn format_rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// Event time: due when the watermark reaches the timer's time (Unix ms).
    Event,
    /// Processing time: due when [`crate::clock::now_ns`] reaches it.
    Processing,
}

/// A due timer: its domain, its time and the key it was registered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    /// Which clock.
    pub domain: TimeDomain,
    /// When: Unix ms for event time, monotonic ns for processing time.
    pub time: u64,
    /// The operator's own key (a window's end, a session's id).
    pub key: u64,
}

/// An operator's timers, ordered by time; registering the same timer twice
/// keeps one.
#[derive(Debug, Default, Clone)]
pub struct Timers {
    event: BTreeSet<(u64, u64)>,
    processing: BTreeSet<(u64, u64)>,
}

impl Timers {
    /// An empty set of timers.
    pub fn new() -> Timers {
        Timers::default()
    }

    /// Fires `key` once the watermark reaches `time_ms`.
    pub fn register_event_time(&mut self, time_ms: u64, key: u64) {
        self.event.insert((time_ms, key));
    }

    /// Fires `key` once the monotonic clock reaches `time_ns`.
    pub fn register_processing_time(&mut self, time_ns: u64, key: u64) {
        self.processing.insert((time_ns, key));
    }

    /// Removes a registered timer; true if it was there.
    pub fn cancel(&mut self, timer: Timer) -> bool {
        match timer.domain {
            TimeDomain::Event => self.event.remove(&(timer.time, timer.key)),
            TimeDomain::Processing => self.processing.remove(&(timer.time, timer.key)),
        }
    }

    /// The earliest event-time timer at or before `watermark_ms`, removed.
    pub fn pop_event_due(&mut self, watermark_ms: u64) -> Option<Timer> {
        let &(time, key) = self.event.first().filter(|(t, _)| *t <= watermark_ms)?;
        self.event.pop_first();
        Some(Timer {
            domain: TimeDomain::Event,
            time,
            key,
        })
    }

    /// The earliest processing-time timer at or before `now_ns`, removed.
    pub fn pop_processing_due(&mut self, now_ns: u64) -> Option<Timer> {
        let &(time, key) = self.processing.first().filter(|(t, _)| *t <= now_ns)?;
        self.processing.pop_first();
        Some(Timer {
            domain: TimeDomain::Processing,
            time,
            key,
        })
    }

    /// Puts back a timer that could not run for want of room.
    pub fn push_back(&mut self, timer: Timer) {
        match timer.domain {
            TimeDomain::Event => self.register_event_time(timer.time, timer.key),
            TimeDomain::Processing => self.register_processing_time(timer.time, timer.key),
        }
    }

    /// When the next processing-time timer is due, if any.
    pub fn next_processing_ns(&self) -> Option<u64> {
        self.processing.first().map(|&(t, _)| t)
    }

    /// Registered timers of both kinds.
    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn et(unit: TimeUnit) -> EventTime {
        EventTime {
            field: "ts".into(),
            unit,
        }
    }

    #[test]
    fn reads_the_three_units() {
        assert_eq!(
            et(TimeUnit::Ms).extract(br#"{"ts":1700000000123}"#),
            Ok(1_700_000_000_123)
        );
        assert_eq!(et(TimeUnit::Ms).extract(br#"{"ts":"42"}"#), Ok(42));
        assert_eq!(et(TimeUnit::S).extract(br#"{"ts":1.5}"#), Ok(1500));
        assert_eq!(
            et(TimeUnit::Rfc3339).extract(br#"{"ts":"2026-11-30T08:15:00.250Z"}"#),
            Ok(1_796_026_500_250)
        );
    }

    #[test]
    fn unreadable_timestamps_say_why() {
        let e = et(TimeUnit::Ms).extract(br#"{"x":1}"#).unwrap_err();
        assert!(e.0.contains("no field 'ts'"));
        assert!(e.to_string().starts_with("no event time: "));
        assert!(et(TimeUnit::Ms).extract(br#"{"ts":"soon"}"#).is_err());
        assert!(et(TimeUnit::Ms).extract(b"not json").is_err());
        assert!(et(TimeUnit::Rfc3339)
            .extract(br#"{"ts":"2026-02-30T00:00:00Z"}"#)
            .is_err());
    }

    #[test]
    fn rfc3339_offsets_and_fractions() {
        let z = parse_rfc3339("1970-01-01T00:00:00Z");
        assert_eq!(z, Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.123456Z"), Some(1123));
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z"), Some(951_825_600_000));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), None);
        assert_eq!(parse_rfc3339("2026-11-30 08:15:00"), None);
    }

    #[test]
    fn format_is_the_inverse_of_parse() {
        for ms in [0, 951_825_600_000, 1_796_026_500_250, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms));
        }
        assert_eq!(
            format_rfc3339(1_796_026_500_250),
            "2026-11-30T08:15:00.250Z"
        );
    }

    #[test]
    fn timers_fire_in_time_order_once() {
        let mut t = Timers::new();
        t.register_event_time(30, 3);
        t.register_event_time(10, 1);
        t.register_event_time(10, 1);
        t.register_event_time(20, 2);
        assert_eq!(t.len(), 3);
        assert_eq!(t.pop_event_due(5), None);
        let fired: Vec<u64> = std::iter::from_fn(|| t.pop_event_due(25))
            .map(|t| t.key)
            .collect();
        assert_eq!(fired, vec![1, 2]);
        t.register_processing_time(100, 9);
        assert_eq!(t.next_processing_ns(), Some(100));
        assert_eq!(t.pop_processing_due(99), None);
        assert_eq!(t.pop_processing_due(100).map(|t| t.key), Some(9));
        assert_eq!(t.len(), 1);
    }
}
