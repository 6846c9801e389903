#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
#   fmt, clippy, the whole test suite in release (the concurrency tests want
#   optimized code), then the loom model of the arena protocol.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --release -- -D warnings

echo "== build the dataplane binary (the end-to-end tests run it)"
cargo build --release -p dataplane-engine --bin dataplane

echo "== cargo test (release)"
cargo test --workspace --release

echo "== loom model of the arena protocol"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
    cargo test -p dataplane-engine --release --test loom_arena
