//! Sources that open their resources when the run starts
//! ([`Source::open`]), not when the pipeline is built: building a plan (and
//! so `dataplane validate` and `graph`) opens no socket, and an address
//! another process holds is a config error of the run naming the node and
//! the address.

use crate::stage::{Commits, Pull, SlotWriter, Source, StageError, StageInfo};

/// Opens an `S` with `open` when the stage starts, then is that source.
pub(crate) struct OpenAtInit<S> {
    open: Box<dyn FnMut() -> Result<S, String> + Send>,
    inner: Option<S>,
}

impl<S: Source> OpenAtInit<S> {
    pub(crate) fn new(open: impl FnMut() -> Result<S, String> + Send + 'static) -> Self {
        OpenAtInit {
            open: Box::new(open),
            inner: None,
        }
    }

    fn inner(&mut self) -> Result<&mut S, StageError> {
        self.inner
            .as_mut()
            .ok_or_else(|| StageError::Fatal("the source was not opened (no init)".into()))
    }
}

impl<S: Source> Source for OpenAtInit<S> {
    fn open(&mut self) -> Result<(), String> {
        if self.inner.is_none() {
            self.inner = Some((self.open)()?);
        }
        Ok(())
    }

    fn init(&mut self, info: &StageInfo) -> Result<(), StageError> {
        // A stage rebuilt for a restart was never opened by the runtime.
        Source::open(self).map_err(StageError::Fatal)?;
        self.inner()?.init(info)
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StageError> {
        match &mut self.inner {
            Some(s) => s.snapshot(),
            None => Ok(Vec::new()),
        }
    }

    #[inline]
    fn pull(&mut self, slot: &mut SlotWriter<'_>) -> Result<Pull, StageError> {
        self.inner()?.pull(slot)
    }

    fn next_due_ns(&self) -> Option<u64> {
        self.inner.as_ref()?.next_due_ns()
    }

    fn commits(&mut self) -> Option<Commits> {
        self.inner.as_mut()?.commits()
    }

    fn counts(&self) -> Vec<(&'static str, u64)> {
        self.inner.as_ref().map(S::counts).unwrap_or_default()
    }

    fn teardown(&mut self) {
        if let Some(s) = &mut self.inner {
            s.teardown();
        }
    }
}
