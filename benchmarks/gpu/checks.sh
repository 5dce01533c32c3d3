#!/usr/bin/env bash
# Issue 32's GPU checks, step 2, on the device machine (the device tool's `run`), after
# benchmarks/gpu/pack.sh made .gpu/ here:
#   bash benchmarks/gpu/checks.sh stage          # each call but the last: keep the carried part in /tmp/gpu
#   bash benchmarks/gpu/checks.sh run main,throughput   # the last part: stage, unpack, install, run
#   bash benchmarks/gpu/checks.sh run local              # the next call, nothing carried
# CHECKS (comma-separated): main (the README's main job with trainer=gpu, logger=none), throughput
# (benchmarks.train_throughput --trainer gpu: ours against the HF Trainer on the same GPU), local
# (teacher=local's CoT job on the 200 phase-1 sentences with teacher.local.device=cuda). A call runs
# at most 600 s: main and throughput (200 s each at most) fit one, local (420 s at most) another.
# Calls follow each other within the machine's 30 s warm time, or /tmp/gpu is lost with the machine.
# Results go to $OUT (at most 8 files come back): env.txt, log.txt, main_metrics.json,
# train_throughput_gpu.json, local_cot_report.json, local_cot_report.md. DRY=1 (anywhere): unpack and
# check the bundle, install nothing, run nothing.
set -uo pipefail
cd "$(dirname "$0")/../.."
STORE=/tmp/gpu
OUT=${OUT:-$STORE/out}
mkdir -p "$STORE/parts" "$OUT"
cp .gpu/part.* "$STORE/parts/" 2>/dev/null
cp .gpu/MANIFEST "$STORE/" 2>/dev/null
echo "parts kept: $(ls "$STORE/parts" | tr '\n' ' ')"
[ "${1:-stage}" = stage ] && exit 0

want=$(awk '$1 == "parts" {print $2}' "$STORE/MANIFEST")
have=$(ls "$STORE"/parts/part.* | wc -l)
[ "$have" = "$want" ] || { echo "have $have of $want parts: stage the others first"; exit 2; }
if [ ! -d "$STORE/bundle" ]; then
  cat "$STORE"/parts/part.* >"$STORE/bundle.tar"
  sum=$(sha256sum "$STORE/bundle.tar" | cut -d' ' -f1)
  [ "$sum" = "$(awk '$1 == "sha256" {print $2}' "$STORE/MANIFEST")" ] || { echo "bundle sha256 differs"; exit 2; }
  mkdir -p "$STORE/bundle" && tar -xf "$STORE/bundle.tar" -C "$STORE/bundle" && rm "$STORE/bundle.tar"
fi
echo "bundle: $(ls "$STORE/bundle/wheels" | wc -l) wheels, $(ls "$STORE/bundle/site" | tr '\n' ' ')"
[ -n "${DRY:-}" ] && exit 0

SITE=$STORE/site
if [ ! -d "$SITE" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
    "$STORE"/bundle/wheels/*.whl || exit 3
  cp -r "$STORE"/bundle/site/* "$SITE/"
fi
export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1
export NERDISTILL_DATA_DIR=$STORE/bundle/data NERDISTILL_CACHE_DIR=$STORE/cache
LOG=$OUT/log.txt
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, \
'gpu', torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())"
  nproc
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

timed() {  # name, seconds limit, command...: its wall seconds in the log
  local name=$1 limit=$2 start
  shift 2
  start=$(date +%s%N)
  timeout "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "$name: rc=$rc wall_ms=$((($(date +%s%N) - start) / 1000000))" | tee -a "$LOG"
}
CHECKS=${2:?name the checks: main,throughput or local}
if [[ $CHECKS == *main* ]]; then
  timed main 200 python3 -m nerdistill.train trainer=gpu logger=none seed=1 hydra.run.dir=$STORE/main
  cp $STORE/main/metrics.json "$OUT/main_metrics.json"
fi
if [[ $CHECKS == *throughput* ]]; then
  timed throughput 200 python3 -m benchmarks.train_throughput --trainer gpu --sentences 4000 --repeats 1 \
    --variants nerdistill,hf_default,hf_group_by_length_bf16 --name train_throughput_gpu
  cp benchmarks/results/train_throughput_gpu.json "$OUT/"
fi
if [[ $CHECKS == *local* ]]; then
  timed local 420 python3 -m nerdistill.annotate teacher=local prompt=cot input.n=200 teacher.local.device=cuda \
    teacher.local.batch_size=32 progress=false hydra.run.dir=$STORE/local_cot
  cp $STORE/local_cot/report.json "$OUT/local_cot_report.json"
  cp $STORE/local_cot/report.md "$OUT/local_cot_report.md"
fi
