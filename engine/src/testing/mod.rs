//! Tests written inside a pipeline file (as Vector's and Benthos' unit
//! tests): `[[tests]]` blocks that insert payloads at one node and say
//! what must come out where. `dataplane test --config FILE` runs them.
//!
//! ```toml
//! [[tests]]
//! name = "hot metrics are kept"
//! input = { node = "hot-or-error", payloads = ['{"type":"metric","value":91}', 'not json'] }
//!
//! [[tests.outputs]]
//! node = "hot-or-error"            # an output port (default: the node's first)
//! port = "output"
//! payloads = ['{"type":"metric","value":91}']   # exactly these, in this order
//!
//! [[tests.outputs]]
//! node = "rejected"                # a sink: what it received
//! count = 1
//! reason = "invalid JSON"          # every element was rejected for this
//!
//! [[tests.outputs]]
//! node = "kept"
//! where = { field = "value", gt = 50 }   # every element satisfies it
//! ```
//!
//! How a test runs:
//!
//! * The payloads are inserted at `input.node`: a source's output is
//!   replaced by them, a processor or router is fed them on its input.
//! * Only the input node and what is reachable from it run, each stage
//!   built afresh from its parameters. No real source is opened (no file
//!   read, no socket bound) and every sink is replaced by a capture (nothing
//!   written, sent or printed).
//! * An expectation on a processor's or router's port taps that port with
//!   an extra edge to a capture (a fan-out: the other edges keep flowing).
//!   Tapping an `error` port connects it, so what the node rejects goes
//!   there, untouched, with the reason in its metadata (check it with
//!   `reason`), instead of being dropped.
//! * `payloads`: strings compare byte for byte, tables as JSON (key order,
//!   spacing and `1` vs `1.0` ignored); in order unless `ordered = false`
//!   (a node fed by several edges sees them interleaved). `count`: exactly
//!   that many. `where`: the `filter` component's condition, every element
//!   satisfies it. `reason`: every element was rejected for this reason.
//!
//! Every block is checked when the file is loaded (`run` and `validate` too),
//! and each problem is a [`ConfigError`](crate::ConfigError) with its
//! `file:line:col`.

mod capture;
mod compare;
mod runner;

use std::fmt;
use std::path::Path;

pub use capture::{Capture, Captured, Captures};
pub use compare::{DiffLine, Failure};

use crate::operators::Registry;
use crate::topology::config::{self, LoadError};
use crate::topology::test_spec as spec;
use crate::topology::{ConfigErrors, Settings};

pub use crate::topology::test_spec::check_str;

/// The tests of one pipeline file, checked, ready to run.
pub struct TestSuite {
    settings: Settings,
    cases: Vec<spec::TestCase>,
}

/// Reads a pipeline file and its tests. The whole file is validated as
/// `dataplane validate` does (use a [`Registry::dry`] registry, so that a
/// network source only proves its address); `flow` keeps the tests of that
/// flow only.
pub fn load_file(
    path: &Path,
    registry: &Registry,
    flow: Option<&str>,
) -> Result<TestSuite, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::Io(format!("cannot read config file {}: {e}", path.display())))?;
    load_str(&text, &path.display().to_string(), registry, flow).map_err(LoadError::Invalid)
}

/// [`load_file`] on text already read (`file` names it in messages).
pub fn load_str(
    text: &str,
    file: &str,
    registry: &Registry,
    flow: Option<&str>,
) -> Result<TestSuite, ConfigErrors> {
    let b = config::load_str(text, file, registry, flow);
    let settings = b.settings.clone();
    b.build()?;
    let mut cases = spec::resolve(text, file, registry).map_err(ConfigErrors)?;
    if let Some(flow) = flow {
        cases.retain(|c| c.flow == flow);
    }
    Ok(TestSuite { settings, cases })
}

impl TestSuite {
    /// How many tests there are.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// The test names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.cases.iter().map(|c| c.name.as_str())
    }

    /// Runs every test in turn, handing each result to `each` as it
    /// comes, and returns the tally. Call from the main thread (each test
    /// builds a pipeline, which reads the usable cores).
    pub fn run(&self, registry: &Registry, mut each: impl FnMut(&TestResult)) -> Summary {
        let mut summary = Summary::default();
        for case in &self.cases {
            let result = TestResult {
                name: case.name.clone(),
                origin: case.origin.clone(),
                failures: runner::run_case(case, &self.settings, registry),
            };
            if result.passed() {
                summary.passed += 1;
            } else {
                summary.failed += 1;
            }
            each(&result);
        }
        summary
    }
}

/// The outcome of one test.
#[derive(Clone, Debug)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// Where its `[[tests]]` block is (`file:line:col`).
    pub origin: String,
    /// Why it failed; empty when it passed.
    pub failures: Vec<Failure>,
}

impl TestResult {
    /// Whether every expectation held and the run was clean.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// `test NAME ... ok`, or `... FAILED` followed by each failure, indented.
impl fmt::Display for TestResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            return writeln!(f, "test {} ... ok", self.name);
        }
        writeln!(f, "test {} ... FAILED ({})", self.name, self.origin)?;
        for failure in &self.failures {
            for line in failure.to_string().lines() {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

/// How many tests passed and failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tests whose expectations all held.
    pub passed: usize,
    /// The others.
    pub failed: usize,
}

/// `N passed, M failed`.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

#[cfg(test)]
mod tests;
