//! Small helpers shared by operators: a specified hash (FNV-1a 64), a tiny
//! deterministic PRNG, and JSON number formatting into a reused buffer.
//!
//! Partitioning and dedupe keys must hash the same on every run and every
//! machine, so they use FNV-1a 64 (a published, fixed function), never
//! `std`'s randomly seeded `DefaultHasher`.

use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes` (<http://www.isthe.com/chongo/tech/comp/fnv/>).
#[inline]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// FNV-1a 64 as a [`Hasher`], for maps keyed by byte strings: cheap and
/// good enough for operator-local tables (keys come from one stream).
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(FNV_OFFSET)
    }
}

impl Hasher for Fnv {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`Fnv`] hashers for `HashMap`/`IndexMap`.
pub type FnvBuild = BuildHasherDefault<Fnv>;

/// A map that is already keyed by a 64-bit hash: the key is its own hash.
#[derive(Clone, Copy, Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64` keys; fold anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`Prehashed`] hashers, for maps keyed by an FNV hash.
pub type PrehashedBuild = BuildHasherDefault<Prehashed>;

/// SplitMix64: a tiny, fast, deterministic generator (Steele, Lea, Flood
/// 2014). Not cryptographic; the same seed gives the same stream everywhere.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The internal state (a generator made with it as its seed goes on
    /// from here).
    pub fn state(&self) -> u64 {
        self.0
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n > 0`), without modulo bias worth
    /// mentioning (Lemire's multiply-shift).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Appends `v` as a JSON number: integral values up to 2^53 without a
/// fraction, others in Rust's shortest round-trip form; non-finite as `null`
/// (JSON has no NaN or infinity).
pub fn write_json_f64(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
    } else if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else {
        // Display for f64 never uses an exponent and is valid JSON.
        let _ = write!(out, "{v}");
    }
}

/// Appends `s` as a JSON string (quoted and escaped).
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        let mut h = Fnv::default();
        h.write(b"foobar");
        assert_eq!(h.finish(), fnv1a64(b"foobar"));
    }

    #[test]
    fn splitmix_is_deterministic_and_bounded() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
        // Reference value of SplitMix64 from seed 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn json_numbers_and_strings() {
        let mut out = Vec::new();
        for (v, s) in [(3.0, "3"), (-2.5, "-2.5"), (0.1, "0.1"), (f64::NAN, "null")] {
            out.clear();
            write_json_f64(&mut out, v);
            assert_eq!(out, s.as_bytes());
        }
        out.clear();
        write_json_str(&mut out, "a\"b\\c\n\u{1}é");
        assert_eq!(
            serde_json::from_slice::<String>(&out).unwrap(),
            "a\"b\\c\n\u{1}é"
        );
    }
}

/// Resolves `address` to one socket address.
pub(crate) fn resolve(address: &str) -> Result<SocketAddr, String> {
    address
        .to_socket_addrs()
        .map_err(|e| format!("address '{address}': {e}"))?
        .next()
        .ok_or_else(|| format!("address '{address}' resolves to nothing"))
}

/// The name in `names` closest to `name` (a likely typo: at most two edits
/// apart, or one containing the other), for "did you mean" hints.
pub fn closest<'a>(name: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|&n| (edit_distance(name, n), n))
        .filter(|&(d, n)| d <= 2 || (name.len() >= 3 && (n.contains(name) || name.contains(n))))
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod closest_tests {
    use super::closest;

    #[test]
    fn suggests_near_names_only() {
        let names = [
            "route-by-field",
            "route-by-hash",
            "filter",
            "file-in",
            "file-out",
        ];
        assert_eq!(closest("route_by_field", &names), Some("route-by-field"));
        assert_eq!(closest("fliter", &names), Some("filter"));
        assert_eq!(closest("file-ot", &names), Some("file-out"));
        assert_eq!(closest("route-by", &names), Some("route-by-hash"));
        assert_eq!(closest("kafka", &names), None);
    }
}
