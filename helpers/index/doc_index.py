"""A FAISS index with the document id of every vector: search, search parameters, devices,
and save/load with the model fingerprint that made the vectors."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers.index.checks import (
    SearchIndexError,
    apply_search_params,
    check_search_params,
    merge_search_params,
)
from helpers.index.gpu import (
    faiss_gpu_copy,
    has_gpu_faiss,
    set_gpu_search_params,
    torch_search,
    vectors_on,
)
from helpers.io import atomic_write, write_json
from helpers.metrics import Run

logger = logging.getLogger(__name__)

#: The files :meth:`DocIndex.save` writes into its folder.
INDEX_FILE = "index.faiss"
IDS_FILE = "doc_ids.json"
META_FILE = "index_meta.json"


@dataclass
class DocIndex:
    """A FAISS index plus the document id of every vector.

    Attributes:
        index: the FAISS index (vector i is document ``doc_ids[i]``).
        doc_ids: document ids in insertion order.
        factory: the ``index_factory`` string it was built from.
        metric: ``"ip"`` (inner product; cosine on normalised vectors) or ``"l2"``.
        searcher: what searches it (:meth:`to_device` sets it): ``"faiss"`` (FAISS on
            the CPU), ``"faiss-gpu"`` (FAISS's GPU copy) or ``"torch"`` (exact search).
        torch_block: documents per matrix product in torch search.
        search_params: the FAISS search parameters in force, in ParameterSpace syntax
            (``"nprobe=32"``, ``"efSearch=128"``; ``""``: FAISS's defaults). Change them with
            :meth:`set_search_params`; given to the constructor, they are applied.
        model_fingerprint: an opaque string naming the model and settings that made the
            vectors (``""``: not recorded); written by :meth:`save`, checked by :meth:`load`.
    """

    index: object
    doc_ids: list[str]
    factory: str
    metric: str
    searcher: str = "faiss"
    torch_block: int = 1 << 20
    search_params: str = ""
    model_fingerprint: str = ""
    _vectors: Any = None  # the vectors on the device, for torch search
    _cpu_index: Any = None  # the CPU index while a GPU copy answers
    _gpu_resources: Any = None

    def __post_init__(self) -> None:
        """Apply the search parameters given to the constructor."""
        if self.search_params:
            self.set_search_params(self.search_params)

    def set_search_params(self, params: str) -> DocIndex:
        """Tune the search from now on; returns ``self``.

        Args:
            params: FAISS ParameterSpace syntax, several comma-separated: ``"nprobe=32"``
                (IVF: lists visited per query, default 1), ``"efSearch=128"`` (HNSW: the
                search queue, default 16), ``"nprobe=16,quantizer_efSearch=64"`` (IVF with
                an HNSW quantizer). Parameters not named keep their value (``""``
                changes nothing), as in FAISS; :attr:`search_params` then lists every
                parameter set so far. Applied with
                ``faiss.ParameterSpace().set_index_parameters``; on a GPU copy also with
                ``faiss.GpuParameterSpace``. An exact ``Flat`` index (searched by torch
                or FAISS) takes none.

        Raises:
            SearchIndexError: naming ``search_params``, the part that cannot be set and the
                parameters this index type accepts. They are checked first on an empty index
                of the same type, so the CPU index is left as it was (a GPU copy that refuses
                a part keeps the parts before it).
        """
        import faiss

        check_search_params(self.factory, params, self.dim)
        if self.searcher == "faiss-gpu":
            set_gpu_search_params(self.index, params, self.factory)
        cpu_index = self._cpu_index if self._cpu_index is not None else self.index
        apply_search_params(faiss.ParameterSpace(), cpu_index, params, self.factory, "a ")
        self.search_params = merge_search_params(self.search_params, params)
        return self

    def to_device(self, device: str = "auto", searcher: str = "auto") -> DocIndex:
        """Search on ``device`` from now on; returns ``self``.

        * ``"cpu"``: FAISS on the CPU (the default).
        * ``"cuda"`` / ``"cuda:N"`` (``"auto"``: a GPU when torch sees one): FAISS's GPU
          index when the installed FAISS has GPU support (``"cuda"``: spread over every
          GPU; ``"cuda:N"``: that one; the CPU index is kept for :meth:`save` and for a
          move back to ``"cpu"``); otherwise a ``Flat`` index is
          searched exactly with torch on the GPU (a matrix product and a top-k, same hits
          as FAISS ``Flat`` up to the order of tied scores). An approximate index without
          GPU FAISS stays on the CPU (logged).

        :attr:`searcher` then says what searches: ``"faiss"``, ``"faiss-gpu"`` or
        ``"torch"``. :attr:`search_params` follow the index: the CPU index keeps them, a
        GPU FAISS copy gets them again through ``faiss.GpuParameterSpace`` (which tunes
        ``nprobe``; a parameter it cannot set is an error), and torch search is exact
        (``Flat``: none).

        Args:
            device: where to search.
            searcher: ``"auto"`` (as above), ``"faiss"`` or ``"torch"`` (exact search with
                torch on any device, ``"cpu"`` included; ``Flat`` indexes only).

        Raises:
            SearchIndexError: for an unknown searcher, a GPU asked for where none is
                visible, ``searcher="torch"`` on an approximate index, an index type GPU
                FAISS does not implement (HNSW), or search parameters the GPU copy does not
                take; the index is then left on the CPU.
        """
        import torch

        if searcher not in {"auto", "faiss", "torch"}:
            raise SearchIndexError(
                f"searcher: expected 'auto', 'faiss' or 'torch', got {searcher!r}"
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        gpu = device.startswith("cuda")
        if gpu and not torch.cuda.is_available():
            raise SearchIndexError(f"device: {device!r} asked for, but no GPU is visible")
        exact = self.factory.replace(" ", "") == "Flat"
        gpu_faiss = gpu and has_gpu_faiss()
        if searcher == "torch" and not exact:
            raise SearchIndexError(
                f"searcher: 'torch' searches exactly; it needs a Flat index, not {self.factory!r}"
            )
        # back to the CPU index first, so that moves never stack
        cpu_index: Any = self._cpu_index if self._cpu_index is not None else self.index
        self.index, self._cpu_index, self._vectors, self.searcher = cpu_index, None, None, "faiss"
        self._gpu_resources = None
        if searcher == "torch" or (searcher == "auto" and gpu and not gpu_faiss and exact):
            self._vectors = vectors_on(cpu_index, device)
            self.searcher = "torch"
        elif gpu and gpu_faiss:
            gpu_index, self._gpu_resources = faiss_gpu_copy(cpu_index, device, self.factory)
            self.index, self._cpu_index, self.searcher = gpu_index, cpu_index, "faiss-gpu"
            if self.search_params:
                try:
                    set_gpu_search_params(self.index, self.search_params, self.factory)
                except SearchIndexError:
                    self.index, self._cpu_index, self.searcher = cpu_index, None, "faiss"
                    self._gpu_resources = None
                    raise
        elif gpu:
            logger.warning(
                "no GPU FAISS installed: %r is searched on the CPU (exact Flat indexes "
                "are searched with torch on the GPU)",
                self.factory,
            )
        return self

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
                s, p = torch_search(self._vectors, part, k, self.metric, self.torch_block)
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

    def save(self, folder: str | Path, model_fingerprint: str | None = None) -> Path:
        """Write ``index.faiss``, ``doc_ids.json`` and ``index_meta.json`` into ``folder``.

        Each file is written to a temporary name and renamed, so a crash never leaves a
        half-written index behind. ``index_meta.json`` holds the factory, metric, dimension,
        size, :attr:`search_params` and the model fingerprint.

        Args:
            folder: where to write (created if needed).
            model_fingerprint: an opaque string naming the model and the settings that made
                the vectors (e.g. the embedding cache's key), checked by
                ``DocIndex.load(expected_model=...)``; it becomes :attr:`model_fingerprint`.
                ``None``: :attr:`model_fingerprint` as it is (``""``: no model recorded).

        Raises:
            SearchIndexError: when ``model_fingerprint`` is not a string.
        """
        if model_fingerprint is not None:
            if not isinstance(model_fingerprint, str):
                raise SearchIndexError(
                    "model_fingerprint: expected a string naming the model and its settings, "
                    f"got {type(model_fingerprint).__name__}"
                )
            self.model_fingerprint = model_fingerprint
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        index: Any = self._cpu_index if self._cpu_index is not None else self.index
        atomic_write(folder / INDEX_FILE, lambda tmp: faiss.write_index(index, tmp))
        write_json(folder / IDS_FILE, self.doc_ids)
        meta = {
            "factory": self.factory,
            "metric": self.metric,
            "dim": self.dim,
            "size": self.size,
            "search_params": self.search_params,
            "model_fingerprint": self.model_fingerprint,
        }
        write_json(folder / META_FILE, meta)
        return folder

    def check_compatible(self, dim: int, metric: str = "ip", model: str | None = None) -> None:
        """Refuse an index that cannot answer a model's queries.

        Args:
            dim: the model's vector dimension.
            metric: the metric its vectors are compared with.
            model: when given, the model fingerprint the index must record (compared
                exactly; see :meth:`save`).

        Raises:
            SearchIndexError: when the dimension, the metric or the model differs from what
                is given, or the index records no model while one is expected.
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
        if model is None or self.model_fingerprint == model:
            return
        if not self.model_fingerprint:
            raise SearchIndexError(
                f"index: records no model (saved without a model_fingerprint), expected "
                f"{model!r}: it may come from another model or other settings; rebuild it "
                "and save it with model_fingerprint=..."
            )
        raise SearchIndexError(
            f"index: built by another model or with other settings (model fingerprint "
            f"{self.model_fingerprint!r}, expected {model!r}): rebuild it"
        )

    @classmethod
    def load(
        cls,
        folder: str | Path,
        expected_dim: int | None = None,
        expected_metric: str | None = None,
        search_params: str | None = None,
        expected_model: str | None = None,
    ) -> DocIndex:
        """Read an index written by :meth:`save` and check it against its id list.

        Args:
            folder: the folder :meth:`save` wrote.
            expected_dim: when given, the model's dimension the index must have.
            expected_metric: when given, the metric the index must use.
            search_params: FAISS search parameters to search with (see
                :meth:`set_search_params`), applied over the ones saved with the index
                (a parameter named here wins); ``None``: the saved ones.
            expected_model: when given, the model fingerprint the index must have been
                saved with (see :meth:`save`): an index of another model, or one that
                records none, is refused.

        Raises:
            SearchIndexError: when a file is missing or unreadable, the id list does not match
                the index, the index does not fit the expected dimension, metric or model,
                or the search parameters do not fit the index.
        """
        import faiss

        folder = Path(folder)
        for name in (INDEX_FILE, IDS_FILE, META_FILE):
            if not (folder / name).is_file():
                raise SearchIndexError(f"index folder {str(folder)!r}: missing {name}")
        try:
            index = faiss.read_index(str(folder / INDEX_FILE))
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
        loaded = cls(
            index,
            [str(d) for d in doc_ids],
            meta["factory"],
            meta["metric"],
            model_fingerprint=str(meta.get("model_fingerprint", "")),
        )
        if expected_dim is not None or expected_metric is not None or expected_model is not None:
            loaded.check_compatible(
                loaded.dim if expected_dim is None else expected_dim,
                expected_metric or loaded.metric,
                expected_model,
            )
        params = merge_search_params(str(meta.get("search_params", "")), search_params or "")
        if params:
            loaded.set_search_params(params)
        return loaded
