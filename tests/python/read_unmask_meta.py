#!/usr/bin/env python3
"""Reads UnmaskMeta from Python (PyGObject) without linking the unmask project.

Usage: read_unmask_meta.py FRAMES.rgb WIDTH HEIGHT COUNT UNMASK-PROPERTIES...

Pushes COUNT raw RGB frames from FRAMES.rgb through `appsrc ! unmask ! appsink` (the unmask
plugin is found through GST_PLUGIN_PATH) and prints one JSON object per output buffer with
the fields of its UnmaskMeta structure (or null when the buffer has none).
Exits with status 77 if PyGObject or GStreamer's introspection data is missing.
"""
import json
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst
except (ImportError, ValueError) as e:
    print(f"skip: PyGObject with Gst 1.0 is not available: {e}", file=sys.stderr)
    sys.exit(77)

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


def read_structure(s):
    out = {}
    for name, kind in FIELDS.items():
        if kind == "string":
            value = s.get_string(name)
        else:
            ok, value = getattr(s, "get_" + kind)(name)
            if not ok:
                raise ValueError(f"field {name} is not a {kind}")
        out[name] = value
    return out


def main():
    path, width, height, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    props = " ".join(sys.argv[5:])
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"appsrc name=src format=time caps=video/x-raw,format=RGB,width={width},height={height},framerate=25/1 "
        f"! unmask {props} ! appsink name=sink sync=false"
    )
    src = pipeline.get_by_name("src")
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    data = open(path, "rb").read()
    size = width * height * 3
    for i in range(count):
        buf = Gst.Buffer.new_wrapped(data[i * size:(i + 1) * size])
        buf.pts = i * Gst.SECOND // 25
        buf.duration = Gst.SECOND // 25
        src.emit("push-buffer", buf)
    src.emit("end-of-stream")
    while True:
        sample = sink.emit("try-pull-sample", 10 * Gst.SECOND)
        if sample is None:
            break
        meta = sample.get_buffer().get_custom_meta("UnmaskMeta")
        print(json.dumps(None if meta is None else read_structure(meta.get_structure())))
    bus = pipeline.get_bus()
    err = bus.pop_filtered(Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if err is not None:
        print(f"error: {err.parse_error()}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
