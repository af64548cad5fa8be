#!/usr/bin/env bash
# Consumer-group benchmark for BENCHMARKS.md: `freshet perf rebalance` against a release
# `freshet server` on loopback (a fresh data directory, no initial rebalance delay).
#
#   bash scripts/bench-groups.sh [ROUNDS] [PARTITIONS] [MEMBERS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rounds="${1:-5}"
partitions="${2:-100}"
members="${3:-3}"
ensure_build_deps
cargo build --release --locked --bin freshet >&2
bin="$CARGO_TARGET_DIR/release/freshet"
tmp="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$tmp"' EXIT
"$bin" server --set "log.dirs=$tmp/data" --set "listeners=PLAINTEXT://127.0.0.1:0" \
    --set group.initial.rebalance.delay.ms=0 > "$tmp/stdout" 2> "$tmp/server.log" &
server=$!
for _ in $(seq 1 600); do
    grep -q "listening on" "$tmp/stdout" 2>/dev/null && break
    sleep 0.1
done
addr="$(sed -n 's/^freshet server listening on //p' "$tmp/stdout")"
[ -n "$addr" ] || { cat "$tmp/server.log" >&2; exit 1; }
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
echo "Command: freshet perf rebalance --partitions $partitions --members $members --rounds $rounds"
"$bin" perf rebalance -b "$addr" --partitions "$partitions" --members "$members" --rounds "$rounds"
# The coordinator's own share: from the JoinGroup that completes a join (every member in)
# to the leader's SyncGroup making the group stable, read from the server's log.
python3 - "$tmp/server.log" <<'PY'
import re, sys, statistics
from datetime import datetime
text = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[1]).read())
joined, spans = {}, []
for line in text.splitlines():
    m = re.match(r'(\S+Z)\s+INFO .*?(join complete|rebalance complete; group stable).*group="?([^"\s]+)', line)
    if not m:
        continue
    at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
    if m.group(2) == "join complete":
        joined[m.group(3)] = at
    elif m.group(3) in joined:
        spans.append((at - joined.pop(m.group(3))).total_seconds() * 1000)
if spans:
    print(f"coordinator: last JoinGroup to stable group: {len(spans)} rebalances, median {statistics.median(spans):.2f} ms, max {max(spans):.2f} ms")
PY
