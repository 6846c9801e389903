//! Byte-level pieces of the scanner: runs of plain string bytes (eight at
//! a time), digits, whitespace, `\u` escapes, and escaped key comparison.

/// Which bytes end the fast run through a string: `"`, `\\` and controls
/// always; in keys (which must be UTF-8) also the non-ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Stops {
    String,
    Key,
}

impl Stops {
    #[inline(always)]
    pub(super) fn stops(self, c: u8) -> bool {
        c < 0x20 || c == b'"' || c == b'\\' || (self == Stops::Key && c >= 0x80)
    }

    /// The stop bytes of eight bytes at once (SWAR): bit 7 of byte `k` of
    /// the result is set when byte `k` of `x` (little-endian) stops the run.
    /// A subtraction that borrows can also mark bytes above the first
    /// stop, never below it, so the lowest set bit is exact.
    #[inline(always)]
    pub(super) fn in_word(self, x: u64) -> u64 {
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

/// `a == b` for the short byte strings keys and field values are: two
/// overlapping loads from each end instead of a byte loop (or a call to
/// `memcmp`, whose setup costs more than the compare).
#[inline(always)]
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Both ends of each string, as two words of `W` bytes that overlap
    // when `n < 2 * W`: equal strings have equal ends, and the two words
    // together cover every byte.
    #[inline(always)]
    fn ends<const W: usize>(x: &[u8]) -> ([u8; W], [u8; W]) {
        let head = x[..W].try_into().expect("W bytes");
        let tail = x[x.len() - W..].try_into().expect("W bytes");
        (head, tail)
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => ends::<4>(a) == ends::<4>(b),
        8..=16 => ends::<8>(a) == ends::<8>(b),
        _ => a == b,
    }
}

#[inline(always)]
pub(super) fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\t' | b'\r')
}

/// Where the run of bytes that are not `stops` starting at `i` ends:
/// eight bytes at a time, then byte by byte.
#[inline(always)]
pub(super) fn plain_run(b: &[u8], mut i: usize, stops: Stops) -> usize {
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
pub(super) fn is_digit(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(u8::is_ascii_digit)
}

/// Where the run of digits that starts at `i` ends.
#[inline(always)]
pub(super) fn digits(b: &[u8], mut i: usize) -> usize {
    while is_digit(b, i) {
        i += 1;
    }
    i
}

pub(super) fn hex4(digits: &[u8]) -> Option<u16> {
    let mut n = 0u16;
    for &d in digits {
        let v = (d as char).to_digit(16)?;
        n = (n << 4) | v as u16;
    }
    Some(n)
}

/// Compares a key's escaped text (already validated by `Scanner::key`)
/// with `want`, decoding as it goes.
pub(super) fn unescaped_eq(raw: &[u8], want: &[u8]) -> bool {
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
