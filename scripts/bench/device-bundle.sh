#!/usr/bin/env bash
# Packs what `unmask bench` needs on a GPU machine that has PyTorch 2.11 (libtorch) and an
# NVIDIA driver but neither GStreamer nor a Rust toolchain, such as the workplace's `device`
# machine: the stripped release binary, the GStreamer and GLib libraries it links (not libc,
# libstdc++ or libtorch, which the machine's own must provide), and the two GStreamer plugins
# the bench's pipelines use (coreelements: fakesink; app: appsrc). Everything goes to
# target/device (about 20 MB), next to scripts/bench/device-run.sh, which runs it there.
#
#   ./scripts/bench/device-bundle.sh
#   # then, on the GPU machine, in the repository root with target/device carried along:
#   ./scripts/bench/device-run.sh          # writes its reports to $OUT (or target/device/out)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo >/dev/null || . "$HOME/.cargo/env"

BUNDLE=target/device
GST_PLUGINS=(coreelements app)

cargo build --release -p unmask --bin unmask
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/lib" "$BUNDLE/gst-plugins"
strip -o "$BUNDLE/unmask" target/release/unmask

plugin_dir=$(pkg-config --variable=pluginsdir gstreamer-1.0)
for p in "${GST_PLUGINS[@]}"; do
  cp "$plugin_dir/libgst$p.so" "$BUNDLE/gst-plugins/"
done

# Shared libraries of the binary and the plugins, less the C and C++ runtimes (the GPU
# machine's newer ones must be used: its PyTorch needs its own libstdc++) and libtorch.
runtime='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libutil|libstdc\+\+|libgcc_s)\.'
for f in "$BUNDLE/unmask" "$BUNDLE"/gst-plugins/*.so; do
  ldd "$f" | awk '$3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  if [[ "$name" =~ $runtime ]] || [[ "$path" == *"/torch/lib/"* ]]; then
    continue
  fi
  cp -L "$path" "$BUNDLE/lib/$name"
done

du -sh "$BUNDLE"
echo "bundle ready in $BUNDLE: carry it with the working tree and run scripts/bench/device-run.sh there"
