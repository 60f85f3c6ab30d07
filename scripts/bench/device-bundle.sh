#!/usr/bin/env bash
# Packs what `unmask bench` needs on a GPU machine that has PyTorch 2.11 (libtorch) and an
# NVIDIA driver but neither GStreamer nor a Rust toolchain, such as the workplace's `device`
# machine: the stripped release binary, the GStreamer and GLib libraries it links (not libc,
# libstdc++ or libtorch, which the machine's own must provide), and the two GStreamer plugins
# the bench's pipelines use (coreelements: fakesink; app: appsrc), and the test programs with
# CUDA tests. Everything goes to target/device, next to scripts/bench/device-run.sh and
# scripts/bench/device-tests.sh, which run it there.
#
#   ./scripts/bench/device-bundle.sh
#   # then, on the GPU machine, in the repository root with target/device carried along:
#   ./scripts/bench/device-tests.sh        # the CUDA tests (logs in $OUT)
#   ./scripts/bench/device-run.sh          # writes its reports to $OUT (or target/device/out)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo >/dev/null || . "$HOME/.cargo/env"

BUNDLE=target/device
GST_PLUGINS=(coreelements app)

# The test programs with CUDA tests, run there by scripts/bench/device-tests.sh.
CUDA_TESTS=(detector element_engine)

cargo build --release -p unmask --bin unmask
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/lib" "$BUNDLE/gst-plugins" "$BUNDLE/tests"
strip -o "$BUNDLE/unmask" target/release/unmask
for name in "${CUDA_TESTS[@]}"; do
  exe=$(cargo test --release -p unmask --test "$name" --no-run --message-format=json |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$name")
  strip -o "$BUNDLE/tests/$name" "$exe"
done

plugin_dir=$(pkg-config --variable=pluginsdir gstreamer-1.0)
for p in "${GST_PLUGINS[@]}"; do
  cp "$plugin_dir/libgst$p.so" "$BUNDLE/gst-plugins/"
done

# Shared libraries of the binary and the plugins, less the C and C++ runtimes (the GPU
# machine's newer ones must be used: its PyTorch needs its own libstdc++) and libtorch.
runtime='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libutil|libstdc\+\+|libgcc_s)\.'
for f in "$BUNDLE/unmask" "$BUNDLE"/tests/* "$BUNDLE"/gst-plugins/*.so; do
  ldd "$f" | awk '$3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  if [[ "$name" =~ $runtime ]] || [[ "$path" == *"/torch/lib/"* ]]; then
    continue
  fi
  cp -L "$path" "$BUNDLE/lib/$name"
done

du -sh "$BUNDLE"
echo "bundle ready in $BUNDLE: carry it with the working tree and run scripts/bench/device-run.sh there"
