#!/usr/bin/env bash
# On a machine with a CUDA GPU: the CUDA-marked tests, then bench/trainer.py with a 0.5B model,
# ours against TRL (generating with vLLM where the `gpu` extra is installed), printing the
# step-time ratio.
#
#   pip install -e ".[worker,test,bench]"   # and ".[gpu]" for TRL with vLLM
#   scripts/gpu_check.sh [MODEL]            # a model directory or Hugging Face hub id
#
# MODEL defaults to Qwen/Qwen2.5-0.5B-Instruct: a hub id is downloaded into the Hugging Face
# cache first (the hub must be reachable, or the model already cached).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
MODEL="${1:-Qwen/Qwen2.5-0.5B-Instruct}"

"$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU: nothing to check")'
"$PYTHON" -c 'import torch; print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'

echo "== CUDA-marked tests"
"$PYTHON" -m pytest -q -m cuda tests/trainer

if [ -d "$MODEL" ]; then
    MODEL_DIR="$MODEL"
else
    echo "== fetching $MODEL into the Hugging Face cache"
    MODEL_DIR="$(HF_HUB_OFFLINE=0 "$PYTHON" -c \
        'import sys; from huggingface_hub import snapshot_download; print(snapshot_download(sys.argv[1]))' \
        "$MODEL")"
fi

VLLM=()
if "$PYTHON" -c 'import vllm' 2>/dev/null; then
    VLLM=(--trl-vllm)
    echo "== bench: TRL generates with vLLM (colocated)"
else
    echo "== bench: vLLM is not installed: TRL generates with transformers"
fi
# ours and TRL tuned (TRL shipped differs only by gradient checkpointing on a GPU)
"$PYTHON" bench/trainer.py --model "$MODEL_DIR" --sides ours,tuned --rounds 1 --steps 3 "${VLLM[@]}"
