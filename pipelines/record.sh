#!/usr/bin/env bash
# Records an annotated copy of a video (or of any URI, camera streams included) as lossless
# Matroska/FFV1. Ctrl-C finishes the file properly (-e sends EOS).
#   pipelines/record.sh in.mkv annotated.mkv
set -euo pipefail
. "$(dirname "$0")/env.sh"
[ $# -ge 2 ] || { echo "usage: $0 FILE|URI OUT.mkv" >&2; exit 2; }
uri=$(uri_of "$1")
# shellcheck disable=SC2086
exec gst-launch-1.0 -e \
  uridecodebin uri="$uri" ! videoconvert ! \
  unmask $UNMASK_PROPS ! unmaskoverlay ! videoconvert ! video/x-raw,format=BGRx ! \
  avenc_ffv1 ! matroskamux ! filesink location="$2"
