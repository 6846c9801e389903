//! A validating, allocation-free scanner over one JSON object.
//!
//! It accepts exactly what `serde_json::from_slice` accepts when the
//! top-level object is deserialized member by member, each value read
//! either as an `IgnoredAny` ([`Mode::Skip`]) or as a `&RawValue`
//! ([`Mode::Raw`]); that is how the field lookups in the parent module were
//! first written, and the differential test
//! (`engine/tests/json_differential.rs`) holds the two to the same
//! decisions. serde_json reads both kinds of value with its `ignore_value`,
//! which checks the grammar only (any four hex digits after `\u`, any
//! number the grammar allows, any depth); a raw value's text is then also
//! checked to be UTF-8. Top-level keys are decoded into `str`s, so they
//! must be UTF-8 and pair their `\u` surrogates. The scanner does the same
//! checks in one pass and builds nothing.
//!
//! Nothing here recurses: open containers live in a 128-bit stack that
//! spills to the heap only past 128 levels (serde_json's `ignore_value` has
//! no depth limit either), so no input can overflow the thread's stack.
//!
//! Most payloads take a faster road to the same decisions. A payload with
//! no escape, no control byte, no whitespace but the space and only ASCII
//! (machine-written JSON lines usually are) is "clean", and its structural
//! index is built 64 bytes at a time ([`index`], AVX2 or SSE2 on x86_64).
//! A clean payload of one block (64 bytes or less) that is a flat object
//! (strings, numbers and literals, nothing nested) is checked whole on
//! that index with a few word operations, in [`flat`]; a single-key lookup
//! (`find_value`, `find_field`) then finds its key directly. Any other
//! clean payload is walked token to token on the index, in [`fast`]: a
//! string ends at the next quote, whitespace is skipped with one
//! `trailing_zeros`. Any other payload, and a clean one that turns out
//! invalid (for serde_json's error and offset), is walked byte by byte as
//! below.
//!
//! On the route-by-field hot path (64-byte payloads, three members) the
//! router's `route`, lookup included, went from 705 instructions per
//! element under callgrind to 442 with the token walk and to 371 with the
//! flat walk (AVX2; 66 of them classify the block). With the SSE2
//! classifier the flat walk costs about 85 more, most of it the
//! classification of seven byte classes in 16-byte lanes. A 64-byte
//! payload the index does not take pays for the classification on top of
//! the byte walk (80 instructions with SSE2, measured with one non-ASCII
//! byte in a value).
//!
//! # Why not `sonic-rs`
//!
//! `sonic-rs` (SIMD, lazy field lookups) was measured against this scanner
//! on the lookups `filter` (`find_members`) and `route-by-field`
//! (`find_field`) make, same run, 21 interleaved rounds, median of the
//! per-round ratios, two runs, on a 2-vCPU AMD EPYC guest
//! (`cargo run --release -p bench --features sonic --bin json`; results in
//! `bench/results/2026-11-30-vm-2c-epyc/json/`):
//!
//! | lookup (payload) | `find_field` | `find_members` | sonic `get` | sonic `to_object_iter` |
//! | --- | --- | --- | --- | --- |
//! | `level` (80 B log line) | 0.61, 0.65 | 1.00 | 1.09, 1.45 | 2.65, 3.33 |
//! | `host` (80 B log line) | 0.63, 0.65 | 1.00 | 0.84, 0.90 | 2.56, 2.71 |
//! | `level`, last of 10 (280 B) | 0.76, 0.74 | 1.00 | 1.10, 0.95 | 2.07, 1.86 |
//!
//! `sonic_rs::get` reads the document only up to the field it finds, so
//! `{"level":"error",` passes it; the engine sends such a payload to the
//! `error` port. Even so it is about as fast as `find_members` and 1.3 to
//! 2.2 times slower than `find_field`, which validates the whole document.
//! Reading every member as the scanner does (`to_object_iter`) costs 1.9
//! to 3.3 times the scanner. On payloads this small sonic's document
//! stages do not pay for themselves; the scanner's own index (one pass of
//! four compares per 16 bytes) does.

mod bytes;
mod error;
mod fast;
mod flat;
mod index;

pub(crate) use bytes::short_eq;
use bytes::{digits, hex4, is_digit, is_ws, plain_run, unescaped_eq, Stops};
use error::Code;
pub use error::JsonError;
#[cfg(test)]
pub(crate) use index::Baseline;
pub(crate) use index::{simd, Detect, Isa, Simd};

/// How a value is checked: like serde_json's `IgnoredAny` or `RawValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Grammar only (strings may even hold invalid UTF-8, as in serde_json).
    Skip,
    /// Grammar, then UTF-8; the text goes to [`Members::raw_value`].
    Raw,
    /// Grammar only; the bytes go to [`Members::raw_bytes`] (the caller
    /// decides whether it needs them to be UTF-8).
    Bytes,
}

/// A top-level key as written between its quotes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Key<'p> {
    raw: &'p [u8],
    escaped: bool,
}

impl Key<'_> {
    /// Whether the key, unescaped, is `want`.
    #[inline]
    pub(super) fn is(&self, want: &str) -> bool {
        if self.escaped {
            unescaped_eq(self.raw, want.as_bytes())
        } else {
            short_eq(self.raw, want.as_bytes())
        }
    }
}

/// What a lookup does with the members it walks over.
pub(super) trait Members<'a> {
    /// Sees a key (its opening quote at `key_start`); says how to check
    /// its value.
    fn key(&mut self, key: Key<'_>, key_start: usize) -> Mode;
    /// Receives the value text of a member whose key returned [`Mode::Raw`].
    fn raw_value(&mut self, raw: &'a str, start: usize);
    /// Receives the value bytes of a member whose key returned
    /// [`Mode::Bytes`]; `plain`: the value is a string with no escape and
    /// only ASCII bytes, or a number or literal (ASCII by the grammar), so
    /// its text needs no decoding and is UTF-8.
    fn raw_bytes(&mut self, _raw: &'a [u8], _start: usize, _plain: bool) {}
    /// Forgets every member seen: the walk starts over from the first.
    fn restart(&mut self);
    /// Whether the lookup has all it wants. Only a walk that has already
    /// checked the whole document (the [`flat`] walk) asks, and stops
    /// telling members once it is.
    #[inline(always)]
    fn done(&self) -> bool {
        false
    }
}

/// Walks `payload` as one JSON object (trailing whitespace allowed),
/// telling `members` about each top-level member. Returns the number of
/// members.
///
/// A clean payload of one block that is a flat object is checked whole
/// ([`flat`]); any other clean payload (see [`fast`]) is walked token to
/// token on its structural index. Any other is walked byte by byte: from
/// the start when its first block is not clean, and after
/// [`Members::restart`] when the fast walk stops (at a block that is not
/// clean, or at an error, whose message and offset the byte walk gives).
#[inline(always)]
pub(super) fn scan_object<'a, M: Members<'a>>(
    payload: &'a [u8],
    members: &mut M,
) -> Result<usize, JsonError> {
    // Most payloads are one block: checked whole where they are a flat
    // object, else walked with a cursor that never moves.
    let masks = one_block(Detect, payload);
    if let Some(masks) = masks.as_ref().filter(|m| m.unusual == 0) {
        if let Some(n) = flat::object(payload, masks, members) {
            return Ok(n);
        }
    }
    walk(payload, masks, members)
}

/// A payload's index when it is one block (1 to 64 bytes), classified
/// with `OPS`: built once for the flat walk and, where that does not
/// decide, kept for the fast walk.
pub(crate) struct OneBlock(Option<index::Masks>);

/// The first top-level member named `key`, found directly where `payload`
/// is one clean block holding a flat object: `Ok` with its value's byte
/// range (`None` without such a member) and the number of members. `Err`
/// where the flat walk does not decide: then [`scan_rest`] with a
/// `Members` that seeks `key` finds what [`scan_object`] would.
#[inline(always)]
pub(super) fn find_flat<I: Isa>(
    isa: I,
    payload: &[u8],
    key: &str,
) -> Result<(Option<(usize, usize)>, usize), OneBlock> {
    let masks = one_block(isa, payload);
    if let Some(masks) = masks.as_ref().filter(|m| m.unusual == 0) {
        if let Some(found) = flat::find(payload, masks, key.as_bytes()) {
            return Ok(found);
        }
    }
    Err(OneBlock(masks))
}

/// [`scan_object`] after [`find_flat`] did not decide, on the index it
/// built.
#[inline(always)]
pub(super) fn scan_rest<'a, M: Members<'a>>(
    payload: &'a [u8],
    block: OneBlock,
    members: &mut M,
) -> Result<usize, JsonError> {
    walk(payload, block.0, members)
}

/// The masks (with `OPS`) of a payload of one block, the flat walk's
/// input.
#[inline(always)]
fn one_block<I: Isa>(isa: I, payload: &[u8]) -> Option<index::Masks> {
    if payload.is_empty() || payload.len() > 64 {
        return None;
    }
    Some(index::block_with::<I, true>(isa, payload, 0))
}

/// The fast walk, then the byte walk where it stops; `masks`: those of a
/// payload of one block, when [`one_block`] gave them.
#[inline(always)]
fn walk<'a, M: Members<'a>>(
    payload: &'a [u8],
    masks: Option<index::Masks>,
    members: &mut M,
) -> Result<usize, JsonError> {
    // No masks: the payload is empty (no cursor) or longer than a block.
    let fast = match masks {
        Some(masks) => index::Cursor::<true>::on(payload, masks)
            .map(|mut ix| fast::object(payload, &mut ix, members)),
        None => index::Cursor::<false>::new(payload)
            .map(|mut ix| fast::object(payload, &mut ix, members)),
    };
    match fast {
        Some(Some(n)) => return Ok(n),
        Some(None) => members.restart(),
        None => {}
    }
    walk_bytes(payload, members)
}

/// The byte-by-byte walk, out of line: the fast walk's caller keeps its
/// registers for the fast walk.
#[inline(never)]
fn walk_bytes<'a, M: Members<'a>>(payload: &'a [u8], members: &mut M) -> Result<usize, JsonError> {
    object(payload, members).map_err(|(code, at)| JsonError::new(payload, code, at))
}

/// An error and the byte offset it is reported at.
type Fail = (Code, usize);

// The top-level walk passes the offset by value between small functions
// that return the next one (`(b, i) -> i`), so it stays in a register; a
// `&mut Scanner` would keep it in memory, reloaded and stored around every
// step. Nested values, rare on the hot path, use the `Scanner` below.

/// The first byte at or after `i` that is not JSON whitespace, and where.
#[inline(always)]
fn ws(b: &[u8], i: usize) -> (Option<u8>, usize) {
    match b.get(i) {
        // Every token starts above the space: one compare decides.
        Some(&c) if c > b' ' || !is_ws(c) => (Some(c), i),
        Some(_) => ws_run(b, i + 1),
        None => (None, i),
    }
}

/// [`ws`] from `i`, inside a run of whitespace: padding often comes as
/// long runs of spaces, taken eight at a time.
#[inline(never)]
fn ws_run(b: &[u8], mut i: usize) -> (Option<u8>, usize) {
    let spaces = u64::from_ne_bytes([b' '; 8]);
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        if u64::from_ne_bytes(chunk) != spaces {
            break;
        }
        i += 8;
    }
    // Padding to the end of the payload: its last eight bytes at once.
    if i < b.len() && b.len() - i < 8 && b.len() >= 8 {
        let last = b.len() - 8;
        if <[u8; 8]>::try_from(&b[last..]).ok().map(u64::from_ne_bytes) == Some(spaces) {
            return (None, b.len());
        }
    }
    while let Some(&c) = b.get(i) {
        if !is_ws(c) {
            return (Some(c), i);
        }
        i += 1;
    }
    (None, i)
}

/// The top-level object, then only whitespace.
#[inline(always)]
fn object<'a, M: Members<'a>>(b: &'a [u8], m: &mut M) -> Result<usize, Fail> {
    let mut i = match ws(b, 0) {
        (Some(b'{'), i) => i + 1,
        (Some(_), i) => return Err((Code::ExpectedObject, i)),
        (None, i) => return Err((Code::EofValue, i)),
    };
    let mut members = 0;
    match ws(b, i) {
        (Some(b'}'), j) => i = j + 1,
        (Some(b'"'), j) => {
            i = j;
            loop {
                let key_start = i;
                let (key, j) = key(b, i + 1)?;
                i = match ws(b, j) {
                    (Some(b':'), j) => j + 1,
                    (Some(_), j) => return Err((Code::ExpectedColon, j)),
                    (None, j) => return Err((Code::EofObject, j)),
                };
                members += 1;
                let mode = m.key(key, key_start);
                let (c, start) = ws(b, i);
                // Whether a `Bytes` value is plain (see `Members::raw_bytes`).
                let mut plain = true;
                i = match c {
                    // Scalars, the common case, without the container stack.
                    Some(b'"') if mode == Mode::Bytes => {
                        let (end, is_plain) = plain_string(b, start + 1)?;
                        plain = is_plain;
                        end
                    }
                    Some(b'"') => string(b, start + 1)?,
                    Some(b'-' | b'0'..=b'9') => number(b, start)?,
                    _ => {
                        let mut s = Scanner { b, i: start };
                        s.value().map_err(|code| (code, s.i))?;
                        // Literals are ASCII; containers may hold anything.
                        plain = !matches!(c, Some(b'{' | b'['));
                        s.i
                    }
                };
                match mode {
                    Mode::Skip => {}
                    Mode::Raw => match std::str::from_utf8(&b[start..i]) {
                        Ok(raw) => m.raw_value(raw, start),
                        Err(e) => return Err((Code::InvalidUnicode, start + e.valid_up_to())),
                    },
                    Mode::Bytes => m.raw_bytes(&b[start..i], start, plain),
                }
                match ws(b, i) {
                    (Some(b','), j) => match ws(b, j + 1) {
                        (Some(b'"'), j) => i = j,
                        (Some(b'}'), j) => return Err((Code::TrailingComma, j)),
                        (Some(_), j) => return Err((Code::KeyMustBeAString, j)),
                        (None, j) => return Err((Code::EofValue, j)),
                    },
                    (Some(b'}'), j) => {
                        i = j + 1;
                        break;
                    }
                    (Some(_), j) => return Err((Code::ExpectedObjectCommaOrEnd, j)),
                    (None, j) => return Err((Code::EofObject, j)),
                }
            }
        }
        (Some(_), j) => return Err((Code::KeyMustBeAString, j)),
        (None, j) => return Err((Code::EofObject, j)),
    }
    match ws(b, i) {
        (Some(_), j) => Err((Code::TrailingCharacters, j)),
        (None, _) => Ok(members),
    }
}

/// The rest of a string from `i` (after its opening quote), as serde_json's
/// `ignore_str` checks it: no controls, known escapes, any bytes else.
/// Returns the offset after its closing quote.
#[inline(always)]
fn string(b: &[u8], mut i: usize) -> Result<usize, Fail> {
    loop {
        let j = plain_run(b, i, Stops::String);
        match b.get(j) {
            Some(b'"') => return Ok(j + 1),
            Some(b'\\') => i = escape(b, j + 1, false)?,
            Some(_) => return Err((Code::ControlCharacter, j)),
            None => return Err((Code::EofString, j)),
        }
    }
}

/// [`string`], also telling whether the string is plain: no escape, only
/// ASCII (its runs stop at non-ASCII bytes too, which are then taken as
/// `string` takes them).
#[inline(always)]
fn plain_string(b: &[u8], mut i: usize) -> Result<(usize, bool), Fail> {
    let mut plain = true;
    loop {
        let j = plain_run(b, i, Stops::Key);
        match b.get(j) {
            Some(b'"') => return Ok((j + 1, plain)),
            Some(b'\\') => {
                plain = false;
                i = escape(b, j + 1, false)?;
            }
            Some(0x80..) => {
                plain = false;
                i = j + 1;
            }
            Some(_) => return Err((Code::ControlCharacter, j)),
            None => return Err((Code::EofString, j)),
        }
    }
}

/// The rest of a top-level key from `i` (after its opening quote), as
/// serde_json's `parse_str` checks it: also UTF-8 and paired surrogates.
/// Returns the key and the offset after its closing quote.
#[inline(always)]
fn key(b: &[u8], start: usize) -> Result<(Key<'_>, usize), Fail> {
    let mut escaped = false;
    let mut non_ascii = false;
    let mut i = start;
    let end = loop {
        let j = plain_run(b, i, Stops::Key);
        i = j + 1;
        match b.get(j) {
            Some(b'"') => break j,
            Some(b'\\') => {
                escaped = true;
                i = escape(b, i, true)?;
            }
            Some(0x80..) => non_ascii = true,
            Some(_) => return Err((Code::ControlCharacter, j)),
            None => return Err((Code::EofString, j)),
        }
    };
    let raw = &b[start..end];
    if non_ascii {
        // Escapes are ASCII and decode to whole characters, so the key
        // is UTF-8 exactly when its raw bytes are.
        if let Err(e) = std::str::from_utf8(raw) {
            return Err((Code::InvalidUnicode, start + e.valid_up_to()));
        }
    }
    Ok((Key { raw, escaped }, end + 1))
}

/// One escape from `i` (after its backslash); `decode`: surrogates must
/// pair. Returns the offset after it.
fn escape(b: &[u8], i: usize, decode: bool) -> Result<usize, Fail> {
    let mut s = Scanner { b, i };
    match s.escape(decode) {
        Ok(()) => Ok(s.i),
        Err(code) => Err((code, s.i)),
    }
}

/// A number per the JSON grammar, from `i`; returns the offset after it.
/// Straight-line code, no closures: the top-level walk inlines all of it.
#[inline(always)]
fn number(b: &[u8], mut i: usize) -> Result<usize, Fail> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => {
            i += 1;
            if is_digit(b, i) {
                return Err((Code::InvalidNumber, i));
            }
        }
        Some(b'1'..=b'9') => i = digits(b, i + 1),
        _ => return Err((Code::InvalidNumber, i)),
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !is_digit(b, i) {
            return Err((Code::InvalidNumber, i));
        }
        i = digits(b, i);
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        if !is_digit(b, i) {
            return Err((Code::InvalidNumber, i));
        }
        i = digits(b, i);
    }
    Ok(i)
}

/// Open containers inside one value, innermost last (`true`: an object).
struct Stack {
    bits: u128,
    depth: usize,
    /// Levels past 128; only a deep `Raw` value gets here.
    spill: Vec<bool>,
}

impl Stack {
    fn new() -> Stack {
        Stack {
            bits: 0,
            depth: 0,
            spill: Vec::new(),
        }
    }

    #[inline]
    fn push(&mut self, object: bool) {
        if self.depth < 128 {
            self.bits = (self.bits << 1) | u128::from(object);
        } else {
            self.spill.push(object);
        }
        self.depth += 1;
    }

    #[inline]
    fn pop(&mut self) {
        self.depth -= 1;
        if self.depth < 128 {
            self.bits >>= 1;
        } else {
            self.spill.pop();
        }
    }

    /// Whether the innermost container is an object; `None` when none is open.
    #[inline]
    fn top(&self) -> Option<bool> {
        match self.depth {
            0 => None,
            d if d <= 128 => Some(self.bits & 1 == 1),
            _ => self.spill.last().copied(),
        }
    }
}

struct Scanner<'p> {
    b: &'p [u8],
    i: usize,
}

impl<'p> Scanner<'p> {
    /// Skips JSON whitespace; the byte after it, if any.
    #[inline]
    fn ws(&mut self) -> Option<u8> {
        let (c, i) = ws(self.b, self.i);
        self.i = i;
        c
    }

    /// One member value of the top object (whitespace already skipped),
    /// nested containers walked with an explicit stack.
    fn value(&mut self) -> Result<(), Code> {
        let mut open = Stack::new();
        'value: loop {
            let Some(c) = self.ws() else {
                return Err(Code::EofValue);
            };
            match c {
                b'"' => {
                    self.i += 1;
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b'{' | b'[' => {
                    self.i += 1;
                    let object = c == b'{';
                    open.push(object);
                    let close = if object { b'}' } else { b']' };
                    match self.ws() {
                        Some(n) if n == close => {
                            self.i += 1;
                            open.pop();
                        }
                        Some(b'"') if object => {
                            self.member_key()?;
                            continue 'value;
                        }
                        Some(_) if object => return Err(Code::KeyMustBeAString),
                        Some(_) => continue 'value,
                        None if object => return Err(Code::EofObject),
                        None => return Err(Code::EofList),
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return Err(Code::ExpectedValue),
            }
            // A value is complete: close what it completes, up to a comma.
            loop {
                let Some(object) = open.top() else {
                    return Ok(());
                };
                match (self.ws(), object) {
                    (Some(b','), _) => {
                        self.i += 1;
                        if object {
                            match self.ws() {
                                Some(b'"') => self.member_key()?,
                                Some(b'}') => return Err(Code::TrailingComma),
                                Some(_) => return Err(Code::KeyMustBeAString),
                                None => return Err(Code::EofValue),
                            }
                        } else if self.ws() == Some(b']') {
                            return Err(Code::TrailingComma);
                        }
                        continue 'value;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.i += 1;
                        open.pop();
                    }
                    (Some(_), true) => return Err(Code::ExpectedObjectCommaOrEnd),
                    (Some(_), false) => return Err(Code::ExpectedListCommaOrEnd),
                    (None, true) => return Err(Code::EofObject),
                    (None, false) => return Err(Code::EofList),
                }
            }
        }
    }

    /// A key inside a nested object (at its opening quote), and its colon.
    fn member_key(&mut self) -> Result<(), Code> {
        self.i += 1;
        self.string()?;
        match self.ws() {
            Some(b':') => {
                self.i += 1;
                Ok(())
            }
            Some(_) => Err(Code::ExpectedColon),
            None => Err(Code::EofObject),
        }
    }

    /// Moves to where a step of the top-level walk ended: the offset after
    /// it, or the one its error is reported at.
    #[inline]
    fn advance(&mut self, step: Result<usize, Fail>) -> Result<(), Code> {
        match step {
            Ok(i) => {
                self.i = i;
                Ok(())
            }
            Err((code, at)) => {
                self.i = at;
                Err(code)
            }
        }
    }

    /// The rest of a string after its opening quote (see [`string`]).
    fn string(&mut self) -> Result<(), Code> {
        self.advance(string(self.b, self.i))
    }

    /// One escape, after its backslash; `decode`: surrogates must pair.
    fn escape(&mut self, decode: bool) -> Result<(), Code> {
        let Some(&c) = self.b.get(self.i) else {
            return Err(Code::EofString);
        };
        self.i += 1;
        match c {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => {
                let n = self.hex4()?;
                if !decode {
                    return Ok(());
                }
                match n {
                    0xDC00..=0xDFFF => Err(Code::LoneSurrogate),
                    0xD800..=0xDBFF => {
                        match self.b.get(self.i..self.i + 2) {
                            Some(b"\\u") => self.i += 2,
                            Some(_) => return Err(Code::UnexpectedEndOfHexEscape),
                            None => return Err(Code::EofString),
                        }
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => Err(Code::LoneSurrogate),
                        }
                    }
                    _ => Ok(()),
                }
            }
            _ => Err(Code::InvalidEscape),
        }
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Result<u16, Code> {
        let Some(digits) = self.b.get(self.i..self.i + 4) else {
            self.i = self.b.len();
            return Err(Code::EofString);
        };
        let n = hex4(digits).ok_or(Code::InvalidEscape)?;
        self.i += 4;
        Ok(n)
    }

    /// A number per the JSON grammar (see [`number`]).
    fn number(&mut self) -> Result<(), Code> {
        self.advance(number(self.b, self.i))
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Code> {
        for &w in word {
            match self.b.get(self.i) {
                Some(&c) if c == w => self.i += 1,
                Some(_) => return Err(Code::ExpectedIdent),
                None => return Err(Code::EofValue),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
