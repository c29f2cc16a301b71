#!/usr/bin/env bash
# The real-data table of one dataset on a CPU machine (DESIGN.md section 4 protocol, smaller input).
#
#   bench/cpu_realdata.sh DATA OUT [EPOCHS] [IMG_SIZE] [SPLIT]
#   bench/cpu_realdata.sh ../shared/data/neu-surface runs/neu-cpu 12 112
#
# One split (seeded, stratified, group-aware; or SPLIT when given) is made once in OUT/split.json
# and used by every model: hnf_llm_small, hnf_small, and the timm baselines (resnet18,
# convnext_atto, vit_tiny_patch16_224, from scratch). The HNF models use the real-data recipe:
# the conv stem and the patch sizes that keep the design's token grids at IMG_SIZE
# (hnf.models.scales_for_image: (8, 16) at 112, i.e. 14x14 and 7x7 tokens). HNF_STEM=patch
# HNF_SCALES=[16,28] trains the design's raw patch embedding instead. 224 is the paper's
# setting (use a GPU: bench/gpu/run.sh), but it enlarges neu-surface's 200 px images, which
# costs every model 11-16 points (BENCHMARKS.md, "neu-surface"). Runs are sequential (the two cores of this machine
# are one job's worth) and each reuses a finished run, so an interrupted table resumes where it
# stopped. Prints the Markdown table of OUT at the end.
set -euo pipefail
data=${1:?data folder}
out=${2:?output folder}
epochs=${3:-12}
img=${4:-112}
split=${5:-}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
mkdir -p "$out"
if [ -z "$split" ]; then
  split=$out/split.json
  [ -f "$split" ] || "$py" -c "
import sys
from pathlib import Path
from hnf.train.data import prepare_run_data
prepare_run_data(Path(sys.argv[1]), None, Path(sys.argv[2]), 0, 0.2, 0.1)" "$data" "$out"
fi
stem=${HNF_STEM:-conv}
scales=${HNF_SCALES:-$("$py" -c "import sys; from hnf.models import scales_for_image as s; print(list(s(int(sys.argv[1]), sys.argv[2])))" "$img" "$stem")}
common=(--data "$data" --split "$split" --epochs "$epochs" --img-size "$img" --seed 0)
for model in hnf_llm_small hnf_small; do
  [ -f "$out/$model/metrics.json" ] || "$py" -m hnf train "${common[@]}" --model "$model" \
    --set "scales=$scales" --set "stem=$stem" --out "$out/$model"
done
"$py" -m hnf baselines "${common[@]}" --out "$out/baselines"
"$py" "$here/bench/gpu/prepare.py" summary "$out"
