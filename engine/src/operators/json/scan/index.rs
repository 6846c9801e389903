//! A structural index of a payload, 64 bytes at a time: where its quotes
//! are, which bytes are not spaces, and whether a block holds anything the
//! fast walk does not take (see [`Masks::unusual`]); for the flat walk
//! (`OPS`), also where its colons, commas and brackets are.
//!
//! On x86_64 a block is classified with AVX2 where the CPU has it, with
//! PCLMULQDQ for the strings' parity (two 32-byte compares per class and
//! a `vpmovmskb` each: about 34 instructions for 64 bytes, 66 with
//! `OPS`), else with SSE2 (part of the x86_64 baseline; four 16-byte
//! compares per class: about 85; the route-by-field hot path counts 109
//! more per element than with AVX2, whose loop also inlines the
//! classifier, see [`simd`]); elsewhere with a plain loop. All three give
//! the same masks (tested). `DATAPLANE_NO_AVX2` in the environment makes
//! a CPU with AVX2 take the baseline.

/// Classes of the 64 bytes of one block, bit `k` for byte `k`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Masks {
    /// `"`.
    pub(super) quote: u64,
    /// Not a space (bytes past the end of the payload count as spaces).
    pub(super) significant: u64,
    /// `\`, a byte below 0x20 (controls, and the whitespace `\t`, `\n`,
    /// `\r`) or a byte above 0x7f: what the fast walk leaves to the
    /// byte-by-byte scanner (escapes, control checks, UTF-8).
    pub(super) unusual: u64,
    /// `:` (classifiers with `OPS` only; zero otherwise).
    pub(super) colon: u64,
    /// `,` (`OPS` only).
    pub(super) comma: u64,
    /// A byte that may open or close a container, `{` `}` `[` `]`, or
    /// one of `Y` `_` `y` DEL, which share the pattern `c | 0x26 == 0x7f`
    /// that makes this one compare; none of those four is valid outside a
    /// string, where the flat walk looks (`OPS` only).
    pub(super) bracket: u64,
    /// The running parity of [`Masks::quote`]: in a block without escapes,
    /// each string from its opening quote up to (not with) its closing
    /// quote; bit 63 set where a string is still open at the block's end
    /// (`OPS` only).
    pub(super) strings: u64,
}

/// Bit `k` of the result: the parity of the bits `0..=k` of `x`.
#[inline(always)]
pub(super) fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The masks of one block, byte by byte: the definition every other
/// classifier is tested against, and the classifier on targets without
/// SSE2.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
pub(super) fn classify_bytes<const OPS: bool>(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (k, &c) in block.iter().enumerate() {
        m.quote |= u64::from(c == b'"') << k;
        m.significant |= u64::from(c != b' ') << k;
        m.unusual |= u64::from(is_unusual(c)) << k;
        if OPS {
            m.colon |= u64::from(c == b':') << k;
            m.comma |= u64::from(c == b',') << k;
            m.bracket |= u64::from(c | 0x26 == 0x7f) << k;
        }
    }
    if OPS {
        m.strings = prefix_xor(m.quote);
    }
    m
}

/// A byte of [`Masks::unusual`].
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
pub(super) fn is_unusual(c: u8) -> bool {
    c == b'\\' || !(0x20..0x80).contains(&c)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn classify_sse2<const OPS: bool>(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x,
    };
    let quote = _mm_set1_epi8(b'"' as i8);
    let space = _mm_set1_epi8(b' ' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let control = _mm_set1_epi8(0x20);
    let colon = _mm_set1_epi8(b':' as i8);
    let comma = _mm_set1_epi8(b',' as i8);
    let (k26, k7f) = (_mm_set1_epi8(0x26), _mm_set1_epi8(0x7f));
    let mut m = Masks::default();
    let mut spaces = 0u64;
    for (k, lane) in block.chunks_exact(16).enumerate() {
        // Two halves of one little-endian `u128`: the compiler makes one
        // unaligned 16-byte load of them.
        let x = u128::from_le_bytes(lane.try_into().expect("16 bytes"));
        let v = _mm_set_epi64x((x >> 64) as i64, x as i64);
        // `pmovmskb` gives one bit per byte of the lane.
        let bits = |x| u64::from(_mm_movemask_epi8(x) as u16) << (16 * k);
        m.quote |= bits(_mm_cmpeq_epi8(v, quote));
        spaces |= bits(_mm_cmpeq_epi8(v, space));
        // Signed compare: below 0x20 takes the bytes above 0x7f too.
        m.unusual |= bits(_mm_or_si128(
            _mm_cmpeq_epi8(v, backslash),
            _mm_cmplt_epi8(v, control),
        ));
        if OPS {
            m.colon |= bits(_mm_cmpeq_epi8(v, colon));
            m.comma |= bits(_mm_cmpeq_epi8(v, comma));
            m.bracket |= bits(_mm_cmpeq_epi8(_mm_or_si128(v, k26), k7f));
        }
    }
    if OPS {
        m.strings = prefix_xor(m.quote);
    }
    m.significant = !spaces;
    m
}

/// The masks of one block with AVX2: two 32-byte compares per class.
/// About 30 instructions where SSE2 takes about 85; the index pays this
/// once per block of every payload it walks. The strings' parity is one
/// carry-less multiply (PCLMULQDQ, on every CPU with AVX2 we know of, and
/// detected with it) by all ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,pclmulqdq")]
pub(super) fn classify_avx2<const OPS: bool>(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8, _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set1_epi8,
        _mm_set_epi64x,
    };
    let quote = _mm256_set1_epi8(b'"' as i8);
    let space = _mm256_set1_epi8(b' ' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let control = _mm256_set1_epi8(0x20);
    let (lo, hi) = block.split_at(32);
    // SAFETY: `lo` and `hi` are 32 bytes each; `loadu` takes any alignment.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(lo.as_ptr().cast::<__m256i>()),
            _mm256_loadu_si256(hi.as_ptr().cast::<__m256i>()),
        )
    };
    // `vpmovmskb` gives one bit per byte of the 32.
    let bits = |lo, hi| {
        u64::from(_mm256_movemask_epi8(lo) as u32)
            | u64::from(_mm256_movemask_epi8(hi) as u32) << 32
    };
    // Signed compare: below 0x20 takes the bytes above 0x7f too.
    let unusual = |v| {
        _mm256_or_si256(
            _mm256_cmpeq_epi8(v, backslash),
            _mm256_cmpgt_epi8(control, v),
        )
    };
    let mut m = Masks {
        quote: bits(_mm256_cmpeq_epi8(lo, quote), _mm256_cmpeq_epi8(hi, quote)),
        significant: !bits(_mm256_cmpeq_epi8(lo, space), _mm256_cmpeq_epi8(hi, space)),
        // Through a register the optimizer cannot see into: inlined into
        // a loop that tests it, LLVM would otherwise take this mask apart
        // into a byte per bit and build vectors from them again (about
        // 300 instructions per block).
        unusual: opaque(bits(unusual(lo), unusual(hi))),
        ..Masks::default()
    };
    if OPS {
        let colon = _mm256_set1_epi8(b':' as i8);
        let comma = _mm256_set1_epi8(b',' as i8);
        let (k26, k7f) = (_mm256_set1_epi8(0x26), _mm256_set1_epi8(0x7f));
        let bracket = |v| _mm256_cmpeq_epi8(_mm256_or_si256(v, k26), k7f);
        m.colon = bits(_mm256_cmpeq_epi8(lo, colon), _mm256_cmpeq_epi8(hi, colon));
        m.comma = bits(_mm256_cmpeq_epi8(lo, comma), _mm256_cmpeq_epi8(hi, comma));
        m.bracket = bits(bracket(lo), bracket(hi));
        let quote = _mm_set_epi64x(0, m.quote as i64);
        m.strings = _mm_cvtsi128_si64(_mm_clmulepi64_si128(quote, _mm_set1_epi8(-1), 0)) as u64;
    }
    m
}

/// `x` as it is, through a register the optimizer cannot see into (an
/// empty `asm!`: no instruction).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn opaque(mut x: u64) -> u64 {
    // SAFETY: the template is empty: it reads and writes nothing but the
    // register that holds `x`, and leaves it as it was.
    unsafe {
        std::arch::asm!("/* {0} */", inout(reg) x, options(pure, nomem, nostack, preserves_flags));
    }
    x
}

/// The masks of one block on any CPU of the build's target: SSE2 on
/// x86_64 (part of its baseline), else byte by byte.
#[inline(always)]
pub(super) fn classify_baseline<const OPS: bool>(block: &[u8; 64]) -> Masks {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: `classify_sse2` needs SSE2 and nothing else, and this
        // build enables SSE2 for the whole program (the cfg above): every
        // CPU it runs on has it. The function itself is safe code.
        unsafe { classify_sse2::<OPS>(block) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        classify_bytes::<OPS>(block)
    }
}

/// Whether this CPU has AVX2 and PCLMULQDQ, what [`classify_avx2`]
/// needs, and BMI1, BMI2, LZCNT and POPCNT, which [`simd`] compiles its
/// loop for (every CPU with AVX2 we know of has them), and the
/// environment does not set `DATAPLANE_NO_AVX2`:
/// detected once per process and kept in one byte, so the check per
/// block is a load and a compare (two `is_x86_feature_detected!` checks
/// cost ten instructions).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_avx2() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    /// 0: not detected yet; 1: no; 2: yes.
    static AVX2: AtomicU8 = AtomicU8::new(0);
    #[cold]
    #[inline(never)]
    fn detect() -> bool {
        // `DATAPLANE_NO_AVX2` (set, to anything): the baseline classifier
        // whatever the CPU, to test or measure it on one with AVX2.
        let yes = std::env::var_os("DATAPLANE_NO_AVX2").is_none()
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("lzcnt")
            && std::arch::is_x86_feature_detected!("popcnt");
        AVX2.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
        yes
    }
    // One compare on the usual path.
    let known = AVX2.load(Ordering::Relaxed);
    if known == 2 {
        true
    } else {
        known == 0 && detect()
    }
}

/// Which block classifier a caller may use, known from its type: the
/// scanner's entry points for hot loops take one, so that a loop that
/// knows (from [`simd`]) compiles to one classifier, not a check per
/// block and both.
pub(crate) trait Isa: Copy + sealed::Sealed {
    /// Which one.
    const KIND: IsaKind;
}

/// Only this module names an [`Isa`]: one that says `Avx2` lets safe code
/// run AVX2 instructions.
mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Detect {}
    #[cfg(target_arch = "x86_64")]
    impl Sealed for super::Avx2 {}
    impl Sealed for super::Baseline {}
}

/// The [`Isa`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IsaKind {
    /// [`Detect`].
    Detect,
    /// [`Avx2`].
    Avx2,
    /// [`Baseline`].
    Baseline,
}

/// Whatever this CPU has, checked per block (see [`has_avx2`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Detect;

impl Isa for Detect {
    const KIND: IsaKind = IsaKind::Detect;
}

/// AVX2 and PCLMULQDQ, there: only [`simd`] makes one, after
/// [`has_avx2`] said so.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2 {
    _detected: (),
}

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2 {
    const KIND: IsaKind = IsaKind::Avx2;
}

/// The baseline classifier, whatever the CPU.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Baseline;

impl Isa for Baseline {
    const KIND: IsaKind = IsaKind::Baseline;
}

/// Work that runs faster compiled for AVX2 and PCLMULQDQ: a loop over
/// many payloads, whose calls to [`classify_avx2`] then inline (a
/// function without the features cannot inline one with them).
pub(crate) trait Simd {
    /// What the work gives.
    type Out;
    /// Does the work, classifying blocks with `isa`. Its instances for
    /// [`Avx2`] and [`Baseline`] are separate code (so is a closure in
    /// it: closures are generic over their function's parameters), each
    /// with one caller, where it inlines.
    fn run<I: Isa>(self, isa: I) -> Self::Out;
}

/// Runs `work` compiled for AVX2 and PCLMULQDQ (and the bit
/// instructions every CPU with them has) where the CPU has them, else
/// with the baseline classifier.
#[inline(always)]
pub(crate) fn simd<W: Simd>(work: W) -> W::Out {
    #[cfg(target_arch = "x86_64")]
    {
        /// `work`, compiled with the features.
        #[target_feature(enable = "avx2,pclmulqdq,bmi1,bmi2,lzcnt,popcnt")]
        fn run<W: Simd>(work: W, isa: Avx2) -> W::Out {
            work.run(isa)
        }
        if has_avx2() {
            // SAFETY: `run` needs AVX2, PCLMULQDQ, BMI1, BMI2, LZCNT and
            // POPCNT and nothing else, and this CPU has them
            // (`has_avx2`).
            return unsafe { run(work, Avx2 { _detected: () }) };
        }
    }
    work.run(Baseline)
}

/// The masks of one block: with AVX2 where the CPU has it (detected once
/// per process, see [`has_avx2`]), else as [`classify_baseline`].
#[cfg(test)]
pub(super) fn classify<const OPS: bool>(block: &[u8; 64]) -> Masks {
    classify_with::<_, OPS>(Detect, block)
}

/// The masks of one block, with the classifier `isa` names.
#[inline(always)]
pub(super) fn classify_with<I: Isa, const OPS: bool>(_isa: I, block: &[u8; 64]) -> Masks {
    #[cfg(target_arch = "x86_64")]
    {
        if I::KIND == IsaKind::Avx2 || (I::KIND == IsaKind::Detect && has_avx2()) {
            // SAFETY: `classify_avx2` needs AVX2 and PCLMULQDQ and nothing
            // else, and this CPU has them: `has_avx2` said so, here or
            // before the only `Avx2` (`_isa`) was made, in `simd`. The
            // function itself is safe code apart from its loads, which
            // have their own SAFETY.
            return unsafe { classify_avx2::<OPS>(block) };
        }
    }
    classify_baseline::<OPS>(block)
}

/// The masks of the block of `b` that starts at `base` (`base < b.len()`):
/// bit `k` for byte `base + k`, bits past the end of `b` as for spaces.
#[inline(always)]
pub(super) fn block_at<const OPS: bool>(b: &[u8], base: usize) -> Masks {
    block_with::<_, OPS>(Detect, b, base)
}

/// [`block_at`] with the classifier `isa` names.
#[inline(always)]
pub(super) fn block_with<I: Isa, const OPS: bool>(isa: I, b: &[u8], base: usize) -> Masks {
    let classify = |block: &[u8; 64]| classify_with::<I, OPS>(isa, block);
    debug_assert!(base < b.len());
    if let Some(block) = b.get(base..base + 64) {
        return classify(block.try_into().expect("64 bytes"));
    }
    if b.len() >= 64 {
        // The last 64 bytes, overlapping the block before: shift out what
        // belongs to it; the bits shifted in (past the end) are zeros.
        let last = b.len() - 64;
        let m = classify(b[last..].try_into().expect("64 bytes"));
        let shift = base - last;
        return Masks {
            quote: m.quote >> shift,
            significant: m.significant >> shift,
            unusual: m.unusual >> shift,
            colon: m.colon >> shift,
            comma: m.comma >> shift,
            bracket: m.bracket >> shift,
            // The parity of this block's own quotes, not the overlap's.
            strings: if OPS { prefix_xor(m.quote >> shift) } else { 0 },
        };
    }
    // A payload shorter than a block, padded with spaces.
    let mut block = [b' '; 64];
    block[..b.len()].copy_from_slice(b);
    classify(&block)
}

/// A forward-only cursor over the index of a payload: the masks of the
/// block it is in, the next block's computed when a lookup passes the end
/// of this one. It only stands on clean blocks: a lookup that reaches a
/// block with [`Masks::unusual`] bytes finds nothing, as at the end.
///
/// `ONE`: the payload is one block at most (64 bytes or less), so the
/// cursor never moves and a lookup only checks the end.
pub(super) struct Cursor<'a, const ONE: bool> {
    b: &'a [u8],
    base: usize,
    masks: Masks,
    /// A lookup reached a block that is not clean.
    stopped: bool,
}

impl<'a, const ONE: bool> Cursor<'a, ONE> {
    /// A cursor on the first block; `None` for an empty payload or one
    /// whose first block is not clean.
    #[inline(always)]
    pub(super) fn new(b: &'a [u8]) -> Option<Cursor<'a, ONE>> {
        if b.is_empty() {
            return None;
        }
        Cursor::on(b, block_at::<false>(b, 0))
    }

    /// A cursor on the first block, whose masks are `masks` (as
    /// [`block_at`] gives them, with or without `OPS`); `None` where that
    /// block is not clean.
    #[inline(always)]
    pub(super) fn on(b: &'a [u8], masks: Masks) -> Option<Cursor<'a, ONE>> {
        debug_assert!(!ONE || b.len() <= 64);
        (masks.unusual == 0).then_some(Cursor {
            b,
            base: 0,
            masks,
            stopped: false,
        })
    }

    /// Moves to the block that holds `p`; false when `p` is past the end
    /// or its block is not clean.
    #[inline(always)]
    fn reach(&mut self, p: usize) -> bool {
        if ONE {
            return p < self.b.len();
        }
        if p < self.base + 64 {
            return true;
        }
        if p >= self.b.len() {
            return false;
        }
        self.base = p & !63;
        self.masks = block_at::<false>(self.b, self.base);
        self.stopped = self.masks.unusual != 0;
        !self.stopped
    }

    /// Whether nothing but spaces follows `p`: the end was reached, not a
    /// block that is not clean.
    #[inline(always)]
    pub(super) fn blank_from(&mut self, p: usize) -> bool {
        self.significant(p).is_none() && !self.stopped
    }

    /// The first byte at or after `p` that `mask` marks. Lookups must not
    /// go back past the block the cursor is in.
    #[inline(always)]
    fn next(&mut self, mut p: usize, mask: fn(&Masks) -> u64) -> Option<usize> {
        debug_assert!(p >= self.base, "the cursor only moves forward");
        loop {
            if !self.reach(p) {
                return None;
            }
            let bits = mask(&self.masks) >> (p - self.base);
            if bits != 0 {
                return Some(p + bits.trailing_zeros() as usize);
            }
            p = self.base + 64;
        }
    }

    /// The first byte at or after `p` that is not a space.
    #[inline(always)]
    pub(super) fn significant(&mut self, p: usize) -> Option<usize> {
        self.next(p, |m| m.significant)
    }

    /// The first `"` at or after `p`.
    #[inline(always)]
    pub(super) fn quote(&mut self, p: usize) -> Option<usize> {
        self.next(p, |m| m.quote)
    }
}
