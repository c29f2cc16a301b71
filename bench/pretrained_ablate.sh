#!/usr/bin/env bash
# The ablation grid (`hnf ablate`) on top of the pretrained trunk: hnf_llm_lite0 and each part
# removed in turn, on uhcs-3class's saved split (bench/results/uhcs_cpu_split.json: 480 training
# images, of which the run carves its validation side, and 120 test images), 224 px, the CV
# recipe (5 epochs, batch 32, trunk at 0.1 x the learning rate), eight test-time views.
# Resumable: finished rows are read, not retrained. Usage: bench/pretrained_ablate.sh [OUT] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT=${1:-runs/pretrained-ablate}
EPOCHS=${2:-5}
.venv/bin/hnf ablate --data ../shared/data/uhcs-3class --split bench/results/uhcs_cpu_split.json \
    --model hnf_llm_lite0 --epochs "$EPOCHS" --img-size 224 --tta-views 8 --out "$OUT"
