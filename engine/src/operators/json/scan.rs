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

use std::fmt;

/// How a value is checked: like serde_json's `IgnoredAny` or `RawValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Grammar only (strings may even hold invalid UTF-8, as in serde_json).
    Skip,
    /// Grammar, then UTF-8; the text goes to [`Members::raw_value`].
    Raw,
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
            self.raw == want.as_bytes()
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
}

/// Why a payload is not one JSON object (wording as serde_json's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    EofList,
    EofObject,
    EofString,
    EofValue,
    ExpectedColon,
    ExpectedListCommaOrEnd,
    ExpectedObjectCommaOrEnd,
    ExpectedIdent,
    ExpectedValue,
    ExpectedObject,
    InvalidEscape,
    InvalidNumber,
    InvalidUnicode,
    ControlCharacter,
    KeyMustBeAString,
    LoneSurrogate,
    TrailingComma,
    TrailingCharacters,
    UnexpectedEndOfHexEscape,
}

impl Code {
    fn message(self) -> &'static str {
        match self {
            Code::EofList => "EOF while parsing a list",
            Code::EofObject => "EOF while parsing an object",
            Code::EofString => "EOF while parsing a string",
            Code::EofValue => "EOF while parsing a value",
            Code::ExpectedColon => "expected `:`",
            Code::ExpectedListCommaOrEnd => "expected `,` or `]`",
            Code::ExpectedObjectCommaOrEnd => "expected `,` or `}`",
            Code::ExpectedIdent => "expected ident",
            Code::ExpectedValue => "expected value",
            Code::ExpectedObject => "expected a JSON object",
            Code::InvalidEscape => "invalid escape",
            Code::InvalidNumber => "invalid number",
            Code::InvalidUnicode => "invalid unicode code point",
            Code::ControlCharacter => {
                "control character (\\u0000-\\u001F) found while parsing a string"
            }
            Code::KeyMustBeAString => "key must be a string",
            Code::LoneSurrogate => "lone leading surrogate in hex escape",
            Code::TrailingComma => "trailing comma",
            Code::TrailingCharacters => "trailing characters",
            Code::UnexpectedEndOfHexEscape => "unexpected end of hex escape",
        }
    }
}

/// Why a payload could not be used: what was wrong and where (1-based line
/// and column of the offending byte, as serde_json reports them).
#[derive(Clone, Debug)]
pub struct JsonError {
    code: Code,
    line: usize,
    column: usize,
}

impl JsonError {
    #[cold]
    fn new(payload: &[u8], code: Code, at: usize) -> JsonError {
        let before = &payload[..at.min(payload.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        JsonError {
            code,
            line,
            column: at - line_start + 1,
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.code.message(),
            self.line,
            self.column
        )
    }
}

impl std::error::Error for JsonError {}

/// Walks `payload` as one JSON object (trailing whitespace allowed),
/// telling `members` about each top-level member. Returns the number of
/// members.
pub(super) fn scan_object<'a, M: Members<'a>>(
    payload: &'a [u8],
    members: &mut M,
) -> Result<usize, JsonError> {
    let mut s = Scanner { b: payload, i: 0 };
    s.object(members)
        .map_err(|code| JsonError::new(payload, code, s.i))
}

/// Which bytes end the fast run through a string: `"`, `\\` and controls
/// always; in keys (which must be UTF-8) also the non-ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stops {
    String,
    Key,
}

impl Stops {
    #[inline(always)]
    fn stops(self, c: u8) -> bool {
        c < 0x20 || c == b'"' || c == b'\\' || (self == Stops::Key && c >= 0x80)
    }

    /// The stop bytes of eight bytes at once (SWAR): bit 7 of byte `k` of
    /// the result is set when byte `k` of `x` (little-endian) stops the run.
    /// A subtraction that borrows can also mark bytes above the first
    /// stop, never below it, so the lowest set bit is exact.
    #[inline(always)]
    fn in_word(self, x: u64) -> u64 {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = ONES * 0x80;
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        // (v - 1) sets bit 7 of a zero byte, (x - 0x20) of a byte below
        // 0x20; `!x` keeps only bytes that were below 0x80 to begin with.
        let low =
            (x.wrapping_sub(ONES * 0x20) | quote.wrapping_sub(ONES) | backslash.wrapping_sub(ONES))
                & !x;
        match self {
            Stops::String => low & HIGHS,
            Stops::Key => (low | x) & HIGHS,
        }
    }
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
        let c = *self.b.get(self.i)?;
        if is_ws(c) {
            self.ws_run()
        } else {
            Some(c)
        }
    }

    /// [`Self::ws`] past its first byte: padding often comes as long runs
    /// of spaces, taken eight at a time.
    #[inline(never)]
    fn ws_run(&mut self) -> Option<u8> {
        let b = self.b;
        let mut i = self.i + 1;
        while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
            if u64::from_ne_bytes(chunk) != u64::from_ne_bytes([b' '; 8]) {
                break;
            }
            i += 8;
        }
        while let Some(&c) = b.get(i) {
            if !is_ws(c) {
                self.i = i;
                return Some(c);
            }
            i += 1;
        }
        self.i = i;
        None
    }

    /// The top-level object, then only whitespace.
    fn object<'a, M: Members<'a>>(&mut self, m: &mut M) -> Result<usize, Code>
    where
        'p: 'a,
    {
        match self.ws() {
            Some(b'{') => self.i += 1,
            Some(_) => return Err(Code::ExpectedObject),
            None => return Err(Code::EofValue),
        }
        let mut members = 0;
        match self.ws() {
            Some(b'}') => self.i += 1,
            Some(b'"') => loop {
                let key_start = self.i;
                self.i += 1;
                let key = self.key()?;
                match self.ws() {
                    Some(b':') => self.i += 1,
                    Some(_) => return Err(Code::ExpectedColon),
                    None => return Err(Code::EofObject),
                }
                members += 1;
                let mode = m.key(key, key_start);
                let c = self.ws();
                let start = self.i;
                match c {
                    // Scalars, the common case, without the container stack.
                    Some(b'"') => {
                        self.i += 1;
                        self.string()?;
                    }
                    Some(b'-' | b'0'..=b'9') => self.number()?,
                    _ => self.value()?,
                }
                if mode == Mode::Raw {
                    let b: &'p [u8] = self.b;
                    match std::str::from_utf8(&b[start..self.i]) {
                        Ok(raw) => m.raw_value(raw, start),
                        Err(e) => {
                            self.i = start + e.valid_up_to();
                            return Err(Code::InvalidUnicode);
                        }
                    }
                }
                match self.ws() {
                    Some(b',') => {
                        self.i += 1;
                        match self.ws() {
                            Some(b'"') => {}
                            Some(b'}') => return Err(Code::TrailingComma),
                            Some(_) => return Err(Code::KeyMustBeAString),
                            None => return Err(Code::EofValue),
                        }
                    }
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    Some(_) => return Err(Code::ExpectedObjectCommaOrEnd),
                    None => return Err(Code::EofObject),
                }
            },
            Some(_) => return Err(Code::KeyMustBeAString),
            None => return Err(Code::EofObject),
        }
        match self.ws() {
            Some(_) => Err(Code::TrailingCharacters),
            None => Ok(members),
        }
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

    /// The rest of a string after its opening quote, as serde_json's
    /// `ignore_str` checks it: no controls, known escapes, any bytes else.
    #[inline(always)]
    fn string(&mut self) -> Result<(), Code> {
        let b = self.b;
        loop {
            let i = plain_run(b, self.i, Stops::String);
            match b.get(i) {
                Some(b'"') => {
                    self.i = i + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i = i + 1;
                    self.escape(false)?;
                }
                Some(_) => {
                    self.i = i;
                    return Err(Code::ControlCharacter);
                }
                None => {
                    self.i = i;
                    return Err(Code::EofString);
                }
            }
        }
    }

    /// The rest of a top-level key after its opening quote, as serde_json's
    /// `parse_str` checks it: also UTF-8 and paired surrogates.
    #[inline(always)]
    fn key(&mut self) -> Result<Key<'p>, Code> {
        let b: &'p [u8] = self.b;
        let start = self.i;
        let mut escaped = false;
        let mut non_ascii = false;
        loop {
            let i = plain_run(b, self.i, Stops::Key);
            self.i = i + 1;
            match b.get(i) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.escape(true)?;
                }
                Some(0x80..) => non_ascii = true,
                Some(_) => {
                    self.i = i;
                    return Err(Code::ControlCharacter);
                }
                None => {
                    self.i = i;
                    return Err(Code::EofString);
                }
            }
        }
        let raw = &b[start..self.i - 1];
        if non_ascii {
            // Escapes are ASCII and decode to whole characters, so the key
            // is UTF-8 exactly when its raw bytes are.
            if let Err(e) = std::str::from_utf8(raw) {
                self.i = start + e.valid_up_to();
                return Err(Code::InvalidUnicode);
            }
        }
        Ok(Key { raw, escaped })
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

    /// A number per the JSON grammar.
    fn number(&mut self) -> Result<(), Code> {
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let result = match b.get(i) {
            Some(b'0') => {
                i += 1;
                if is_digit(b, i) {
                    Err(Code::InvalidNumber)
                } else {
                    Ok(())
                }
            }
            Some(b'1'..=b'9') => {
                i = digits(b, i + 1);
                Ok(())
            }
            _ => Err(Code::InvalidNumber),
        }
        .and_then(|()| {
            if b.get(i) == Some(&b'.') {
                i += 1;
                if !is_digit(b, i) {
                    return Err(Code::InvalidNumber);
                }
                i = digits(b, i);
            }
            if let Some(b'e' | b'E') = b.get(i) {
                i += 1;
                if let Some(b'+' | b'-') = b.get(i) {
                    i += 1;
                }
                if !is_digit(b, i) {
                    return Err(Code::InvalidNumber);
                }
                i = digits(b, i);
            }
            Ok(())
        });
        self.i = i;
        result
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

#[inline(always)]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\t' | b'\r')
}

/// Where the run of bytes that are not `stops` starting at `i` ends:
/// eight bytes at a time, then byte by byte.
#[inline(always)]
fn plain_run(b: &[u8], mut i: usize, stops: Stops) -> usize {
    while let Some(word) = b.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
        let hits = stops.in_word(u64::from_le_bytes(word));
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if stops.stops(c) {
            break;
        }
        i += 1;
    }
    i
}

#[inline(always)]
fn is_digit(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(u8::is_ascii_digit)
}

/// Where the run of digits that starts at `i` ends.
#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while is_digit(b, i) {
        i += 1;
    }
    i
}

fn hex4(digits: &[u8]) -> Option<u16> {
    let mut n = 0u16;
    for &d in digits {
        let v = (d as char).to_digit(16)?;
        n = (n << 4) | v as u16;
    }
    Some(n)
}

/// Compares a key's escaped text (already validated by `Scanner::key`)
/// with `want`, decoding as it goes.
fn unescaped_eq(raw: &[u8], want: &[u8]) -> bool {
    let mut w = want;
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        if c != b'\\' {
            match w.split_first() {
                Some((&x, rest)) if x == c => w = rest,
                _ => return false,
            }
            i += 1;
            continue;
        }
        let Some(&e) = raw.get(i + 1) else {
            return false;
        };
        i += 2;
        let mut buf = [0u8; 4];
        let decoded: &[u8] = match e {
            b'b' => b"\x08",
            b'f' => b"\x0c",
            b'n' => b"\n",
            b'r' => b"\r",
            b't' => b"\t",
            b'u' => {
                let Some(n) = raw.get(i..i + 4).and_then(hex4) else {
                    return false;
                };
                i += 4;
                let mut code = u32::from(n);
                if (0xD800..=0xDBFF).contains(&n) {
                    // Validation guaranteed a trailing `\uDC00..=\uDFFF`.
                    let Some(n2) = raw.get(i + 2..i + 6).and_then(hex4) else {
                        return false;
                    };
                    i += 6;
                    code = 0x1_0000 + ((code - 0xD800) << 10) + (u32::from(n2) - 0xDC00);
                }
                match char::from_u32(code) {
                    Some(ch) => ch.encode_utf8(&mut buf).as_bytes(),
                    None => return false,
                }
            }
            // `"`, `\` and `/` stand for themselves.
            _ => std::slice::from_ref(&raw[i - 1]),
        };
        match w.strip_prefix(decoded) {
            Some(rest) => w = rest,
            None => return false,
        }
    }
    w.is_empty()
}

#[cfg(test)]
mod tests;
