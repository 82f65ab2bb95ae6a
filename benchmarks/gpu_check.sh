#!/usr/bin/env bash
# The figures only a GPU can give, in one run sized for a lent GPU machine (about 15 minutes of device time
# in all, one command at most 10: this script's limits add up to 570 s): student latency and throughput at
# 640x480 (bench_student.py), the ResNet-38 teacher's and Hugging Face teachers' forward alone vs
# `mtdistill label --device cuda` at 640x480 (bench_label.py, bench_label_hf.py: SegFormer-B0 and Depth
# Anything V2 Small built from their configs),
# and a trimmed `mtdistill demo --full --device cuda` (ResNet-38 teachers at 1216x352, fewer frames and
# steps, in /tmp: its report, results and pictures are copied to $OUT). Each step has its own time limit and
# log under $OUT (default gpu_out/); a step that fails or runs out of time does not stop the next, and the
# labeling benchmarks print each round as it ends. The logs carry the device's name; BENCHMARKS.md takes its
# figures from them.
# Usage: bash benchmarks/gpu_check.sh   (PYTHON=... for an interpreter other than .venv/bin/python;
#        OUT=DIR for the logs; DEMO_S=SECONDS for the demo's limit, 200 by default)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"     # the project without an install (benchmarks import it)
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

step() {                                   # step NAME SECONDS COMMAND...: run, log to $OUT/NAME.log, show its end
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "   exit $? after $((SECONDS - t0)) s"
    grep -v '━' "$OUT/$name.log" | tail -n 8
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} >"$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
step student 60 "$PYTHON" benchmarks/bench_student.py --device cuda --iters 50
step label_resnet38 100 "$PYTHON" benchmarks/bench_label.py --device cuda --size 640x480 --frames 256 --width 1.0 \
    --rounds 2 --rss ''
step label_segformer_b0 90 "$PYTHON" benchmarks/bench_label_hf.py --device cuda --size 640x480 --frames 256 --rounds 2 \
    --model segformer-b0
step label_depth_anything_small 120 "$PYTHON" benchmarks/bench_label_hf.py --device cuda --size 640x480 --frames 256 \
    --model depth-anything-small --rounds 1
demo=$(mktemp -d)
step demo_full "${DEMO_S:-200}" "$PYTHON" -c "from pipeline.cli import main; main()" demo --full --device cuda \
    --out "$demo" --frames 600 --source-frames 400 --student-steps 1500 --teacher-steps 2000
for f in report.md results.json qualitative.png curves.png; do cp "$demo/$f" "$OUT/demo_full_$f" 2>/dev/null; done
rm -rf "$demo"
