//! The walk over clean blocks: 64-byte blocks free of
//! [`Masks::unusual`](super::index::Masks::unusual) bytes (no escape, no
//! control, no whitespace but the space, only ASCII), which is what
//! machine-written JSON lines usually are.
//!
//! In a clean block a string is everything from its quote to the next
//! quote, and its text needs no check; whitespace is spaces only. So the
//! walk hops from token to token with the index ([`Cursor`]): a
//! `trailing_zeros` to the next significant byte, another to the end of a
//! string, where the byte-by-byte walk looks at every byte. Numbers,
//! literals and nested values are read by the byte-by-byte walk's own
//! functions, which take any bytes.
//!
//! Top-level strings and whitespace runs are only ever read through the
//! cursor, which stops at the first block that is not clean. The walk
//! returns `None` there and where the document is not one JSON object;
//! [`scan_object`](super::scan_object) then restarts its `Members` and
//! walks the payload byte by byte, for the result or for the error and
//! offset serde_json would give. Where the walk returns a count, the
//! byte-by-byte walk would have returned the same, with the same members.

use super::index::Cursor;
use super::{number, Key, Members, Mode, Scanner};

/// Walks `b` as one JSON object while its blocks are clean, telling `m`
/// about each top-level member as [`super::object`] does; the number of
/// members, or `None` where `b` is not a valid object or the walk reached
/// a block that is not clean.
#[inline(always)]
pub(super) fn object<'a, M: Members<'a>, const ONE: bool>(
    b: &'a [u8],
    ix: &mut Cursor<'a, ONE>,
    m: &mut M,
) -> Option<usize> {
    let (c, open) = token(b, ix, 0)?;
    if c != b'{' {
        return None;
    }
    let (mut c, mut i) = token(b, ix, open + 1)?;
    let mut members = 0;
    // The payload as text, checked once when a second value is wanted as
    // text (`find_members` wants every value): a value starts and ends at
    // ASCII bytes, so its text is then a slice. `Some(None)`: the payload
    // is not UTF-8 throughout (a nested value, which the walk does not
    // index, may hold anything); values are then checked one by one.
    let mut raws = 0;
    let mut text: Option<Option<&'a str>> = None;
    if c == b'"' {
        loop {
            let key_start = i;
            let key_end = ix.quote(key_start + 1)?;
            let colon = expect(b, ix, key_end + 1, b':')?;
            let (first, start) = token(b, ix, colon + 1)?;
            members += 1;
            let key = Key {
                raw: &b[key_start + 1..key_end],
                escaped: false,
            };
            let mode = m.key(key, key_start);
            // `plain`: see `Members::raw_bytes`; a clean string is.
            let (end, plain) = match first {
                b'"' => (ix.quote(start + 1)? + 1, true),
                b'-' | b'0'..=b'9' => (number(b, start).ok()?, true),
                b't' => (literal(b, start, b"true")?, true),
                b'f' => (literal(b, start, b"false")?, true),
                b'n' => (literal(b, start, b"null")?, true),
                b'{' | b'[' => {
                    let mut s = Scanner { b, i: start };
                    s.value().ok()?;
                    (s.i, false)
                }
                _ => return None,
            };
            match mode {
                Mode::Skip => {}
                Mode::Raw => {
                    raws += 1;
                    if raws == 2 {
                        text = Some(std::str::from_utf8(b).ok());
                    }
                    let raw = match text {
                        Some(Some(t)) => t.get(start..end)?,
                        _ => std::str::from_utf8(&b[start..end]).ok()?,
                    };
                    m.raw_value(raw, start);
                }
                Mode::Bytes => m.raw_bytes(&b[start..end], start, plain),
            }
            (c, i) = token(b, ix, end)?;
            match c {
                b',' => i = expect(b, ix, i + 1, b'"')?,
                b'}' => break,
                _ => return None,
            }
        }
    } else if c != b'}' {
        return None;
    }
    match b.get(i + 1) {
        None => Some(members),
        Some(b' ') if ix.blank_from(i + 1) => Some(members),
        Some(_) => None,
    }
}

/// The first significant byte at or after `p`, and where. Compact JSON
/// has its next token right at `p`: one compare, before the index.
#[inline(always)]
fn token<const ONE: bool>(b: &[u8], ix: &mut Cursor<'_, ONE>, p: usize) -> Option<(u8, usize)> {
    match b.get(p) {
        // Clean bytes are all at or above the space.
        Some(&c) if c != b' ' => Some((c, p)),
        Some(_) => {
            let p = ix.significant(p)?;
            Some((b[p], p))
        }
        None => None,
    }
}

/// Where the next token is, if it is the byte `want`: [`token`] with the
/// compare against `want` first (compact JSON has it right at `p`).
#[inline(always)]
fn expect<const ONE: bool>(
    b: &[u8],
    ix: &mut Cursor<'_, ONE>,
    p: usize,
    want: u8,
) -> Option<usize> {
    match b.get(p) {
        Some(&c) if c == want => Some(p),
        Some(b' ') => {
            let p = ix.significant(p)?;
            (b[p] == want).then_some(p)
        }
        _ => None,
    }
}

/// The offset after `word` at `i`, if it is there.
#[inline(always)]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    let end = i + word.len();
    (b.get(i..end)? == word).then_some(end)
}
