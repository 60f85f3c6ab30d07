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

# BUNDLE, PYTHON, OUT, torch_version and the environment the bundle runs in.
. scripts/bench/device-env.sh

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
