# Sourced (from the repository root) by scripts/bench/device-run.sh and
# scripts/bench/device-tests.sh: the environment in which the bundle that
# scripts/bench/device-bundle.sh made (target/device) runs on a machine with PyTorch 2.11:
# libtorch from that machine's `python3` (or $PYTHON), GStreamer from the bundle. Sets
# BUNDLE, PYTHON, OUT (the `device` tool's folder, or target/device/out), torch_lib and
# torch_version.
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
