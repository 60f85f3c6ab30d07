#!/usr/bin/env python3
"""PyTorch reference for `unmask bench`: the UnMask job done the way a PyTorch user would.

A loop over decoded frames: numpy -> torch tensor (zero copy), centre crop (a view),
antialiased bilinear resize of the uint8 pixels (what torchvision's `resize(antialias=True)`
runs on uint8 tensors), colour channels / YUV -> RGB on the small image, normalisation, both
TorchScript models under `torch.inference_mode()`, parts from the segmentation map, Jaccard
against the knowledge base, realignment.

It follows the Rust element's pre-processing and decision rules exactly (on the CPU; on CUDA
it resizes on the GPU, see `resize_u8`), so that the verdicts can be compared frame by frame:
- crop: the centred region with the model's aspect ratio, sizes rounded half away from zero,
  offsets rounded down to even numbers (chroma stays aligned);
- resize: uint8 antialiased bilinear, per plane for YUV (Y at full, chroma at half
  resolution, both to the model size), then converted to RGB (BT.601/BT.709, limited/full
  range) and clamped to [0, 1];
- one resize when M and K share their input size;
- parts: a segmentation channel counts when its argmax area is >= min-area of the map (and
  > 0) and its mean max-softmax confidence is >= min-confidence (float32 comparisons);
- the threshold of the predicted class when the modelinfo has `class-thresholds` (unless
  --threshold is given), else the global one; similarity and threshold in float32; realignment ties go to the prediction, then to the
  first class in the classifier's label order; no match at all -> "unknown".

Reads the same modelinfo sidecars and knowledge base as the Rust element and the same raw
frames the Rust benchmark feeds its pipeline (planes back to back, tight strides). Prints one
JSON line with the throughput and, for the first pass over the distinct frames, the verdicts.
"""
import argparse
import configparser
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

PACKED = {  # bytes per pixel, offsets of R, G, B
    "RGB": (3, (0, 1, 2)), "BGR": (3, (2, 1, 0)),
    "RGBA": (4, (0, 1, 2)), "RGBx": (4, (0, 1, 2)), "BGRA": (4, (2, 1, 0)), "BGRx": (4, (2, 1, 0)),
    "xRGB": (4, (1, 2, 3)), "ARGB": (4, (1, 2, 3)), "xBGR": (4, (3, 2, 1)), "ABGR": (4, (3, 2, 1)),
}
YUV = ("I420", "NV12")
MATRICES = {  # (r from v, g from u, g from v, b from u)
    "bt601": (1.402, 0.344136, 0.714136, 1.772),
    "bt709": (1.5748, 0.187324, 0.468124, 1.8556),
}


def load_model(path):
    info = configparser.ConfigParser(interpolation=None)
    info.read(path + ".modelinfo")
    section = info["unmask"]
    tensors = [s for s in info.sections() if s not in ("modelinfo", "unmask")]
    inp = next(s for s in tensors if info[s]["dir"] == "input")
    dims = [int(d) for d in info[inp]["dims"].split(",")]
    if info[inp].get("type", "float32") != "float32" or dims[1] != 3:
        raise SystemExit(f"{path}: the reference handles float32 NCHW inputs only")
    ranges = [tuple(map(float, r.split(","))) for r in info[inp].get("ranges", "0,255").split(";")]
    if len(ranges) == 1:
        ranges = ranges * 3
    mean = [float(x) for x in section.get("mean", "0,0,0").split(",")]
    std = [float(x) for x in section.get("std", "1,1,1").split(",")]
    if len(mean) == 1:
        mean = mean * 3
    if len(std) == 1:
        std = std * 3
    # From [0,1] canonical pixels to the model's input, as the Rust element computes it.
    scale = torch.tensor([(hi - lo) / std[c] for c, (lo, hi) in enumerate(ranges)], dtype=torch.float32)
    offset = torch.tensor([(lo - mean[c]) / std[c] for c, (lo, _) in enumerate(ranges)], dtype=torch.float32)
    labels_path = os.path.join(os.path.dirname(path), section["labels"])
    labels = [l.strip() for l in open(labels_path) if l.strip() and not l.strip().startswith("#")]
    module = torch.jit.load(path, map_location=DEVICE).eval()
    return {
        "module": module, "size": (dims[2], dims[3]), "scale": scale.view(1, 3, 1, 1).to(DEVICE),
        "offset": offset.view(1, 3, 1, 1).to(DEVICE), "labels": labels, "section": section,
    }


def round_half_away(x):
    return int(math.floor(x + 0.5))


def crop_region(w, h, size, stretch):
    if stretch:
        return 0, 0, w, h
    th, tw = size
    if w / h > tw / th:
        cw, ch = max(round_half_away(h * tw / th), 1), h
    else:
        cw, ch = w, max(round_half_away(w * th / tw), 1)
    return ((w - cw) // 2) & ~1, ((h - ch) // 2) & ~1, cw, ch


DEVICE = torch.device("cpu")


def resize_u8(plane, x, y, cw, ch, size):
    """uint8 [rows, cols, elems] plane -> float [1, elems, h, w]: uint8 antialiased resize on
    the CPU; on CUDA the uint8 crop is uploaded and resized as float there, as a PyTorch user
    with a GPU would. (The element resizes uint8 on the CPU for every device and uploads the
    small result, so on CUDA a value can differ by rounding: on the benchmark's 16 frames,
    one part of one frame in some rows.)"""
    t = plane[y:y + ch, x:x + cw].permute(2, 0, 1).unsqueeze(0)
    if DEVICE.type != "cpu":
        t = t.to(DEVICE).float()
    if (ch, cw) != tuple(size):
        t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return t.float()


def to_image(frame, fmt, w, h, size, stretch, color):
    """One raw frame (uint8 numpy, planes back to back) -> canonical image [1,3,h,w] in [0,1]."""
    x, y, cw, ch = crop_region(w, h, size, stretch)
    buf = torch.from_numpy(frame)
    if fmt in PACKED:
        bpp, rgb = PACKED[fmt]
        small = resize_u8(buf.view(h, w, bpp), x, y, cw, ch, size)
        return small[:, list(rgb)] / 255.0
    hw, cwid, chgt = w * h, (w + 1) // 2, (h + 1) // 2
    yplane = buf[:hw].view(h, w, 1)
    region = ((x // 2), (y // 2), (cw + 1) // 2, (ch + 1) // 2)
    if fmt == "I420":
        n = cwid * chgt
        u = buf[hw:hw + n].view(chgt, cwid, 1)
        v = buf[hw + n:hw + 2 * n].view(chgt, cwid, 1)
        uv = torch.cat([resize_u8(u, *region, size), resize_u8(v, *region, size)], 1)
    else:
        uv = resize_u8(buf[hw:hw + 2 * cwid * chgt].view(chgt, cwid, 2), *region, size)
    yy = resize_u8(yplane, x, y, cw, ch, size)
    matrix, full = color
    if full:
        yv, c = yy / 255.0, (uv - 128.0) / 255.0
    else:
        yv, c = (yy - 16.0) / 219.0, (uv - 128.0) / 224.0
    cb, cr = c[:, 0:1], c[:, 1:2]
    rv, gu, gv, bu = MATRICES[matrix]
    r = yv + cr * rv
    g = yv - cb * gu - cr * gv
    b = yv + cb * bu
    return torch.cat([r, g, b], 1).clamp(0.0, 1.0)


def frame_bytes(fmt, w, h):
    if fmt in PACKED:
        return w * h * PACKED[fmt][0]
    return w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--extractor", required=True)
    ap.add_argument("--knowledge", required=True)
    ap.add_argument("--frames", required=True, help="raw frames, back to back, tight strides")
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--format", default="RGBx", choices=sorted(PACKED) + list(YUV))
    ap.add_argument("--matrix", default="bt601", choices=sorted(MATRICES))
    ap.add_argument("--full-range", action="store_true")
    ap.add_argument("--scaling", default="crop", choices=["crop", "stretch"])
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--batch", type=int, default=1, help="frames per forward pass")
    ap.add_argument("--count", type=int, default=0, help="frames to analyse (cycling; 0: each once)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--channels-last", action="store_true",
                    help="feed the models channels-last tensors, as the Rust element does on the "
                         "CPU (not what `unmask bench` runs: a comparison for the docs)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = torch.device(args.device)

    m = load_model(args.classifier)
    k = load_model(args.extractor)
    kb = json.load(open(args.knowledge))
    expected = {c["name"]: set(c["parts"]) for c in kb["classes"]}
    classes = m["labels"]
    calibrated = m["section"].get("threshold")
    threshold = np.float32(args.threshold if args.threshold is not None
                           else float(calibrated) if calibrated is not None else 0.5)
    # Per-class thresholds (`class-thresholds`, label order) decide unless --threshold is set.
    per_class = m["section"].get("class-thresholds")
    if args.threshold is None and per_class:
        class_thresholds = [np.float32(float(t)) for t in per_class.split(",")]
        if len(class_thresholds) != len(m["labels"]):
            raise SystemExit("class-thresholds does not have one value per label")
    else:
        class_thresholds = [threshold] * len(m["labels"])
    min_area = float(k["section"].get("min-area", "0.01"))
    min_conf = float(k["section"].get("min-confidence", "0.5"))
    if k["section"].get("output", "segmentation") != "segmentation":
        raise SystemExit("the reference handles segmentation part extractors only")
    stretch = args.scaling == "stretch"
    color = (args.matrix, args.full_range)
    part_names = k["labels"]
    expected_sets = [expected[c] for c in classes]

    raw = np.fromfile(args.frames, dtype=np.uint8)
    size = frame_bytes(args.format, args.width, args.height)
    frames = raw.reshape(-1, size)
    count = args.count or len(frames)

    def jac(a, b):
        u = len(a | b)
        return np.float32(len(a & b)) / np.float32(u) if u else np.float32(0.0)

    def analyse(batch):
        with torch.inference_mode():
            imgs_m = torch.cat([to_image(f, args.format, args.width, args.height, m["size"], stretch, color)
                                for f in batch])
            imgs_k = imgs_m if k["size"] == m["size"] else torch.cat(
                [to_image(f, args.format, args.width, args.height, k["size"], stretch, color) for f in batch])
            layout = torch.channels_last if args.channels_last else torch.contiguous_format
            imgs_m = imgs_m.contiguous(memory_format=layout)
            imgs_k = imgs_k.contiguous(memory_format=layout)
            logits = m["module"](imgs_m * m["scale"] + m["offset"])
            conf_m, pred = logits.softmax(-1).max(-1)
            seg = k["module"](imgs_k * k["scale"] + k["offset"])
            n, c = seg.shape[0], seg.shape[1]
            pixels = seg.shape[2] * seg.shape[3]
            conf, arg = seg.softmax(1).max(1)
            index = (arg + torch.arange(n, device=arg.device).view(n, 1, 1) * c).flatten()
            area = torch.bincount(index, minlength=n * c).view(n, c)
            conf_sum = torch.bincount(index, weights=conf.flatten().double(), minlength=n * c).view(n, c).float()
            mean_conf = conf_sum / area.clamp(min=1)
            found = (area >= min_area * pixels) & (area > 0) & (mean_conf >= min_conf)
            found[:, 0] = False
            found = found.cpu().tolist()
            pred, conf_m = pred.cpu().tolist(), conf_m.cpu().tolist()
        out = []
        for i in range(n):
            parts = {part_names[ch] for ch in range(c) if found[i][ch]}
            p = pred[i]
            sim = jac(expected_sets[p], parts)
            adversarial = bool(sim < class_thresholds[p])
            corrected = classes[p]
            if adversarial:
                scores = [jac(e, parts) for e in expected_sets]
                best = max(scores)
                if best <= 0:
                    corrected = "unknown"
                elif scores[p] != best:
                    corrected = classes[scores.index(best)]
            out.append({"predicted": classes[p], "confidence": conf_m[i], "parts": sorted(parts),
                        "similarity": float(sim), "adversarial": adversarial, "corrected": corrected})
        return out

    def batches(total):
        i = 0
        while i < total:
            n = min(args.batch, total - i)
            yield [frames[(i + j) % len(frames)] for j in range(n)]
            i += n

    verdicts = []
    for b in batches(len(frames)):
        verdicts.extend(analyse(b))
    for b in batches(args.warmup):
        analyse(b)
    start = time.perf_counter()
    for b in batches(count):
        analyse(b)
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "frames": count, "seconds": elapsed, "fps": count / elapsed, "batch": args.batch,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(), "verdicts": verdicts,
    }))


if __name__ == "__main__":
    main()
