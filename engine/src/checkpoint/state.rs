//! A small binary encoding for stage snapshots: little-endian integers and
//! length-prefixed byte strings, read back with bounds checks (a truncated
//! or foreign state is an error, never a panic).

use crate::stage::StageError;

/// Builds a snapshot.
#[derive(Debug, Default)]
pub struct StateWriter {
    buf: Vec<u8>,
}

impl StateWriter {
    /// An empty snapshot.
    pub fn new() -> StateWriter {
        StateWriter::default()
    }

    /// Appends a `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends an `f64`.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.u64(v.to_bits())
    }

    /// Appends a length-prefixed byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    /// The encoded snapshot.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads a snapshot written with [`StateWriter`], in the same order.
#[derive(Debug)]
pub struct StateReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn truncated() -> StageError {
    StageError::Fatal("checkpoint state is truncated or was written by another stage".into())
}

impl<'a> StateReader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> StateReader<'a> {
        StateReader { buf, pos: 0 }
    }

    /// The next `u64`.
    pub fn u64(&mut self) -> Result<u64, StageError> {
        let end = self.pos.checked_add(8).ok_or_else(truncated)?;
        let b = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// The next `f64`.
    pub fn f64(&mut self) -> Result<f64, StageError> {
        self.u64().map(f64::from_bits)
    }

    /// The next byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], StageError> {
        let len = usize::try_from(self.u64()?).map_err(|_| truncated())?;
        let end = self.pos.checked_add(len).ok_or_else(truncated)?;
        let b = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(b)
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Fails unless everything was read (a state from another version).
    pub fn done(&self) -> Result<(), StageError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(truncated())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn what_is_written_reads_back(a in any::<u64>(), b in proptest::collection::vec(any::<u8>(), 0..64), f in any::<f64>()) {
            let buf = StateWriter::new().u64(a).bytes(&b).f64(f).finish();
            let mut r = StateReader::new(&buf);
            prop_assert_eq!(r.u64().unwrap(), a);
            prop_assert_eq!(r.bytes().unwrap(), &b[..]);
            prop_assert_eq!(r.f64().unwrap().to_bits(), f.to_bits());
            prop_assert!(r.done().is_ok());
        }

        #[test]
        fn a_truncated_state_is_an_error(b in proptest::collection::vec(any::<u8>(), 0..64), cut in 0usize..80) {
            let buf = StateWriter::new().bytes(&b).u64(7).finish();
            let cut = cut.min(buf.len().saturating_sub(1));
            let mut r = StateReader::new(&buf[..cut]);
            prop_assert!(r.bytes().and_then(|_| r.u64()).is_err());
        }
    }
}
