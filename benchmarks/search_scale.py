"""Flat vs approximate FAISS indexes at 100k-1M vectors: queries/s, recall, memory.

Vectors are synthetic but shaped like sentence embeddings: unit-norm 384-d points with a
low intrinsic dimension (a 32-d Gaussian mapped by a fixed random matrix, plus noise).
IVF indexes probe 32 lists, HNSW searches with efSearch 128. Run:

    .venv/bin/python benchmarks/search_scale.py --sizes 100000 1000000

With ``--device cuda`` each ``Flat`` row is followed by the same index searched on the
GPU (``DocIndex.to_device``: FAISS's GPU index when installed, else exact search with
torch), its recall checked against the CPU's exact top 10:

    python benchmarks/search_scale.py --device cuda --sizes 1000000 8841823 --factories Flat

The last line printed is one JSON object with every measurement.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import faiss
import numpy as np

from helpers.index import build_index


def synthetic(n: int, dim: int, seed: int, latent: int = 32) -> np.ndarray:
    """Unit vectors with a low intrinsic dimension, as sentence embeddings have.

    Points of a ``latent``-dimensional Gaussian, mapped into ``dim`` dimensions by one
    fixed random matrix, plus a little isotropic noise. (Purely isotropic random vectors
    are the worst case for every approximate index and unlike real embeddings.)
    """
    mixing = np.random.default_rng(12345).standard_normal((latent, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        z = rng.standard_normal((size, latent)).astype(np.float32)
        part = z @ mixing + 0.3 * rng.standard_normal((size, dim)).astype(np.float32)
        x[start : start + size] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return x


def _device_name(device: str) -> str:
    if not device.startswith("cuda"):
        return "cpu"
    import torch

    return str(torch.cuda.get_device_name())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--hnsw-max",
        type=int,
        default=300_000,
        help="skip HNSW above this size (its build is slow on 2 cores)",
    )
    parser.add_argument("--factories", nargs="+", default=None, help="default: all")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to add GPU search rows")
    args = parser.parse_args()

    results = []
    for n in args.sizes:
        docs = synthetic(n, args.dim, seed=0)
        queries = synthetic(args.queries, args.dim, seed=1)
        ids = [str(i) for i in range(n)]
        nlist = min(1024, int(4 * np.sqrt(n)))  # k-means cost on 2 cores caps it
        factories = ["Flat", f"IVF{nlist},Flat", f"IVF{nlist},PQ48", "SQ8"]
        if n <= args.hnsw_max:
            factories.insert(1, "HNSW32")
        factories = args.factories or factories
        if args.device.startswith("cuda") and "Flat" in factories:
            factories.insert(factories.index("Flat") + 1, f"Flat@{args.device}")
        exact = None
        for factory in factories:
            start = time.perf_counter()
            index = build_index(docs, ids, factory=factory.split("@")[0])
            if "@" in factory:
                index.to_device(factory.split("@")[1])
                factory = f"Flat ({index.searcher}, {args.device})"
            build_s = time.perf_counter() - start
            if "IVF" in factory:
                faiss.extract_index_ivf(index.index).nprobe = 32
            if factory.startswith("HNSW"):
                index.index.hnsw.efSearch = 128
            index.search(queries[:8], args.k)  # warm-up (GPU kernels, thread pools)
            start = time.perf_counter()
            _, positions = index.search(queries, args.k, batch_size=256)
            search_s = time.perf_counter() - start
            if exact is None:
                exact = positions
            recall = float(
                np.mean(
                    [len(set(a) & set(e)) / args.k for a, e in zip(positions, exact, strict=True)]
                )
            )
            memory = (
                index._vectors.numel() * index._vectors.element_size()
                if index._vectors is not None
                else len(faiss.serialize_index(index.index))
            )
            row = {
                "vectors": n,
                "index": factory,
                "build_s": round(build_s, 2),
                "queries_per_s": round(args.queries / search_s, 1),
                "recall_at_10_of_exact": round(recall, 4),
                "memory_mb": round(memory / 2**20, 1),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
            del index
    flat = {r["vectors"]: r for r in results if r["index"] == "Flat"}
    if not flat:  # no exact CPU row: ratios against the first row of each size
        flat = {r["vectors"]: r for r in reversed(results)}
    for r in results:
        r["speedup_vs_flat"] = round(r["queries_per_s"] / flat[r["vectors"]]["queries_per_s"], 2)
        r["memory_vs_flat"] = round(r["memory_mb"] / flat[r["vectors"]]["memory_mb"], 3)
    print(
        json.dumps(
            {
                "benchmark": "search_scale",
                "machine": f"{platform.machine()}, {faiss.omp_get_max_threads()} threads",
                "device": _device_name(args.device),
                "dim": args.dim,
                "queries": args.queries,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
