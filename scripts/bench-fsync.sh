#!/usr/bin/env bash
# Produce latency while a partition's 1 GiB segment is fsynced (BENCHMARKS.md). Builds the
# release binary of this checkout and, if a git revision is given, of that revision too
# (in a worktree beside it, sharing the target directory), and compares them in one run.
#
#   bash scripts/bench-fsync.sh [BASELINE_REVISION] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
baseline="${1:-}"
rounds="${2:-3}"
ensure_build_deps
venv="${FRESHET_BENCH_VENV:-$HOME/.cache/freshet/bench-venv}"
ensure_venv "$venv" bench/requirements.txt
binaries=()
# Both trees share the target directory, and cargo does not copy a binary it finds fresh
# to target/release again: touching the main file makes each build link its own, which is
# copied aside at once.
build_into() {
    (cd "$1" && touch src/main.rs && cargo build --release --locked --bin freshet >&2)
    cp "$CARGO_TARGET_DIR/release/freshet" "$2"
}
if [ -n "$baseline" ]; then
    tree="$HOME/.cache/freshet/baseline-$(git rev-parse --short "$baseline")"
    [ -d "$tree" ] || git worktree add --detach "$tree" "$baseline" >&2
    build_into "$tree" "$CARGO_TARGET_DIR/release/freshet-baseline"
    binaries+=(--binary "$(git rev-parse --short "$baseline")=$CARGO_TARGET_DIR/release/freshet-baseline")
fi
build_into . "$CARGO_TARGET_DIR/release/freshet-head"
binaries+=(--binary "$(git rev-parse --short HEAD)=$CARGO_TARGET_DIR/release/freshet-head")
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)," \
    "data on $(df -T "$HOME/.cache/freshet" | awk 'NR == 2 {print $2}'), vm.dirty_ratio=$(sysctl -n vm.dirty_ratio)"
echo
exec "$venv/bin/python" bench/fsync_stall.py "${binaries[@]}" --rounds "$rounds"
