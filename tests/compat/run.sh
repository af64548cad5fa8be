#!/usr/bin/env bash
# Compatibility tests: a real `freshet server` process driven by clients nobody here
# wrote (kafka-python, confluent-kafka, kcat). Installs them first: a venv under
# $HOME/.cache/freshet/venv for the Python clients, Debian's kcat package.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

ensure_debian_packages kcat
if ! python3 -m venv --help >/dev/null 2>&1; then
    ensure_debian_packages python3 python3-venv
fi
venv="${FRESHET_VENV:-$HOME/.cache/freshet/venv}"
stamp="$venv/.requirements-$(sha256sum tests/compat/requirements.txt | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    say "installing the Python Kafka clients into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "could not create a Python venv at $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/compat/requirements.txt ||
        die "pip could not install tests/compat/requirements.txt"
    touch "$stamp"
fi

cargo build --locked --bin freshet >&2
export FRESHET_BIN="$CARGO_TARGET_DIR/debug/freshet"
say "running the client compatibility tests against $FRESHET_BIN"
exec "$venv/bin/python" -m pytest tests/compat -q -p no:cacheprovider -W ignore::DeprecationWarning --timeout=300 "$@"
