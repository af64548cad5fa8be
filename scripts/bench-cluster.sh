#!/usr/bin/env bash
# Replication benchmarks for BENCHMARKS.md: RF 3 acks=all against RF 1 acks=1, failover
# after kill -9 of a leader, the pause of a controlled shutdown, and a follower catching
# up. Drives `freshet server` processes with confluent-kafka.
#
#   bash scripts/bench-cluster.sh [ROUNDS] [--only throughput,failover,sigterm,catchup]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rounds="${1:-10}"
shift || true
bench_setup
say "benchmarking replication with $CARGO_TARGET_DIR/release/freshet ($rounds rounds)"
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
exec "$venv/bin/python" bench/cluster_bench.py --freshet "$CARGO_TARGET_DIR/release/freshet" --rounds "$rounds" "$@"
