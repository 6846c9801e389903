//! Atomics shim: `std` normally, `loom` under `--cfg loom`, so the arena's
//! free-list and refcount protocol can be model-checked without a second copy.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
