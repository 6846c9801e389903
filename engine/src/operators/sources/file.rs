//! `file-in` and `stdin`: newline-delimited elements from a file (which
//! can be followed as it grows) or from standard input.
//!
//! Neither blocks its worker: regular files never block on read, and stdin
//! is read only when `poll` says data (or end of stream) is waiting.

use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::checkpoint::{StateReader, StateWriter};
use crate::clock::now_ns;
use crate::operators::lines::{LineBuffer, READ_BUFFER};
use crate::operators::params::params;
use crate::stage::{Pull, SlotWriter, Source, StageError, StageInfo};

const MS: u64 = 1_000_000;
/// How often a followed file is checked for new data once at its end.
const FOLLOW_POLL_NS: u64 = 10 * MS;

/// Reads a file line by line; each non-empty line is an element. With
/// `follow`, waits at the end for appended data (like `tail -f`, and
/// starting over if the file is truncated) until stopped, or until no data
/// came for `idle_timeout`.
pub struct FileSource {
    path: PathBuf,
    follow: bool,
    idle_timeout_ns: Option<u64>,
    max_elements: Option<u64>,
    file: Option<File>,
    lines: LineBuffer,
    pos: u64,
    emitted: u64,
    last_data_ns: u64,
    next_poll_ns: u64,
}

impl FileSource {
    /// Reads `path` once to its end.
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource {
            path: path.into(),
            follow: false,
            idle_timeout_ns: None,
            max_elements: None,
            file: None,
            lines: LineBuffer::new(READ_BUFFER),
            pos: 0,
            emitted: 0,
            last_data_ns: 0,
            next_poll_ns: 0,
        }
    }

    /// Keeps reading data appended after the end; finishes after
    /// `idle_timeout_ns` without new data (`None`: only when stopped).
    pub fn follow(mut self, idle_timeout_ns: Option<u64>) -> FileSource {
        self.follow = true;
        self.idle_timeout_ns = idle_timeout_ns;
        self
    }

    /// Finishes after `n` elements.
    pub fn max_elements(mut self, n: u64) -> FileSource {
        self.max_elements = Some(n);
        self
    }

    fn fatal(&self, what: &str, e: std::io::Error) -> StageError {
        StageError::Fatal(format!("cannot {what} {}: {e}", self.path.display()))
    }

    /// At the end of a followed file: starts over if it shrank.
    fn check_truncated(&mut self) -> Result<(), StageError> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        let len = file
            .metadata()
            .map_err(|e| StageError::Fatal(format!("cannot stat {}: {e}", self.path.display())))?
            .len();
        if len < self.pos {
            log::info!(
                "{} was truncated; reading from its start",
                self.path.display()
            );
            file.seek(SeekFrom::Start(0)).map_err(|e| {
                StageError::Fatal(format!("cannot seek {}: {e}", self.path.display()))
            })?;
            self.pos = 0;
            self.lines = LineBuffer::new(READ_BUFFER);
        }
        Ok(())
    }
}

impl Source for FileSource {
    fn init(&mut self, _info: &StageInfo) -> Result<(), StageError> {
        let mut file = File::open(&self.path).map_err(|e| self.fatal("open", e))?;
        if self.pos > 0 {
            // Resumed from a checkpoint: read on after its last element.
            let len = file.metadata().map_err(|e| self.fatal("stat", e))?.len();
            if len < self.pos {
                return Err(StageError::Fatal(format!(
                    "{} is shorter ({len} bytes) than where the checkpoint left it ({} bytes): it was changed since",
                    self.path.display(),
                    self.pos
                )));
            }
            file.seek(SeekFrom::Start(self.pos))
                .map_err(|e| self.fatal("seek", e))?;
        }
        self.file = Some(file);
        self.last_data_ns = now_ns();
        Ok(())
    }

    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.max_elements.is_some_and(|m| self.emitted >= m) {
            return Ok(Pull::Done);
        }
        loop {
            if self.lines.write_next(slot, &mut self.emitted)? {
                return Ok(Pull::Ready);
            }
            let now = if self.follow { now_ns() } else { 0 };
            if self.follow && now < self.next_poll_ns {
                return Ok(Pull::Pending);
            }
            let file = self
                .file
                .as_mut()
                .ok_or_else(|| StageError::Fatal("file not open".to_string()))?;
            let n = match file.read(self.lines.spare()) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fatal("read", e)),
            };
            if n > 0 {
                self.lines.filled(n);
                self.pos += n as u64;
                self.last_data_ns = now;
                continue;
            }
            // End of file.
            if !self.follow {
                return self.lines.finish(slot, &mut self.emitted);
            }
            if self
                .idle_timeout_ns
                .is_some_and(|t| now.saturating_sub(self.last_data_ns) >= t)
            {
                // A writer that never ended its last line is done too.
                return self.lines.finish(slot, &mut self.emitted);
            }
            self.check_truncated()?;
            self.next_poll_ns = now + FOLLOW_POLL_NS;
            return Ok(Pull::Pending);
        }
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        // The offset after the last line handed out: what is buffered
        // beyond it is read again on resume.
        let offset = self.pos - self.lines.buffered() as u64;
        Ok(StateWriter::new().u64(offset).u64(self.emitted).finish())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let mut r = StateReader::new(state);
        self.pos = r.u64()?;
        self.emitted = r.u64()?;
        r.done()
    }

    fn teardown(&mut self) {
        self.file = None;
    }
}

params! {
    /// Parameters of `file-in`.
    pub(crate) struct FileSourceParams {
        /// file to read
        path: PathBuf,
        /// at the end, wait for appended data like tail -f (default false)
        #[serde(default)]
        follow: bool,
        /// with follow: finish after this long without new data (default: until
        /// stopped)
        idle_timeout_ms: Option<u64>,
        /// finish after this many elements
        max_elements: Option<u64>,
    }
}

pub(crate) fn build_file(p: FileSourceParams) -> Result<FileSource, String> {
    if !p.path.is_file() {
        return Err(format!("path: {} is not a readable file", p.path.display()));
    }
    if p.idle_timeout_ms.is_some() && !p.follow {
        return Err("idle_timeout_ms only applies with follow = true".to_string());
    }
    let mut s = FileSource::new(p.path);
    if p.follow {
        s = s.follow(p.idle_timeout_ms.map(|ms| ms.saturating_mul(MS)));
    }
    if let Some(m) = p.max_elements {
        s = s.max_elements(m);
    }
    Ok(s)
}

/// Reads standard input line by line; each non-empty line is an element.
/// Finishes at end of input.
pub struct StdinSource {
    lines: LineBuffer,
    max_elements: Option<u64>,
    emitted: u64,
    eof: bool,
}

impl StdinSource {
    /// Reads stdin to its end.
    pub fn new() -> StdinSource {
        StdinSource {
            lines: LineBuffer::new(READ_BUFFER),
            max_elements: None,
            emitted: 0,
            eof: false,
        }
    }
}

impl Default for StdinSource {
    fn default() -> Self {
        StdinSource::new()
    }
}

/// Whether reading fd 0 would not block (data, end of input or an error).
fn stdin_ready() -> bool {
    let mut pfd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid, writable pollfd, and a zero timeout makes
    // the call return at once.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0
}

impl Source for StdinSource {
    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        if self.max_elements.is_some_and(|m| self.emitted >= m) {
            return Ok(Pull::Done);
        }
        loop {
            if self.lines.write_next(slot, &mut self.emitted)? {
                return Ok(Pull::Ready);
            }
            if self.eof {
                return self.lines.finish(slot, &mut self.emitted);
            }
            if !stdin_ready() {
                return Ok(Pull::Pending);
            }
            // The lock's buffer is empty between pulls (all of it is
            // consumed below), so this is one read, which poll says will
            // not block.
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            let chunk = match lock.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StageError::Fatal(format!("cannot read stdin: {e}"))),
            };
            if chunk.is_empty() {
                self.eof = true;
                continue;
            }
            let spare = self.lines.spare();
            let n = chunk.len().min(spare.len());
            spare[..n].copy_from_slice(&chunk[..n]);
            self.lines.filled(n);
            lock.consume(n);
        }
    }
}

params! {
    /// Parameters of `stdin`.
    pub(crate) struct StdinParams {
        /// finish after this many elements
        max_elements: Option<u64>,
    }
}

pub(crate) fn build_stdin(p: StdinParams) -> StdinSource {
    let mut s = StdinSource::new();
    s.max_elements = p.max_elements;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::{strings, Harness};

    #[test]
    fn reads_lines_then_follows_appends() {
        let dir = std::env::temp_dir().join(format!("dp-file-in-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.txt");
        std::fs::write(&path, "{\"a\":1}\n\nnot json\r\nlast").unwrap();
        let mut h = Harness::new(64);

        let mut s = FileSource::new(&path);
        s.init(&h.info()).unwrap();
        let (got, errors) = h.pull_all(&mut s, 100, 0);
        assert_eq!(strings(&got), ["{\"a\":1}", "not json", "last"]);
        assert!(errors.is_empty());

        let mut s = FileSource::new(&path).follow(Some(200 * MS));
        s.init(&h.info()).unwrap();
        let (got, _) = h.pull_all(&mut s, 2, 0);
        assert_eq!(got.len(), 2);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b" line\nmore\n").unwrap();
        let (got, _) = h.pull_all(&mut s, 100, 1000);
        assert_eq!(strings(&got), ["last line", "more"]);
        assert_eq!(h.pull(&mut s).0, Ok(Pull::Done), "idle timeout ended it");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn long_lines_are_rejected_not_fatal() {
        let dir = std::env::temp_dir().join(format!("dp-file-long-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.txt");
        let long = "x".repeat(100);
        std::fs::write(&path, format!("ok\n{long}\nafter\n")).unwrap();
        let mut h = Harness::new(64);
        let mut s = FileSource::new(&path);
        s.init(&h.info()).unwrap();
        let (got, errors) = h.pull_all(&mut s, 100, 0);
        assert_eq!(strings(&got), ["ok", "after"]);
        assert!(matches!(&errors[..], [StageError::Rejected(r)] if r.kind == "payload too large"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
