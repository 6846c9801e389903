//! How sinks that write lines render an element: `prefix` (a fixed prefix,
//! then the payload), `raw` (the payload alone) or `json` (one JSON object
//! per line with the element's metadata and its payload).
//!
//! `json` keeps every byte of a payload: JSON is embedded as it is (line
//! breaks, which JSON allows only as whitespace, become spaces), other
//! UTF-8 text becomes a string, and anything else goes in base64 under
//! `payload_base64`, never through a lossy conversion (a U+FFFD in
//! `payload` is then always a U+FFFD the element carried).

use serde::Deserialize;

use crate::arena::ContentType;
use crate::operators::util::write_json_str;
use crate::stage::Element;

/// Output line format of `console`, `file-out` and `tcp-out`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `prefix` then the payload.
    #[default]
    Prefix,
    /// The payload alone.
    Raw,
    /// A JSON object per line: `node`, `seq`, `source`, `ingest_ns`,
    /// `content_type`, `reason` (when the element was rejected) and
    /// `payload` (embedded when it is valid JSON, else as a string), or
    /// `payload_base64` instead when the payload is not UTF-8 (RFC 4648
    /// base64, standard alphabet, padded).
    Json,
}

/// Renders elements as lines of one [`Format`].
#[derive(Clone, Debug)]
pub struct LineFormat {
    format: Format,
    prefix: Vec<u8>,
    node: String,
}

impl LineFormat {
    /// A renderer; `prefix` only applies to [`Format::Prefix`].
    pub fn new(format: Format, prefix: &str) -> Result<LineFormat, String> {
        if format != Format::Prefix && !prefix.is_empty() {
            return Err("prefix only applies to format = \"prefix\"".to_string());
        }
        Ok(LineFormat {
            format,
            prefix: prefix.as_bytes().to_vec(),
            node: String::new(),
        })
    }

    /// Sets the node name written by the JSON format.
    pub fn set_node(&mut self, name: &str) {
        self.node = name.to_string();
    }

    /// Appends `element` as one line (with its newline) to `out`.
    pub fn write(&self, element: &Element<'_>, out: &mut Vec<u8>) {
        let payload = element.payload();
        match self.format {
            Format::Prefix => {
                out.extend_from_slice(&self.prefix);
                out.extend_from_slice(payload);
            }
            Format::Raw => out.extend_from_slice(payload),
            Format::Json => self.write_json(element, payload, out),
        }
        out.push(b'\n');
    }

    fn write_json(&self, element: &Element<'_>, payload: &[u8], out: &mut Vec<u8>) {
        let meta = element.meta();
        let mut int = itoa::Buffer::new();
        out.extend_from_slice(b"{\"node\":");
        write_json_str(out, &self.node);
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(int.format(meta.seq).as_bytes());
        out.extend_from_slice(b",\"source\":");
        out.extend_from_slice(int.format(meta.source).as_bytes());
        out.extend_from_slice(b",\"ingest_ns\":");
        out.extend_from_slice(int.format(meta.ingest_ns).as_bytes());
        out.extend_from_slice(b",\"content_type\":\"");
        out.extend_from_slice(match meta.content_type {
            ContentType::Bytes => b"bytes",
            ContentType::Json => b"json",
            ContentType::Text => b"text",
        });
        out.push(b'"');
        if let Some(reason) = meta.reason {
            out.extend_from_slice(b",\"reason\":");
            write_json_str(out, reason);
        }
        // UTF-8 first: the JSON check lets invalid UTF-8 inside strings pass.
        match std::str::from_utf8(payload) {
            Ok(_) if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok() => {
                // Valid JSON has raw line breaks only as whitespace: flatten
                // them so the record stays on one line.
                out.extend_from_slice(b",\"payload\":");
                let start = out.len();
                out.extend_from_slice(payload);
                for b in &mut out[start..] {
                    if *b == b'\n' || *b == b'\r' {
                        *b = b' ';
                    }
                }
            }
            Ok(text) => {
                out.extend_from_slice(b",\"payload\":");
                write_json_str(out, text);
            }
            Err(_) => {
                out.extend_from_slice(b",\"payload_base64\":\"");
                write_base64(out, payload);
                out.push(b'"');
            }
        }
        out.push(b'}');
    }
}

/// Appends `bytes` in base64 (RFC 4648: standard alphabet, padded). Written
/// here rather than taken from a crate: it is this one loop, and encoding
/// is all the engine needs.
fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digit = |n: u32, shift: u32| ALPHABET[((n >> shift) & 63) as usize];
    out.reserve(bytes.len().div_ceil(3) * 4);
    let mut triples = bytes.chunks_exact(3);
    for t in &mut triples {
        let n = (u32::from(t[0]) << 16) | (u32::from(t[1]) << 8) | u32::from(t[2]);
        out.extend_from_slice(&[digit(n, 18), digit(n, 12), digit(n, 6), digit(n, 0)]);
    }
    match *triples.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[digit(n, 18), digit(n, 12), b'=', b'=']);
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[digit(n, 18), digit(n, 12), digit(n, 6), b'=']);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::Harness;
    use crate::stage::{Sink, StageError};

    /// A sink that renders into a Vec.
    struct Lines(LineFormat, Vec<u8>);

    impl Sink for Lines {
        fn push(&mut self, e: &Element<'_>) -> Result<(), StageError> {
            self.0.write(e, &mut self.1);
            Ok(())
        }
    }

    fn render(
        format: Format,
        prefix: &str,
        payload: &[u8],
        reason: Option<&'static str>,
    ) -> String {
        let mut f = LineFormat::new(format, prefix).unwrap();
        f.set_node("flow.out");
        let mut s = Lines(f, Vec::new());
        Harness::new(256).push(&mut s, payload, reason).unwrap();
        String::from_utf8(s.1).unwrap()
    }

    #[test]
    fn formats() {
        assert_eq!(render(Format::Prefix, "> ", b"{}", None), "> {}\n");
        assert_eq!(render(Format::Raw, "", b"abc", None), "abc\n");
        let line = render(Format::Json, "", b"{\"a\":\n1}", Some("invalid JSON"));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["node"], "flow.out");
        assert_eq!(v["reason"], "invalid JSON");
        assert_eq!(v["payload"]["a"], 1);
        assert_eq!(v["content_type"], "json");
        let v: serde_json::Value =
            serde_json::from_str(&render(Format::Json, "", b"not \"json\"\n", None)).unwrap();
        assert_eq!(v["payload"], "not \"json\"\n");
        assert!(v.get("reason").is_none());
        assert!(LineFormat::new(Format::Raw, "x").is_err());
    }

    /// Decodes standard, padded base64 (independently of the encoder).
    fn decode_base64(s: &str) -> Vec<u8> {
        let value = |c: u8| -> u32 {
            match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'+' => 62,
                b'/' => 63,
                _ => panic!("not base64: {c:#x}"),
            }
        };
        assert_eq!(s.len() % 4, 0, "padded");
        let mut out = Vec::new();
        for quad in s.as_bytes().chunks(4) {
            let pad = quad.iter().filter(|&&c| c == b'=').count();
            let n = quad[..4 - pad]
                .iter()
                .fold(0u32, |n, &c| (n << 6) | value(c))
                << (6 * pad);
            out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
        }
        out
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            write_base64(&mut out, plain.as_bytes());
            assert_eq!(out, encoded.as_bytes(), "{plain:?}");
        }
    }

    /// A payload that is not UTF-8 comes back exactly, from base64.
    #[test]
    fn json_keeps_every_byte_of_binary_payloads() {
        let every_byte: Vec<u8> = (0..=255).collect();
        for payload in [
            &every_byte[..],
            b"not \"json\"\n\xff",
            b"{\"a\":\"\xff\xfe\"}", // JSON-shaped, not UTF-8
            b"\xc3",                 // half a character
        ] {
            let line = render(Format::Json, "", payload, None);
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(v.get("payload").is_none(), "{line}");
            let b64 = v["payload_base64"].as_str().unwrap();
            assert_eq!(decode_base64(b64), payload, "{line}");
        }
    }

    /// A U+FFFD the payload carries stays a string, unlike a byte that is
    /// not UTF-8.
    #[test]
    fn json_tells_replacement_characters_from_bad_bytes() {
        let real = render(Format::Json, "", "bad \u{fffd}".as_bytes(), None);
        let bad = render(Format::Json, "", b"bad \xff", None);
        let real: serde_json::Value = serde_json::from_str(&real).unwrap();
        let bad: serde_json::Value = serde_json::from_str(&bad).unwrap();
        assert_eq!(real["payload"], "bad \u{fffd}");
        assert!(real.get("payload_base64").is_none());
        assert!(bad.get("payload").is_none());
        assert_eq!(
            decode_base64(bad["payload_base64"].as_str().unwrap()),
            b"bad \xff"
        );
    }
}
