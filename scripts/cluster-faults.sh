#!/usr/bin/env bash
# The long run of the real-process cluster test (RELIABILITY.md): three `freshet server`
# processes, an idempotent acks=all producer, the partition leader killed with SIGKILL
# ROUNDS times and restarted, then a SIGTERM rolling restart; every acknowledged record
# must be read back once, in order. CI runs the same test with 2 rounds. Then the network
# partition test (a leader cut off by proxies between the nodes, then healed) RUNS times;
# CI runs it once.
#
#   bash scripts/cluster-faults.sh [ROUNDS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_deps
rounds="${1:-50}"
runs="${2:-20}"
say "cluster fault run: $rounds leader kills, then a rolling restart"
start=$(date +%s)
log=$(mktemp)
status=0
CLUSTER_ROUNDS="$rounds" cargo test --locked --test cluster_kill9 -- --nocapture >"$log" 2>&1 || status=$?
grep -E "round|rolling|records|test result|panicked|FAILED|^---|timed out" "$log" || true
[ "$status" -eq 0 ] || die "the cluster fault run failed; its whole output is in $log"
rm -f "$log"
say "network partition: a leader cut off and healed, $runs runs"
for run in $(seq 1 "$runs"); do
    cargo test --locked -p freshet-log --test cluster_partition >"$log" 2>&1 ||
        die "network partition run $run of $runs failed; its whole output is in $log"
done
rm -f "$log"
say "done in $(( $(date +%s) - start )) s"
