#!/usr/bin/env bash
# Performance gates (CI runs this after the tests; people can too).
#
# Every throughput gate is a ratio measured side by side in one run (medians
# of per-repetition ratios), never an absolute time: this is a noisy 2-core VM.
# Latency percentiles are reported by the bench but not gated (too noisy on a
# shared VM); the hot path is gated on instruction counts, which are
# deterministic.
#
#   scripts/perf-gate.sh            # all gates, about 1-2 minutes
#
# Thresholds (each was measured first; see the README's Performance section):
#   GATE_THROUGHPUT  engine / crossbeam-channel, generator -> discard, 64 B   (measured 2.46)
#   GATE_FANOUT      engine fan-out to 2 / the same router with 1 branch      (measured 0.92)
#   allocations      engine heap allocations per element, chain and fan-out   (measured 0.000)
#   hot path         instructions per element, alloc -> route -> release,
#                    single worker, under callgrind: at most scripts/hotpath-budget
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

GATE_THROUGHPUT=${GATE_THROUGHPUT:-1.8}
GATE_FANOUT=${GATE_FANOUT:-0.8}
GATE_ALLOCS=${GATE_ALLOCS:-0.001}
BUDGET=$(tr -dc '0-9' < scripts/hotpath-budget)
out=target/perf-gate
mkdir -p "$out"

if ! command -v valgrind >/dev/null; then
    echo "== installing valgrind (needed for the instruction-count gate)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; fi
fi

echo "== building the bench"
cargo build --release -p bench --bins

echo "== side-by-side throughput and allocations (engine vs crossbeam-channel)"
target/release/latency \
    --scenario chain-1 --scenario chain-4 \
    --system engine --system crossbeam \
    --count 500000 --reps 5 --json "$out/bench.json" | tee "$out/bench.txt"

echo "== fan-out cost: fanout-1 and fanout-2 back to back, 7 pairs"
for i in 1 2 3 4 5 6 7; do
    target/release/latency --scenario fanout-1 --scenario fanout-2 --system engine \
        --count 300000 --reps 1 --json "$out/fanout.$i.json" >> "$out/fanout.txt"
done

echo "== hot-path instructions per element (callgrind, N and 2N elements)"
count() {
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$1" \
        target/release/hotpath --count "$1" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
n=48000
ir1=$(count $n)
ir2=$(count $((2 * n)))
echo "Ir($n) = $ir1, Ir($((2 * n))) = $ir2"

python3 - "$out" "$ir1" "$ir2" "$n" "$BUDGET" "$GATE_THROUGHPUT" "$GATE_FANOUT" "$GATE_ALLOCS" <<'PY'
import json, statistics, sys
out, ir1, ir2, n, budget, g_thr, g_fan, g_alloc = sys.argv[1:]
def scenarios(path):
    d = json.load(open(path))
    return {s["name"]: {x["system"]: x for x in s["systems"]} for s in d["scenarios"]}
sc = scenarios(f"{out}/bench.json")
thr = 1.0 / sc["chain-1"]["crossbeam"]["ratio_vs_engine"]["throughput"]
pairs = [scenarios(f"{out}/fanout.{i}.json") for i in range(1, 8)]
ratios = [p["fanout-2"]["engine"]["throughput_eps"] / p["fanout-1"]["engine"]["throughput_eps"] for p in pairs]
print("fan-out pair ratios:", " ".join(f"{r:.3f}" for r in ratios))
fan = statistics.median(ratios)
allocs = max([sc["chain-4"]["engine"]["allocs_per_element"]] + [p["fanout-2"]["engine"]["allocs_per_element"] for p in pairs])
ipe = (int(ir2) - int(ir1)) / int(n)
gates = [
    ("throughput: engine / crossbeam (gen -> discard, 64 B)", thr, ">=", float(g_thr)),
    ("fan-out: 2 branches / 1 branch (engine, median of 7 pairs)", fan, ">=", float(g_fan)),
    ("allocations per element (engine chain-4, fanout-2)", allocs, "<=", float(g_alloc)),
    ("hot path: instructions per element (callgrind)", ipe, "<=", float(budget)),
]
failed = []
print()
print(f"{'gate':<58} {'value':>10}   threshold  verdict")
for name, value, op, limit in gates:
    ok = value >= limit if op == ">=" else value <= limit
    print(f"{name:<58} {value:>10.3f}   {op} {limit:<7g}  {'pass' if ok else 'FAIL'}")
    if not ok:
        failed.append(name)
if failed:
    print("\nperf gate FAILED: " + "; ".join(failed))
    sys.exit(1)
print("\nall performance gates passed")
PY
echo "== perf gate took $(( $(date +%s) - start )) s"
