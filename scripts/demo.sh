#!/usr/bin/env bash
# The README's demo: on a fresh Debian 12 machine, installs what is needed (scripts/setup.sh),
# builds, renders a parts-world clip in which a segment of frames is adversarially attacked
# (`unmask attack`), runs it through a GStreamer pipeline with the unmask element
# (`unmask scan`), and shows the verdicts, which frames were flagged against which were really
# attacked, and where the annotated video and the report are.
#
#   ./scripts/demo.sh     (OUT=out/demo CLIP_SECONDS=10 FPS=10 PRESET=PGD-Linf-8 ATTACK_START=3.5
#                           ATTACK_END=6.5 change the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-out/demo}"
CLIP_SECONDS="${CLIP_SECONDS:-10}"
FPS="${FPS:-10}"
PRESET="${PRESET:-PGD-Linf-8}"
ATTACK_START="${ATTACK_START:-3.5}"
ATTACK_END="${ATTACK_END:-6.5}"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
t0=$(date +%s)

step "set-up (Debian packages, PyTorch for libtorch; skipped when already done)"
./scripts/setup.sh
# A toolchain that setup.sh installed with rustup is not on PATH yet in this shell.
command -v cargo >/dev/null || . "$HOME/.cargo/env"

step "build the unmask tool and the GStreamer plugin"
cargo build -p unmask --bin unmask -p gst-plugin-unmask
UNMASK=target/debug/unmask

models="${UNMASK_MODELS_DIR:-models}/partsworld"
for f in k-parts.pt m-cs5a-denoise.pt knowledge.json; do
  if [ ! -f "$models/$f" ]; then
    echo "missing $models/$f: the shipped parts-world models are needed (see 'unmask train --help')" >&2
    exit 2
  fi
done

mkdir -p "$OUT"
step "render a ${CLIP_SECONDS} s parts-world clip; frames ${ATTACK_START}-${ATTACK_END} s attacked with ${PRESET} (gray-box, on the classifier)"
"$UNMASK" attack --video "$OUT/clip.mkv" --seconds "$CLIP_SECONDS" --fps "$FPS" \
  --width 320 --height 240 --attack-start "$ATTACK_START" --attack-end "$ATTACK_END" \
  --preset "$PRESET" --truth "$OUT/clip.truth.json"

step "scan it through the pipeline  uridecodebin ! videoconvert ! unmask ! unmaskoverlay ! ffv1 ! matroskamux"
status=0
"$UNMASK" scan "$OUT/clip.mkv" --frames --truth "$OUT/clip.truth.json" \
  --report "$OUT/report.jsonl" --summary "$OUT/summary.json" \
  --annotate "$OUT/annotated.mkv" || status=$?

step "done in $(( $(date +%s) - t0 )) s"
cat <<MSG
  clip (lossless, attacked segment):  $OUT/clip.mkv   ground truth: $OUT/clip.truth.json
  annotated video:                    $OUT/annotated.mkv
  per-frame report (JSON lines):      $OUT/report.jsonl   summary: $OUT/summary.json
  watch the annotated video:          gst-launch-1.0 playbin uri=file://$PWD/$OUT/annotated.mkv
  replay the clip as a live camera:   $UNMASK watch --source $OUT/clip.mkv --display
MSG
exit "$status"
