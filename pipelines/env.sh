# Sourced by the pipeline scripts: makes the unmask plugin visible to gst-launch-1.0.
#   GST_PLUGIN_PATH  where libgstunmask.so is (default: target/debug of this checkout)
#   UNMASK_PROPS     extra properties of the unmask element, e.g. "device=cpu threshold=0.4"
#   SINK             video sink for the on-screen pipelines (default: autovideosink)
# The shipped models are found next to the plugin (models/ of this checkout), or set
# UNMASK_MODELS_DIR, or pass classifier=/extractor=/knowledge= in UNMASK_PROPS.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$ROOT/target/debug}"
UNMASK_PROPS="${UNMASK_PROPS:-}"
SINK="${SINK:-autovideosink}"
if ! gst-inspect-1.0 unmask >/dev/null 2>&1; then
  echo "the unmask plugin is not in GST_PLUGIN_PATH=$GST_PLUGIN_PATH:" \
       "build it with 'cargo build -p gst-plugin-unmask'" >&2
  exit 2
fi

# A URI for a file name or URI.
uri_of() {
  case "$1" in
    *://*) printf '%s\n' "$1" ;;
    *) python3 -c 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).resolve().as_uri())' "$1" ;;
  esac
}
