//! Count and processing-time windows (see the module docs of `window`).

use super::*;

/// A window whose results are going out, key by key: what is left when the
/// output has no more room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Closing {
    /// First pane of the window.
    first: u64,
    /// Last pane of the window.
    last: u64,
    /// The next key to emit (index in `groups`, which holds still meanwhile:
    /// no input is absorbed while a window is closing).
    key: usize,
    /// What follows once every key is out.
    then: Then,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Pane `last` closed: reset the slot it frees ([`Window::pane_closed`]).
    Close,
    /// End of stream: the next window that holds pane `last`, until none is
    /// left; then the groups go.
    Finish,
}

/// A windowed aggregation (see the module docs).
pub struct Window {
    basis: Basis,
    size: u64,
    slide: u64,
    panes: u64,
    key: Option<String>,
    key_json: Vec<u8>,
    field: Option<String>,
    aggregates: Aggregates,
    max_keys: usize,
    /// Raw key JSON (empty without a key) -> pane ring.
    groups: IndexMap<Box<[u8]>, Vec<Agg>, FnvBuild>,
    /// Hashes of the keys refused in the open pane (at most `max_keys`), so
    /// that each is counted once per pane.
    refused: HashSet<u64, PrehashedBuild>,
    /// Keys refused for want of room (`max_keys`), once per pane each.
    keys_refused: u64,
    /// Elements per pane slot, all keys together.
    pane_counts: Vec<u64>,
    /// Elements seen (count windows).
    seen: u64,
    /// The open pane (time windows: `None` before the first element).
    current: Option<u64>,
    /// Unix ns minus monotonic ns, for aligning time windows.
    pub(super) wall_offset: u64,
    /// Results held for want of room (see the module docs).
    closing: Option<Closing>,
    /// The last error emitting a result (not "no room"), reported when
    /// nothing is held any more.
    error: Option<StageError>,
    last_ingest: u64,
    scratch: Vec<u8>,
    key_buf: Vec<u8>,
    pub(super) now: fn() -> u64,
}

impl Window {
    /// A window of `size` (elements or ns) advancing by `slide` (equal to
    /// `size` for tumbling; must divide it).
    pub fn new(basis: Basis, size: u64, slide: u64) -> Result<Window, String> {
        if size == 0 || slide == 0 {
            return Err("window size and slide must be positive".to_string());
        }
        if slide > size || !size.is_multiple_of(slide) {
            return Err(format!(
                "slide ({slide}) must divide the window size ({size})"
            ));
        }
        let panes = size / slide;
        if panes > 10_000 {
            return Err(format!(
                "size / slide is {panes}; at most 10000 panes per window"
            ));
        }
        Ok(Window {
            basis,
            size,
            slide,
            panes,
            key: None,
            key_json: Vec::new(),
            field: None,
            aggregates: Aggregates {
                count: true,
                ..Aggregates::default()
            },
            max_keys: 10_000,
            groups: IndexMap::default(),
            refused: HashSet::default(),
            keys_refused: 0,
            pane_counts: vec![0; panes as usize],
            seen: 0,
            current: None,
            wall_offset: wall_offset(),
            closing: None,
            error: None,
            last_ingest: 0,
            scratch: Vec::with_capacity(256),
            key_buf: Vec::with_capacity(64),
            now: now_ns,
        })
    }

    /// Groups by top-level field `key` (the output carries it under the
    /// same name), at most `max_keys` keys at a time.
    pub fn key(mut self, key: &str, max_keys: usize) -> Window {
        self.key_json = serde_json::to_vec(key).expect("a string serializes");
        self.key = Some(key.to_string());
        self.max_keys = max_keys.max(1);
        self
    }

    /// Aggregates top-level numeric field `field`.
    pub fn field(mut self, field: &str) -> Window {
        self.field = Some(field.to_string());
        self
    }

    /// Chooses the aggregates (sum, min, max and avg need a field).
    pub fn aggregates(mut self, a: Aggregates) -> Result<Window, String> {
        if a.needs_field() && self.field.is_none() {
            return Err("sum, min, max and avg need a 'field'".to_string());
        }
        if a == Aggregates::default() {
            return Err("choose at least one aggregate".to_string());
        }
        self.aggregates = a;
        Ok(self)
    }

    fn slot(&self, pane: u64) -> usize {
        (pane % self.panes) as usize
    }

    /// Wall-clock pane of monotonic time `mono`.
    fn time_pane(&self, mono: u64) -> u64 {
        mono.wrapping_add(self.wall_offset) / self.slide
    }

    /// Closes pane `p`: emits the window ending with it, then resets the
    /// slot of its oldest pane (the next pane's slot).
    fn close_pane(&mut self, p: u64, emit: &mut Emit<'_>) -> Flush {
        debug_assert!(self.closing.is_none(), "one window closes at a time");
        let first = p as i128 - self.panes as i128 + 1;
        // Count windows that would start before element 0 do not exist.
        if first < 0 && self.basis == Basis::Count {
            self.pane_closed(p);
            return Flush::Done;
        }
        self.closing = Some(Closing {
            first: first.max(0) as u64,
            last: p,
            key: 0,
            then: Then::Close,
        });
        self.drain(emit)
    }

    /// After pane `p`'s window is out: resets the slot of its oldest pane
    /// for the next one, forgets keys as due, opens the next pane.
    fn pane_closed(&mut self, p: u64) {
        let reuse = self.slot(p + 1);
        self.pane_counts[reuse] = 0;
        for ring in self.groups.values_mut() {
            ring[reuse] = Agg::EMPTY;
        }
        if self.groups.len() > self.max_keys / 2 {
            // Forget keys with nothing left in any pane.
            self.groups
                .retain(|_, ring| ring.iter().any(|a| a.count > 0));
        }
        if !self.refused.is_empty() {
            self.refused.clear();
        }
        if self.basis == Basis::Time {
            self.current = Some(p + 1);
        }
    }

    /// Emits what [`Closing`] holds, and what follows it, as far as the
    /// output takes it.
    fn drain(&mut self, emit: &mut Emit<'_>) -> Flush {
        while let Some(mut c) = self.closing {
            if self.emit_window(&mut c, emit) == Flush::More {
                self.closing = Some(c);
                return Flush::More;
            }
            self.closing = match c.then {
                Then::Close => {
                    self.pane_closed(c.last);
                    None
                }
                Then::Finish if c.first < c.last => Some(Closing {
                    first: c.first + 1,
                    key: 0,
                    ..c
                }),
                Then::Finish => {
                    self.groups.clear();
                    None
                }
            };
        }
        Flush::Done
    }

    /// Emits, per key from `c.key` on, window `[c.first, c.last]` (panes)
    /// merged from the ring (keys without elements in it emit nothing).
    /// `More`: the output had no room; `c.key` is the key to go on with.
    fn emit_window(&mut self, c: &mut Closing, emit: &mut Emit<'_>) -> Flush {
        let (first, last) = (c.first, c.last);
        let (start, end) = match self.basis {
            Basis::Count => (first * self.slide, first * self.slide + self.size),
            Basis::Time => (
                first * self.slide / 1_000_000,
                (first * self.slide + self.size) / 1_000_000,
            ),
        };
        while let Some((key, ring)) = self.groups.get_index(c.key) {
            let mut total = Agg::EMPTY;
            for pane in first..=last {
                total.merge(&ring[(pane % self.panes) as usize]);
            }
            if total.count == 0 {
                c.key += 1;
                continue;
            }
            let key_json = self.key.is_some().then_some(&self.key_json[..]);
            format_result(
                &mut self.scratch,
                key_json,
                key,
                start,
                end,
                self.aggregates,
                &total,
            );
            let out = &self.scratch;
            match emit(out, self.last_ingest) {
                Err(e) if e.is_no_room() => return Flush::More,
                Err(e) => self.error = Some(e),
                Ok(()) => {}
            }
            c.key += 1;
        }
        Flush::Done
    }

    /// Time windows: emits what is held, then closes every pane before
    /// `pane`.
    fn advance_to(&mut self, pane: u64, emit: &mut Emit<'_>) -> Flush {
        loop {
            if self.drain(emit) == Flush::More {
                return Flush::More;
            }
            let Some(cur) = self.current.filter(|&c| c < pane) else {
                return Flush::Done;
            };
            if self.pane_counts.iter().all(|&c| c == 0) {
                // Every pane is empty: nothing to emit until `pane`, jump.
                self.current = Some(pane);
                self.refused.clear();
                return Flush::Done;
            }
            if self.close_pane(cur, emit) == Flush::More {
                return Flush::More;
            }
        }
    }

    /// The outcome of a call: `More` while results are held, else the last
    /// error emitting one, if any.
    fn outcome(&mut self) -> Result<Flush, StageError> {
        if self.closing.is_some() {
            return Ok(Flush::More);
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(Flush::Done),
        }
    }

    /// Reads the key and value of one element.
    fn extract<'p>(&self, payload: &'p [u8]) -> Result<(&'p [u8], f64), StageError> {
        if self.key.is_none() && self.field.is_none() {
            return Ok((&[], 0.0));
        }
        let keys = [
            self.key.as_deref().unwrap_or(""),
            self.field.as_deref().unwrap_or(""),
        ];
        let mut found = [None; 2];
        find_members(payload, &keys, &mut found)
            .map_err(|e| StageError::Rejected(Reason::new("invalid JSON", e.to_string())))?;
        let missing = |name: &str| StageError::Rejected(Reason::new("missing field", name));
        let key: &[u8] = match &self.key {
            None => &[],
            Some(k) => found[0].ok_or_else(|| missing(k))?.value.raw.as_bytes(),
        };
        let value = match &self.field {
            None => 0.0,
            Some(f) => {
                let field = found[1].ok_or_else(|| missing(f))?.value;
                field
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| StageError::Rejected(Reason::new("not a number", f.clone())))?
            }
        };
        Ok((key, value))
    }

    fn add(&mut self, key: &[u8], value: f64, slot: usize) -> Result<(), StageError> {
        let ring = match self.groups.get_mut(key) {
            Some(ring) => ring,
            None => {
                if self.groups.len() >= self.max_keys {
                    // Past `max_keys` different refused keys in one pane,
                    // each refusal counts (an upper bound, in bounded memory).
                    if self.refused.len() >= self.max_keys || self.refused.insert(fnv1a64(key)) {
                        self.keys_refused += 1;
                    }
                    return Err(StageError::Rejected(Reason::new(
                        "too many keys",
                        format!("more than max_keys = {} keys in a window", self.max_keys),
                    )));
                }
                self.groups
                    .entry(key.into())
                    .or_insert_with(|| vec![Agg::EMPTY; self.panes as usize])
            }
        };
        ring[slot].add(value);
        self.pane_counts[slot] += 1;
        Ok(())
    }

    /// Adds one element's value to its key's open pane (`pane`, for time
    /// windows), closing the pane when it is full (count windows).
    fn absorb(
        &mut self,
        key: &[u8],
        value: f64,
        ingest: u64,
        pane: u64,
        emit: &mut Emit<'_>,
    ) -> Result<(), StageError> {
        match self.basis {
            Basis::Count => {
                let pane = self.seen / self.slide;
                self.add(key, value, self.slot(pane))?;
                self.last_ingest = self.last_ingest.max(ingest);
                self.seen += 1;
                if self.seen.is_multiple_of(self.slide) {
                    // Results it has no room for are held (`closing`).
                    self.close_pane(pane, emit);
                }
            }
            Basis::Time => {
                // A clock step back never reopens a closed pane.
                let pane = pane.max(self.current.unwrap_or(pane));
                self.add(key, value, self.slot(pane))?;
                self.last_ingest = self.last_ingest.max(ingest);
            }
        }
        Ok(())
    }
}

fn wall_offset() -> u64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    unix.wrapping_sub(now_ns())
}

impl Processor for Window {
    fn drop_reason(&self) -> &'static str {
        "absorbed into window"
    }

    fn counts(&self) -> Vec<(&'static str, u64)> {
        if self.key.is_none() {
            return Vec::new(); // one group: never refuses
        }
        vec![("keys refused (max_keys)", self.keys_refused)]
    }

    fn process(&mut self, element: &mut Element<'_>) -> Result<Verdict, StageError> {
        let ingest = element.meta().ingest_ns;
        // Held results and panes past due go out first; until they have,
        // the element waits in its ring.
        let pane = {
            let mut emit =
                |bytes: &[u8], ingest: u64| element.emit(bytes, ContentType::Json, ingest);
            match self.basis {
                Basis::Count => {
                    self.drain(&mut emit);
                    0
                }
                Basis::Time => {
                    let pane = self.time_pane((self.now)());
                    self.current.get_or_insert(pane);
                    self.advance_to(pane, &mut emit);
                    pane
                }
            }
        };
        if self.closing.is_some() {
            return Ok(Verdict::Defer);
        }
        let (key, value) = self.extract(element.payload())?;
        // The key borrows the payload, which `emit` needs mutably: copy it
        // into a buffer the window keeps (no allocation once warm).
        let mut key_buf = std::mem::take(&mut self.key_buf);
        key_buf.clear();
        key_buf.extend_from_slice(key);
        let mut emit = |bytes: &[u8], ingest: u64| element.emit(bytes, ContentType::Json, ingest);
        let result = self.absorb(&key_buf, value, ingest, pane, &mut emit);
        self.key_buf = key_buf;
        result?;
        // Absorbed, even when the window it closed is still going out.
        self.outcome().map(|_| Verdict::Drop)
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        let mut w = StateWriter::new();
        w.u64(self.seen)
            .u64(self.current.map_or(0, |c| c + 1))
            .u64(self.keys_refused);
        match self.closing {
            None => w.u64(0),
            Some(c) => w
                .u64(1)
                .u64(c.first)
                .u64(c.last)
                .u64(c.key as u64)
                .u64(u64::from(c.then == Then::Finish)),
        };
        for &n in &self.pane_counts {
            w.u64(n);
        }
        w.u64(self.groups.len() as u64);
        for (k, ring) in &self.groups {
            w.bytes(k);
            for a in ring {
                w.u64(a.count).f64(a.sum).f64(a.min).f64(a.max);
            }
        }
        Ok(w.finish())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let mut r = StateReader::new(state);
        self.seen = r.u64()?;
        self.current = r.u64()?.checked_sub(1);
        self.keys_refused = r.u64()?;
        self.closing = match r.u64()? {
            0 => None,
            _ => Some(Closing {
                first: r.u64()?,
                last: r.u64()?,
                key: r.u64()? as usize,
                then: if r.u64()? == 1 {
                    Then::Finish
                } else {
                    Then::Close
                },
            }),
        };
        for n in &mut self.pane_counts {
            *n = r.u64()?;
        }
        self.groups.clear();
        for _ in 0..r.u64()? {
            let key: Box<[u8]> = r.bytes()?.into();
            let mut ring = Vec::with_capacity(self.panes as usize);
            for _ in 0..self.panes {
                ring.push(Agg {
                    count: r.u64()?,
                    sum: r.f64()?,
                    min: r.f64()?,
                    max: r.f64()?,
                });
            }
            self.groups.insert(key, ring);
        }
        r.done()
    }

    fn tick_interval(&self) -> Option<u64> {
        // Close time windows within a few percent of the slide (1..100 ms).
        (self.basis == Basis::Time).then(|| (self.slide / 20).clamp(1_000_000, 100_000_000))
    }

    fn tick(&mut self, now_ns: u64, out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        if self.basis != Basis::Time || self.current.is_none() {
            return Ok(Flush::Done);
        }
        let pane = self.time_pane(now_ns);
        let mut emit = |bytes: &[u8], ingest: u64| out.emit(bytes, ContentType::Json, ingest);
        self.advance_to(pane, &mut emit);
        self.outcome()
    }

    fn finish(&mut self, out: &mut Emitter<'_>) -> Result<Flush, StageError> {
        let mut emit = |bytes: &[u8], ingest: u64| out.emit(bytes, ContentType::Json, ingest);
        // First what an earlier close holds; a call after `More` goes on.
        let finishing = matches!(self.closing, Some(c) if c.then == Then::Finish);
        if self.drain(&mut emit) == Flush::More || finishing {
            return self.outcome();
        }
        let cur = match self.basis {
            Basis::Count => self.seen / self.slide,
            Basis::Time => match self.current {
                Some(c) => c,
                None => return self.outcome(),
            },
        };
        // Every window that contains the open pane, oldest first.
        self.closing = Some(Closing {
            first: (cur + 1).saturating_sub(self.panes),
            last: cur,
            key: 0,
            then: Then::Finish,
        });
        self.drain(&mut emit);
        self.outcome()
    }
}
