#!/usr/bin/env bash
# Builds Freshet (release) and runs its main job on the embedded default: a single-node
# broker speaking the Kafka protocol on 127.0.0.1:9092, with its data under ./freshet-data.
# Stop it with Ctrl-C (a clean shutdown). Any arguments are passed to the `freshet`
# binary instead, e.g. `bash scripts/run.sh server --set listeners=PLAINTEXT://0.0.0.0:9092`.
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
say "starting freshet server on 127.0.0.1:9092 (data in ./freshet-data; Ctrl-C stops it cleanly)"
exec "$bin" server
