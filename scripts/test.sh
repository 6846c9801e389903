#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
#   fmt, clippy, the whole test suite in release (the concurrency tests want
#   optimized code; the Kafka ones get a broker from scripts/kafka.sh), then
#   the loom model of the arena protocol.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the end-to-end tests use: promtool checks the /metrics exposition,
# tmux runs `dataplane top` as a terminal would. Installed from Debian's
# packages when missing (root, as on CI); elsewhere the tests say they
# skipped them, except under CI=true, where a missing tool fails them.
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v tmux >/dev/null || need+=(tmux)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]} (for promtool and tmux)"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
        # The package's service is not wanted here (no systemd on CI, but
        # be sure): the tests run promtool only.
        pkill -x prometheus 2>/dev/null || true
    else
        echo "warning: cannot install ${need[*]} (not root or no apt-get)" >&2
    fi
fi

# The Kafka tests need a broker that is built from source the first time
# (scripts/kafka.sh, then cached): start that build now, in the
# background and at low priority, to fill the cores that compiling leaves
# idle. `kafka.sh up` below waits for it.
mkdir -p target
nice -n 10 scripts/kafka.sh install >target/kafka-install.log 2>&1 &

# The plan does not know the runtime: topology/ builds plain data,
# runtime/ runs it, and operators are stages, not runtime parts. An import
# the wrong way would bring back the cycle this layering removed.
echo "== import direction (topology, operators, stage never import runtime)"
if grep -rnE '(crate|super)::runtime\b' engine/src/topology engine/src/operators engine/src/stage \
    | grep -vE '^[^:]+:[0-9]+:\s*//'; then
    echo "error: the lines above import the runtime from topology/, operators/ or stage/" >&2
    exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --release -- -D warnings

echo "== build the dataplane binary (the end-to-end tests run it)"
cargo build --release -p dataplane-engine --bin dataplane

# The Kafka tests (tests/tests/kafka.rs) run against a real broker on
# 127.0.0.1, started here and stopped on the way out, whatever happens.
echo "== Kafka broker for the end-to-end tests (scripts/kafka.sh up)"
scripts/kafka.sh up
trap 'scripts/kafka.sh down' EXIT
DATAPLANE_KAFKA=$(scripts/kafka.sh brokers)
export DATAPLANE_KAFKA

echo "== cargo test (release)"
cargo test --workspace --release

echo "== loom model of the arena protocol"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
    cargo test -p dataplane-engine --release --no-default-features --test loom_arena
