#!/usr/bin/env bash
# Runs `unmask bench` from the bundle that scripts/bench/device-bundle.sh made (target/device),
# on a machine with PyTorch 2.11 and, for the CUDA rows, an NVIDIA GPU: libtorch is the one of
# that machine's `python3` (or $PYTHON), GStreamer the bundle's. Reports go to $OUT (the
# `device` tool's folder) or target/device/out. Extra arguments go to `unmask bench`; by
# default the CUDA rows only: both input sizes, BGRx and I420, batches 1 and 16, depth 1,
# the PyTorch reference on the GPU, 1/4/8 shared streams and 1/4/8 live streams. That is
# about 6 minutes on an H200 machine, estimated from run 21's parts (4 element rows at
# 640x480 took 106 s, one at 1080p with the streams and live rows about 110 s; each row
# with its reference and its floor takes 20-45 s, far more than `--seconds`).
set -euo pipefail
cd "$(dirname "$0")/../.."

BUNDLE=target/device
# `unmask bench --python` takes a path: resolve a bare command name on the PATH.
PYTHON=$(command -v "${PYTHON:-python3}") || { echo "no python3 with torch found" >&2; exit 2; }
OUT="${OUT:-$BUNDLE/out}"
mkdir -p "$OUT"
[ -x "$BUNDLE/unmask" ] || { echo "no bundle in $BUNDLE: run scripts/bench/device-bundle.sh first" >&2; exit 2; }

torch_lib=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)')
# The bundle's GStreamer libraries always (they match its plugins); its other libraries only
# where this machine has none of that name (its own are newer and what libtorch was built
# against). UNMASK_BUNDLE_ALL_LIBS=1 takes every library from the bundle.
active="$BUNDLE/active-lib"
rm -rf "$active"
mkdir -p "$active"
for f in "$BUNDLE"/lib/*; do
  name=$(basename "$f")
  if [ "${UNMASK_BUNDLE_ALL_LIBS:-0}" = 1 ] || [[ "$name" == libgst* ]] ||
    ! { command -v ldconfig >/dev/null && ldconfig -p | grep -q "^[[:space:]]$name ("; }; then
    ln -s "$PWD/$f" "$active/$name"
  fi
done
echo "from the bundle: $(ls "$active" | tr '\n' ' ')"
export LD_LIBRARY_PATH="$PWD/$active:$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Only the bundle's plugins, a registry of their own, scanned in this process (the bundle
# has no gst-plugin-scanner).
export GST_PLUGIN_SYSTEM_PATH_1_0="$PWD/$BUNDLE/gst-plugins"
export GST_PLUGIN_PATH_1_0=""
export GST_REGISTRY_1_0="$PWD/$BUNDLE/registry.bin"
export GST_REGISTRY_FORK=no
# The library's info lines (which device each model is loaded on, and whether it is frozen).
export GST_DEBUG="${GST_DEBUG:-unmask-log:4}"
export UNMASK_MODELS_DIR="${UNMASK_MODELS_DIR:-$PWD/models}"

{
  echo "torch $torch_version, libtorch from $torch_lib"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nproc
} | tee "$OUT/machine.txt"

if [ $# -eq 0 ]; then
  set -- --devices cuda --formats BGRx,I420 --batches 1,16 --depths 1 --seconds 2 --live-seconds 4
fi
"$BUNDLE/unmask" bench --python "$PYTHON" "$@" \
  --markdown "$OUT/bench.md" --json "$OUT/bench.json" 2> >(tee "$OUT/bench.log" >&2)
