#!/usr/bin/env python3
"""PyTorch reference for `unmask bench`: the UnMask job done the way a PyTorch user would.

A loop over decoded frames: numpy -> torch tensor, colour channels, centre crop, antialiased
resize, normalisation, both TorchScript models under no_grad, parts from the segmentation map,
Jaccard against the knowledge base, realignment. Reads the same modelinfo sidecars and
knowledge base as the Rust element, and the same raw frames the Rust benchmark feeds its
pipeline. Prints one JSON line with the throughput and the verdicts' predicted classes.
"""
import argparse
import configparser
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

PACKED = {  # bytes per pixel, offsets of R, G, B
    "RGB": (3, (0, 1, 2)), "BGR": (3, (2, 1, 0)),
    "RGBA": (4, (0, 1, 2)), "RGBx": (4, (0, 1, 2)), "BGRA": (4, (2, 1, 0)), "BGRx": (4, (2, 1, 0)),
    "xRGB": (4, (1, 2, 3)), "ARGB": (4, (1, 2, 3)), "xBGR": (4, (3, 2, 1)), "ABGR": (4, (3, 2, 1)),
}


def load_model(path):
    info = configparser.ConfigParser(interpolation=None)
    info.read(path + ".modelinfo")
    section = info["unmask"]
    tensors = [s for s in info.sections() if s not in ("modelinfo", "unmask")]
    inp = next(s for s in tensors if info[s]["dir"] == "input")
    dims = [int(d) for d in info[inp]["dims"].split(",")]
    ranges = [tuple(map(float, r.split(","))) for r in info[inp].get("ranges", "0,255").split(";")]
    if len(ranges) == 1:
        ranges = ranges * 3
    mean = [float(x) for x in section.get("mean", "0,0,0").split(",")]
    std = [float(x) for x in section.get("std", "1,1,1").split(",")]
    if len(mean) == 1:
        mean = mean * 3
    if len(std) == 1:
        std = std * 3
    scale = torch.tensor([(hi - lo) / std[c] for c, (lo, hi) in enumerate(ranges)]).view(1, 3, 1, 1)
    offset = torch.tensor([(lo - mean[c]) / std[c] for c, (lo, _) in enumerate(ranges)]).view(1, 3, 1, 1)
    labels_path = path.rsplit("/", 1)[0] + "/" + section["labels"]
    labels = [l.strip() for l in open(labels_path) if l.strip() and not l.startswith("#")]
    module = torch.jit.load(path, map_location="cpu").eval()
    return {
        "module": module, "size": (dims[2], dims[3]), "scale": scale, "offset": offset,
        "labels": labels, "section": section,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--extractor", required=True)
    ap.add_argument("--knowledge", required=True)
    ap.add_argument("--frames", required=True, help="raw frames, back to back")
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--format", default="RGBx")
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()

    m = load_model(args.classifier)
    k = load_model(args.extractor)
    kb = json.load(open(args.knowledge))
    expected = {c["name"]: set(c["parts"]) for c in kb["classes"]}
    classes = m["labels"]
    threshold = args.threshold if args.threshold is not None else float(m["section"].get("threshold", "0.5"))
    min_area = float(k["section"].get("min-area", "0.01"))
    min_conf = float(k["section"].get("min-confidence", "0.5"))

    bpp, rgb = PACKED[args.format]
    raw = np.fromfile(args.frames, dtype=np.uint8)
    frames = raw.reshape(-1, args.height, args.width, bpp)

    def preprocess(frame, model):
        t = torch.from_numpy(frame)[:, :, list(rgb)].permute(2, 0, 1).unsqueeze(0).float() / 255.0
        h, w = t.shape[2], t.shape[3]
        th, tw = model["size"]
        if w / h > tw / th:
            cw, ch = round(h * tw / th), h
        else:
            cw, ch = w, round(w * th / tw)
        x0, y0 = ((w - cw) // 2) & ~1, ((h - ch) // 2) & ~1
        t = t[:, :, y0:y0 + ch, x0:x0 + cw]
        t = F.interpolate(t, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
        return t * model["scale"] + model["offset"]

    def analyse(frame):
        with torch.no_grad():
            logits = m["module"](preprocess(frame, m))
            probs = logits.softmax(-1)[0]
            predicted = int(probs.argmax())
            seg = k["module"](preprocess(frame, k)).softmax(1)[0]
            conf, arg = seg.max(0)
            found = set()
            for c in range(1, seg.shape[0]):
                mask = arg == c
                area = int(mask.sum())
                if area > 0 and area >= min_area * mask.numel() and float(conf[mask].mean()) >= min_conf:
                    found.add(k["labels"][c])
            name = classes[predicted]

            def jac(a, b):
                u = len(a | b)
                return len(a & b) / u if u else 0.0

            sim = jac(expected[name], found)
            corrected = name
            if sim < threshold:
                scores = [jac(expected[c], found) for c in classes]
                best = max(scores)
                corrected = "unknown" if best <= 0 else (name if scores[predicted] == best else classes[scores.index(best)])
            return name, sim, corrected

    for f in frames[: args.warmup]:
        analyse(f)
    start = time.perf_counter()
    verdicts = [analyse(f) for f in frames]
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "frames": len(frames), "seconds": elapsed, "fps": len(frames) / elapsed,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "predicted": [v[0] for v in verdicts],
    }))


if __name__ == "__main__":
    main()
