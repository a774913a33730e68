"""GPU exactness: the helpers' pipeline against sentence-transformers on the same GPU.

4,003 passages (the shipped TREC DL 2019 passages, one over the 256-token limit, an empty
one), in fp32, fp16 and bf16, with tokenising in line and in 15 threads. Prints one JSON object:
the maximum absolute difference and the minimum cosine for each setting.

    python benchmarks/gpu/check_exactness.py [--model .gpu/model]   # on a GPU machine
    .venv/bin/python benchmarks/gpu/check_exactness.py --device cpu --passages 300  # dry run

``--model``: a local sentence-transformers folder (``benchmarks/gpu/prepare.sh`` writes one
with float16 weights in ``.gpu/model``) or the embedded default's name (default).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers

from helpers.data import load_retrieval_data
from helpers.encoding import EncodingPipeline
from helpers.models import DEFAULT_MODEL, resolve_model, set_dtype
from helpers.notebook import project_path, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run, fp32 only")
    parser.add_argument("--passages", type=int, default=4000)
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    setup(progress=False)
    corpus = load_retrieval_data(project_path("data/msmarco-dl19/beir")).corpus
    texts = [*list(corpus.values())[: args.passages], "A much longer passage " * 100, "", "x"]
    out: dict[str, object] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
    }
    path = resolve_model(args.model)[0]
    st = sentence_transformers.SentenceTransformer(path, device=args.device)
    for dtype in ("float32", "float16", "bfloat16") if gpu else ("float32",):
        set_dtype(st, dtype)
        ref = st.encode(texts, batch_size=256, convert_to_numpy=True, normalize_embeddings=True)
        # sentence-transformers normalises in the model's dtype (norms off by up to 4e-3 in
        # bf16); the pipeline in float32: compare directions
        ref = np.asarray(ref, np.float32)
        ref /= np.linalg.norm(ref, axis=1, keepdims=True).clip(min=1e-12)
        for workers in (0, 15) if gpu else (0, 2):
            ours = EncodingPipeline(st, batch_size=256, workers=workers).encode(texts)
            out[f"{dtype}_workers{workers}_max_abs_diff"] = float(np.abs(ours - ref).max())
            out[f"{dtype}_workers{workers}_min_cosine"] = float((ours * ref).sum(1).min())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
