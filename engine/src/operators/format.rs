//! How sinks that write lines render an element: `prefix` (a fixed prefix,
//! then the payload), `raw` (the payload alone) or `json` (one JSON object
//! per line with the element's metadata and its payload).

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
    /// `payload` (embedded when it is valid JSON, else as a string).
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
        out.extend_from_slice(b",\"payload\":");
        if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok() {
            // Valid JSON has raw line breaks only as whitespace: flatten them
            // so the record stays on one line.
            let start = out.len();
            out.extend_from_slice(payload);
            for b in &mut out[start..] {
                if *b == b'\n' || *b == b'\r' {
                    *b = b' ';
                }
            }
        } else {
            write_json_str(out, &String::from_utf8_lossy(payload));
        }
        out.push(b'}');
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
            serde_json::from_str(&render(Format::Json, "", b"not \"json\"\n\xff", None)).unwrap();
        assert_eq!(v["payload"], "not \"json\"\n\u{fffd}");
        assert!(v.get("reason").is_none());
        assert!(LineFormat::new(Format::Raw, "x").is_err());
    }
}
