#!/usr/bin/env bash
# On the GPU machine (device tool: command "bash benchmarks/gpu/run_encode.sh", carry [".gpu"]).
# About 3 minutes on an H200: exactness against sentence-transformers (fp32 and fp16), then
# encode_throughput on 108,520 passages with a sweep of workers and batch sizes.
set -x
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
nproc
python3 benchmarks/gpu/check_exactness.py 2>&1 | grep -v "Loading weights" | tee "$OUT/check_gpu.log"
python3 benchmarks/encode_throughput.py --device cuda --passages 108520 --batch-size 256 \
  --model .gpu/model --sweep 2>&1 | grep -v "Loading weights" | tee "$OUT/encode_gpu.log"
