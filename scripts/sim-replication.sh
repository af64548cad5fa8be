#!/usr/bin/env bash
# The long run of the replication simulation (RELIABILITY.md): many seeds of a simulated
# 3-broker cluster with crashes, cuts, drops and controller failover, checked after every
# step. CI runs a few dozen seeds of the same test; a failing seed replays with
#   SIM_SEED=n cargo test -p freshet-log --test replication_sim -- --nocapture
#
#   bash scripts/sim-replication.sh [SEEDS] [FIRST_SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_deps
seeds="${1:-5000}"
first="${2:-0}"
say "replication simulation: seeds $first..$((first + seeds)) (release build)"
start=$(date +%s)
SIM_SEEDS="$seeds" SIM_FIRST_SEED="$first" \
    cargo test --release --locked -p freshet-log --test replication_sim -- --nocapture --test-threads 2
say "done in $(( $(date +%s) - start )) s"
