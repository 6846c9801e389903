//! `mux`: a sink whose elements go to the clients subscribed through the
//! control endpoint (`GET /subscribe?node=NAME&where=...`), each with its
//! own predicate and bounded queue.
//!
//! With no subscriber the mux consumes and counts, and hands over nothing.
//! With subscribers it hands the endpoint a reference to each element's
//! slot (a refcount bump and a `u32`, per batch under a `try_lock`; see
//! [`crate::observe::tap::RefPoint`]), as long as the endpoint holds fewer
//! than the arena's spare slots (those the pipeline itself never needs);
//! beyond, elements are skipped and counted as lost by the subscribers.
//! Reading payloads, matching, queueing and writing happen on the control
//! endpoint's thread, so neither the number of subscribers nor a stalled
//! one changes what the pipeline does.

use std::sync::Arc;

use crate::observe::tap::{RefPoint, RefWriter};
use crate::stage::{Element, Sink, StageError};

/// The `mux` sink.
pub struct Mux {
    writer: RefWriter,
    /// Whether this batch's elements are handed over; decided at the
    /// batch's first element (`None` until then).
    watched: Option<bool>,
}

impl Mux {
    /// A mux with no subscriber yet.
    pub fn new() -> Mux {
        Mux {
            writer: RefWriter::new(RefPoint::new()),
            watched: None,
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
        let watched = match self.watched {
            Some(w) => w,
            None => *self.watched.insert(self.writer.point().is_watched()),
        };
        if watched && self.writer.offer() {
            // A reference, not a copy: the endpoint reads the payload from
            // the arena on its own thread and releases the slot.
            self.writer.push(element.arena.share(element.handle));
        }
        Ok(())
    }

    fn end_batch(&mut self) -> Result<(), StageError> {
        if self.watched.take() == Some(true) {
            self.writer.commit();
        }
        Ok(())
    }

    fn complete(&mut self) -> Result<(), StageError> {
        // The last batch is in the log before the node reports finished.
        self.writer.flush_blocking();
        Ok(())
    }

    fn mux_point(&self) -> Option<Arc<RefPoint>> {
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
        let point = mux.mux_point().unwrap();
        point.set_cap(2);
        h.push(&mut mux, b"before", None).unwrap();
        mux.end_batch().unwrap();
        point.attach();
        for p in [b"a", b"b", b"c"] {
            h.push(&mut mux, p, None).unwrap();
        }
        mux.end_batch().unwrap();
        let batches = point.drain();
        let (arena, pool) = h.arena_and_pool();
        let got: Vec<Vec<u8>> = batches
            .iter()
            .flat_map(|b| b.handles.iter().map(|x| arena.payload(x).to_vec()))
            .collect();
        // Two references at most: the third element is a counted gap.
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(point.held(), 2);
        let n: usize = batches.iter().map(|b| b.handles.len()).sum();
        for b in batches {
            for x in b.handles {
                arena.release(x, pool);
            }
        }
        point.released(n);
        // The next element is handed over again, numbered past the gap.
        h.push(&mut mux, b"d", None).unwrap();
        mux.end_batch().unwrap();
        let next = point.drain();
        assert_eq!(next[0].first, 3, "the sequence went on past the gap");
        let (arena, pool) = h.arena_and_pool();
        for b in next {
            for x in b.handles {
                arena.release(x, pool);
            }
        }
    }
}
