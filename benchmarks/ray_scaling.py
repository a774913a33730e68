"""Notebook 1's corpus encoding on Ray against the same encoding in this process.

The same workload three ways, each into a fresh temporary cache: the first ``--passages``
passages of notebook 1's default corpus (TREC DL 2019, 5,000 passages, seed 0) encoded with
the embedded all-MiniLM-L6-v2 on the CPU:

* local: ``encoder.encode_corpus(texts)`` through the cache, in this process (torch's
  default threads: every core);
* Ray, 1 worker: :func:`helpers.distributed.encode_corpus_on_ray` on a Ray started here,
  one actor with every core;
* Ray, 2 workers: two actors, the cores shared between them.

Each Ray time is the whole call: the cache checks, the workers' start (a process each,
importing torch and loading the model) and the encoding; Ray's own start is measured
once, apart. The Ray vectors are checked bitwise equal to the local ones.

    .venv/bin/python benchmarks/ray_scaling.py --passages 2000

Ray lowers its workers' priority (``nice`` 15) by default; on a machine shared with other
work that would slow them against the local run, so Ray is started here with
``RAY_worker_niceness=0`` unless that variable is set.

Progress goes to stderr. The last line printed is one JSON object: ``local_s``,
``ray_1_worker_s``, ``ray_2_workers_s``; ``ray_over_local`` = local_s / ray_1_worker_s
(the speed of Ray with one worker relative to local: > 1 means Ray is faster);
``two_over_one_workers`` = ray_1_worker_s / ray_2_workers_s (> 1 means two workers are
faster); ``ray_start_s`` (Ray's start); ``worker_ready_s`` (first worker ready: process,
torch and model, in the 1-worker run); the per-passage costs in milliseconds (the Ray
ones without the workers' start); ``passages``, ``cpus``, ``chunk_size``; ``load_before``
and ``load_after`` (the machine's 1-minute load average: above ``cpus``, other work
shared the cores and every time is inflated).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from helpers.cache import DEFAULT_CHUNK_SIZE, EmbeddingCache
from helpers.data import load_retrieval_data
from helpers.encoding import available_cores
from helpers.models import cached, load_encoder
from helpers.notebook import project_path, setup


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    args = parser.parse_args()
    setup(progress=False)
    os.environ.setdefault("RAY_worker_niceness", "0")
    import torch

    from helpers.distributed import connect, encode_corpus_on_ray, shutdown
    from helpers.evaluation import corpus_texts

    full = load_retrieval_data(project_path("data/msmarco-dl19/beir"), max_corpus=5000, seed=0)
    corpus = dict(list(full.corpus.items())[: args.passages])
    data = dataclasses.replace(full, corpus=corpus)
    texts = corpus_texts(data)
    model = load_encoder(device="cpu")
    cpus = available_cores()
    result: dict[str, Any] = {"benchmark": "ray_scaling", "passages": len(texts), "cpus": cpus}
    result["chunk_size"] = args.chunk_size
    result["local_threads"] = torch.get_num_threads()
    result["load_before"] = round(os.getloadavg()[0], 2)

    with tempfile.TemporaryDirectory(prefix="ray-scaling-") as tmp:
        local = cached(model, EmbeddingCache(Path(tmp) / "local", args.chunk_size))
        log(f"local: {len(texts)} passages ...")
        start = time.perf_counter()
        expected = local.encode_corpus(texts)
        result["local_s"] = round(time.perf_counter() - start, 2)
        log(f"local: {result['local_s']} s")

        start = time.perf_counter()
        cluster = connect("", num_cpus=cpus)
        result["ray_start_s"] = round(time.perf_counter() - start, 2)
        log(f"Ray started in {result['ray_start_s']} s")
        try:
            for workers, name in ((1, "ray_1_worker"), (2, "ray_2_workers")):
                encoder = cached(model, EmbeddingCache(Path(tmp) / name, args.chunk_size))
                log(f"{name}: ...")
                start = time.perf_counter()
                report = encode_corpus_on_ray(encoder, data, workers=workers)
                result[f"{name}_s"] = round(time.perf_counter() - start, 2)
                result[f"{name}_ready_s"] = round(report.ready_seconds, 2)
                encoding = report.seconds - report.ready_seconds
                result[f"{name}_ms_per_passage"] = round(1000 * encoding / len(texts), 2)
                assert report.chunks_computed == report.chunks and report.workers == workers
                vectors = encoder.encode_corpus(texts)  # read back: every chunk a hit
                assert encoder.cache.computed_chunks == 0
                result[f"{name}_identical"] = bool(np.array_equal(vectors, expected))
                log(f"{name}: {result[f'{name}_s']} s ({report})")
        finally:
            shutdown(cluster)
    result["load_after"] = round(os.getloadavg()[0], 2)
    result["local_ms_per_passage"] = round(1000 * result["local_s"] / len(texts), 2)
    result["worker_ready_s"] = result["ray_1_worker_ready_s"]
    result["ray_over_local"] = round(result["local_s"] / result["ray_1_worker_s"], 3)
    result["two_over_one_workers"] = round(result["ray_1_worker_s"] / result["ray_2_workers_s"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
