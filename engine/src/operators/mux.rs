//! `mux`: a sink whose elements go to the clients subscribed through the
//! control endpoint (`GET /subscribe?node=NAME&where=...`), each with its
//! own predicate and bounded queue.
//!
//! With no subscriber the mux consumes and counts, and copies nothing. With
//! subscribers it copies each payload once into its tap point per batch
//! (see [`crate::observe::tap`]); matching, queueing and writing happen on
//! the control endpoint's thread, so neither the number of subscribers nor
//! a stalled one changes what the pipeline does.

use std::sync::Arc;

use crate::observe::tap::{TapPoint, TapWriter};
use crate::stage::{Element, Sink, StageError};

/// The `mux` sink.
pub struct Mux {
    writer: TapWriter,
    /// Whether this batch's elements are copied; decided at the batch's
    /// first element (`None` until then).
    copying: Option<bool>,
}

impl Mux {
    /// A mux with no subscriber yet.
    pub fn new() -> Mux {
        Mux {
            writer: TapWriter::new(TapPoint::new()),
            copying: None,
        }
    }
}

impl Default for Mux {
    fn default() -> Self {
        Mux::new()
    }
}

impl Sink for Mux {
    #[inline]
    fn push(&mut self, element: &Element<'_>) -> Result<(), StageError> {
        let copying = match self.copying {
            Some(c) => c,
            None => *self.copying.insert(self.writer.begin()),
        };
        if copying {
            self.writer.push(element.payload());
        }
        Ok(())
    }

    fn end_batch(&mut self) -> Result<(), StageError> {
        if self.copying.take() == Some(true) {
            self.writer.commit();
        }
        Ok(())
    }

    fn complete(&mut self) -> Result<(), StageError> {
        // The last batch is in the log before the node reports finished.
        self.writer.finish();
        Ok(())
    }

    fn tap_point(&self) -> Option<Arc<TapPoint>> {
        Some(Arc::clone(self.writer.point()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing::Harness;

    #[test]
    fn copies_only_while_subscribed() {
        let mut h = Harness::new(64);
        let mut mux = Mux::new();
        let point = mux.tap_point().unwrap();
        h.push(&mut mux, b"before", None).unwrap();
        mux.end_batch().unwrap();
        point.attach();
        h.push(&mut mux, b"a", None).unwrap();
        h.push(&mut mux, b"b", None).unwrap();
        mux.end_batch().unwrap();
        let chunks = point.drain();
        let got: Vec<&[u8]> = chunks.iter().flat_map(|c| c.iter()).collect();
        assert_eq!(got, [&b"a"[..], b"b"]);
    }
}
