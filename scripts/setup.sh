#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian 12 machine (called by both README commands).
#  - Debian packages: GStreamer 1.22 dev files, tools, plugins base/good, libav, X sinks, PyGObject.
#  - A Rust toolchain (>= 1.95, with rustfmt and clippy) through rustup when none is there.
#  - The project's Python venv (.venv) with the pinned PyTorch (libtorch for tch).
#  - .libtorch -> the venv's torch folder, which .cargo/config.toml points LIBTORCH at, so that
#    plain `cargo build|test|run` work in a new shell with nothing exported.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
APT_PACKAGES=(
  pkg-config build-essential
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav
  gstreamer1.0-x curl ca-certificates
  python3-venv python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  libfontconfig-dev fonts-dejavu-core
)

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "not root and no sudo: install ${missing[*]} as root"; exit 1; }
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: Debian 12's own rustc (1.63) cannot build edition 2024; use rustup's.
RUST_MIN=1.95
[ -f "$HOME/.cargo/env" ] && ! command -v cargo >/dev/null && . "$HOME/.cargo/env"
if ! command -v cargo >/dev/null; then
  log "installing Rust (rustup, minimal profile with rustfmt and clippy)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal --component rustfmt,clippy >/dev/null
  . "$HOME/.cargo/env"
fi
rust_version=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$RUST_MIN" "$rust_version" | sort -V | head -n1)" != "$RUST_MIN" ]; then
  log "rustc $rust_version is older than $RUST_MIN: run 'rustup update stable'"; exit 1
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  command -v rustup >/dev/null && rustup component add rustfmt clippy
fi

# Debian's python3 (the one python3-venv belongs to) makes the venv.
PY=/usr/bin/python3
if ! .venv/bin/python -c "import numpy,torch,sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  log "creating .venv with torch==$TORCH_VERSION (large download, about a minute)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "torch==$TORCH_VERSION" numpy
fi

torch_dir=$(.venv/bin/python -c "import torch,os; print(os.path.dirname(torch.__file__))")
if [ "$(readlink .libtorch 2>/dev/null)" != "$torch_dir" ]; then
  ln -sfn "$torch_dir" .libtorch
fi
log "libtorch: $torch_dir (torch $TORCH_VERSION)"
