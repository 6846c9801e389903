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
# Thresholds (each set from several runs, with headroom; see the README's
# Performance section for the measured values):
#   GATE_LIMIT_CHAIN   engine / limit, generator -> sink (chain-1), 64 B
#   GATE_LIMIT_FANOUT  engine / limit, fan-out to 2 sinks (fanout-2), 64 B
#       `limit` is the engine's design with nothing else (bench/src/systems/
#       limit.rs): slots, u32 indices over rtrb rings, a return ring. It runs
#       on the same cores in the same process, interleaved with the engine
#       (engine, limit, engine, limit, ...), and the gate takes the median of
#       the per-pair ratios, so a CPU that is faster or a neighbour that is
#       noisier moves both sides of each ratio.
#   GATE_FANOUT        engine fan-out to 2 / the same port with 1 edge
#   allocations        engine heap allocations per element, chain and fan-out
#   hot path           instructions per element, alloc -> route -> release,
#                      single worker, under callgrind: at most scripts/hotpath-budget
# crossbeam-channel is not gated: with a fresh Vec per element it is
# allocator-bound and its speed moves 3x between CPUs (EPYC vs Xeon).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

GATE_LIMIT_CHAIN=${GATE_LIMIT_CHAIN:-0.3}
GATE_LIMIT_FANOUT=${GATE_LIMIT_FANOUT:-0.3}
PAIRS=${PAIRS:-7}
# Fan-out 2/1 was 0.88-0.94 before sources filled whole batches; with the
# generator's core faster, fanout-2 leans more on the sinks' core (two
# deliveries per element) and the ratio came out 0.816-0.937 in 5 runs
# (fresh-clone CI: 0.816), too close to 0.8 to gate on: 0.75.
GATE_FANOUT=${GATE_FANOUT:-0.75}
GATE_ALLOCS=${GATE_ALLOCS:-0.001}
BUDGET=$(tr -dc '0-9' < scripts/hotpath-budget)
# The budget is counted on a CPU with AVX2, with which the JSON index
# classifies a 64-byte block in route-by-field's loop compiled for AVX2; a
# CPU without it takes the SSE2 classifier, 109 more instructions per
# element (708.6 vs 599.5 on the same build, measured with
# DATAPLANE_NO_AVX2=1: the flat walk's seven byte classes in 16-byte lanes,
# in a loop compiled for the x86_64 baseline).
HOTPATH_NO_AVX2=${HOTPATH_NO_AVX2:-125}
# The count is of the code this CPU runs: not forced to the baseline.
unset DATAPLANE_NO_AVX2
# What json::simd needs (LZCNT is `abm` in /proc/cpuinfo), as the engine
# detects it.
has_simd() {
    local flag
    for flag in avx2 pclmulqdq bmi1 bmi2 abm popcnt; do
        grep -qw "$flag" /proc/cpuinfo 2>/dev/null || return 1
    done
}
if ! has_simd; then
    BUDGET=$((BUDGET + HOTPATH_NO_AVX2))
    echo "== this CPU lacks AVX2 or a bit instruction json::simd needs: hot-path budget $BUDGET (the SSE2 JSON index)"
fi
out=target/perf-gate
mkdir -p "$out"

if ! command -v valgrind >/dev/null; then
    echo "== installing valgrind (needed for the instruction-count gate)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; fi
fi

echo "== building the bench"
cargo build --release -p bench --bin latency --bin hotpath

echo "== engine vs limit, interleaved: $PAIRS pairs each of chain-1 and fanout-2; allocations on chain-4"
target/release/latency \
    --scenario chain-1 --scenario fanout-2 --scenario chain-4 \
    --system engine --system limit \
    --count 1000000 --reps "$PAIRS" --json "$out/bench.json" | tee "$out/bench.txt"

echo "== fan-out cost: fanout-1 and fanout-2 back to back, 7 pairs"
rm -f "$out/fanout.txt"
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

python3 - "$out" "$ir1" "$ir2" "$n" "$BUDGET" "$GATE_LIMIT_CHAIN" "$GATE_LIMIT_FANOUT" "$GATE_FANOUT" "$GATE_ALLOCS" <<'PY'
import json, statistics, sys
out, ir1, ir2, n, budget, g_chain, g_lfan, g_fan, g_alloc = sys.argv[1:]
def scenarios(path):
    d = json.load(open(path))
    return {s["name"]: {x["system"]: x for x in s["systems"]} for s in d["scenarios"]}
sc = scenarios(f"{out}/bench.json")
def vs_limit(name):
    e = sc[name]["engine"].get("rep_throughput_eps") or []
    l = sc[name]["limit"].get("rep_throughput_eps") or []
    if len(e) != len(l) or not e:
        sys.exit(f"{name}: engine and limit did not both finish every rep ({len(e)} vs {len(l)})")
    r = [a / b for a, b in zip(e, l)]
    print(f"{name} engine / limit pair ratios:", " ".join(f"{x:.3f}" for x in r),
          f"(engine median {statistics.median(e) / 1e6:.2f} M/s, limit {statistics.median(l) / 1e6:.2f} M/s)")
    return statistics.median(r)
chain = vs_limit("chain-1")
lfan = vs_limit("fanout-2")
pairs = [scenarios(f"{out}/fanout.{i}.json") for i in range(1, 8)]
ratios = [p["fanout-2"]["engine"]["throughput_eps"] / p["fanout-1"]["engine"]["throughput_eps"] for p in pairs]
print("fan-out pair ratios:", " ".join(f"{r:.3f}" for r in ratios))
fan = statistics.median(ratios)
allocs = max([sc["chain-4"]["engine"]["allocs_per_element"]] + [p["fanout-2"]["engine"]["allocs_per_element"] for p in pairs])
ipe = (int(ir2) - int(ir1)) / int(n)
gates = [
    ("engine / limit, chain-1 (median of interleaved pairs)", chain, ">=", float(g_chain)),
    ("engine / limit, fanout-2 (median of interleaved pairs)", lfan, ">=", float(g_lfan)),
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
