//! Built-in sinks: `console` and `discard`.

use std::io::Write;

use crate::operators::format::{Format, LineFormat};
use crate::operators::params::params;
use crate::stage::{Element, Sink, StageError, StageInfo};

/// Prints each element on its own line of stdout: after a prefix (the
/// default), raw, or as a JSON record with its metadata. Lines of one batch
/// are written with one locked write, so sinks on different cores never
/// interleave within a line.
pub struct Console {
    format: LineFormat,
    on_complete: Option<String>,
    buf: Vec<u8>,
}

impl Console {
    /// Prints `prefix` then the payload, per element.
    pub fn new(prefix: &str) -> Console {
        Console::with_format(LineFormat::new(Format::Prefix, prefix).expect("prefix format"))
    }

    /// Prints each element in `format`.
    pub fn with_format(format: LineFormat) -> Console {
        Console {
            format,
            on_complete: None,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// Prints `line` when the stream completes.
    pub fn on_complete(mut self, line: &str) -> Console {
        self.on_complete = Some(line.to_string());
        self
    }

    fn write_out(&mut self) -> Result<(), StageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        let r = out.write_all(&self.buf).and_then(|()| out.flush());
        self.buf.clear();
        r.map_err(|e| StageError::Fatal(format!("cannot write to stdout: {e}")))
    }
}

impl Sink for Console {
    fn init(&mut self, info: &StageInfo) -> Result<(), StageError> {
        self.format.set_node(&info.name);
        Ok(())
    }

    fn push(&mut self, element: &Element<'_>) -> Result<(), StageError> {
        self.format.write(element, &mut self.buf);
        Ok(())
    }

    fn end_batch(&mut self) -> Result<(), StageError> {
        self.write_out()
    }

    fn complete(&mut self) -> Result<(), StageError> {
        if let Some(line) = &self.on_complete {
            self.buf.extend_from_slice(line.as_bytes());
            self.buf.push(b'\n');
        }
        self.write_out()
    }
}

params! {
    /// Parameters of `console`.
    pub(crate) struct ConsoleParams {
        /// "prefix" (default): prefix then payload; "raw": payload; "json": a JSON
        /// record with the metadata (node, seq, source, ingest_ns, content_type,
        /// reason) and the payload (payload_base64 instead when it is not UTF-8)
        #[serde(default)]
        format: Format,
        /// text before each payload (format "prefix"; default none)
        #[serde(default)]
        prefix: String,
        /// line printed when the stream completes
        on_complete: Option<String>,
    }
}

pub(crate) fn build_console(p: ConsoleParams) -> Result<Console, String> {
    let c = Console::with_format(LineFormat::new(p.format, &p.prefix)?);
    Ok(match p.on_complete {
        Some(line) => c.on_complete(&line),
        None => c,
    })
}

/// Counts elements and does nothing else (the runtime counts them).
pub struct Discard;

impl Sink for Discard {
    #[inline]
    fn push(&mut self, _element: &Element<'_>) -> Result<(), StageError> {
        Ok(())
    }
}
