#!/usr/bin/env bash
# Runs Freshet's whole test suite: formatting, lints, every unit, property, crash-recovery
# and integration test in the workspace, and the compatibility tests that drive a real
# `freshet server` with third-party Kafka clients. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_build_deps

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo test --workspace"
cargo test --workspace --locked

say "client compatibility tests (kafka-python, confluent-kafka, kcat against freshet server)"
bash tests/compat/run.sh
