"""Flat vs approximate FAISS indexes at 100k-1M vectors: queries/s, recall, memory.

Vectors are synthetic but shaped like sentence embeddings: unit-norm 384-d points with a
low intrinsic dimension (a 32-d Gaussian mapped by a fixed random matrix, plus noise).
IVF indexes probe 32 lists, HNSW searches with efSearch 128. Run:

    .venv/bin/python benchmarks/search_scale.py --sizes 100000 1000000

With ``--target-recall 0.99`` every index is also tuned the way ``index_factory="auto"``
tunes it (:func:`helpers.index.sweep_search_params`: nprobe, efSearch, k_factor_rf, on
the 1,000 queries against exact search), a refine variant is added
(``IVF<n>,PQ48x4fs,RFlat``: a fast-scan product quantizer whose candidates are re-scored
exactly), the setting found is checked on 1,000 held-out queries, and each size reports
the fastest index meeting the target (``fastest_meeting_target``); ``--auto`` also runs
``index_factory="auto"`` itself (:func:`helpers.index.tune_index`, its default candidates)
at each size and checks its choice on the held-out queries. ``--real`` measures real
vectors the same way: every passage and query the project ships (TREC DL 2019 and 2020
pools, SciFact), encoded once by the default model and kept in ``results/bench_vectors/``
(a re-run reads them back); half of the queries tune, the other half check:

    .venv/bin/python benchmarks/search_scale.py --sizes 100000 1000000 --target-recall 0.99 --real

With ``--device cuda`` each ``Flat`` row is followed by the same index searched on the
GPU (``DocIndex.to_device``: FAISS's GPU index when installed, else exact search with
torch), its recall checked against the CPU's exact top 10:

    python benchmarks/search_scale.py --device cuda --sizes 1000000 8841823 --factories Flat

The last line printed is one JSON object with every measurement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from helpers.index import (
    DEFAULT_TARGET_RECALL,
    DocIndex,
    build_index,
    default_candidates,
    recall_of_exact,
    sweep_search_params,
    time_search,
    tune_index,
)
from helpers.notebook import PROJECT_ROOT

#: The retrieval collections the project ships (BEIR folders): their passages and queries
#: are the real vectors of ``--real``.
REAL_COLLECTIONS = ("data/msmarco-dl19/beir", "data/msmarco-dl20/beir", "data/mteb/SciFact")


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


def shipped_texts() -> tuple[list[str], list[str], dict[str, dict[str, int]]]:
    """Every distinct passage and query text of :data:`REAL_COLLECTIONS`, in file order
    (passages in two TREC DL pools are kept once).

    Returns:
        ``(passages, queries, counts per collection)``.
    """
    from helpers.data.layouts import load_beir_folder

    passages: dict[str, None] = {}
    queries: dict[str, None] = {}
    counts: dict[str, dict[str, int]] = {}
    for folder in REAL_COLLECTIONS:
        found, corpus, _ = load_beir_folder(PROJECT_ROOT / folder, "test")
        passages.update(dict.fromkeys(corpus.values()))
        queries.update(dict.fromkeys(found.values()))
        counts[folder] = {"passages": len(corpus), "queries": len(found)}
    return list(passages), list(queries), counts


def _texts_sha256(passages: list[str], queries: list[str]) -> str:
    digest = hashlib.sha256()
    for kind, texts in (("passage", passages), ("query", queries)):
        for text in texts:
            digest.update(json.dumps([kind, text], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)


def real_vectors(
    folder: Path, cache_dir: str = "results/cache", device: str = "auto"
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The shipped passages and queries encoded by the default model, kept in ``folder``.

    ``folder`` holds ``passages.npy``, ``queries.npy`` and ``provenance.json`` (model,
    revision, fingerprint, collections and counts, a SHA-256 of the texts, encoding time
    and device). A re-run whose texts match reads them back (delete ``folder`` after
    changing the default model); otherwise they are encoded with
    ``helpers.models.load_encoder`` through the embedding cache ``cache_dir``.

    Returns:
        ``(passage vectors, query vectors, provenance)``.
    """
    from helpers.io import atomic_write, write_json
    from helpers.models import load_encoder

    passages, queries, counts = shipped_texts()
    sha = _texts_sha256(passages, queries)
    meta_path = folder / "provenance.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("texts_sha256") == sha:
            docs, qvecs = np.load(folder / "passages.npy"), np.load(folder / "queries.npy")
            if docs.shape == (len(passages), meta["dim"]) and len(qvecs) == len(queries):
                return docs, qvecs, meta
    encoder = load_encoder(cache_dir=str(PROJECT_ROOT / cache_dir), device=device)
    start = time.perf_counter()
    docs = encoder.encode_corpus(passages)
    qvecs = encoder.encode_queries(queries)
    seconds = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in (("passages.npy", docs), ("queries.npy", qvecs)):
        atomic_write(folder / name, lambda tmp, a=array: _save_npy(tmp, a))
    meta = {
        "what": "every distinct passage and query text of the shipped retrieval collections",
        "collections": counts,
        "passages": len(passages),
        "queries": len(queries),
        "dim": int(docs.shape[1]),
        "model": encoder.name,
        "revision": encoder.revision,
        "model_fingerprint": encoder.model_fingerprint(),
        "device": encoder.device,
        "texts_sha256": sha,
        "encode_s": round(seconds, 1),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(meta_path, meta)
    return docs, qvecs, meta


def _device_name(device: str) -> str:
    if not device.startswith("cuda"):
        return "cpu"
    import torch

    return str(torch.cuda.get_device_name())


def _memory_mb(index: DocIndex) -> float:
    if index._vectors is not None:
        size = index._vectors.numel() * index._vectors.element_size()
    else:
        size = len(faiss.serialize_index(index.index))
    return round(size / 2**20, 1)


def _tuned_row(
    label: str,
    index: DocIndex,
    build_s: float,
    queries: np.ndarray,
    held_out: np.ndarray,
    exact: tuple[np.ndarray, np.ndarray],
    flat_qps: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Tune ``index`` to ``args.target_recall`` on ``queries`` and check it on ``held_out``."""
    if index.factory == "Flat":
        trials = []
        best_params, qps, recall, meets = "", flat_qps, 1.0, True
    else:
        trials = sweep_search_params(
            index, queries, exact[0], args.k, args.target_recall, flat_qps, build_s
        )
        meeting = [t for t in trials if t.meets_target]
        if meeting:  # the fastest meeting the target; else the best recall seen
            top = max(meeting, key=lambda t: t.queries_per_s)
        else:
            top = max(trials, key=lambda t: (t.recall, t.queries_per_s))
        best_params, qps, recall, meets = (
            top.search_params, top.queries_per_s, top.recall, top.meets_target,
        )  # fmt: skip
        if best_params:
            index.set_search_params(best_params)
    _, positions = index.search(held_out, args.k)
    row = {
        "vectors": label,
        "index": index.factory,
        "search_params": best_params,
        "meets_target": meets,
        "speedup_vs_flat": round(qps / flat_qps, 2),
        "recall_at_10": round(recall, 4),
        "recall_at_10_held_out": round(recall_of_exact(positions, exact[1], args.k), 4),
        "queries_per_s": round(qps, 1),
        "build_s": round(build_s, 2),
        "memory_mb": _memory_mb(index),
        "settings_tried": max(len(trials), 1),
    }
    if not meets:
        row["note"] = "no setting faster than Flat reached the target: the best recall seen"
    print(json.dumps({"tuned": row}), flush=True)
    return row


def measure(
    label: Any,
    docs: np.ndarray,
    queries: np.ndarray,
    held_out: np.ndarray,
    factories: list[str],
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Build each index once; its row at the fixed settings and, with a target, tuned.

    Returns:
        ``(rows at fixed settings, tuned rows)``.
    """
    ids = [str(i) for i in range(len(docs))]
    rows: list[dict[str, Any]] = []
    tuned: list[dict[str, Any]] = []
    exact = None
    flat_qps = 0.0
    for factory in factories:
        start = time.perf_counter()
        index = build_index(docs, ids, factory=factory.split("@")[0])
        if "@" in factory:
            index.to_device(factory.split("@")[1])
            factory = f"Flat ({index.searcher}, {args.device})"
        build_s = time.perf_counter() - start
        if "IVF" in factory:
            index.set_search_params("nprobe=32")
        if factory.startswith("HNSW"):
            index.set_search_params("efSearch=128")
        index.search(queries[:8], args.k)  # warm-up (GPU kernels, thread pools)
        start = time.perf_counter()
        _, positions = index.search(queries, args.k, batch_size=256)
        search_s = time.perf_counter() - start
        if exact is None:
            exact = positions
        row = {
            "vectors": label,
            "index": factory,
            "build_s": round(build_s, 2),
            "queries_per_s": round(len(queries) / search_s, 1),
            "recall_at_10_of_exact": round(recall_of_exact(positions, exact, args.k), 4),
            "memory_mb": _memory_mb(index),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.target_recall is not None and "(" not in factory:
            if factory == "Flat":
                exact_sample, flat_qps = time_search(index, queries, args.k)
                exact_held_out = index.search(held_out, args.k)[1]
            assert flat_qps > 0, "Flat comes first"
            tuned.append(
                _tuned_row(
                    label,
                    index,
                    build_s,
                    queries,
                    held_out,
                    (exact_sample, exact_held_out),
                    flat_qps,
                    args,
                )  # fmt: skip
            )
        del index
    flat = next((r for r in rows if r["index"] == "Flat"), rows[0])
    for r in rows:
        r["speedup_vs_flat"] = round(r["queries_per_s"] / flat["queries_per_s"], 2)
        r["memory_vs_flat"] = round(r["memory_mb"] / flat["memory_mb"], 3)
    return rows, tuned


def run_auto(
    docs: np.ndarray, queries: np.ndarray, held_out: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    """``index_factory="auto"`` end to end (:func:`helpers.index.tune_index` with its
    default candidates, tuned on ``queries``), its choice checked on ``held_out``."""
    ids = [str(i) for i in range(len(docs))]
    start = time.perf_counter()
    tuned = tune_index(
        docs, ids, queries, target_recall=args.target_recall or DEFAULT_TARGET_RECALL, k=args.k,
        sample_queries=len(queries), log=lambda line: print(f"auto: {line}", flush=True),
    )  # fmt: skip
    tune_s = time.perf_counter() - start
    exact = build_index(docs, ids, "Flat").search(held_out, args.k)[1]
    found = tuned.index.search(held_out, args.k)[1]
    record = {
        "summary": tuned.report.summary(),
        "recall_at_10_held_out": round(recall_of_exact(found, exact, args.k), 4),
        "tune_s": round(tune_s, 1),
        "report": tuned.report.as_dict(),
    }
    print(json.dumps({"auto": {k: v for k, v in record.items() if k != "report"}}), flush=True)
    return record


def _fastest(tuned: list[dict[str, Any]]) -> dict[str, Any] | None:
    meeting = [r for r in tuned if r["meets_target"]]
    return max(meeting, key=lambda r: r["queries_per_s"]) if meeting else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--hnsw-max",
        type=int,
        default=1_000_000,
        help="skip HNSW above this size (its build takes minutes per million vectors)",
    )
    parser.add_argument("--factories", nargs="+", default=None, help="default: all")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to add GPU search rows")
    parser.add_argument(
        "--target-recall",
        type=float,
        default=None,
        help="also tune every index to this recall of the exact top 10 (e.g. 0.99)",
    )
    parser.add_argument("--real", action="store_true", help="also the shipped real vectors")
    parser.add_argument("--vectors-dir", default="results/bench_vectors")
    parser.add_argument("--threads", type=int, default=0, help="FAISS threads; 0: its default")
    parser.add_argument(
        "--auto",
        action="store_true",
        help="also run index_factory 'auto' (tune_index, default candidates) at each size",
    )
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    results: list[dict[str, Any]] = []
    tuned: list[dict[str, Any]] = []
    fastest: dict[str, Any] = {}
    auto_runs: dict[str, Any] = {}
    for n in args.sizes:
        docs = synthetic(n, args.dim, seed=0)
        queries = synthetic(args.queries, args.dim, seed=1)
        held_out = synthetic(args.queries, args.dim, seed=2)
        nlist = min(1024, int(4 * np.sqrt(n)))  # k-means cost on 2 cores caps it
        factories = ["Flat", f"IVF{nlist},Flat", f"IVF{nlist},PQ48", "SQ8"]
        if n <= args.hnsw_max:
            factories.insert(1, "HNSW32")
        if args.target_recall is not None:
            factories.append(f"IVF{nlist},PQ{args.dim // 8}x4fs,RFlat")
        factories = list(args.factories or factories)
        if args.device.startswith("cuda") and "Flat" in factories:
            factories.insert(factories.index("Flat") + 1, f"Flat@{args.device}")
        rows, tuned_rows = measure(n, docs, queries, held_out, factories, args)
        results += rows
        tuned += tuned_rows
        if tuned_rows:
            fastest[str(n)] = _fastest(tuned_rows)
        if args.auto:
            auto_runs[str(n)] = run_auto(docs, queries, held_out, args)
    real: dict[str, Any] = {}
    if args.real:
        docs, all_queries, provenance = real_vectors(PROJECT_ROOT / args.vectors_dir)
        queries, held_out = all_queries[0::2], all_queries[1::2]
        auto = run_auto(docs, queries, held_out, args) if args.auto else None
        factories = ["Flat", *default_candidates(len(docs), docs.shape[1]), "SQ8"]
        rows, tuned_rows = measure("shipped", docs, queries, held_out, factories, args)
        real = {
            "vectors": provenance,
            "tuning_queries": len(queries),
            "held_out_queries": len(held_out),
            "auto": auto,
            "results": rows,
            "tuned": tuned_rows,
            "fastest_meeting_target": _fastest(tuned_rows) if tuned_rows else None,
        }
    record: dict[str, Any] = {
        "benchmark": "search_scale",
        "machine": f"{platform.machine()}, {faiss.omp_get_max_threads()} threads",
        "device": _device_name(args.device),
        "dim": args.dim,
        "queries": args.queries,
        "results": results,
    }
    if args.target_recall is not None:
        record |= {
            "target_recall": args.target_recall,
            "held_out_queries": args.queries if args.sizes else 0,
            "tuned": tuned,
            "fastest_meeting_target": fastest,
        }
    if auto_runs:
        record["auto"] = auto_runs
    if real:
        record["real"] = real
    print(json.dumps(record))


if __name__ == "__main__":
    main()
