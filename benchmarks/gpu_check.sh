#!/usr/bin/env bash
# The GPU check of the throughput issue in one go: the CUDA tests and every benchmark, each command's output
# tee'd to a log and every table written under one folder.
#
#   bash benchmarks/gpu_check.sh                      # into benchmarks/results/gpu/
#   OUT=/some/folder bash benchmarks/gpu_check.sh     # elsewhere
#   SMOKE=1 OUT=/tmp/smoke bash benchmarks/gpu_check.sh   # the same commands on the CPU at tiny sizes (flags check)
#
# Time budget on one H200 (16 cores): about 5 minutes expected, at most about 6 (the caps below add up to 400 s).
# Each step runs under a hard cap (timeout) so that one slow or hung step cannot eat the others' time; a step
# that fails or hits its cap is recorded in summary.txt, the next step still runs, and the script exits 1 at
# the end. train_speed rewrites its table after every architecture, so a capped run still leaves the finished rows.
#   step                                                                                expected    cap
#   1 test_cuda: pytest tests/test_cuda.py (3 short main.py runs, 2 of them subprocesses)    ~60 s    90 s
#   2 train_speed_depth3: 8 archs x batch 4, 16 x fp32, AMP x baseline, AFMA depth 3
#     = 64 timed variants of 2 warm-up + 8 timed steps, 480x640, channels_last, TF32          ~130 s   160 s
#   3 train_speed_unet_depth1: unet, depth 1, batch 4 and 16, fp32 and AMP (8 variants)         ~20 s    30 s
#   4 afma_speed: UNet-ResNet34 depths 1-3 and DeepLabV3 depth 3 vs baseline, time beside FLOPs, batch 4,
#     inference 640x960 and train 480x640, fp32 (and AMP in a second step, 4b)                  ~20 s    30 s
#   5 epoch_speed: main.py's loop, scale 1.0, batch 4, otherwise defaults
#     (96 / 24 / 6 frames of 960x720, 4 epochs, UNet-ResNet34 AFMA depth 2)                     ~40 s    60 s
#                                                                                 total    ~290 s   400 s
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT="${OUT:-benchmarks/results/gpu}"
PYTHON="${PYTHON:-python}"
DEVICE=cuda
SPEED=(--warmup 2 --steps 8)
# SMOKE=1: every command on the CPU with tiny sizes (later flags win), to check that the script and its flags work.
TRAIN_TINY=() AFMA_TINY=() EPOCH_TINY=()
CAP_FACTOR=1
if [[ "${SMOKE:-0}" == 1 ]]; then
    DEVICE=cpu
    CAP_FACTOR=10  # a shared CPU is slow
    SPEED=(--warmup 0 --steps 1)
    TRAIN_TINY=(--size 64 96 --encoder resnet18 --patch-size 4 --archs unet fpn --batch-sizes 1 --no-memory)
    AFMA_TINY=(--scale 0.1 --encoder resnet18 --patch-size 4 --repeats 1 --infer-batch 1 --train-batch 1)
    EPOCH_TINY=(--train 2 --val 2 --test 1 --scale 0.125 --encoder resnet18 --patch-size 4 --epochs 2 --workers 0
                --batch-size 2 --steps 1 --warmup 0)
fi
mkdir -p "$OUT"
: > "$OUT/summary.txt"
failed=()

step() {  # step NAME CAP_SECONDS COMMAND...: run it under its cap, output tee'd to $OUT/NAME.log
    local name=$1 cap=$(($2 * CAP_FACTOR))
    shift 2
    local start=$SECONDS status=0
    echo "== $name: $*" | tee "$OUT/$name.log"
    timeout --kill-after=10 "$cap" "$@" 2>&1 | tee -a "$OUT/$name.log" || status=$?
    echo "$name: exit $status after $((SECONDS - start)) s (cap $cap s)" | tee -a "$OUT/summary.txt"
    if [[ $status -ne 0 ]]; then
        failed+=("$name")
    fi
}

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); host cores: $(nproc)"
    git rev-parse HEAD 2>/dev/null || true
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "nvidia-smi: none"
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn",
                  torch.backends.cudnn.version(), "devices", torch.cuda.device_count())'
} > "$OUT/environment.txt" 2>&1 || true

step test_cuda 90 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py
step train_speed_depth3 160 "$PYTHON" -m benchmarks.train_speed --device "$DEVICE" --compare-amp \
    --batch-sizes 4 16 --depths 3 "${SPEED[@]}" "${TRAIN_TINY[@]}" --out "$OUT/train_speed_depth3.md"
step train_speed_unet_depth1 30 "$PYTHON" -m benchmarks.train_speed --device "$DEVICE" --compare-amp --archs unet \
    --batch-sizes 4 16 --depths 1 "${SPEED[@]}" "${TRAIN_TINY[@]}" --out "$OUT/train_speed_unet_depth1.md"
step afma_speed 30 "$PYTHON" -m benchmarks.afma_speed --device "$DEVICE" --infer-batch 4 --train-batch 4 \
    "${AFMA_TINY[@]}" --out "$OUT/afma_speed.md"
if [[ "$DEVICE" == cuda ]]; then  # --amp is CUDA's float16 autocast
    step afma_speed_amp 30 "$PYTHON" -m benchmarks.afma_speed --device "$DEVICE" --amp --infer-batch 4 \
        --train-batch 4 --out "$OUT/afma_speed_amp.md"
fi
step epoch_speed 60 "$PYTHON" -m benchmarks.epoch_speed --device "$DEVICE" --scale 1.0 --batch-size 4 \
    "${EPOCH_TINY[@]}" --out "$OUT/epoch_speed.md"

echo "total $SECONDS s; tables and logs in $OUT" | tee -a "$OUT/summary.txt"
if (( ${#failed[@]} )); then
    echo "failed or over their cap: ${failed[*]}" | tee -a "$OUT/summary.txt"
    exit 1
fi
