#!/usr/bin/env bash
# Runs Freshet's whole test suite: formatting, lints, and every unit, property, crash-recovery
# and integration test in the workspace. Installs what is missing first.
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
