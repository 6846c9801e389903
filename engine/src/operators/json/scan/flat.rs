//! The flat walk: a payload of one clean block (at most 64 bytes, see
//! [`fast`](super::fast)) holding an object whose values are all strings,
//! numbers or literals, nothing nested. That is the shape of most small
//! machine-written records, and it can be checked whole on the block's
//! masks with a handful of word operations instead of token by token.
//!
//! # How
//!
//! In a clean block every `"` is a real quote (no escapes), so the
//! running parity of the quotes (`prefix_xor`) marks the strings. Outside
//! them, the colons, commas and brackets are the operators; the other
//! bytes that are not spaces are scalars (numbers and literals). Every
//! token has one bit where it starts: an operator, an opening quote, the
//! first byte of a scalar. The successor of a set of tokens, each given
//! by the bit of its last byte, is one addition: `!tokens + (ends << 1)`
//! carries from the bit after each end through the gap to the next token
//! and sets its bit. Tokens never overlap, so the carries never meet.
//!
//! The grammar of a flat object is then a few set equations: the first
//! token is `{` and the last `}`, and no other bracket is outside a
//! string; what follows `{` or a comma is a string, the key; what follows
//! a key is a colon, and every colon follows a key; what follows a colon
//! is a string or a scalar, the value; every string and scalar is a key or
//! a value (so what follows a value can only be a comma or `}`). Each scalar is then
//! read by the byte walk's own number and literal rules, and its run must
//! be exactly one of them. Nothing is reported to the `Members` until the
//! whole document has passed, so a lookup that has what it wants may stop
//! listening ([`Members::done`]).
//!
//! Anything else (a nested value, an invalid document, a stray byte) is
//! not decided here: the fast walk takes it from the same masks. Where
//! the flat walk decides, it says what the byte walk says (tested on
//! random and edited documents in `tests.rs`).

use super::index::Masks;
use super::{number, short_eq, Key, Members, Mode};

/// Where the members of a checked flat object are, bit `k` for byte `k`.
pub(super) struct Shape {
    /// Each key's opening quote.
    keys: u64,
    /// Each key's closing quote.
    key_ends: u64,
    /// Each value's first byte: the k-th value is the k-th key's.
    values: u64,
    /// Each value's last byte: a string's closing quote, a scalar's last.
    value_ends: u64,
}

impl Shape {
    /// The number of members.
    #[inline(always)]
    fn members(&self) -> usize {
        self.keys.count_ones() as usize
    }

    /// The value that starts at `at`: it ends after the first value end
    /// at or after its start.
    #[inline(always)]
    fn value_end(&self, at: usize) -> usize {
        at + 1 + (self.value_ends >> at).trailing_zeros() as usize
    }
}

/// Checks `b` (one clean block, masks `m` classified with `OPS`) as one
/// flat JSON object; where its members are, or `None` where `b` is not a
/// valid flat object.
#[inline(always)]
pub(super) fn shape(b: &[u8], m: &Masks) -> Option<Shape> {
    debug_assert!(b.len() <= 64 && m.unusual == 0);
    let quote = m.quote;
    let strings = m.strings;
    // A string still open at the end.
    if strings >> 63 != 0 {
        return None;
    }
    let outside = !(strings | quote);
    let opening = quote & strings;
    let colon = m.colon & outside;
    let comma = m.comma & outside;
    let bracket = m.bracket & outside;
    let scalar = m.significant & outside & !(colon | comma | bracket);
    let scalar_start = scalar & !(scalar << 1);
    let scalar_end = scalar & !(scalar >> 1);
    let tokens = colon | comma | bracket | opening | scalar_start;
    if tokens == 0 {
        return None;
    }
    let first = tokens.trailing_zeros() as usize;
    let last = 63 - tokens.leading_zeros() as usize;
    let (open, close) = (1u64 << first, 1u64 << last);
    if bracket != open | close || b.get(first) != Some(&b'{') || b.get(last) != Some(&b'}') {
        return None;
    }
    if tokens == open | close {
        return Some(Shape {
            keys: 0,
            key_ends: 0,
            values: 0,
            value_ends: 0,
        });
    }
    // The token after each token that ends at a bit of `ends`. No token
    // but `}` ends at bit 63, and `}` is never in `ends`.
    let after = |ends: u64| (!tokens).wrapping_add(ends << 1) & tokens;
    let keys = after(open | comma);
    let values = after(colon);
    if keys & !opening != 0 || (keys | values) != opening | scalar_start {
        return None;
    }
    // A key's closing quote: the next quote after its opening one.
    let key_ends = (!quote).wrapping_add(keys << 1) & quote;
    if after(key_ends) != colon {
        return None;
    }
    // What follows a value needs no check of its own: a colon follows
    // keys only (above), and a string or scalar after a value would be
    // neither a key nor a value. So it is a comma or `}`.
    let value_ends = (quote & !strings & !key_ends) | scalar_end;
    let mut scalars = scalar_start;
    while scalars != 0 {
        let at = scalars.trailing_zeros() as usize;
        let end = at + (scalar_end >> at).trailing_zeros() as usize + 1;
        if !scalar_is_valid(b, at, end) {
            return None;
        }
        scalars &= scalars - 1;
    }
    Some(Shape {
        keys,
        key_ends,
        values,
        value_ends,
    })
}

/// Checks `b` as [`shape`] does and tells `members` about its members
/// as [`super::object`] does; the number of members, or `None` where `b`
/// is not a valid flat object. Nothing is told to `members` before the
/// answer is known, so `None` needs no restart.
#[inline(always)]
pub(super) fn object<'a, M: Members<'a>>(b: &'a [u8], m: &Masks, members: &mut M) -> Option<usize> {
    let shape = shape(b, m)?;
    tell(b, members, &shape);
    Some(shape.members())
}

/// The first top-level member named `key` (compared as written: the
/// keys of a clean block have no escapes) in `b`, checked as [`shape`]
/// does: the byte range of its value (`None` where there is no such
/// member) and the number of members; `None` where `b` is not a valid
/// flat object.
#[inline(always)]
pub(super) fn find(b: &[u8], m: &Masks, key: &[u8]) -> Option<(Option<(usize, usize)>, usize)> {
    let shape = shape(b, m)?;
    let count = shape.members();
    let (mut keys, mut ends, mut values) = (shape.keys, shape.key_ends, shape.values);
    while keys != 0 {
        let start = keys.trailing_zeros() as usize + 1;
        let end = ends.trailing_zeros() as usize;
        if end - start == key.len() && b.get(start..end).is_some_and(|k| short_eq(k, key)) {
            let at = values.trailing_zeros() as usize;
            return Some((Some((at, shape.value_end(at))), count));
        }
        keys &= keys - 1;
        ends &= ends - 1;
        values &= values - 1;
    }
    Some((None, count))
}

/// Whether `b[at..end]`, a run of bytes outside strings with no space or
/// operator in it, is exactly one number or literal.
#[inline(always)]
fn scalar_is_valid(b: &[u8], at: usize, end: usize) -> bool {
    let Some(run) = b.get(at..end) else {
        return false;
    };
    match run {
        // The usual scalar, a small unsigned integer.
        [b'0'..=b'9'] => true,
        [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => true,
        b"true" | b"false" | b"null" => true,
        [b'-' | b'0'..=b'9', ..] => number(b, at) == Ok(end),
        _ => false,
    }
}

/// Tells `members` about each member of a checked flat object, in order,
/// until it is [`done`](Members::done).
#[inline(always)]
fn tell<'a, M: Members<'a>>(b: &'a [u8], members: &mut M, shape: &Shape) {
    let (mut keys, mut ends, mut values) = (shape.keys, shape.key_ends, shape.values);
    // The payload as text, once a value is wanted as text: a clean block
    // is all ASCII.
    let mut text: Option<&'a str> = None;
    while keys != 0 {
        let start = keys.trailing_zeros() as usize;
        let end = ends.trailing_zeros() as usize;
        let Some(raw) = b.get(start + 1..end) else {
            return;
        };
        let mode = members.key(
            Key {
                raw,
                escaped: false,
            },
            start,
        );
        if mode != Mode::Skip {
            let at = values.trailing_zeros() as usize;
            let end = shape.value_end(at);
            match mode {
                Mode::Raw => {
                    let text = *text.get_or_insert_with(|| {
                        std::str::from_utf8(b).expect("a clean block is ASCII")
                    });
                    members.raw_value(&text[at..end], at);
                }
                Mode::Bytes => members.raw_bytes(&b[at..end], at, true),
                Mode::Skip => {}
            }
        }
        if members.done() {
            return;
        }
        keys &= keys - 1;
        ends &= ends - 1;
        values &= values - 1;
    }
}
