#!/usr/bin/env python3
"""Reads the verdicts of the unmask element from Python (PyGObject), without linking it.

Usage: read_meta.py INPUT [unmask-property=value ...]

INPUT is a video file, a URI, or a launch-line fragment producing video. Builds
`uridecodebin ! videoconvert ! unmask ! fakesink` (the unmask plugin is found through
GST_PLUGIN_PATH, e.g. GST_PLUGIN_PATH=target/debug) and prints the UnmaskMeta of every
buffer leaving unmask as a JSON line, from a pad probe.

    GST_PLUGIN_PATH=target/debug examples/read_meta.py clip.mkv device=cpu

Exits with status 77 if PyGObject or GStreamer's introspection data is missing.
"""
import json
import os
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst
except (ImportError, ValueError) as e:
    print(f"skip: PyGObject with Gst 1.0 is not available: {e}", file=sys.stderr)
    sys.exit(77)

# The fields of UnmaskMeta's structure and how to read them.
FIELDS = {
    "predicted": "string",
    "predicted-index": "int",
    "confidence": "double",
    "parts": "string",
    "similarity": "double",
    "threshold": "double",
    "adversarial": "boolean",
    "corrected": "string",
    "corrected-index": "int",
    "corrected-similarity": "double",
    "pts": "uint64",
    "latency-ns": "uint64",
}


def verdict(structure):
    out = {}
    for name, kind in FIELDS.items():
        if kind == "string":
            out[name] = structure.get_string(name)
        else:
            ok, value = getattr(structure, "get_" + kind)(name)
            if not ok:
                raise ValueError(f"field {name} is not a {kind}")
            out[name] = value
    return out


def on_buffer(pad, info):
    meta = info.get_buffer().get_custom_meta("UnmaskMeta")
    if meta is not None:
        print(json.dumps(verdict(meta.get_structure())), flush=True)
    return Gst.PadProbeReturn.OK


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    source = sys.argv[1]
    Gst.init(None)
    if "://" in source:
        source = f"uridecodebin uri={source}"
    elif os.path.isfile(source):
        source = f"uridecodebin uri={Gst.filename_to_uri(os.path.abspath(source))}"
    if Gst.ElementFactory.find("unmask") is None:
        print("error: the unmask element is not found: set GST_PLUGIN_PATH", file=sys.stderr)
        return 2
    pipeline = Gst.parse_launch(f"{source} ! videoconvert ! unmask name=unmask ! fakesink sync=false")
    unmask = pipeline.get_by_name("unmask")
    for prop in sys.argv[2:]:
        name, _, value = prop.partition("=")
        Gst.util_set_object_arg(unmask, name, value)
    unmask.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_buffer)

    pipeline.set_state(Gst.State.PLAYING)
    bus = pipeline.get_bus()
    msg = bus.timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg is not None and msg.type == Gst.MessageType.ERROR:
        err, debug = msg.parse_error()
        print(f"error: {err.message} ({debug})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
