#!/usr/bin/env bash
# Watches a V4L2 camera live: async mode, so the camera is never slowed down.
#   pipelines/webcam.sh [/dev/video0]
set -euo pipefail
. "$(dirname "$0")/env.sh"
device="${1:-/dev/video0}"
# shellcheck disable=SC2086
exec gst-launch-1.0 -e \
  v4l2src device="$device" ! decodebin ! videoconvert ! \
  unmask mode=async $UNMASK_PROPS ! unmaskoverlay ! videoconvert ! $SINK
