#!/usr/bin/env bash
# Watches an RTSP camera live (async mode; a leaky queue drops frames rather than letting
# latency build up when the display is slow).
#   pipelines/rtsp.sh rtsp://camera.local:554/stream
set -euo pipefail
. "$(dirname "$0")/env.sh"
[ $# -ge 1 ] || { echo "usage: $0 rtsp://HOST[:PORT]/PATH" >&2; exit 2; }
# shellcheck disable=SC2086
exec gst-launch-1.0 -e \
  rtspsrc location="$1" latency=200 ! decodebin ! videoconvert ! \
  unmask mode=async $UNMASK_PROPS ! unmaskoverlay ! \
  queue leaky=downstream max-size-buffers=2 ! videoconvert ! $SINK
