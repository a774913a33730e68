"""FAISS indexes built from ``index_factory`` strings, searched in batches, saved with their ids."""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import warnings
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


#: FAISS wants about this many training vectors per centroid (it warns below it).
TRAINING_POINTS_PER_CENTROID = 39
#: search parameters that only make sense as positive integers (FAISS would wrap -1 around)
_POSITIVE_INTEGER_PARAMS = ("nprobe", "efSearch")


class SearchIndexError(ValueError):
    """Raised when an index cannot be built, searched or loaded as asked."""


def _faiss():  # type: ignore[no-untyped-def]
    import faiss

    return faiss


def _parse_search_params(params: str) -> list[str]:
    """Split FAISS ParameterSpace syntax (``"nprobe=16,quantizer_efSearch=64"``) into parts.

    Only the form is checked here (``name=number`` pairs, each name once, ``nprobe`` and
    ``efSearch`` positive integers); whether the index accepts a name is FAISS's to say.

    Returns:
        the parts, stripped, in order (``[]`` for ``""``).

    Raises:
        SearchIndexError: naming ``search_params`` and the part it cannot read.
    """
    if not isinstance(params, str):
        raise SearchIndexError(
            f"search_params: expected a string such as 'nprobe=32', got {type(params).__name__}"
        )
    parts: list[str] = []
    seen: set[str] = set()
    for raw in params.split(","):
        part = raw.strip()
        if not part:
            continue
        match = re.fullmatch(r"([A-Za-z_]\w*)=([^=\s]+)", part)
        value = math.nan
        if match:
            try:
                value = float(match[2])
            except ValueError:
                pass
        if not match or not math.isfinite(value):
            raise SearchIndexError(
                f"search_params: cannot read {part!r} in {params!r}: expected name=number "
                "pairs separated by commas, e.g. 'nprobe=32', 'efSearch=128' or "
                "'nprobe=16,quantizer_efSearch=64'"
            )
        name = match[1]
        if name in seen:
            raise SearchIndexError(f"search_params: {name} is given twice in {params!r}")
        seen.add(name)
        if name.split("_")[-1] in _POSITIVE_INTEGER_PARAMS and (value < 1 or value != int(value)):
            raise SearchIndexError(f"search_params: {part!r}: {name} must be a positive integer")
        parts.append(part)
    return parts


def _merge_search_params(current: str, new: str) -> str:
    """``current`` with the parameters ``new`` names replaced or added, in order: what an
    index holds after ``new`` is applied on top of ``current``."""
    merged = {part.split("=")[0]: part for part in _parse_search_params(current)}
    merged.update({part.split("=")[0]: part for part in _parse_search_params(new)})
    return ",".join(merged.values())


def _accepted_params(space: Any, index: Any) -> list[str]:
    """The parameter names FAISS's ``space`` offers to tune on ``index``."""
    space.initialize(index)
    ranges = space.parameter_ranges
    return [ranges.at(i).name for i in range(ranges.size())]


def _set_search_params(space: Any, index: Any, params: str, factory: str, where: str) -> None:
    """Apply ``params`` to ``index`` with ``space.set_index_parameters``, part by part, so
    that an error names the part FAISS refused and the parameters it accepts."""
    for part in _parse_search_params(params):
        try:
            space.set_index_parameters(index, part)
        except RuntimeError as err:
            accepted = _accepted_params(space, index)
            detail = str(err).strip().splitlines()[-1].split(":")[-1].strip()
            if accepted:
                hint = "parameters it accepts: " + ", ".join(accepted)
            else:
                hint = "it takes no search parameters: leave search_params empty"
            raise SearchIndexError(
                f"search_params: FAISS cannot set {part!r} on {where}{factory!r} index "
                f"({detail}); {hint}"
            ) from err


@dataclass
class DocIndex:
    """A FAISS index plus the document id of every vector.

    Attributes:
        index: the FAISS index (vector i is document ``doc_ids[i]``).
        doc_ids: document ids in insertion order.
        factory: the ``index_factory`` string it was built from.
        metric: ``"ip"`` (inner product; cosine on normalised vectors) or ``"l2"``.
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
    engine: str = "faiss"
    torch_block: int = 1 << 20  # documents per matrix product in torch search
    search_params: str = ""
    model_fingerprint: str = ""
    _vectors: Any = None  # the vectors on the device, for torch search
    _cpu_index: Any = None  # the CPU index while a GPU copy answers
    _gpu_resources: Any = None

    def __post_init__(self) -> None:
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
                ``faiss.GpuParameterSpace``. An exact ``Flat`` index (the torch engine
                included) takes none.

        Raises:
            SearchIndexError: naming ``search_params``, the part that cannot be set and the
                parameters this index type accepts. They are checked first on an empty index
                of the same type, so the CPU index is left as it was (a GPU copy that refuses
                a part keeps the parts before it).
        """
        check_search_params(self.factory, params, self.dim)
        if self.engine == "faiss-gpu":
            self._set_gpu_search_params(params)
        cpu_index = self._cpu_index if self._cpu_index is not None else self.index
        _set_search_params(_faiss().ParameterSpace(), cpu_index, params, self.factory, "a ")
        self.search_params = _merge_search_params(self.search_params, params)
        return self

    def _set_gpu_search_params(self, params: str) -> None:
        """Apply ``params`` to the GPU copy (GpuParameterSpace: nprobe on GPU IVF indexes)."""
        faiss = _faiss()
        gpu_space = getattr(faiss, "GpuParameterSpace", None)
        space = gpu_space() if gpu_space is not None else faiss.ParameterSpace()
        _set_search_params(space, self.index, params, self.factory, "the GPU copy of a ")

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

        :attr:`search_params` follow the index: the CPU index keeps them, a GPU FAISS copy
        gets them again through ``faiss.GpuParameterSpace`` (which tunes ``nprobe``; a
        parameter it cannot set is an error), and torch search is exact (``Flat``: none).

        Args:
            device: where to search.
            engine: ``"auto"``, ``"faiss"`` or ``"torch"`` (exact search with torch on any
                device, ``"cpu"`` included; ``Flat`` indexes only).

        Raises:
            SearchIndexError: for an unknown engine, a GPU asked for where none is visible,
                ``engine="torch"`` on an approximate index, an index type GPU FAISS does not
                implement (HNSW), or search parameters the GPU copy does not take; the index
                is then left on the CPU.
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
            try:
                if ":" in device:  # one GPU, as asked
                    self._gpu_resources = faiss.StandardGpuResources()
                    number = int(device.split(":")[1])
                    gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, number, cpu_index)
                else:
                    gpu_index = faiss.index_cpu_to_all_gpus(cpu_index)
            except RuntimeError as err:
                self._gpu_resources = None
                raise SearchIndexError(
                    f"device: FAISS cannot search a {self.factory!r} index on {device!r} "
                    f"({str(err).strip().splitlines()[-1]}); search it on the CPU "
                    "(device='cpu') or build a GPU-capable type (Flat, IVF<n>,Flat|PQ|SQ8)"
                ) from err
            self.index, self._cpu_index, self.engine = gpu_index, cpu_index, "faiss-gpu"
            if self.search_params:
                try:
                    self._set_gpu_search_params(self.search_params)
                except SearchIndexError:
                    self.index, self._cpu_index, self.engine = cpu_index, None, "faiss"
                    self._gpu_resources = None
                    raise
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
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss = _faiss()
        index = self._cpu_index if self._cpu_index is not None else self.index
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
        params = _merge_search_params(str(meta.get("search_params", "")), search_params or "")
        if params:
            loaded.set_search_params(params)
        return loaded


def _factory_rejected(factory: str, err: RuntimeError) -> SearchIndexError:
    return SearchIndexError(
        f"index_factory: FAISS rejected {factory!r} (examples: 'Flat', 'HNSW32', "
        f"'IVF256,Flat', 'IVF256,PQ16', 'SQ8'): {str(err).strip().splitlines()[-1]}"
    )


def _trained_centroids(factory: str) -> list[tuple[str, int]]:
    """What an index trains k-means for, read from its factory string: ``("IVF256", 256)``
    for the coarse quantizer, ``("PQ16", 256)`` per product quantizer (2^nbits centroids
    per sub-quantizer: ``PQ16x4`` has 16), ``OPQ`` rotations included. Components inside
    parentheses (an IVF's own quantizer) train on centroids, not on the vectors: skipped."""
    outer = factory
    while "(" in outer:  # drop nested parentheses, innermost first
        stripped = re.sub(r"\([^()]*\)", "", outer)
        if stripped == outer:
            break
        outer = stripped
    needs: list[tuple[str, int]] = []
    ivf = re.search(r"(?<![A-Za-z])IVF(\d+)", outer)
    if ivf:
        needs.append((f"IVF{ivf[1]}", int(ivf[1])))
    for pq in re.finditer(r"(?<![A-Za-z])(O?PQ\d+)(?:x(\d+))?", outer):
        needs.append((pq[0], 2 ** int(pq[2] or 8)))
    return needs


def _is_count(value: object) -> bool:
    """An integer (Python's or NumPy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_training_size(factory: str, num_vectors: int, warn: bool, source: str = "") -> None:
    """Refuse (and with ``warn``, warn about) too few training vectors for ``factory``.

    FAISS's k-means needs at least one training vector per centroid (it fails otherwise)
    and wants about :data:`TRAINING_POINTS_PER_CENTROID` (it warns otherwise). Every
    shortfall is checked before anything is warned about.

    Args:
        source: appended to the count in messages, e.g. ``" (train_size=200)"``.
    """
    per = TRAINING_POINTS_PER_CENTROID
    root = math.sqrt(num_vectors)
    usual = f"IVF{max(1, round(root))} to IVF{max(1, round(4 * root))} for N={num_vectors}"
    problems: list[str] = []  # too few to train at all: errors
    notes: list[str] = []  # too few for a good clustering: warnings
    for name, centroids in _trained_centroids(factory):
        if name.startswith("IVF"):
            what = f"has {centroids} lists ({name})"
            fix = (
                f"use fewer lists, about sqrt(N) to 4*sqrt(N) ({usual}; IVF"
                f"{max(1, num_vectors // per)} or fewer for {per} training vectors per list), "
                "or 'Flat' (exact search) for so few vectors"
            )
        else:
            what = f"trains {name} with {centroids} centroids per sub-quantizer"
            if name.startswith("OPQ"):
                fix = "drop the OPQ rotation, use an index without PQ, or train on more vectors"
            else:
                fewer_bits = f"fewer bits per code ('{name.split('x')[0]}x4': 16 centroids), "
                fix = (
                    f"use {fewer_bits if centroids > 16 else ''}an index without PQ "
                    "('Flat', 'SQ8', 'IVF<n>,Flat'), or train on more vectors"
                )
        if num_vectors < centroids:
            problems.append(
                f"index_factory: {factory!r} {what}, but there are only {num_vectors} "
                f"vectors to train on{source}; FAISS needs at least one per centroid "
                f"({centroids}): {fix}"
            )
        elif num_vectors < per * centroids:
            notes.append(
                f"index_factory: {factory!r} {what} for only {num_vectors} training "
                f"vectors{source}; FAISS wants about {per} per centroid ({per * centroids}): "
                f"the clustering will be poor; {fix}"
            )
    if problems:
        raise SearchIndexError(problems[0])
    for note in notes if warn else []:
        warnings.warn(note, UserWarning, stacklevel=3)


def check_factory(
    factory: str, metric: str = "ip", dim: int = 64, num_vectors: int | None = None
) -> None:
    """Check an ``index_factory`` string and a metric before any vector is computed.

    Pass the model's ``dim``: some indexes only fit some dimensions (``PQm`` needs m to
    divide it). Pass ``num_vectors``, the number of vectors the index will be trained on,
    to learn now what FAISS would only say after the whole corpus is encoded: an
    ``IVF<n>`` index needs at least n vectors (one per list; about 39 per list for a good
    clustering, warned below that: sqrt(N) to 4*sqrt(N) lists is the usual choice), and a
    product quantizer ``PQ<m>`` (``PQ<m>x<nbits>``) at least 2^nbits (256 with the default
    8 bits).

    Raises:
        SearchIndexError: when FAISS rejects the string, the metric is unknown, there are
            no vectors, or too few vectors to train the index.

    Warns:
        UserWarning: when there are fewer than about 39 training vectors per centroid.
    """
    if metric not in METRICS:
        raise SearchIndexError(f"metric: expected one of {list(METRICS)}, got {metric!r}")
    faiss = _faiss()
    try:
        faiss.index_factory(dim, factory, getattr(faiss, METRICS[metric]))
    except RuntimeError as err:
        raise _factory_rejected(factory, err) from err
    if num_vectors is not None:
        if not _is_count(num_vectors) or num_vectors < 1:
            raise SearchIndexError(
                "num_vectors: expected the number of vectors to index (at least 1), "
                f"got {num_vectors!r}"
            )
        _check_training_size(factory, int(num_vectors), warn=True)


def check_search_params(factory: str, params: str, dim: int = 64) -> None:
    """Check FAISS search parameters against an index type before any vector is computed.

    ``params`` is FAISS's ParameterSpace syntax (``"nprobe=32"``, ``"efSearch=128"``,
    ``"nprobe=16,quantizer_efSearch=64"``; ``""``: FAISS's defaults). They are set with
    ``faiss.ParameterSpace().set_index_parameters`` on an empty index made from
    ``factory`` (nothing is trained), as :meth:`DocIndex.set_search_params` sets them.

    Raises:
        SearchIndexError: naming ``search_params``, the part that cannot be read or set and
            the parameters the index type accepts (``nprobe`` for IVF, ``efSearch`` for
            HNSW, none for ``Flat``), or when FAISS rejects ``factory``.
    """
    parts = _parse_search_params(params)
    if not parts:
        return
    faiss = _faiss()
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError:
        try:  # a few index types exist for L2 only; parameters do not depend on the metric
            index = faiss.index_factory(dim, factory, faiss.METRIC_L2)
        except RuntimeError as err:
            raise _factory_rejected(factory, err) from err
    _set_search_params(faiss.ParameterSpace(), index, ",".join(parts), factory, "a ")


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
    if metric not in METRICS:
        raise SearchIndexError(f"metric: expected one of {list(METRICS)}, got {metric!r}")
    params = ",".join(_parse_search_params(search_params))
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
    faiss = _faiss()
    try:
        index = faiss.index_factory(vectors.shape[1], factory, getattr(faiss, METRICS[metric]))
    except RuntimeError as err:
        raise SearchIndexError(f"index_factory: FAISS rejected {factory!r} ({err})") from err
    check_search_params(factory, params, vectors.shape[1])
    if not index.is_trained:
        _check_training_size(factory, len(vectors), warn=False)
        index.train(vectors)
    index.add(vectors)
    return DocIndex(index, list(doc_ids), factory, metric, search_params=params)


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
    if metric not in METRICS:
        raise SearchIndexError(f"metric: expected one of {list(METRICS)}, got {metric!r}")
    params = ",".join(_parse_search_params(search_params))
    if not _is_count(train_size) or train_size < 1:
        raise SearchIndexError(f"train_size: expected a positive integer, got {train_size!r}")
    train_size = int(train_size)
    _check_training_size(factory, train_size, warn=False, source=f" (train_size={train_size})")
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
        _check_training_size(factory, len(sample), warn=False)
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
    """:func:`build_index_from_chunks` for ``(ids, vectors)`` chunks, as
    :meth:`helpers.cache.EmbeddingCache.encode_records` yields them: the ids are collected
    as the chunks go by, so neither the texts nor the ids are needed beforehand."""
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
