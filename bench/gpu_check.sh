#!/usr/bin/env bash
# GPU check of the scale-out path: one script, <= 8 minutes, no network, ONE JSON line on stdout
# (progress on stderr). See bench/gpu_check.py for what it measures. Run it in the GPU image
# (images/Dockerfile.gpu) on a GPU node, from the repository root:
#   bash bench/gpu_check.sh > gpu_check.json
# Without a GPU it validates its inputs and prints {"status": "no_gpu", ...} (exit 3).
# PYTHON: the interpreter (default python3, the image's /opt/venv).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --kill-after=10 480 "${PYTHON:-python3}" bench/gpu_check.py "$@"
