//! Newline framing for byte-stream sources (files, stdin, TCP).
//!
//! A stream is read in large chunks (one system call per up to 64 KiB, not
//! one per element) into a buffer kept by the source, and each complete
//! line is then copied once into its arena slot. Reading straight into
//! slots would save that copy but cost a system call per element and a copy
//! of every line's leftover tail anyway, since lines straddle reads.

use crate::arena::ContentType;
use crate::stage::{Pull, Reason, SlotWriter, StageError};

/// Default read buffer: a line longer than this is rejected.
pub(crate) const READ_BUFFER: usize = 64 * 1024;

/// What [`LineBuffer::next_line`] found.
pub(crate) enum Next<'a> {
    /// A complete line (without `\n` or a trailing `\r`; never empty).
    Line(&'a [u8]),
    /// A line too long for the buffer was skipped (its length so far).
    TooLong(usize),
    /// No complete line buffered: read more.
    NeedMore,
}

/// A read buffer that hands out newline-delimited lines.
pub(crate) struct LineBuffer {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Inside an over-long line: discard up to the next newline.
    skipping: bool,
    /// Where the newline search resumes (bytes before it have none).
    scanned: usize,
}

impl LineBuffer {
    pub(crate) fn new(capacity: usize) -> LineBuffer {
        LineBuffer {
            buf: vec![0; capacity.max(16)].into_boxed_slice(),
            start: 0,
            end: 0,
            skipping: false,
            scanned: 0,
        }
    }

    /// Free space to read into (moves buffered bytes to the front first).
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.scanned -= self.start;
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`LineBuffer::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
        debug_assert!(self.end <= self.buf.len());
    }

    /// Bytes read but not handed out yet (a partial line, or lines not
    /// taken yet).
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Whether bytes are buffered (a partial line, or lines not taken yet).
    #[cfg(test)]
    pub(crate) fn has_data(&self) -> bool {
        self.end > self.start
    }

    /// Whether the buffer holds nothing of its stream: no bytes, and not in
    /// the middle of skipping an over-long line. Such a buffer can be lent
    /// to another stream.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end && !self.skipping
    }

    /// The next complete line, if one is buffered. Empty lines are skipped.
    pub(crate) fn next_line(&mut self) -> Next<'_> {
        loop {
            let from = self.scanned.max(self.start);
            match memchr(b'\n', &self.buf[from..self.end]) {
                Some(i) => {
                    let nl = from + i;
                    let line_start = self.start;
                    self.start = nl + 1;
                    self.scanned = self.start;
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    let mut line = &self.buf[line_start..nl];
                    if let [rest @ .., b'\r'] = line {
                        line = rest;
                    }
                    if line.is_empty() {
                        continue;
                    }
                    return Next::Line(line);
                }
                None => {
                    self.scanned = self.end;
                    let full = self.start == 0 && self.end == self.buf.len();
                    if !full {
                        return Next::NeedMore;
                    }
                    // No newline in a full buffer: drop it, skip to the next.
                    let len = self.end;
                    self.start = 0;
                    self.end = 0;
                    self.scanned = 0;
                    let first = !self.skipping;
                    self.skipping = true;
                    if first {
                        return Next::TooLong(len);
                    }
                }
            }
        }
    }

    /// Writes the next complete line into `slot` and counts it in
    /// `emitted`: `Ok(true)` when one was written, `Ok(false)` when the
    /// buffer needs more bytes first. A line longer than the buffer is
    /// rejected (and not counted). Every line source frames through this.
    pub(crate) fn write_next(
        &mut self,
        slot: &mut SlotWriter<'_>,
        emitted: &mut u64,
    ) -> Result<bool, StageError> {
        match self.next_line() {
            Next::Line(line) => {
                *emitted += 1;
                write_line(slot, line).map(|()| true)
            }
            Next::TooLong(n) => Err(too_long(n)),
            Next::NeedMore => Ok(false),
        }
    }

    /// At end of input: writes the unterminated last line, if any, into
    /// `slot` and counts it (`Ok(false)`: there was none).
    pub(crate) fn write_rest(
        &mut self,
        slot: &mut SlotWriter<'_>,
        emitted: &mut u64,
    ) -> Result<bool, StageError> {
        match self.take_rest() {
            Some(line) => {
                *emitted += 1;
                write_line(slot, line).map(|()| true)
            }
            None => Ok(false),
        }
    }

    /// At end of input, for a source's `pull`: `Ready` with the last
    /// line written, or `Done` when there was none.
    pub(crate) fn finish(
        &mut self,
        slot: &mut SlotWriter<'_>,
        emitted: &mut u64,
    ) -> Result<Pull, StageError> {
        Ok(if self.write_rest(slot, emitted)? {
            Pull::Ready
        } else {
            Pull::Done
        })
    }

    /// At end of stream: the unterminated last line, if any.
    pub(crate) fn take_rest(&mut self) -> Option<&[u8]> {
        let (s, e) = (self.start, self.end);
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        let skipping = std::mem::take(&mut self.skipping);
        let mut line = &self.buf[s..e];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        (!skipping && !line.is_empty()).then_some(line)
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// A guess at a payload's content type: JSON when it starts like an
/// object, else text if it is UTF-8, else bytes. Only a label: operators
/// parse what they need and reject what is not valid.
pub(crate) fn sniff(payload: &[u8]) -> ContentType {
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => ContentType::Json,
        _ if std::str::from_utf8(payload).is_ok() => ContentType::Text,
        _ => ContentType::Bytes,
    }
}

/// Copies `line` into the source's slot, labelled by [`sniff`].
pub(crate) fn write_line(slot: &mut SlotWriter<'_>, line: &[u8]) -> Result<(), StageError> {
    slot.write(line)?;
    slot.set_content_type(sniff(line));
    Ok(())
}

/// The rejection of a line that did not fit the read buffer.
pub(crate) fn too_long(len: usize) -> StageError {
    StageError::Rejected(Reason::new(
        "payload too large",
        format!("line longer than {len} bytes"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lb: &mut LineBuffer, bytes: &[u8]) {
        let spare = lb.spare();
        spare[..bytes.len()].copy_from_slice(bytes);
        lb.filled(bytes.len());
    }

    fn lines(lb: &mut LineBuffer) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match lb.next_line() {
                Next::Line(l) => out.push(String::from_utf8_lossy(l).into_owned()),
                Next::TooLong(n) => out.push(format!("<too long {n}>")),
                Next::NeedMore => return out,
            }
        }
    }

    #[test]
    fn splits_across_reads() {
        let mut lb = LineBuffer::new(32);
        feed(&mut lb, b"ab\ncd\r\n\nef");
        assert_eq!(lines(&mut lb), ["ab", "cd"]);
        feed(&mut lb, b"gh\nij");
        assert_eq!(lines(&mut lb), ["efgh"]);
        assert!(lb.has_data());
        assert_eq!(lb.take_rest(), Some(&b"ij"[..]));
        assert_eq!(lb.take_rest(), None);
    }

    #[test]
    fn skips_over_long_lines() {
        let mut lb = LineBuffer::new(16);
        feed(&mut lb, b"0123456789abcdef");
        assert_eq!(lines(&mut lb), ["<too long 16>"]);
        feed(&mut lb, b"0123456789abcdef");
        assert_eq!(lines(&mut lb), Vec::<String>::new());
        feed(&mut lb, b"tail\nok\n");
        assert_eq!(lines(&mut lb), ["ok"]);
    }

    #[test]
    fn sniffs() {
        assert_eq!(sniff(b" {\"a\":1}"), ContentType::Json);
        assert_eq!(sniff(b"hello"), ContentType::Text);
        assert_eq!(sniff(b"\xff\xfe"), ContentType::Bytes);
    }
}
