#!/usr/bin/env bash
# GPU check (benchmarks/gpu_check.py): accelerator tests, bf16 train steps with fused attention and
# PyTorch CUDA eager / torch.compile, one JSON on stdout. Capped at 8 minutes (GPU_CHECK_TIMEOUT
# seconds, default 480; the CPU dry mode on a busy machine may need more).
#   bash benchmarks/gpu_check.sh [--cpu] [--methods=vpt_deep,ship] > gpu_check.json
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout "${GPU_CHECK_TIMEOUT:-480}" python -m benchmarks.gpu_check "$@"
