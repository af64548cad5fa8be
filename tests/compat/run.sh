#!/usr/bin/env bash
# Compatibility tests: a real `freshet server` process driven by clients nobody here
# wrote (kafka-python, confluent-kafka, kcat). Installs them first: a venv under
# $HOME/.cache/freshet/venv for the Python clients, Debian's kcat package.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

ensure_debian_packages kcat
venv="${FRESHET_VENV:-$HOME/.cache/freshet/venv}"
ensure_venv "$venv" tests/compat/requirements.txt

cargo build --locked --bin freshet >&2
export FRESHET_BIN="$CARGO_TARGET_DIR/debug/freshet"
say "running the client compatibility tests against $FRESHET_BIN"
exec "$venv/bin/python" -m pytest tests/compat -q -p no:cacheprovider -W ignore::DeprecationWarning --timeout=300 "$@"
