#!/usr/bin/env bash
# Plays a video file (or any URI) with the verdicts drawn on it.
#   pipelines/file.sh clip.mkv
set -euo pipefail
. "$(dirname "$0")/env.sh"
[ $# -ge 1 ] || { echo "usage: $0 FILE|URI" >&2; exit 2; }
uri=$(uri_of "$1")
# shellcheck disable=SC2086
exec gst-launch-1.0 -e \
  uridecodebin uri="$uri" ! videoconvert ! \
  unmask $UNMASK_PROPS ! unmaskoverlay ! videoconvert ! $SINK
