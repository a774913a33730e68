"""The embedding cache on a notebook-sized encoding: a re-run, and a run killed half way.

Encodes the 5,000 passages of notebook 1's default run (TREC DL 2019 slice) with the
embedded all-MiniLM-L6-v2 three ways, each into a fresh cache folder except the re-run:

* first: empty cache;
* rerun: the same texts and settings again (target: at most 0.1 of the first);
* resume: a run killed after half of the chunks, then run again (only the rest is encoded).

    .venv/bin/python benchmarks/cache_rerun.py

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from helpers.cache import EmbeddingCache
from helpers.data import load_retrieval_data
from helpers.models import load_encoder
from helpers.notebook import project_path, setup


class Killed(Exception):
    """Stands in for a kill in the middle of an encoding."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-corpus", type=int, default=5000)
    parser.add_argument("--chunk-size", type=int, default=512)
    args = parser.parse_args()
    setup(progress=False)
    data = load_retrieval_data(project_path("data/msmarco-dl19/beir"), max_corpus=args.max_corpus)
    texts = list(data.corpus.values())
    encoder = load_encoder()
    settings = encoder.fingerprint("document")

    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp) / "a", chunk_size=args.chunk_size)
        start = time.perf_counter()
        first_vectors = cache.encode(texts, settings, encoder.encode_corpus)
        first = time.perf_counter() - start
        start = time.perf_counter()
        rerun_vectors = cache.encode(texts, settings, encoder.encode_corpus)
        rerun = time.perf_counter() - start
        assert (first_vectors == rerun_vectors).all()

        resume_cache = EmbeddingCache(Path(tmp) / "b", chunk_size=args.chunk_size)
        total_chunks = -(-len(texts) // args.chunk_size)
        done = {"chunks": 0}

        def dying(batch):
            if done["chunks"] >= total_chunks // 2:
                raise Killed
            done["chunks"] += 1
            return encoder.encode_corpus(batch)

        start = time.perf_counter()
        try:
            resume_cache.encode(texts, settings, dying)
        except Killed:
            pass
        killed = time.perf_counter() - start
        start = time.perf_counter()
        resumed_vectors = resume_cache.encode(texts, settings, encoder.encode_corpus)
        resumed = time.perf_counter() - start
        assert abs(resumed_vectors - first_vectors).max() < 1e-5

    print(
        json.dumps(
            {
                "benchmark": "cache_rerun",
                "texts": len(texts),
                "chunk_size": args.chunk_size,
                "first_s": round(first, 2),
                "rerun_s": round(rerun, 3),
                "rerun_over_first": round(rerun / first, 4),
                "killed_after_s": round(killed, 2),
                "resume_s": round(resumed, 2),
                "resume_over_first": round(resumed / first, 3),
                "lost_work_s": round(killed + resumed - first, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
