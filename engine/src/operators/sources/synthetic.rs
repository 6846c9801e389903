//! Built-in sources for fixed and generated data.

use std::io::Write;

use serde::Deserialize;

use crate::arena::ContentType;
use crate::checkpoint::{StateReader, StateWriter};
use crate::clock::now_ns;
use crate::operators::params::params;
use crate::operators::util::SplitMix64;
use crate::stage::{Pull, SlotBatch, SlotWriter, Source, StageError, StageInfo};

/// Emits a fixed list of payloads, optionally repeated.
pub struct ListSource {
    payloads: Vec<Vec<u8>>,
    content_type: ContentType,
    repeat: u64,
    next: usize,
    round: u64,
}

impl ListSource {
    /// Emits `payloads` once, in order.
    pub fn new(payloads: Vec<Vec<u8>>) -> ListSource {
        let json = payloads
            .iter()
            .all(|p| serde_json::from_slice::<serde::de::IgnoredAny>(p).is_ok());
        ListSource {
            payloads,
            content_type: if json {
                ContentType::Json
            } else {
                ContentType::Bytes
            },
            repeat: 1,
            next: 0,
            round: 0,
        }
    }

    /// Emits the list `repeat` times.
    pub fn repeat(mut self, repeat: u64) -> ListSource {
        self.repeat = repeat;
        self
    }
}

impl Source for ListSource {
    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.next == self.payloads.len() {
            self.round += 1;
            self.next = 0;
        }
        if self.round >= self.repeat || self.payloads.is_empty() {
            return Ok(Pull::Done);
        }
        let payload = &self.payloads[self.next];
        self.next += 1;
        slot.set_content_type(self.content_type);
        slot.write(payload)?;
        Ok(Pull::Ready)
    }
}

params! {
    /// Parameters of the `list` source.
    pub(crate) struct ListParams {
        /// array of strings (sent as is) or tables (sent as compact JSON)
        payloads: Vec<toml::Value>,
        /// times to emit the list (default 1)
        #[serde(default = "one")]
        repeat: u64,
    }
}

fn one() -> u64 {
    1
}

/// A payload given in TOML: a string as it is, anything else (a table) as
/// compact JSON. `list` and the `[[tests]]` of a config read payloads so.
pub(crate) fn payload_bytes(v: &toml::Value) -> Result<Vec<u8>, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone().into_bytes()),
        other => serde_json::to_vec(other).map_err(|e| format!("payload cannot be JSON: {e}")),
    }
}

pub(crate) fn build_list(p: ListParams) -> Result<ListSource, String> {
    let payloads = p
        .payloads
        .iter()
        .map(payload_bytes)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ListSource::new(payloads).repeat(p.repeat))
}

/// One piece of a generator template.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(Vec<u8>),
    Seq,
    Timestamp,
    Pick(Vec<Vec<u8>>),
    /// A uniform random integer in `0..n`.
    Rand(u64),
    /// A uniformly random choice.
    Choose(Vec<Vec<u8>>),
}

/// Generates payloads from a template, as fast as possible or at a fixed
/// rate, a fixed count of them or until stopped.
///
/// Template placeholders: `{seq}` (sequence number), `{ts}` (ingest time in
/// ns), `{pick:a|b|c}` (cycles through the choices by sequence number),
/// `{rand:N}` (a random integer in `0..N`) and `{choose:a|b|c}` (a random
/// choice). Random values come from a seeded SplitMix64, so a seed gives
/// the same stream on every run. `size` pads every payload with trailing
/// spaces (valid JSON whitespace) to exactly that many bytes; several sizes
/// are used in turn.
pub struct Generator {
    pieces: Vec<Piece>,
    /// Prepared renderings when the template allows them (see [`Frames`]).
    frames: Option<Frames>,
    count: Option<u64>,
    sizes: Vec<usize>,
    rng: SplitMix64,
    rate: Option<f64>,
    json: bool,
    n: u64,
    start_ns: u64,
    /// The latest clock reading of a paced generator.
    last_now: u64,
}

impl Generator {
    /// A generator of `count` elements (`None`: unbounded) from `template`.
    pub fn new(template: &str, count: Option<u64>) -> Result<Generator, String> {
        let pieces = parse_template(template)?;
        Ok(Generator {
            frames: Frames::for_template(&pieces, &[]),
            pieces,
            count,
            sizes: Vec::new(),
            rng: SplitMix64::new(0),
            rate: None,
            json: template.trim_start().starts_with('{'),
            n: 0,
            start_ns: 0,
            last_now: 0,
        })
    }

    /// Pads each payload to exactly `size` bytes.
    pub fn size(self, size: usize) -> Generator {
        self.sizes(vec![size])
    }

    /// Pads payload `i` to `sizes[i % sizes.len()]` bytes.
    pub fn sizes(mut self, sizes: Vec<usize>) -> Generator {
        self.frames = Frames::for_template(&self.pieces, &sizes);
        self.sizes = sizes;
        self
    }

    /// Seeds the random placeholders (default 0).
    pub fn seed(mut self, seed: u64) -> Generator {
        self.rng = SplitMix64::new(seed);
        self
    }

    /// Emits at `per_second` elements per second, each stamped with its
    /// intended send time (so a stall shows up as latency, not as a pause).
    pub fn rate(mut self, per_second: f64) -> Generator {
        self.rate = Some(per_second);
        self
    }
}

fn parse_template(t: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = t;
    let mut text = Vec::new();
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}');
        let name = close.map(|c| &after[..c]);
        let piece = match name {
            Some("seq") => Some(Piece::Seq),
            Some("ts") => Some(Piece::Timestamp),
            Some(n) if n.starts_with("pick:") => {
                let choices: Vec<Vec<u8>> =
                    n[5..].split('|').map(|c| c.as_bytes().to_vec()).collect();
                if choices.iter().any(Vec::is_empty) {
                    return Err(format!(
                        "template placeholder '{{{n}}}' has an empty choice"
                    ));
                }
                Some(Piece::Pick(choices))
            }
            Some(n) if n.starts_with("choose:") => {
                let choices: Vec<Vec<u8>> =
                    n[7..].split('|').map(|c| c.as_bytes().to_vec()).collect();
                if choices.iter().any(Vec::is_empty) {
                    return Err(format!(
                        "template placeholder '{{{n}}}' has an empty choice"
                    ));
                }
                Some(Piece::Choose(choices))
            }
            Some(n) if n.starts_with("rand:") => match n[5..].parse::<u64>() {
                Ok(bound) if bound > 0 => Some(Piece::Rand(bound)),
                _ => {
                    return Err(format!(
                    "template placeholder '{{{n}}}': expected {{rand:N}} with N a positive integer"
                ))
                }
            },
            _ => None,
        };
        match piece {
            Some(p) => {
                text.extend_from_slice(&rest.as_bytes()[..open]);
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(p);
                rest = &after[close.expect("matched") + 1..];
            }
            None => {
                // A literal brace (JSON object syntax).
                text.extend_from_slice(&rest.as_bytes()[..=open]);
                rest = after;
            }
        }
    }
    text.extend_from_slice(rest.as_bytes());
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

impl Generator {
    fn intended_ns(&self, seq: u64) -> Option<u64> {
        self.rate
            .map(|rate| self.start_ns + (seq as f64 * 1e9 / rate) as u64)
    }
}

impl Source for Generator {
    fn init(&mut self, _info: &StageInfo) -> Result<(), StageError> {
        // Resumed from a checkpoint at element `n`: it is due now.
        let offset = self.intended_ns(self.n).unwrap_or(0);
        self.start_ns = now_ns().saturating_sub(offset);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        Ok(StateWriter::new()
            .u64(self.n)
            .u64(self.rng.state())
            .finish())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let mut r = StateReader::new(state);
        self.n = r.u64()?;
        self.rng = SplitMix64::new(r.u64()?);
        r.done()
    }

    fn next_due_ns(&self) -> Option<u64> {
        self.intended_ns(self.n)
    }

    fn pull_batch(&mut self, slots: &mut SlotBatch<'_>) -> Result<(), StageError> {
        if self.frames.is_some() && self.rate.is_none() {
            return self.pull_frames(slots);
        }
        slots.fill_all(|slot| self.pull(slot))
    }

    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.count.is_some_and(|c| self.n >= c) {
            return Ok(Pull::Done);
        }
        let seq = self.n;
        let mut ingest = 0;
        if let Some(intended) = self.intended_ns(seq) {
            // The clock is read only when the last reading says the element
            // is not due yet: a backlog (elements already due) costs no
            // clock read per element.
            if self.last_now < intended {
                self.last_now = now_ns();
                if self.last_now < intended {
                    return Ok(Pull::Pending);
                }
            }
            ingest = intended;
            slot.set_ingest_ns(intended);
        }
        if let Some(frames) = self.frames.as_mut() {
            return frames.pull(&mut self.n, self.json, slot);
        }
        let capacity = slot.capacity();
        let buf = slot.buffer();
        let mut w = &mut buf[..];
        let mut overflow = false;
        for piece in &self.pieces {
            let r = match piece {
                Piece::Text(t) => w.write_all(t),
                Piece::Seq => w.write_all(itoa::Buffer::new().format(seq).as_bytes()),
                Piece::Timestamp => {
                    let ts = if ingest == 0 { now_ns() } else { ingest };
                    w.write_all(itoa::Buffer::new().format(ts).as_bytes())
                }
                Piece::Pick(c) => w.write_all(&c[(seq % c.len() as u64) as usize]),
                Piece::Rand(n) => {
                    w.write_all(itoa::Buffer::new().format(self.rng.below(*n)).as_bytes())
                }
                Piece::Choose(c) => w.write_all(&c[self.rng.below(c.len() as u64) as usize]),
            };
            overflow |= r.is_err();
        }
        let mut len = capacity - w.len();
        if !self.sizes.is_empty() {
            let size = self.sizes[(seq % self.sizes.len() as u64) as usize];
            if size > capacity {
                overflow = true;
            } else if len < size {
                buf[len..size].fill(b' ');
                len = size;
            }
        }
        self.n += 1;
        if overflow {
            return Err(too_large(capacity));
        }
        slot.set_len(len)?;
        if self.json {
            slot.set_content_type(ContentType::Json);
        }
        Ok(Pull::Ready)
    }
}

impl Generator {
    /// [`Source::pull_batch`] for a template with prepared frames and no
    /// rate: the batch's elements in one loop, the frames' state kept
    /// across them.
    #[inline(always)]
    fn pull_frames(&mut self, slots: &mut SlotBatch<'_>) -> Result<(), StageError> {
        let Generator {
            frames: Some(frames),
            count,
            json,
            n,
            ..
        } = self
        else {
            unreachable!("pull_frames without frames")
        };
        let json = *json;
        // The elements left bound the batch once, not each pull.
        // Unbounded, the generator still ends at `u64::MAX` (a sequence
        // number must fit).
        let left = count.unwrap_or(u64::MAX).saturating_sub(*n);
        if left == 0 {
            return slots.fill_all(|_| Ok(Pull::Done));
        }
        slots.limit(usize::try_from(left).unwrap_or(usize::MAX));
        let mut walk = frames.walk();
        // The count in a local for the loop (the slots' writes might
        // change `*n`, for all the compiler knows), stored back after it,
        // a panic included.
        let local = *n;
        let mut n = Count { n, local };
        let filled = slots.fill_all(|slot| walk.pull(&mut n.local, json, slot));
        frames.place = walk.place;
        filled
    }
}

/// A count kept in a local and stored back when dropped.
struct Count<'a> {
    n: &'a mut u64,
    local: u64,
}

impl Drop for Count<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        *self.n = self.local;
    }
}

fn too_large(capacity: usize) -> StageError {
    StageError::Rejected(crate::stage::Reason::new(
        "payload too large",
        format!("generated payload exceeds the arena slot size of {capacity} bytes"),
    ))
}

/// Prepared renderings of a template whose only placeholders are `{seq}`
/// and `{pick:..}`: one frame per combination of pick choices and payload
/// size, rendered once with the sequence number's digit count. An element is
/// then its frame's digits advanced in place to its own number (usually one
/// digit changes) and one copy of the frame into the slot (whole 64-byte
/// blocks, no call), instead of formatting every piece; the frame is found
/// by counting, not dividing, and rendered again only when the digit count
/// grows (10, 100, ...). The bytes are exactly what the general renderer
/// writes.
#[derive(Debug)]
struct Frames {
    pieces: Vec<Piece>,
    sizes: Vec<usize>,
    /// The frame of each `seq % frames.len()` (what a frame holds is a
    /// function of `seq` modulo the product of the radices).
    frames: Vec<Frame>,
    place: Place,
    /// The template writes `{seq}`: frames change with the number.
    numbered: bool,
}

/// Where the walk over the frames stands: kept in [`Frames`] between
/// batches, copied into a [`Walk`] for one.
#[derive(Clone, Copy, Debug)]
struct Place {
    /// `seq % frames.len()` for the sequence number `next_seq`, kept by
    /// counting so that the usual call (the next number) divides nothing.
    next_seq: u64,
    phase: usize,
    /// Digits of the current sequence number, and the first number with
    /// one more (never, for a template without `{seq}`).
    digits: usize,
    next_bound: u64,
}

/// [`Frames`] for one batch of renders: its tables as slices and its
/// [`Place`] as a copy, locals of the batch's loop. The loop has cold
/// calls (a `Vec` growing, the clock, a frame rendered again), any of
/// which may write memory for all the compiler knows, so state read
/// through `&mut Frames` was loaded and stored again for every element.
/// Left stale by a panic, the place mends itself: the next render finds
/// `seq != next_seq` (and divides) or a digit count too small (and counts
/// up), and every frame records the number and digits it holds.
struct Walk<'f> {
    pieces: &'f [Piece],
    sizes: &'f [usize],
    frames: &'f mut [Frame],
    numbered: bool,
    place: Place,
}

#[derive(Debug, Default)]
struct Frame {
    /// The rendered payload, zero-padded to whole 64-byte blocks.
    bytes: Vec<u8>,
    /// Payload length.
    len: usize,
    /// Digit count it was rendered with (0: not rendered yet).
    digits: usize,
    /// Where each `{seq}` starts.
    seq_at: Vec<usize>,
    /// The sequence number whose digits the frame holds.
    seq: u64,
}

/// Most frames prepared for one template.
const MAX_FRAMES: u64 = 256;
const BLOCK: usize = 64;

impl Frames {
    fn for_template(pieces: &[Piece], sizes: &[usize]) -> Option<Frames> {
        let mut radices = Vec::new();
        for p in pieces {
            match p {
                Piece::Text(_) | Piece::Seq => {}
                Piece::Pick(c) => radices.push(c.len() as u64),
                Piece::Timestamp | Piece::Rand(_) | Piece::Choose(_) => return None,
            }
        }
        // Choice counts of the pick pieces, then the number of sizes.
        radices.push(sizes.len().max(1) as u64);
        // A choice of one is no choice (and would cost a division).
        radices.retain(|&r| r > 1);
        let count = radices.iter().try_fold(1u64, |acc, &r| {
            acc.checked_mul(r).filter(|&n| n <= MAX_FRAMES)
        })?;
        let numbered = pieces.iter().any(|p| matches!(p, Piece::Seq));
        Some(Frames {
            pieces: pieces.to_vec(),
            sizes: sizes.to_vec(),
            frames: (0..count).map(|_| Frame::default()).collect(),
            place: Place {
                next_seq: 0,
                phase: 0,
                digits: 1,
                // The digit count matters only to a template that writes
                // `{seq}`.
                next_bound: if numbered { 10 } else { u64::MAX },
            },
            numbered,
        })
    }

    /// The frames as a [`Walk`] for one batch; its place is stored back
    /// into `place` after it.
    #[inline(always)]
    fn walk(&mut self) -> Walk<'_> {
        Walk {
            pieces: &self.pieces,
            sizes: &self.sizes,
            frames: &mut self.frames,
            numbered: self.numbered,
            place: self.place,
        }
    }

    /// Writes element `*n` into `slot` and counts it.
    fn pull(
        &mut self,
        n: &mut u64,
        json: bool,
        slot: &mut SlotWriter<'_>,
    ) -> Result<Pull, StageError> {
        let mut walk = self.walk();
        let pulled = walk.pull(n, json, slot);
        self.place = walk.place;
        pulled
    }

    /// Renders `frame` for element `seq` (which has `digits` digits).
    #[cold]
    fn prepare(frame: &mut Frame, pieces: &[Piece], sizes: &[usize], seq: u64, digits: usize) {
        let out = &mut frame.bytes;
        out.clear();
        frame.seq_at.clear();
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Seq => {
                    frame.seq_at.push(out.len());
                    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
                }
                Piece::Pick(c) => out.extend_from_slice(&c[(seq % c.len() as u64) as usize]),
                Piece::Timestamp | Piece::Rand(_) | Piece::Choose(_) => {
                    unreachable!("not a frame template")
                }
            }
        }
        if !sizes.is_empty() {
            let size = sizes[(seq % sizes.len() as u64) as usize];
            if out.len() < size {
                out.resize(size, b' ');
            }
        }
        frame.len = out.len();
        out.resize(frame.len.div_ceil(BLOCK) * BLOCK, 0);
        frame.digits = digits;
        frame.seq = seq;
    }
}

impl Walk<'_> {
    /// Writes element `*n` into `slot` and counts it.
    #[inline(always)]
    fn pull(
        &mut self,
        n: &mut u64,
        json: bool,
        slot: &mut SlotWriter<'_>,
    ) -> Result<Pull, StageError> {
        let capacity = slot.capacity();
        let len = self.render(*n, slot.buffer());
        *n += 1;
        let Some(len) = len else {
            return Err(too_large(capacity));
        };
        // `render` wrote `len` bytes into the slot's buffer.
        slot.set_len_written(len);
        if json {
            slot.set_content_type(ContentType::Json);
        }
        Ok(Pull::Ready)
    }

    /// Writes element `seq` into `buf`; its length, or `None` if it does not
    /// fit.
    #[inline(always)]
    fn render(&mut self, seq: u64, buf: &mut [u8]) -> Option<usize> {
        while seq >= self.place.next_bound {
            self.place.digits += 1;
            self.place.next_bound = self.place.next_bound.saturating_mul(10);
        }
        if seq != self.place.next_seq {
            // Resumed from a checkpoint, or a pull skipped: divide once.
            self.place.phase = (seq % self.frames.len() as u64) as usize;
        }
        let phase = self.place.phase;
        self.place.phase += 1;
        if self.place.phase == self.frames.len() {
            self.place.phase = 0;
        }
        self.place.next_seq = seq.wrapping_add(1);
        let frame = &mut self.frames[phase];
        if frame.digits != self.place.digits {
            Frames::prepare(frame, self.pieces, self.sizes, seq, self.place.digits);
        } else if self.numbered && seq != frame.seq {
            // The frame holds an earlier number of the same width: add the
            // difference to its digits in place (usually one digit changes)
            // rather than writing them all again.
            let delta = seq.wrapping_sub(frame.seq);
            let digits = self.place.digits;
            for &at in &frame.seq_at {
                let number = &mut frame.bytes[at..at + digits];
                match number.last_mut() {
                    // The next number, nine times in ten: one digit moves.
                    Some(last) if delta == 1 && *last < b'9' => *last += 1,
                    _ => add_decimal(number, delta, seq),
                }
            }
            frame.seq = seq;
        }
        let len = frame.len;
        let blocks = frame.bytes.len();
        if let (BLOCK, Some(dst)) = (blocks, buf.first_chunk_mut::<BLOCK>()) {
            // One block, the usual payload: a fixed-size copy, in 16-byte
            // words (a `copy_from_slice` of 64 bytes is a call to memcpy).
            let src = frame.bytes.first_chunk::<BLOCK>().expect("one block");
            for (d, s) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
                let word = u128::from_ne_bytes(s.try_into().expect("16 bytes"));
                d.copy_from_slice(&word.to_ne_bytes());
            }
        } else if blocks <= buf.len() {
            for (d, s) in buf[..blocks]
                .chunks_exact_mut(BLOCK)
                .zip(frame.bytes.chunks_exact(BLOCK))
            {
                d.copy_from_slice(s);
            }
        } else if len <= buf.len() {
            buf[..len].copy_from_slice(&frame.bytes[..len]);
        } else {
            return None;
        }
        Some(len)
    }
}

/// Adds `delta` to the decimal number written in `digits` (ASCII, all of
/// it), which then reads `now`; `now` has the same number of digits. A
/// small step carries through a few digits; a large one rewrites them.
#[inline(never)]
fn add_decimal(digits: &mut [u8], delta: u64, now: u64) {
    if delta >= 10 {
        write_digits(digits, now);
        return;
    }
    let mut carry = delta as u8;
    for d in digits.iter_mut().rev() {
        let v = *d - b'0' + carry;
        if v < 10 {
            *d = b'0' + v;
            return;
        }
        *d = b'0' + v - 10;
        carry = 1;
    }
}

/// Writes `n`'s decimal digits right-aligned into `out` (exactly its
/// width).
#[inline]
fn write_digits(out: &mut [u8], mut n: u64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";
    let mut i = out.len();
    while n >= 100 && i >= 2 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        out[i - 2..i].copy_from_slice(&PAIRS[d..d + 2]);
        i -= 2;
    }
    if n >= 10 && i >= 2 {
        let d = n as usize * 2;
        out[i - 2..i].copy_from_slice(&PAIRS[d..d + 2]);
    } else if i >= 1 {
        out[i - 1] = b'0' + n as u8;
    }
}

params! {
    /// Parameters of the `generator` source.
    pub(crate) struct GeneratorParams {
        /// payload with {seq}, {ts} (ns), {pick:a|b|c} (in turn), {rand:N} (0..N)
        /// and {choose:a|b|c} (random) placeholders (default {"seq":{seq}})
        #[serde(default = "default_template")]
        template: String,
        /// elements to emit (default: until stopped)
        count: Option<u64>,
        /// pad each payload with spaces to this many bytes, or a list of sizes used
        /// in turn
        size: Option<Sizes>,
        /// elements per second, stamped with their intended send time (default: as
        /// fast as possible)
        rate: Option<f64>,
        /// seed of {rand:N} and {choose:..} (default 0)
        #[serde(default)]
        seed: u64,
    }
}

/// One payload size, or several used in turn.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Sizes {
    One(usize),
    Many(Vec<usize>),
}

fn default_template() -> String {
    r#"{"seq":{seq}}"#.to_string()
}

pub(crate) fn build_generator(p: GeneratorParams) -> Result<Generator, String> {
    let mut g = Generator::new(&p.template, p.count)?.seed(p.seed);
    match p.size {
        None => {}
        Some(Sizes::One(s)) => g = g.size(s),
        Some(Sizes::Many(v)) if v.is_empty() => {
            return Err("size: give a size or a non-empty list of sizes".to_string())
        }
        Some(Sizes::Many(v)) => g = g.sizes(v),
    }
    if let Some(r) = p.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(format!(
                "rate must be a positive number of elements per second, not {r}"
            ));
        }
        g = g.rate(r);
    }
    Ok(g)
}

#[cfg(test)]
mod tests;
