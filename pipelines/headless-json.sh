#!/usr/bin/env bash
# Headless: one JSON line per analysed frame on stdout, from the element's bus messages
# (post-messages=all; gst-launch-1.0 -m prints them, a few lines of PyGObject turn each
# GstStructure into JSON). Works for files, URIs and, with a source other than uridecodebin, cameras.
#   pipelines/headless-json.sh clip.mkv > verdicts.jsonl
# (`unmask scan --report - FILE` and `unmask watch --report - --source ...` do the same with
# frame numbers, summaries and alerts.)
set -euo pipefail
. "$(dirname "$0")/env.sh"
[ $# -ge 1 ] || { echo "usage: $0 FILE|URI" >&2; exit 2; }
uri=$(uri_of "$1")
# shellcheck disable=SC2086
gst-launch-1.0 -m \
  uridecodebin uri="$uri" ! videoconvert ! \
  unmask post-messages=all $UNMASK_PROPS ! fakesink sync=false |
/usr/bin/python3 -c '
import json, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
for line in sys.stdin:
    _, sep, text = line.partition("(element): ")
    if not sep or not text.startswith("unmask-"):
        continue
    try:
        s = Gst.Structure.from_string(text.strip())[0]
    except TypeError:
        continue
    out = {"event": s.get_name()}
    for i in range(s.n_fields()):
        name = s.nth_field_name(i)
        out[name] = s.get_value(name)
    print(json.dumps(out), flush=True)
'
