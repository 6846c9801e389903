//! `file-out`: appends each element as a line to a file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use crate::checkpoint::{StateReader, StateWriter};
use crate::operators::format::{Format, LineFormat};
use crate::operators::params::params;
use crate::stage::{Element, Sink, StageError, StageInfo};

/// Writes each element as a line (raw by default, or prefixed, or a JSON
/// record) to a file, appending (or truncating it first). Lines are
/// gathered per batch and written with one `write` call; the file is
/// flushed (and optionally synced) when the stream completes.
pub struct FileSink {
    path: PathBuf,
    append: bool,
    fsync: bool,
    format: LineFormat,
    file: Option<File>,
    buf: Vec<u8>,
    /// Elements rendered into `buf`, not written yet.
    buffered: u64,
    /// Elements lost to a failed write.
    lost: u64,
    /// The file's length: where the next write lands.
    len: u64,
    /// Resumed from a checkpoint: the length it committed.
    resume_len: Option<u64>,
}

impl FileSink {
    /// Writes to `path` in `format`; `append = false` truncates it first.
    pub fn new(path: impl Into<PathBuf>, format: LineFormat, append: bool) -> FileSink {
        FileSink {
            path: path.into(),
            append,
            fsync: false,
            format,
            file: None,
            buf: Vec::with_capacity(64 * 1024),
            buffered: 0,
            lost: 0,
            len: 0,
            resume_len: None,
        }
    }

    /// Syncs the file to disk on completion.
    pub fn fsync(mut self, on: bool) -> FileSink {
        self.fsync = on;
        self
    }

    fn write_out(&mut self) -> Result<(), StageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| StageError::Fatal("file not open".to_string()))?;
        let r = file.write_all(&self.buf);
        if r.is_ok() {
            self.len += self.buf.len() as u64;
        }
        self.buf.clear();
        let batch = std::mem::take(&mut self.buffered);
        r.map_err(|e| {
            // The batch is gone: counted as failed (see `undelivered`).
            self.lost += batch;
            StageError::Fatal(format!("cannot write {}: {e}", self.path.display()))
        })
    }
}

impl Sink for FileSink {
    fn init(&mut self, info: &StageInfo) -> Result<(), StageError> {
        self.format.set_node(&info.name);
        let mut opts = OpenOptions::new();
        opts.create(true);
        if self.append || self.resume_len.is_some() {
            opts.append(true);
        } else {
            opts.write(true).truncate(true);
        }
        let file = opts
            .open(&self.path)
            .map_err(|e| StageError::Fatal(format!("cannot open {}: {e}", self.path.display())))?;
        let len = file
            .metadata()
            .map_err(|e| StageError::Fatal(format!("cannot stat {}: {e}", self.path.display())))?
            .len();
        self.len = len;
        if let Some(committed) = self.resume_len {
            // Exactly once: what was written after the checkpoint is
            // written again by the resumed run, so it goes.
            if len < committed {
                return Err(StageError::Fatal(format!(
                    "{} is shorter ({len} bytes) than its checkpoint committed ({committed} bytes): it was changed outside the pipeline",
                    self.path.display()
                )));
            }
            file.set_len(committed).map_err(|e| {
                StageError::Fatal(format!("cannot truncate {}: {e}", self.path.display()))
            })?;
            self.len = committed;
        }
        self.file = Some(file);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        if self.file.is_none() {
            // Before `init` (the checkpoint a fresh run starts from): the
            // length the run will start writing at.
            let len = match (self.append, std::fs::metadata(&self.path)) {
                (true, Ok(m)) => m.len(),
                _ => 0,
            };
            return Ok(StateWriter::new().u64(len).finish());
        }
        // Everything before the barrier is on disk before the checkpoint
        // that records its length can complete.
        self.write_out()?;
        if let Some(f) = &mut self.file {
            f.sync_data().map_err(|e| {
                StageError::Fatal(format!("cannot sync {}: {e}", self.path.display()))
            })?;
        }
        Ok(StateWriter::new().u64(self.len).finish())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StageError> {
        let mut r = StateReader::new(state);
        self.resume_len = Some(r.u64()?);
        r.done()
    }

    fn push(&mut self, element: &Element<'_>) -> Result<(), StageError> {
        self.format.write(element, &mut self.buf);
        self.buffered += 1;
        Ok(())
    }

    fn end_batch(&mut self) -> Result<(), StageError> {
        self.write_out()
    }

    fn complete(&mut self) -> Result<(), StageError> {
        self.write_out()?;
        if let Some(f) = &mut self.file {
            let synced = f
                .flush()
                .and_then(|()| if self.fsync { f.sync_data() } else { Ok(()) });
            synced.map_err(|e| {
                StageError::Fatal(format!("cannot flush {}: {e}", self.path.display()))
            })?;
        }
        Ok(())
    }

    fn undelivered(&self) -> u64 {
        self.lost + self.buffered
    }

    fn teardown(&mut self) {
        self.file = None;
    }
}

params! {
    /// Parameters of `file-out`.
    pub(crate) struct FileSinkParams {
        /// file to write (its directory must exist)
        path: PathBuf,
        /// "raw" (default), "prefix" or "json" (as for console)
        #[serde(default = "raw")]
        format: Format,
        /// text before each payload (format "prefix")
        #[serde(default)]
        prefix: String,
        /// append to an existing file (default true); false truncates it
        #[serde(default = "yes")]
        append: bool,
        /// sync the file to disk on completion (default false)
        #[serde(default)]
        fsync: bool,
    }
}

fn raw() -> Format {
    Format::Raw
}

fn yes() -> bool {
    true
}

pub(crate) fn build(p: FileSinkParams) -> Result<FileSink, String> {
    let format = LineFormat::new(p.format, &p.prefix)?;
    // Catch a wrong directory now, as a config error; the file itself is
    // opened when the stage starts.
    let dir = match p.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(format!("path: directory {} does not exist", dir.display()));
    }
    Ok(FileSink::new(p.path, format, p.append).fsync(p.fsync))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::Harness;

    #[test]
    fn appends_lines_and_flushes_on_complete() {
        let dir = std::env::temp_dir().join(format!("dp-file-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.txt");
        std::fs::write(&path, "old\n").unwrap();
        let mut h = Harness::new(64);
        let mut s = FileSink::new(&path, LineFormat::new(Format::Raw, "").unwrap(), true);
        s.init(&h.info()).unwrap();
        h.push(&mut s, b"a", None).unwrap();
        s.end_batch().unwrap();
        h.push(&mut s, b"b", None).unwrap();
        s.complete().unwrap();
        s.teardown();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\na\nb\n");

        let mut s = FileSink::new(&path, LineFormat::new(Format::Raw, "").unwrap(), false);
        s.init(&h.info()).unwrap();
        h.push(&mut s, b"c", None).unwrap();
        s.complete().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c\n");
        std::fs::remove_dir_all(&dir).unwrap();

        let bad = FileSinkParams {
            path: "/no/such/dir/x".into(),
            format: Format::Raw,
            prefix: String::new(),
            append: true,
            fsync: false,
        };
        assert!(build(bad).err().unwrap().contains("does not exist"));
    }
}
