#!/usr/bin/env bash
# Exact search at 1M and 8,841,823 vectors (the size of the full MS MARCO collection):
# FAISS Flat on the CPU cores against DocIndex.to_device("cuda") (FAISS's GPU index when
# the installed FAISS has GPU support, else exact search with torch). On the GPU machine,
# from the repository root:
#
#   bash benchmarks/gpu/run_search.sh [LOG_DIR]       # LOG_DIR: default results/gpu
#
# Needs a Python (PYTHON, default python3) with a CUDA build of torch and faiss; without
# faiss, the wheel prepare.sh downloaded (.gpu/wheels) is installed into .gpu/site.
# The 8.8M vectors take 13.6 GB of memory (float32, 384 dimensions), in RAM and on the GPU.
# Not measured yet; on 2 CPU cores Flat answers 35 queries/s at 1M vectors (README), so
# the CPU side of 1,000 queries at 8.8M vectors takes minutes, not seconds. Writes
# LOG_DIR/search.log, ending with one JSON object.
set -euo pipefail
logs=${1:-results/gpu}
python=${PYTHON:-python3}
mkdir -p "$logs"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$python" -c "import faiss" 2>/dev/null; then
  if ! ls .gpu/wheels/faiss_cpu-*.whl >/dev/null 2>&1; then
    echo "faiss is not installed: pip install faiss-cpu==1.15.1, or run prepare.sh" >&2
    exit 1
  fi
  "$python" -m pip install -q --no-index --no-deps --target .gpu/site .gpu/wheels/faiss_cpu-*.whl
  export PYTHONPATH="$PWD/.gpu/site:$PYTHONPATH"
fi
echo "== search_scale.py -> $logs/search.log"
"$python" benchmarks/search_scale.py --device cuda --sizes 1000000 8841823 --factories Flat \
  --queries 1000 2>&1 | tee "$logs/search.log"
echo "log in $logs"
