#!/usr/bin/env bash
# Runs the benches and regenerates the tables of BENCHMARKS.md from their JSON lines.
#
#   scripts/bench.sh              # full run (a few minutes)
#   TSERCOM_BENCH_QUICK=1 scripts/bench.sh
#   TSERCOM_PY=/path/to/venv/bin/python scripts/bench.sh   # with the Python reference
#   TSERCOM_LSL_PY=/path/to/venv/bin/python scripts/bench.sh   # with LSL (pylsl; root: unshare -n)
#
# The reconnect bench needs root (network namespaces); otherwise it prints a skip line.
#
# Results go to benches/results/*.jsonl; BENCHMARKS.md's generated section is replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benches/results
mkdir -p "$out"
{
  echo "{\"machine\":true,\"nproc\":$(nproc),\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')\",\"kernel\":\"$(uname -r)\",\"rustc\":\"$(rustc --version)\",\"date\":\"$(date -u +%Y-%m-%dT%H:%MZ)\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"quick\":\"${TSERCOM_BENCH_QUICK:-}\"}"
} > "$out/machine.jsonl"
for bench in throughput acks latency timesync discovery reconnect tls; do
  cargo bench --bench "$bench" > "$out/$bench.jsonl"
done
# The hop breakdown (an instrumented build): only its latency_hops lines.
cargo bench --bench latency --features hop-trace | grep '"latency_hops"' > "$out/latency-hops.jsonl" || true
echo "{\"machine_after\":true,\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$out/machine.jsonl"
python3 scripts/bench-report.py --update BENCHMARKS.md "$out"/machine.jsonl "$out"/throughput.jsonl "$out"/acks.jsonl "$out"/latency.jsonl "$out"/latency-hops.jsonl "$out"/timesync.jsonl "$out"/discovery.jsonl "$out"/reconnect.jsonl "$out"/tls.jsonl
