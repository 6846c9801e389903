//! Zero-allocation access to top-level fields of a JSON object.
//!
//! Operators route on, test and rewrite single fields. Parsing a whole
//! document into a tree would allocate per element; instead a hand-written
//! scanner ([`scan`]) walks the object once, validates all of it exactly as
//! serde_json would, and returns the chosen fields' raw text and byte spans
//! (borrowed from the payload). It replaced a serde_json `DeserializeSeed`
//! walk that did the same at about six times the cost; the differential
//! test in `engine/tests/json_differential.rs` keeps that walk as the
//! reference.

use std::borrow::Cow;

mod scan;

#[cfg(test)]
pub(crate) use scan::Baseline;
pub use scan::JsonError;
pub(crate) use scan::OneBlock;
use scan::{find_flat, scan_object, scan_rest, Key, Members, Mode};
pub(crate) use scan::{short_eq, simd, Detect, Isa, Simd};

/// A top-level field found in a payload.
#[derive(Clone, Copy, Debug)]
pub struct Field<'a> {
    /// The value's JSON text, e.g. `"metric"`, `42`, `{"a":1}`.
    pub raw: &'a str,
    /// Byte offset of the value in the payload.
    pub start: usize,
}

impl<'a> Field<'a> {
    /// The value as text: a JSON string unescaped, anything else as written.
    #[inline]
    pub fn as_text(&self) -> Cow<'a, str> {
        let raw = self.raw;
        if raw.len() >= 2 && raw.starts_with('"') {
            let inner = &raw[1..raw.len() - 1];
            // A plain loop: values are short, and memchr's setup costs more.
            if !inner.bytes().any(|b| b == b'\\') {
                return Cow::Borrowed(inner);
            }
            if let Ok(s) = serde_json::from_str::<String>(raw) {
                return Cow::Owned(s);
            }
        }
        Cow::Borrowed(raw)
    }

    /// The value as a number, if it is one (or a string holding one).
    pub fn as_f64(&self) -> Option<f64> {
        self.as_text().trim().parse().ok()
    }

    /// Byte offset just past the value.
    pub fn end(&self) -> usize {
        self.start + self.raw.len()
    }
}

/// What [`find_field`] learned about the object.
#[derive(Clone, Copy, Debug)]
pub struct Lookup<'a> {
    /// The field, if present (the first occurrence).
    pub field: Option<Field<'a>>,
    /// Number of top-level members.
    pub members: usize,
}

/// Validates `payload` as one JSON object and finds top-level `key` in it.
pub fn find_field<'a>(payload: &'a [u8], key: &str) -> Result<Lookup<'a>, JsonError> {
    let (value, members) = match find_flat(Detect, payload, key) {
        Ok(found) => found,
        Err(rest) => {
            let mut seek = Seek { key, field: None };
            let members = scan_rest(payload, rest, &mut seek)?;
            return Ok(Lookup {
                field: seek.field,
                members,
            });
        }
    };
    Ok(Lookup {
        // A clean block is ASCII: the text is UTF-8.
        field: value.and_then(|(start, end)| {
            let raw = std::str::from_utf8(payload.get(start..end)?).ok()?;
            Some(Field { raw, start })
        }),
        members,
    })
}

/// The first member named `key` is taken as a raw value; every other value
/// is only checked, as serde_json checks an `IgnoredAny`.
struct Seek<'k, 'a> {
    key: &'k str,
    field: Option<Field<'a>>,
}

impl<'a> Members<'a> for Seek<'_, 'a> {
    // Called per member from the walk: a call would cost as much as it.
    #[inline(always)]
    fn key(&mut self, key: Key<'_>, _key_start: usize) -> Mode {
        if self.field.is_none() && key.is(self.key) {
            Mode::Raw
        } else {
            Mode::Skip
        }
    }

    #[inline]
    fn raw_value(&mut self, raw: &'a str, start: usize) {
        self.field = Some(Field { raw, start });
    }

    fn restart(&mut self) {
        self.field = None;
    }

    #[inline(always)]
    fn done(&self) -> bool {
        self.field.is_some()
    }
}

/// A top-level value found by [`find_value`]: checked against the JSON
/// grammar, not yet checked to be UTF-8.
#[derive(Clone, Copy, Debug)]
pub struct RawValue<'a> {
    /// The value's JSON text as bytes, e.g. `"metric"`, `42`, `{"a":1}`.
    bytes: &'a [u8],
    /// Byte offset of the value in the payload.
    start: usize,
    /// A string with no escape and only ASCII bytes, or a number or a
    /// literal: the text needs no decoding and is UTF-8.
    plain: bool,
}

impl<'a> RawValue<'a> {
    /// The value's JSON text as bytes, e.g. `"metric"`, `42`, `{"a":1}`.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Byte offset of the value in the payload.
    pub fn start(&self) -> usize {
        self.start
    }

    /// The value's text when that needs no decoding: a string's bytes
    /// between its quotes when it has no escape, any other value as
    /// written. `None` for a string with escapes. Not checked to be UTF-8:
    /// compare it with known text (what equals a `str` is UTF-8), or check
    /// it with [`RawValue::field`].
    #[inline]
    #[allow(
        clippy::manual_contains,
        reason = "`contains` calls memchr: 31 instructions per element on the hot path, more than the loop"
    )]
    pub fn plain_text(&self) -> Option<&'a [u8]> {
        if self.plain {
            // Known from the scan: strip the quotes of a string, if any.
            return Some(match self.bytes {
                [b'"', inner @ .., b'"'] => inner,
                other => other,
            });
        }
        match self.bytes {
            // A plain loop: values are short, and memchr's setup costs more.
            [b'"', inner @ .., b'"'] => (!inner.iter().any(|&b| b == b'\\')).then_some(inner),
            other => Some(other),
        }
    }

    /// Whether the value is UTF-8, which [`find_field`] requires of the
    /// value it returns.
    #[inline]
    pub fn is_utf8(&self) -> bool {
        self.plain || self.bytes.is_ascii() || std::str::from_utf8(self.bytes).is_ok()
    }

    /// The value as a [`Field`], if it is UTF-8.
    pub fn field(&self) -> Option<Field<'a>> {
        let raw = std::str::from_utf8(self.bytes).ok()?;
        Some(Field {
            raw,
            start: self.start,
        })
    }
}

/// [`find_field`] without the UTF-8 check of the value: validates `payload`
/// as one JSON object (grammar, keys) and finds top-level `key` in it.
///
/// It accepts what [`find_field`] accepts and more: a document whose `key`
/// value holds invalid UTF-8 is refused by `find_field` but returned here
/// (see [`RawValue::field`]). A caller that compares the value with known
/// text skips decoding it; `route-by-field` does, and calls `find_field`
/// for the exact error when its fast path does not decide.
#[inline]
pub fn find_value<'a>(payload: &'a [u8], key: &str) -> Result<Option<RawValue<'a>>, JsonError> {
    match find_value_flat(Detect, payload, key) {
        Ok(value) => Ok(value),
        Err(rest) => find_value_rest(payload, key, rest),
    }
}

/// [`find_value`]'s first step, for a caller on a hot path: the answer
/// where the payload is a flat object of one clean block (see
/// `scan/flat.rs`), else the index built for [`find_value_rest`]. Inlined
/// into its caller: the value stays in registers.
#[inline(always)]
pub(crate) fn find_value_flat<'a, I: Isa>(
    isa: I,
    payload: &'a [u8],
    key: &str,
) -> Result<Option<RawValue<'a>>, OneBlock> {
    let (value, _) = find_flat(isa, payload, key)?;
    Ok(value.and_then(|(start, end)| {
        Some(RawValue {
            bytes: payload.get(start..end)?,
            start,
            // A clean block has no escape and only ASCII.
            plain: true,
        })
    }))
}

/// [`find_value`] where [`find_value_flat`] did not decide.
#[inline(never)]
pub(crate) fn find_value_rest<'a>(
    payload: &'a [u8],
    key: &str,
    rest: OneBlock,
) -> Result<Option<RawValue<'a>>, JsonError> {
    let mut seek = SeekBytes { key, value: None };
    scan_rest(payload, rest, &mut seek)?;
    Ok(seek.value)
}

/// As [`Seek`], but the value is taken as bytes.
struct SeekBytes<'k, 'a> {
    key: &'k str,
    value: Option<RawValue<'a>>,
}

impl<'a> Members<'a> for SeekBytes<'_, 'a> {
    // Called per member from the walk: a call would cost as much as it.
    #[inline(always)]
    fn key(&mut self, key: Key<'_>, _key_start: usize) -> Mode {
        if self.value.is_none() && key.is(self.key) {
            Mode::Bytes
        } else {
            Mode::Skip
        }
    }

    #[inline]
    fn raw_value(&mut self, _raw: &'a str, _start: usize) {
        unreachable!("SeekBytes asks for bytes only")
    }

    #[inline]
    fn raw_bytes(&mut self, bytes: &'a [u8], start: usize, plain: bool) {
        self.value = Some(RawValue {
            bytes,
            start,
            plain,
        });
    }

    fn restart(&mut self) {
        self.value = None;
    }

    #[inline(always)]
    fn done(&self) -> bool {
        self.value.is_some()
    }
}

/// A top-level member found by [`find_members`]: where its key starts, and
/// its value (byte offsets into the payload).
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    /// Byte offset of the key's opening quote.
    pub key_start: usize,
    /// The member's value.
    pub value: Field<'a>,
}

/// Validates `payload` as one JSON object and finds the first occurrence of
/// each of `keys` in one pass, into `found[i]` for `keys[i]` (`found` is at
/// least as long as `keys`). Returns the number of top-level members.
/// Allocation-free, like [`find_field`].
pub fn find_members<'a>(
    payload: &'a [u8],
    keys: &[&str],
    found: &mut [Option<Member<'a>>],
) -> Result<usize, JsonError> {
    debug_assert!(found.len() >= keys.len());
    let mut seek = SeekMany {
        keys,
        found,
        pending: None,
    };
    seek.restart();
    scan_object(payload, &mut seek)
}

/// Every value is taken as a raw value (as serde_json's `RawValue`); the
/// first one under each wanted key is recorded.
struct SeekMany<'k, 'f, 'a> {
    keys: &'k [&'k str],
    found: &'f mut [Option<Member<'a>>],
    /// The slot and key offset for the value being scanned.
    pending: Option<(usize, usize)>,
}

impl<'a> Members<'a> for SeekMany<'_, '_, 'a> {
    #[inline]
    fn key(&mut self, key: Key<'_>, key_start: usize) -> Mode {
        self.pending = self
            .keys
            .iter()
            .position(|k| key.is(k))
            .filter(|&i| self.found[i].is_none())
            .map(|i| (i, key_start));
        Mode::Raw
    }

    #[inline]
    fn raw_value(&mut self, raw: &'a str, start: usize) {
        if let Some((i, key_start)) = self.pending.take() {
            self.found[i] = Some(Member {
                key_start,
                value: Field { raw, start },
            });
        }
    }

    fn restart(&mut self) {
        self.found.iter_mut().for_each(|f| *f = None);
        self.pending = None;
    }
}

/// Writes `payload` without the members at `remove` (from
/// [`find_members`], any order, `None`s ignored) into `out`, keeping the
/// object's commas right.
pub fn remove_members(payload: &[u8], remove: &mut [Option<Member<'_>>], out: &mut Vec<u8>) {
    remove.sort_unstable_by_key(|m| m.map_or(usize::MAX, |m| m.key_start));
    out.clear();
    let mut copied = 0;
    for m in remove.iter().flatten() {
        let end = m.value.end();
        // Take the member with the comma after it; the last member takes the
        // comma before it instead.
        let after = skip_ws(payload, end);
        let (cut_start, cut_end) = if payload.get(after) == Some(&b',') {
            (m.key_start, skip_ws(payload, after + 1))
        } else {
            let mut s = m.key_start;
            while s > copied && payload[s - 1].is_ascii_whitespace() {
                s -= 1;
            }
            if s > copied && payload[s - 1] == b',' {
                s -= 1;
                while s > copied && payload[s - 1].is_ascii_whitespace() {
                    s -= 1;
                }
            } else if s == copied {
                // The previous cut took the comma after the member before
                // this one; the comma before *that* one is already in `out`.
                while out.last().is_some_and(u8::is_ascii_whitespace) {
                    out.pop();
                }
                if out.last() == Some(&b',') {
                    out.pop();
                    while out.last().is_some_and(u8::is_ascii_whitespace) {
                        out.pop();
                    }
                }
            }
            (s, end)
        };
        if cut_start >= copied {
            out.extend_from_slice(&payload[copied..cut_start]);
        }
        copied = copied.max(cut_end);
    }
    out.extend_from_slice(&payload[copied..]);
}

fn skip_ws(payload: &[u8], mut i: usize) -> usize {
    while i < payload.len() && payload[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Writes `payload` with top-level `key` set to `value_json` into `out`
/// (replacing an existing value, else appending the member). `key_json` is
/// the key already encoded as a JSON string.
pub fn set_field(
    payload: &[u8],
    key: &str,
    key_json: &str,
    value_json: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), JsonError> {
    let lookup = find_field(payload, key)?;
    out.clear();
    match lookup.field {
        Some(f) => {
            out.extend_from_slice(&payload[..f.start]);
            out.extend_from_slice(value_json);
            out.extend_from_slice(&payload[f.end()..]);
        }
        None => {
            // Valid object: the last non-whitespace byte is its '}'.
            let close = payload
                .iter()
                .rposition(|&b| b == b'}')
                .expect("a validated object ends with '}'");
            out.extend_from_slice(&payload[..close]);
            if lookup.members > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key_json.as_bytes());
            out.push(b':');
            out.extend_from_slice(value_json);
            out.extend_from_slice(&payload[close..]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan says which values need no decoding; `plain_text` and
    /// `is_utf8` then answer without reading them again, and must answer
    /// as they do for a value the scan did not mark.
    #[test]
    fn plain_values_are_marked_by_the_scan() {
        let cases: [(&[u8], bool); 11] = [
            (br#""metric""#, true),
            (br#""""#, true),
            (br#""m\u0065tric""#, false),
            (br#""a\"b""#, false),
            ("\"\u{e9}\"".as_bytes(), false),
            (b"\"\xff\"", false),
            (b"42", true),
            (b"-1.5e3", true),
            (b"true", true),
            (br#"{"a":1}"#, false),
            (b"[1,2]", false),
        ];
        for (value, plain) in cases {
            let mut doc = br#"{"x":1,"type":"#.to_vec();
            doc.extend_from_slice(value);
            doc.extend_from_slice(b"}");
            let found = find_value(&doc, "type").unwrap().expect("found");
            let shown = String::from_utf8_lossy(value);
            assert_eq!(found.plain, plain, "{shown}");
            let unmarked = RawValue {
                plain: false,
                ..found
            };
            assert_eq!(found.plain_text(), unmarked.plain_text(), "{shown}");
            assert_eq!(found.is_utf8(), unmarked.is_utf8(), "{shown}");
        }
    }

    #[test]
    fn finds_fields_and_spans() {
        let doc = br#"{"type":"metric","n":42,"o":{"type":"inner"}}"#;
        let l = find_field(doc, "type").unwrap();
        assert_eq!(l.members, 3);
        let f = l.field.unwrap();
        assert_eq!(f.as_text(), "metric");
        assert_eq!(&doc[f.start..f.end()], br#""metric""#);
        assert_eq!(
            find_field(doc, "n").unwrap().field.unwrap().as_f64(),
            Some(42.0)
        );
        assert!(find_field(doc, "missing").unwrap().field.is_none());
        let esc = br#"{"t\u0079pe":"a\"b"}"#;
        assert_eq!(
            find_field(esc, "type").unwrap().field.unwrap().as_text(),
            "a\"b"
        );
    }

    #[test]
    fn rejects_bad_documents() {
        for bad in [&b"{"[..], b"[1,2]", b"42", b"{\"a\":1} x", b"\xff", b""] {
            assert!(find_field(bad, "a").is_err(), "{:?}", bad);
        }
    }

    #[test]
    fn deep_nesting_is_walked_without_recursion() {
        // serde_json's `ignore_value` has no depth limit, so neither does
        // the scanner; it must not overflow the stack either.
        let depth = 100_000;
        let doc = format!(
            r#"{{"a":{}1{},"type":2}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let l = find_field(doc.as_bytes(), "a").unwrap();
        assert_eq!(l.field.unwrap().raw.len(), 2 * depth + 1);
        assert_eq!(find_field(doc.as_bytes(), "type").unwrap().members, 2);
        let open = format!(r#"{{"a":{}"#, "[{\"k\":".repeat(depth));
        assert!(find_field(open.as_bytes(), "type").is_err());
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = find_field(b"{\"a\" 1}", "a").unwrap_err().to_string();
        assert_eq!(e, "expected `:` at line 1 column 6");
        let e = find_field(b"{\n\"\\ud800\":1}", "a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn sets_fields() {
        let mut out = Vec::new();
        set_field(br#"{"a":1}"#, "b", r#""b""#, br#""x""#, &mut out).unwrap();
        assert_eq!(out, br#"{"a":1,"b":"x"}"#);
        set_field(br#"{"a":1,"b":2}"#, "b", r#""b""#, b"3", &mut out).unwrap();
        assert_eq!(out, br#"{"a":1,"b":3}"#);
        set_field(b"{ }", "b", r#""b""#, b"true", &mut out).unwrap();
        assert_eq!(out, br#"{ "b":true}"#);
    }

    #[test]
    fn finds_many_members_in_one_pass() {
        let doc = br#"{ "a" : 1, "b":"x","c":{"a":2}, "d":[1] }"#;
        let mut found = [None; 3];
        let n = find_members(doc, &["d", "a", "zz"], &mut found).unwrap();
        assert_eq!(n, 4);
        let d = found[0].unwrap();
        assert_eq!(d.value.raw, "[1]");
        assert_eq!(&doc[d.key_start..d.key_start + 3], br#""d""#);
        let a = found[1].unwrap();
        assert_eq!((a.key_start, a.value.raw), (2, "1"));
        assert!(found[2].is_none());
        assert!(find_members(b"{\"a\":}", &["a"], &mut found).is_err());
    }

    #[test]
    fn removes_members_with_their_commas() {
        let cases: [(&[u8], &[&str], &[u8]); 9] = [
            (br#"{"a":1,"b":2,"c":3}"#, &["b", "c"], br#"{"a":1}"#),
            (br#"{"a":1,"b":2,"c":3}"#, &["a", "b"], br#"{"c":3}"#),
            (
                br#"{ "a" : 1 , "b" : 2 , "c" : 3 }"#,
                &["c", "b"],
                br#"{ "a" : 1 }"#,
            ),
            (br#"{"a":1,"b":2,"c":3}"#, &["b"], br#"{"a":1,"c":3}"#),
            (br#"{"a":1,"b":2,"c":3}"#, &["a"], br#"{"b":2,"c":3}"#),
            (br#"{"a":1,"b":2,"c":3}"#, &["c"], br#"{"a":1,"b":2}"#),
            (br#"{"a":1,"b":2,"c":3}"#, &["a", "c"], br#"{"b":2}"#),
            (br#"{"a":1,"b":2,"c":3}"#, &["c", "b", "a"], br#"{}"#),
            (br#"{ "a" : 1 , "b" : 2 }"#, &["b", "x"], br#"{ "a" : 1 }"#),
        ];
        let mut out = Vec::new();
        for (doc, keys, want) in cases {
            let mut found = [None; 3];
            find_members(doc, keys, &mut found).unwrap();
            remove_members(doc, &mut found[..keys.len()], &mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(want),
                "{keys:?}"
            );
            serde_json::from_slice::<serde_json::Value>(&out).unwrap();
        }
    }

    proptest::proptest! {
        /// Removing any subset of members, from objects written with any
        /// spacing, leaves exactly the other members, as valid JSON.
        #[test]
        fn removal_keeps_the_rest(
            n in 0usize..6,
            remove in proptest::collection::vec(proptest::bool::ANY, 6),
            spaces in proptest::collection::vec(0usize..3, 24),
        ) {
            let ws = |i: usize| " ".repeat(spaces[i % spaces.len()]);
            let mut doc = format!("{}{{", ws(0));
            for i in 0..n {
                if i > 0 {
                    doc += &format!("{},{}", ws(4 * i), ws(4 * i + 1));
                }
                doc += &format!("{}\"k{i}\"{}:{}{i}", ws(4 * i + 2), ws(4 * i + 3), ws(i));
            }
            doc += &format!("{}}}{}", ws(23), ws(22));
            let names: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
            let keys: Vec<&str> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| remove[*i])
                .map(|(_, k)| k.as_str())
                .collect();
            let mut found = [None; 6];
            find_members(doc.as_bytes(), &keys, &mut found[..keys.len()]).unwrap();
            let mut out = Vec::new();
            remove_members(doc.as_bytes(), &mut found[..keys.len()], &mut out);
            let got: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
            let want: Vec<String> = (0..n).filter(|i| !remove[*i]).map(|i| format!("k{i}")).collect();
            let got_keys: Vec<String> = got.keys().cloned().collect();
            proptest::prop_assert_eq!(got_keys, want);
        }
    }
}
