#!/usr/bin/env bash
# The project's test command: set-up (idempotent), formatting, lints, build, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# A toolchain that setup.sh installed with rustup is not on PATH yet in this shell.
command -v cargo >/dev/null || . "$HOME/.cargo/env"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo build (CLI and libgstunmask.so)"
cargo build --workspace --all-targets
step "cargo test"
cargo test --workspace
