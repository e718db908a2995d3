#!/usr/bin/env bash
# Everything that needs a GPU, in one go (about 5 minutes on one recent GPU):
#   1. the CUDA tests (AMP bf16/fp16, channels_last, resume on the GPU), skipped on machines without one;
#   2. seg_speed at 512x1024, ResNet-101 + RefineNet, batch 2: bf16 autocast, then bf16 + channels_last;
#   3. the paper's memory setting, batch 4 at 384x768, in float32 and in bf16 (peak memory of every step).
# Results land in benchmarks/results/seg_speed_cuda_*.json|png.
#
#   bash benchmarks/gpu_checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q tests/test_cuda.py
for setting in "--size 512 1024 --batch 2" "--size 512 1024 --batch 2 --channels-last" \
               "--size 384 768 --batch 4 --amp off" "--size 384 768 --batch 4"; do
    # shellcheck disable=SC2086
    python benchmarks/seg_speed.py --device cuda --backbone resnet101 $setting
done
