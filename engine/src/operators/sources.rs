//! Built-in sources for fixed and generated data.

use std::io::Write;

use serde::Deserialize;

use crate::arena::ContentType;
use crate::clock::now_ns;
use crate::operators::util::SplitMix64;
use crate::stage::{Pull, SlotWriter, Source, StageError, StageInfo};

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

/// Parameters of the `list` source.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Payloads: strings as they are, tables serialized as compact JSON.
    payloads: Vec<toml::Value>,
    #[serde(default = "one")]
    repeat: u64,
}

fn one() -> u64 {
    1
}

pub(crate) fn build_list(p: ListParams) -> Result<ListSource, String> {
    let payloads = p
        .payloads
        .into_iter()
        .map(|v| match v {
            toml::Value::String(s) => Ok(s.into_bytes()),
            other => serde_json::to_vec(&other).map_err(|e| format!("payload cannot be JSON: {e}")),
        })
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
    count: Option<u64>,
    sizes: Vec<usize>,
    rng: SplitMix64,
    rate: Option<f64>,
    json: bool,
    n: u64,
    start_ns: u64,
}

impl Generator {
    /// A generator of `count` elements (`None`: unbounded) from `template`.
    pub fn new(template: &str, count: Option<u64>) -> Result<Generator, String> {
        Ok(Generator {
            pieces: parse_template(template)?,
            count,
            sizes: Vec::new(),
            rng: SplitMix64::new(0),
            rate: None,
            json: template.trim_start().starts_with('{'),
            n: 0,
            start_ns: 0,
        })
    }

    /// Pads each payload to exactly `size` bytes.
    pub fn size(mut self, size: usize) -> Generator {
        self.sizes = vec![size];
        self
    }

    /// Pads payload `i` to `sizes[i % sizes.len()]` bytes.
    pub fn sizes(mut self, sizes: Vec<usize>) -> Generator {
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
        self.start_ns = now_ns();
        Ok(())
    }

    fn next_due_ns(&self) -> Option<u64> {
        self.intended_ns(self.n)
    }

    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.count.is_some_and(|c| self.n >= c) {
            return Ok(Pull::Done);
        }
        let seq = self.n;
        let mut ingest = 0;
        if let Some(intended) = self.intended_ns(seq) {
            if now_ns() < intended {
                return Ok(Pull::Pending);
            }
            ingest = intended;
            slot.set_ingest_ns(intended);
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
            return Err(StageError::Rejected(crate::stage::Reason::new(
                "payload too large",
                format!("generated payload exceeds the arena slot size of {capacity} bytes"),
            )));
        }
        slot.set_len(len)?;
        if self.json {
            slot.set_content_type(ContentType::Json);
        }
        Ok(Pull::Ready)
    }
}

/// Parameters of the `generator` source.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GeneratorParams {
    #[serde(default = "default_template")]
    template: String,
    count: Option<u64>,
    size: Option<Sizes>,
    rate: Option<f64>,
    #[serde(default)]
    seed: u64,
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
mod tests {
    use super::*;
    use crate::operators::testing::Harness;

    #[test]
    fn templates() {
        let p = parse_template(r#"{"seq":{seq},"t":"{pick:a|b}"}"#).unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Text(br#"{"seq":"#.to_vec()),
                Piece::Seq,
                Piece::Text(br#","t":""#.to_vec()),
                Piece::Pick(vec![b"a".to_vec(), b"b".to_vec()]),
                Piece::Text(br#""}"#.to_vec()),
            ]
        );
        assert!(parse_template("{pick:a|}").is_err());
        assert!(parse_template("{rand:0}").is_err());
        assert!(parse_template("{rand:x}").is_err());
        assert_eq!(
            parse_template("{rand:10}{choose:x|y}").unwrap(),
            vec![
                Piece::Rand(10),
                Piece::Choose(vec![b"x".to_vec(), b"y".to_vec()])
            ]
        );
    }

    #[test]
    fn random_fields_are_seeded_and_sizes_cycle() {
        let run = |seed| {
            let mut g = Generator::new(r#"{"r":{rand:100},"c":"{choose:a|b}"}"#, Some(50))
                .unwrap()
                .seed(seed)
                .sizes(vec![40, 60]);
            let mut h = Harness::new(128);
            g.init(&h.info()).unwrap();
            h.pull_all(&mut g, 100, 0).0
        };
        let a = run(1);
        assert_eq!(a.len(), 50);
        assert_eq!(a, run(1));
        assert_ne!(a, run(2));
        for (i, p) in a.iter().enumerate() {
            assert_eq!(p.len(), [40, 60][i % 2]);
            let v: serde_json::Value = serde_json::from_slice(p).unwrap();
            assert!(v["r"].as_u64().unwrap() < 100);
            assert!(["a", "b"].contains(&v["c"].as_str().unwrap()));
        }
    }
}
