//! Holding what a test captured against what it expects, and saying how
//! they differ: a line diff of payloads (`-` expected, `+` actual), counts,
//! and the elements that fail a `where` or a `reason`.

use std::fmt;

use serde_json::Value;

use crate::testing::capture::Captured;
use crate::topology::test_spec::{Expect, Expected};

/// Most elements listed after a count mismatch.
const LISTED: usize = 10;

/// One line of a payload diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffLine {
    /// In both, at this place.
    Same(String),
    /// Expected, not received.
    Missing(String),
    /// Received, not expected.
    Extra(String),
}

/// Why a test failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The payloads at `at` differ from the expected ones.
    Payloads {
        /// Where the expectation is written (`file:line:col`).
        origin: String,
        /// `node.port`, or the sink's name.
        at: String,
        /// Whether order was compared.
        ordered: bool,
        /// Expected and actual lines, merged.
        diff: Vec<DiffLine>,
    },
    /// `at` received `actual` elements, not `expected`.
    Count {
        /// Where the expectation is written.
        origin: String,
        /// `node.port`, or the sink's name.
        at: String,
        /// The expected count.
        expected: usize,
        /// The first received payloads, shown.
        actual: Vec<String>,
        /// How many were received.
        received: usize,
    },
    /// Element `index` (from 1) does not satisfy the `where` condition.
    Where {
        /// Where the expectation is written.
        origin: String,
        /// `node.port`, or the sink's name.
        at: String,
        /// Position among the received elements, from 1.
        index: usize,
        /// The payload, shown.
        payload: String,
        /// Why it could not be evaluated (not JSON...), if so.
        why: Option<String>,
    },
    /// Element `index` (from 1) has another rejection reason, or none.
    Reason {
        /// Where the expectation is written.
        origin: String,
        /// `node.port`, or the sink's name.
        at: String,
        /// Position among the received elements, from 1.
        index: usize,
        /// The expected reason.
        expected: String,
        /// The element's reason, if any.
        actual: Option<String>,
        /// The payload, shown.
        payload: String,
    },
    /// The test's pipeline did not run cleanly (a stage failed, a worker
    /// panicked, the drain deadline passed) or could not be built.
    Run(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Payloads {
                origin,
                at,
                ordered,
                diff,
            } => {
                let how = if *ordered { "" } else { ", in any order" };
                writeln!(
                    f,
                    "{origin}: {at}: payloads differ{how} (- expected, + actual):"
                )?;
                for line in diff {
                    match line {
                        DiffLine::Same(s) => writeln!(f, "      {s}")?,
                        DiffLine::Missing(s) => writeln!(f, "    - {s}")?,
                        DiffLine::Extra(s) => writeln!(f, "    + {s}")?,
                    }
                }
                Ok(())
            }
            Failure::Count {
                origin,
                at,
                expected,
                actual,
                received,
            } => {
                writeln!(
                    f,
                    "{origin}: {at}: expected {expected} element{}, received {received}{}",
                    plural(*expected),
                    if *received == 0 { "" } else { ":" }
                )?;
                for p in actual {
                    writeln!(f, "    + {p}")?;
                }
                if *received > actual.len() {
                    writeln!(f, "    ... and {} more", received - actual.len())?;
                }
                Ok(())
            }
            Failure::Where {
                origin,
                at,
                index,
                payload,
                why,
            } => match why {
                None => writeln!(
                    f,
                    "{origin}: {at}: element {index} does not satisfy `where`: {payload}"
                ),
                Some(why) => writeln!(
                    f,
                    "{origin}: {at}: element {index} cannot be tested by `where` ({why}): {payload}"
                ),
            },
            Failure::Reason {
                origin,
                at,
                index,
                expected,
                actual,
                payload,
            } => match actual {
                Some(r) => writeln!(
                    f,
                    "{origin}: {at}: element {index} was rejected for '{r}', not '{expected}': {payload}"
                ),
                None => writeln!(
                    f,
                    "{origin}: {at}: element {index} carries no rejection reason (expected '{expected}'): {payload}"
                ),
            },
            Failure::Run(m) => writeln!(f, "{m}"),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Everything `got` does not do that `expect` asks for.
pub(crate) fn check(expect: &Expect, got: &[Captured]) -> Vec<Failure> {
    let at = expect.target();
    let origin = &expect.origin;
    let mut failures = Vec::new();
    if let Some(want) = &expect.payloads {
        let diff = if expect.ordered {
            diff_ordered(want, got)
        } else {
            diff_unordered(want, got)
        };
        if diff.iter().any(|l| !matches!(l, DiffLine::Same(_))) {
            failures.push(Failure::Payloads {
                origin: origin.clone(),
                at: at.clone(),
                ordered: expect.ordered,
                diff,
            });
        }
    }
    if let Some(n) = expect.count.filter(|n| *n != got.len()) {
        failures.push(Failure::Count {
            origin: origin.clone(),
            at: at.clone(),
            expected: n,
            actual: got.iter().take(LISTED).map(|c| show(&c.payload)).collect(),
            received: got.len(),
        });
    }
    if let Some(cond) = &expect.cond {
        for (i, c) in got.iter().enumerate() {
            let why = match cond.matches(&c.payload) {
                Ok(true) => continue,
                Ok(false) => None,
                Err(reason) => Some(reason.to_string()),
            };
            failures.push(Failure::Where {
                origin: origin.clone(),
                at: at.clone(),
                index: i + 1,
                payload: show(&c.payload),
                why,
            });
        }
    }
    if let Some(want) = &expect.reason {
        for (i, c) in got.iter().enumerate() {
            if c.reason != Some(want.as_str()) {
                failures.push(Failure::Reason {
                    origin: origin.clone(),
                    at: at.clone(),
                    index: i + 1,
                    expected: want.clone(),
                    actual: c.reason.map(str::to_string),
                    payload: show(&c.payload),
                });
            }
        }
    }
    failures
}

impl Expected {
    /// Whether the received `payload` is this one.
    pub(crate) fn matches(&self, payload: &[u8]) -> bool {
        match self {
            Expected::Bytes(b) => b == payload,
            Expected::Json(want) => {
                serde_json::from_slice::<Value>(payload).is_ok_and(|got| json_eq(want, &got))
            }
        }
    }

    fn show(&self) -> String {
        match self {
            Expected::Bytes(b) => show(b),
            Expected::Json(v) => v.to_string(),
        }
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A payload on one line: UTF-8 as text with control characters escaped,
/// other bytes as `\xNN`.
pub(crate) fn show(payload: &[u8]) -> String {
    let mut out = String::new();
    for chunk in payload.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A line diff keeping order: the longest common subsequence stays, the
/// rest is `-` (expected) or `+` (received).
fn diff_ordered(want: &[Expected], got: &[Captured]) -> Vec<DiffLine> {
    let (n, m) = (want.len(), got.len());
    // lcs[i][j]: the longest common subsequence of want[i..] and got[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if want[i].matches(&got[j].payload) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(n.max(m));
    while i < n || j < m {
        if i < n && j < m && want[i].matches(&got[j].payload) {
            out.push(DiffLine::Same(show(&got[j].payload)));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(DiffLine::Extra(show(&got[j].payload)));
            j += 1;
        } else {
            out.push(DiffLine::Missing(want[i].show()));
            i += 1;
        }
    }
    out
}

/// The same as a multiset: matched lines first (in received order), then
/// the expected ones not received, then the received ones not expected.
fn diff_unordered(want: &[Expected], got: &[Captured]) -> Vec<DiffLine> {
    let mut used = vec![false; got.len()];
    let mut missing = Vec::new();
    for w in want {
        match (0..got.len()).find(|&j| !used[j] && w.matches(&got[j].payload)) {
            Some(j) => used[j] = true,
            None => missing.push(DiffLine::Missing(w.show())),
        }
    }
    let mut out: Vec<DiffLine> = got
        .iter()
        .zip(&used)
        .filter(|(_, u)| **u)
        .map(|(c, _)| DiffLine::Same(show(&c.payload)))
        .collect();
    out.extend(missing);
    out.extend(
        got.iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(c, _)| DiffLine::Extra(show(&c.payload))),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::Filter;

    fn got(payloads: &[&str]) -> Vec<Captured> {
        payloads
            .iter()
            .map(|p| Captured {
                payload: p.as_bytes().to_vec(),
                reason: None,
            })
            .collect()
    }

    fn bytes(payloads: &[&str]) -> Vec<Expected> {
        payloads
            .iter()
            .map(|p| Expected::Bytes(p.as_bytes().to_vec()))
            .collect()
    }

    fn expect(payloads: Option<Vec<Expected>>) -> Expect {
        Expect {
            node: "n".into(),
            port: Some("output".into()),
            origin: "f.toml:3:1".into(),
            payloads,
            ordered: true,
            count: None,
            cond: None,
            reason: None,
        }
    }

    #[test]
    fn equal_payloads_pass() {
        let e = expect(Some(bytes(&["a", "b"])));
        assert_eq!(check(&e, &got(&["a", "b"])), []);
    }

    #[test]
    fn ordered_diff_marks_missing_and_extra() {
        let diff = diff_ordered(&bytes(&["a", "b", "c"]), &got(&["a", "x", "c", "d"]));
        use DiffLine::*;
        assert_eq!(
            diff,
            [
                Same("a".into()),
                Extra("x".into()),
                Missing("b".into()),
                Same("c".into()),
                Extra("d".into())
            ]
        );
        // A swap is a change under `ordered`, nothing under `ordered = false`.
        let swapped = diff_ordered(&bytes(&["a", "b"]), &got(&["b", "a"]));
        assert!(swapped.iter().any(|l| !matches!(l, Same(_))));
        let any_order = diff_unordered(&bytes(&["a", "b"]), &got(&["b", "a"]));
        assert_eq!(any_order, [Same("b".into()), Same("a".into())]);
    }

    #[test]
    fn failure_renders_a_diff() {
        let e = expect(Some(bytes(&["a", "b"])));
        let failures = check(&e, &got(&["a", "c\n"]));
        assert_eq!(failures.len(), 1);
        assert_eq!(
            failures[0].to_string(),
            "f.toml:3:1: n.output: payloads differ (- expected, + actual):\n      a\n    + c\\n\n    - b\n"
        );
    }

    #[test]
    fn json_expectations_ignore_key_order_and_spacing() {
        let want = Expected::Json(serde_json::json!({"a": 1, "b": [true, "x"]}));
        assert!(want.matches(br#"{ "b": [true,"x"], "a": 1.0 }"#));
        assert!(!want.matches(br#"{"a":2,"b":[true,"x"]}"#));
        assert!(!want.matches(br#"{"a":1,"b":[true,"x"],"c":0}"#));
        assert!(!want.matches(b"not json"));
        // A string expectation is exact.
        assert!(!Expected::Bytes(br#"{"a":1}"#.to_vec()).matches(br#"{"a": 1}"#));
    }

    #[test]
    fn count_where_and_reason_name_the_element() {
        let cond: toml::Table = toml::from_str("w = { field = \"v\", gt = 1 }").unwrap();
        let mut e = expect(None);
        e.count = Some(1);
        e.cond = Some(Filter::from_toml(&cond["w"], false).unwrap());
        e.reason = Some("invalid JSON".into());
        let mut g = got(&[r#"{"v":2}"#, r#"{"v":0}"#, "oops"]);
        g[2].reason = Some("invalid JSON");
        let text: Vec<String> = check(&e, &g).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "f.toml:3:1: n.output: expected 1 element, received 3:\n    + {\"v\":2}\n    + {\"v\":0}\n    + oops\n",
                "f.toml:3:1: n.output: element 2 does not satisfy `where`: {\"v\":0}\n",
                "f.toml:3:1: n.output: element 3 cannot be tested by `where` (invalid JSON: expected a JSON object at line 1 column 1): oops\n",
                "f.toml:3:1: n.output: element 1 carries no rejection reason (expected 'invalid JSON'): {\"v\":2}\n",
                "f.toml:3:1: n.output: element 2 carries no rejection reason (expected 'invalid JSON'): {\"v\":0}\n",
            ]
        );
    }

    #[test]
    fn show_escapes_what_would_break_a_line() {
        assert_eq!(show(b"a\tb\nc"), "a\\tb\\nc");
        assert_eq!(show(b"\xff\x00ok"), "\\xff\\0ok");
        assert_eq!(show("é".as_bytes()), "é");
    }
}
