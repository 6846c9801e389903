//! The dataplane benchmark harness.
//!
//! Runs named scenarios (linear chains, fan-out, fan-in, a diamond; small and
//! large payloads; saturating and fixed-rate) through the real engine and,
//! in the same process, on the same workload and the same cores, through
//! baselines a Rust user would otherwise write: crossbeam-channel and
//! `std::sync::mpsc` pipelines of `Vec<u8>` elements, the `disruptor` crate,
//! and a raw cache-line ping-pong (the floor of one core-to-core hop).
//!
//! Every run yields the same measurements ([`measure::RunOutcome`]):
//! throughput from the first element's creation to the last delivery,
//! end-to-end latency (stamped at creation with [`dataplane::clock::now_ns`],
//! recorded at the sink into an HDR histogram, as the engine does), and heap
//! allocations per element in steady state ([`alloc`]). [`summary`] turns
//! repetitions into medians and ratios to the engine; [`output`] prints them
//! as a table, JSON and an SVG plot.
//!
//! The binaries are `latency` (the harness) and `hotpath` (a deterministic,
//! single-threaded element path for instruction counting under callgrind).

pub mod alloc;
pub mod machine;
pub mod measure;
pub mod output;
pub mod scenario;
pub mod summary;
pub mod systems;
