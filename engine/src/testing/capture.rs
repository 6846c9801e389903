//! The sink that stands in for real sinks, and for extra taps on output
//! ports, while a test runs: it keeps what it receives, in order.

use std::sync::{Arc, Mutex};

use crate::stage::{Element, Sink, StageError};

/// One element a capture received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// The payload, byte for byte.
    pub payload: Vec<u8>,
    /// Why a stage rejected the element, when it came through an `error`
    /// port (its metadata; the payload itself is untouched).
    pub reason: Option<&'static str>,
}

/// What a [`Capture`] received, readable once the run has ended.
pub type Captures = Arc<Mutex<Vec<Captured>>>;

/// A sink that records every element it receives; it prints, writes and
/// sends nothing.
pub struct Capture {
    into: Captures,
}

impl Capture {
    /// A capture and the list it fills.
    pub fn new() -> (Capture, Captures) {
        let into = Captures::default();
        (
            Capture {
                into: Arc::clone(&into),
            },
            into,
        )
    }
}

impl Sink for Capture {
    fn push(&mut self, element: &Element<'_>) -> Result<(), StageError> {
        let captured = Captured {
            payload: element.payload().to_vec(),
            reason: element.meta().reason,
        };
        // A poisoned lock means a test thread panicked; the run reports it.
        if let Ok(mut list) = self.into.lock() {
            list.push(captured);
        }
        Ok(())
    }
}
