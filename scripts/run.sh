#!/usr/bin/env bash
# Builds Freshet (release) and runs its main job on the embedded default.
#
# The single-node broker (`freshet server`, data under ./freshet-data) arrives with the
# broker issue; until then the main job is the storage-engine benchmark, written under
# ./freshet-data/perf-log. Any arguments are passed to the `freshet` binary instead.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_build_deps
say "building freshet (release) in $CARGO_TARGET_DIR"
cargo build --release --locked --bin freshet
bin="$CARGO_TARGET_DIR/release/freshet"

if [ $# -gt 0 ]; then
    exec "$bin" "$@"
fi
say "no broker yet: running the storage-engine benchmark (freshet perf log append/read)"
"$bin" perf log append --dir ./freshet-data/perf-log --total-mb 256 --record-size 1024 --batch-records 500
"$bin" perf log read --dir ./freshet-data/perf-log --total-mb 256 --record-size 1024 --batch-records 500
