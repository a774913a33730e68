"""Building indexes: from vectors in memory, from chunks or a stream of ``(ids, vectors)``
chunks (never every vector in RAM at once); what a corpus will cost; how much of the exact
top k an approximate index finds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from helpers.index.checks import (
    FAISS_METRICS,
    SearchIndexError,
    check_metric,
    check_search_params,
    check_training_size,
    is_count,
    parse_search_params,
)
from helpers.index.doc_index import DocIndex
from helpers.metrics import Run, rank_documents


def build_index(
    embeddings: np.ndarray,
    doc_ids: Sequence[str],
    factory: str = "Flat",
    metric: str = "ip",
    search_params: str = "",
) -> DocIndex:
    """Build a FAISS index with ``faiss.index_factory`` and add the vectors.

    Indexes that need training (IVF, PQ, ...) are trained on the same vectors.

    Args:
        embeddings: float32 array (n, dim), one row per document.
        doc_ids: the id of each row.
        factory: an ``index_factory`` string: ``"Flat"`` (exact), ``"HNSW32"``, ``"IVF256,Flat"``...
        metric: ``"ip"`` for inner product (cosine on normalised vectors) or ``"l2"``.
        search_params: FAISS search parameters, e.g. ``"nprobe=32"`` (IVF: default 1) or
            ``"efSearch=128"`` (HNSW: default 16); see :meth:`DocIndex.set_search_params`.
            Checked before training; :func:`check_search_params` checks them before encoding.

    Raises:
        SearchIndexError: on an unknown metric, no vectors, mismatched ids, a factory string
            FAISS rejects, search parameters the index does not take, or fewer vectors than
            the index trains centroids for (see :func:`check_factory`).
    """
    import faiss

    check_metric(metric)
    params = ",".join(parse_search_params(search_params))
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    if vectors.size == 0 and len(doc_ids) == 0:
        raise SearchIndexError(
            "embeddings: no vectors to index (0 documents); an index needs at least one"
        )
    if vectors.ndim != 2 or len(vectors) != len(doc_ids):
        raise SearchIndexError(
            f"embeddings: expected one row per document id ({len(doc_ids)}), got {vectors.shape}"
        )
    if len(set(doc_ids)) != len(doc_ids):
        raise SearchIndexError("doc_ids: ids must be unique")
    try:
        index = faiss.index_factory(
            vectors.shape[1], factory, getattr(faiss, FAISS_METRICS[metric])
        )
    except RuntimeError as err:
        raise SearchIndexError(f"index_factory: FAISS rejected {factory!r} ({err})") from err
    check_search_params(factory, params, vectors.shape[1])
    if not index.is_trained:
        check_training_size(factory, len(vectors), warn=False)
        index.train(vectors)
    index.add(vectors)
    return DocIndex(index, list(doc_ids), factory, metric, search_params=params)


def top_k_overlap(run: Run, exact_run: Run, k: int) -> float:
    """Mean share of each query's exact top k that an approximate run also returns in its top k.

    This is the "recall of the exact top k" of an approximate index (1.0 for exact search).

    Raises:
        SearchIndexError: when ``exact_run`` holds no query.
    """
    if not exact_run:
        raise SearchIndexError("exact_run: no queries to compare")
    shares = []
    for qid, scores in exact_run.items():
        exact = set(rank_documents(scores)[:k])
        approx = set(rank_documents(run.get(qid, {}))[:k])
        shares.append(len(exact & approx) / max(len(exact), 1))
    return float(sum(shares) / len(shares))


def build_index_from_chunks(
    chunks: Iterable[np.ndarray],
    doc_ids: Sequence[str],
    factory: str = "Flat",
    metric: str = "ip",
    train_size: int = 100_000,
    search_params: str = "",
) -> DocIndex:
    """Build an index chunk by chunk, never holding every vector in RAM at once.

    For a corpus larger than memory: feed the memory-mapped chunks of
    :meth:`helpers.cache.EmbeddingCache.iter_chunks`. An index that needs training is
    trained on the first ``train_size`` vectors (take them from a shuffled corpus).
    ``search_params`` as in :func:`build_index` (their form is checked before the first
    chunk is read, their names when the index is made from it).

    Raises:
        SearchIndexError: on a bad factory string, metric or search parameters, a
            ``train_size`` (checked before the first chunk) or a corpus smaller than the
            index trains centroids for, or when the number of vectors differs from the
            number of ids.
    """
    import faiss

    check_metric(metric)
    params = ",".join(parse_search_params(search_params))
    if not is_count(train_size) or train_size < 1:
        raise SearchIndexError(f"train_size: expected a positive integer, got {train_size!r}")
    train_size = int(train_size)
    check_training_size(factory, train_size, warn=False, source=f" (train_size={train_size})")
    index = None
    pending: list[np.ndarray] = []
    pending_rows = 0
    total = 0
    for chunk in chunks:
        vectors = np.ascontiguousarray(chunk, dtype=np.float32)
        if index is None:
            try:
                index = faiss.index_factory(
                    vectors.shape[1], factory, getattr(faiss, FAISS_METRICS[metric])
                )
            except RuntimeError as err:
                raise SearchIndexError(
                    f"index_factory: FAISS rejected {factory!r} ({err})"
                ) from err
            check_search_params(factory, params, vectors.shape[1])
        if not index.is_trained:
            pending.append(vectors)
            pending_rows += len(vectors)
            if pending_rows < train_size:
                continue
            sample = np.concatenate(pending)
            index.train(sample[:train_size])
            vectors, pending = sample, []
        index.add(vectors)
        total += len(vectors)
    if index is not None and pending:
        sample = np.concatenate(pending)
        check_training_size(factory, len(sample), warn=False)
        index.train(sample[:train_size])
        index.add(sample)
        total += len(sample)
    if index is None or total != len(doc_ids):
        raise SearchIndexError(f"chunks: {total} vectors for {len(doc_ids)} document ids")
    return DocIndex(index, list(doc_ids), factory, metric, search_params=params)


def build_index_from_stream(
    chunks: Iterable[tuple[Sequence[str], np.ndarray]],
    factory: str = "Flat",
    metric: str = "ip",
    train_size: int = 100_000,
    search_params: str = "",
) -> DocIndex:
    """:func:`build_index_from_chunks` for ``(ids, vectors)`` chunks, as an encoder's
    ``encode_records`` yields them (a streamed corpus encoded through the embedding cache):
    the ids are collected as the chunks go by, so neither the texts nor the ids are needed
    beforehand.

    Raises:
        SearchIndexError: as :func:`build_index_from_chunks`.
    """
    doc_ids: list[str] = []

    def vectors() -> Iterator[np.ndarray]:
        for ids, chunk in chunks:
            doc_ids.extend(ids)
            yield chunk

    return build_index_from_chunks(
        vectors(), doc_ids, factory, metric, train_size, search_params=search_params
    )


def estimate_resources(
    num_passages: int, dim: int, passages_per_s: float, factory: str = "Flat"
) -> dict[str, float]:
    """What a corpus will cost before it is started: encoding hours and index memory.

    Memory per vector by index type: Flat and HNSW keep float32 vectors (HNSW32 adds
    about 2 x 32 links of 4 bytes); SQ8 keeps one byte per dimension; PQm keeps m bytes;
    IVF adds an 8-byte id per vector.

    Returns:
        ``{"encode_hours", "vectors_gb" (float32 cache on disk), "index_gb"}``.
    """
    per_vector = 4.0 * dim
    upper = factory.upper()
    if "PQ" in upper:
        m = int("".join(ch for ch in upper.split("PQ", 1)[1] if ch.isdigit()) or 8)
        per_vector = float(m)
    elif "SQ8" in upper:
        per_vector = float(dim)
    if "HNSW" in upper:
        per_vector += 2 * 32 * 4
    if "IVF" in upper:
        per_vector += 8
    return {
        "encode_hours": num_passages / passages_per_s / 3600,
        "vectors_gb": num_passages * 4.0 * dim / 1e9,
        "index_gb": num_passages * per_vector / 1e9,
    }
