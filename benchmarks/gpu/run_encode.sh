#!/usr/bin/env bash
# On the GPU machine (device tool: command "bash benchmarks/gpu/run_encode.sh", carry [".gpu"]).
# About 5 minutes on an H200: exactness against sentence-transformers (fp32, fp16, bf16), the
# feed rate of the tokenising threads on the 16 cores, then encode_throughput on 108,520
# passages with a sweep of workers and batch sizes, and once more in bf16.
set -x
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
nproc
python3 benchmarks/gpu/check_exactness.py 2>&1 | grep -v "Loading weights" | tee "$OUT/check_gpu.log"
python3 benchmarks/pipeline_feed.py --passages 40000 --workers 0 1 2 4 8 15 \
  --model .gpu/model --device cuda 2>&1 | grep -v "Loading weights" | tee "$OUT/feed_gpu_machine.log"
python3 benchmarks/encode_throughput.py --device cuda --passages 108520 --batch-size 256 \
  --model .gpu/model --sweep 2>&1 | grep -v "Loading weights" | tee "$OUT/encode_gpu.log"
python3 benchmarks/encode_throughput.py --device cuda --passages 108520 --batch-size 256 \
  --model .gpu/model --dtype bfloat16 --no-cache 2>&1 | grep -v "Loading weights" \
  | tee "$OUT/encode_gpu_bf16.log"
