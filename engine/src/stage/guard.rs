//! Calling into a stage safely: a panic in a stage call becomes that
//! stage's failure (its restart policy decides what follows) instead of a
//! dead worker, and says where it happened without the default hook's
//! message on stderr.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set on worker threads: a panic there is a stage failure the node
    /// reports itself, so the panic hook stays quiet.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last quiet panic on this thread happened.
    static LOCATION: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Makes panics on the calling thread quiet (no "thread panicked" message
/// on stderr: the node names the failed stage and its message instead) and
/// installs, once per process, the hook that does so (other threads keep
/// the previous hook). Worker threads call it when they start; a panic of
/// the engine itself still ends its worker, reported as "worker N
/// panicked" with its message.
pub(crate) fn quiet_panics_on_this_thread() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                log::debug!("stage panic at {at}: {}", payload_text(info.payload()));
                LOCATION.with(|l| *l.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
}

/// Calls into a stage, turning a panic into `Err(message)`. Free on the
/// path that does not panic (a landing pad, no extra work).
#[inline(always)]
pub(crate) fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Ok(r),
        Err(p) => Err(panic_message(p)),
    }
}

/// `panic: MESSAGE (at FILE:LINE)`.
#[cold]
fn panic_message(p: Box<dyn Any + Send>) -> String {
    let at = LOCATION.with(|l| std::mem::take(&mut *l.borrow_mut()));
    let text = payload_text(&*p);
    if at.is_empty() {
        format!("panic: {text}")
    } else {
        format!("panic: {text} (at {at})")
    }
}

fn payload_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}
