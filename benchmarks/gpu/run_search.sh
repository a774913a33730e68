#!/usr/bin/env bash
# On the GPU machine (device tool: command "bash benchmarks/gpu/run_search.sh", carry [".whl"]).
# Exact search at 1M and 8.8M vectors: FAISS Flat on 16 CPU cores against the GPU.
set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 benchmarks/search_scale.py --device cuda --sizes 1000000 8841823 --factories Flat \
  --queries 1000 2>&1 | tee "$OUT/search_gpu.log"
