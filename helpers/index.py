"""FAISS indexes built from ``index_factory`` strings, searched in batches, saved with their ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers.io import atomic_write, write_json
from helpers.metrics import Run

logger = logging.getLogger(__name__)

METRICS = {"ip": "METRIC_INNER_PRODUCT", "l2": "METRIC_L2"}
INDEX_FILE = "index.faiss"
IDS_FILE = "doc_ids.json"
META_FILE = "index_meta.json"


class SearchIndexError(ValueError):
    """Raised when an index cannot be built, searched or loaded as asked."""


def _faiss():  # type: ignore[no-untyped-def]
    import faiss

    return faiss


@dataclass
class DocIndex:
    """A FAISS index plus the document id of every vector.

    Attributes:
        index: the FAISS index (vector i is document ``doc_ids[i]``).
        doc_ids: document ids in insertion order.
        factory: the ``index_factory`` string it was built from.
        metric: ``"ip"`` (inner product; cosine on normalised vectors) or ``"l2"``.
    """

    index: object
    doc_ids: list[str]
    factory: str
    metric: str
    engine: str = "faiss"
    torch_block: int = 1 << 20  # documents per matrix product in torch search
    _vectors: Any = None  # the vectors on the device, for torch search
    _cpu_index: Any = None  # the CPU index while a GPU copy answers
    _gpu_resources: Any = None

    def to_device(self, device: str = "auto", engine: str = "auto") -> DocIndex:
        """Search on ``device`` from now on; returns ``self``.

        * ``"cpu"``: FAISS on the CPU (the default).
        * ``"cuda"`` / ``"cuda:N"`` (``"auto"``: a GPU when torch sees one): FAISS's GPU
          index when the installed FAISS has GPU support (``"cuda"``: spread over every
          GPU; ``"cuda:N"``: that one; the CPU index is kept for :meth:`save` and for a
          move back to ``"cpu"``); otherwise a ``Flat`` index is
          searched exactly with torch on the GPU (a matrix product and a top-k, same hits
          as FAISS ``Flat`` up to the order of tied scores). An approximate index without
          GPU FAISS stays on the CPU (logged).

        Args:
            device: where to search.
            engine: ``"auto"``, ``"faiss"`` or ``"torch"`` (exact search with torch on any
                device, ``"cpu"`` included; ``Flat`` indexes only).

        Raises:
            SearchIndexError: for an unknown engine, a GPU asked for where none is visible,
                or ``engine="torch"`` on an approximate index.
        """
        import torch

        if engine not in {"auto", "faiss", "torch"}:
            raise SearchIndexError(f"engine: expected 'auto', 'faiss' or 'torch', got {engine!r}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        gpu = device.startswith("cuda")
        if gpu and not torch.cuda.is_available():
            raise SearchIndexError(f"device: {device!r} asked for, but no GPU is visible")
        faiss = _faiss()
        exact = self.factory.replace(" ", "") == "Flat"
        gpu_faiss = gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
        if engine == "torch" and not exact:
            raise SearchIndexError(
                f"engine: 'torch' searches exactly; it needs a Flat index, not {self.factory!r}"
            )
        # back to the CPU index first, so that moves never stack
        cpu_index: Any = self._cpu_index if self._cpu_index is not None else self.index
        self.index, self._cpu_index, self._vectors, self.engine = cpu_index, None, None, "faiss"
        self._gpu_resources = None
        if engine == "torch" or (engine == "auto" and gpu and not gpu_faiss and exact):
            vectors = cpu_index.reconstruct_n(0, cpu_index.ntotal)
            self._vectors = torch.from_numpy(vectors).to(device)
            self.engine = "torch"
        elif gpu and gpu_faiss:
            if ":" in device:  # one GPU, as asked
                self._gpu_resources = faiss.StandardGpuResources()
                number = int(device.split(":")[1])
                self.index = faiss.index_cpu_to_gpu(self._gpu_resources, number, cpu_index)
            else:
                self.index = faiss.index_cpu_to_all_gpus(cpu_index)
            self._cpu_index, self.engine = cpu_index, "faiss-gpu"
        elif gpu:
            logger.warning(
                "no GPU FAISS installed: %r is searched on the CPU (exact Flat indexes "
                "are searched with torch on the GPU)",
                self.factory,
            )
        return self

    def _torch_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k with torch, ``torch_block`` documents at a time (bounded memory)."""
        import torch

        block = self.torch_block
        vectors = self._vectors
        q = torch.from_numpy(queries).to(vectors.device)
        best_scores, best_positions = [], []
        for start in range(0, len(vectors), block):
            part = vectors[start : start + block]
            if self.metric == "ip":
                scores = q @ part.T
            else:  # squared L2, as FAISS reports it; smaller is better
                scores = -((q * q).sum(1, keepdim=True) - 2 * q @ part.T + (part * part).sum(1))
            top, pos = torch.topk(scores, min(k, len(part)), dim=1)
            best_scores.append(top)
            best_positions.append(pos + start)
        scores, positions = torch.cat(best_scores, 1), torch.cat(best_positions, 1)
        top, order = torch.topk(scores, k, dim=1)
        positions = torch.gather(positions, 1, order)
        if self.metric != "ip":
            top = -top
        return top.float().cpu().numpy(), positions.cpu().numpy().astype(np.int64)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.index.d)  # type: ignore[attr-defined]

    @property
    def size(self) -> int:
        """Number of vectors."""
        return int(self.index.ntotal)  # type: ignore[attr-defined]

    def search(
        self,
        queries: np.ndarray,
        k: int,
        batch_size: int = 256,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k search, ``batch_size`` queries at a time.

        Args:
            queries: float32 array (n, dim).
            k: hits per query (capped at the index size).
            batch_size: queries per FAISS call.
            progress: show a progress bar.

        Returns:
            ``(scores, positions)``, each (n, k); position -1 marks a missing hit.

        Raises:
            SearchIndexError: when the query dimension differs from the index's.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise SearchIndexError(
                f"queries: expected shape (n, {self.dim}) to match the index, got {queries.shape}"
            )
        if k < 1 or batch_size < 1:
            raise SearchIndexError(
                f"k and batch_size must be positive, got k={k}, batch={batch_size}"
            )
        k = min(k, self.size)
        starts: Iterable[int] = range(0, len(queries), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(list(starts), desc="Searching", unit="batch")
        scores, positions = [], []
        for start in starts:
            part = queries[start : start + batch_size]
            if self._vectors is not None:
                s, p = self._torch_search(part, k)
            else:
                s, p = self.index.search(part, k)  # type: ignore[attr-defined]
            scores.append(s)
            positions.append(p)
        if not scores:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate(scores), np.concatenate(positions)

    def search_run(
        self,
        query_ids: Sequence[str],
        queries: np.ndarray,
        k: int,
        batch_size: int = 256,
        progress: bool = False,
    ) -> Run:
        """Search and return a run: query id -> document id -> score (top k)."""
        if len(query_ids) != len(queries):
            raise SearchIndexError(
                f"query_ids: {len(query_ids)} ids for {len(queries)} query vectors"
            )
        scores, positions = self.search(queries, k, batch_size, progress)
        run: Run = {}
        for qid, row_scores, row_pos in zip(query_ids, scores, positions, strict=True):
            run[qid] = {
                self.doc_ids[p]: float(s)
                for s, p in zip(row_scores, row_pos, strict=True)
                if p >= 0
            }
        return run

    def save(self, folder: str | Path) -> Path:
        """Write ``index.faiss``, ``doc_ids.json`` and ``index_meta.json`` into ``folder``.

        Each file is written to a temporary name and renamed, so a crash never leaves a
        half-written index behind.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss = _faiss()
        index = self._cpu_index if self._cpu_index is not None else self.index
        atomic_write(folder / INDEX_FILE, lambda tmp: faiss.write_index(index, tmp))
        write_json(folder / IDS_FILE, self.doc_ids)
        meta = {"factory": self.factory, "metric": self.metric, "dim": self.dim, "size": self.size}
        write_json(folder / META_FILE, meta)
        return folder

    def check_compatible(self, dim: int, metric: str = "ip") -> None:
        """Refuse an index that cannot answer a model's queries.

        Raises:
            SearchIndexError: when the dimension or the metric differs from what is given.
        """
        if self.dim != dim:
            raise SearchIndexError(
                f"index: its vectors have dimension {self.dim}, the model's have {dim}; "
                "the index was built with another model: rebuild it"
            )
        if self.metric != metric:
            raise SearchIndexError(
                f"index: built for metric {self.metric!r}, expected {metric!r}: rebuild it"
            )

    @classmethod
    def load(
        cls, folder: str | Path, expected_dim: int | None = None, expected_metric: str | None = None
    ) -> DocIndex:
        """Read an index written by :meth:`save` and check it against its id list.

        Args:
            folder: the folder :meth:`save` wrote.
            expected_dim: when given, the model's dimension the index must have.
            expected_metric: when given, the metric the index must use.

        Raises:
            SearchIndexError: when a file is missing or unreadable, the id list does not match
                the index, or the index does not fit the expected dimension or metric.
        """
        folder = Path(folder)
        for name in (INDEX_FILE, IDS_FILE, META_FILE):
            if not (folder / name).is_file():
                raise SearchIndexError(f"index folder {str(folder)!r}: missing {name}")
        try:
            index = _faiss().read_index(str(folder / INDEX_FILE))
            doc_ids = json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (RuntimeError, ValueError) as err:
            raise SearchIndexError(
                f"index folder {str(folder)!r}: unreadable or truncated ({err}); rebuild it"
            ) from err
        if len(doc_ids) != index.ntotal or meta.get("dim") != index.d:
            raise SearchIndexError(
                f"index folder {str(folder)!r}: {index.ntotal} vectors of dimension {index.d}, "
                f"but {len(doc_ids)} ids and dimension {meta.get('dim')} in the metadata"
            )
        loaded = cls(index, [str(d) for d in doc_ids], meta["factory"], meta["metric"])
        if expected_dim is not None:
            loaded.check_compatible(expected_dim, expected_metric or loaded.metric)
        elif expected_metric is not None:
            loaded.check_compatible(loaded.dim, expected_metric)
        return loaded


def check_factory(factory: str, metric: str = "ip", dim: int = 64) -> None:
    """Check an ``index_factory`` string and a metric before any vector is computed.

    Pass the model's ``dim``: some indexes only fit some dimensions (``PQm`` needs m to
    divide it).

    Raises:
        SearchIndexError: when FAISS rejects the string or the metric is unknown.
    """
    if metric not in METRICS:
        raise SearchIndexError(f"metric: expected one of {list(METRICS)}, got {metric!r}")
    faiss = _faiss()
    try:
        faiss.index_factory(dim, factory, getattr(faiss, METRICS[metric]))
    except RuntimeError as err:
        raise SearchIndexError(
            f"index_factory: FAISS rejected {factory!r} (examples: 'Flat', 'HNSW32', "
            f"'IVF256,Flat', 'IVF256,PQ16', 'SQ8'): {str(err).strip().splitlines()[-1]}"
        ) from err


def build_index(
    embeddings: np.ndarray,
    doc_ids: Sequence[str],
    factory: str = "Flat",
    metric: str = "ip",
) -> DocIndex:
    """Build a FAISS index with ``faiss.index_factory`` and add the vectors.

    Indexes that need training (IVF, PQ, ...) are trained on the same vectors.

    Args:
        embeddings: float32 array (n, dim), one row per document.
        doc_ids: the id of each row.
        factory: an ``index_factory`` string: ``"Flat"`` (exact), ``"HNSW32"``, ``"IVF256,Flat"``...
        metric: ``"ip"`` for inner product (cosine on normalised vectors) or ``"l2"``.

    Raises:
        SearchIndexError: on an unknown metric, mismatched ids, or a factory string FAISS rejects.
    """
    if metric not in METRICS:
        raise SearchIndexError(f"metric: expected one of {list(METRICS)}, got {metric!r}")
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(doc_ids):
        raise SearchIndexError(
            f"embeddings: expected one row per document id ({len(doc_ids)}), got {vectors.shape}"
        )
    if len(set(doc_ids)) != len(doc_ids):
        raise SearchIndexError("doc_ids: ids must be unique")
    faiss = _faiss()
    try:
        index = faiss.index_factory(vectors.shape[1], factory, getattr(faiss, METRICS[metric]))
    except RuntimeError as err:
        raise SearchIndexError(f"index_factory: FAISS rejected {factory!r} ({err})") from err
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    return DocIndex(index, list(doc_ids), factory, metric)


def top_k_overlap(run: Run, exact_run: Run, k: int) -> float:
    """Mean share of each query's exact top k that an approximate run also returns in its top k.

    This is the "recall of the exact top k" of an approximate index (1.0 for exact search).
    """
    from helpers.metrics import rank_documents

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
) -> DocIndex:
    """Build an index chunk by chunk, never holding every vector in RAM at once.

    For a corpus larger than memory: feed the memory-mapped chunks of
    :meth:`helpers.cache.EmbeddingCache.iter_chunks`. An index that needs training is
    trained on the first ``train_size`` vectors (take them from a shuffled corpus).

    Raises:
        SearchIndexError: on a bad factory string or metric, or when the number of vectors
            differs from the number of ids.
    """
    if metric not in METRICS:
        raise SearchIndexError(f"metric: expected one of {list(METRICS)}, got {metric!r}")
    faiss = _faiss()
    index = None
    pending: list[np.ndarray] = []
    pending_rows = 0
    total = 0
    for chunk in chunks:
        vectors = np.ascontiguousarray(chunk, dtype=np.float32)
        if index is None:
            try:
                index = faiss.index_factory(
                    vectors.shape[1], factory, getattr(faiss, METRICS[metric])
                )
            except RuntimeError as err:
                raise SearchIndexError(
                    f"index_factory: FAISS rejected {factory!r} ({err})"
                ) from err
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
        index.train(sample[:train_size])
        index.add(sample)
        total += len(sample)
    if index is None or total != len(doc_ids):
        raise SearchIndexError(f"chunks: {total} vectors for {len(doc_ids)} document ids")
    return DocIndex(index, list(doc_ids), factory, metric)


def build_index_from_stream(
    chunks: Iterable[tuple[Sequence[str], np.ndarray]],
    factory: str = "Flat",
    metric: str = "ip",
    train_size: int = 100_000,
) -> DocIndex:
    """:func:`build_index_from_chunks` for ``(ids, vectors)`` chunks, as
    :meth:`helpers.cache.EmbeddingCache.encode_records` yields them: the ids are collected
    as the chunks go by, so neither the texts nor the ids are needed beforehand."""
    doc_ids: list[str] = []

    def vectors() -> Iterator[np.ndarray]:
        for ids, chunk in chunks:
            doc_ids.extend(ids)
            yield chunk

    return build_index_from_chunks(vectors(), doc_ids, factory, metric, train_size)


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
