"""Asking for a recall instead of a setting: ``index_factory="auto"``.

:func:`tune_index` builds candidate indexes, tunes each one's search parameter on a sample
of the run's own queries against exact search (``Flat``) and keeps the fastest setting
whose recall of the exact top k reaches the target:

* ``nprobe`` for IVF indexes (lists visited per query),
* ``efSearch`` for HNSW (the search queue),
* ``k_factor_rf`` for a refine step (``...,RFlat``: the base index returns
  ``k * k_factor_rf`` candidates, re-scored exactly with the float32 vectors), together
  with its base index's parameter.

Each parameter is raised from its cheapest value (1, 2, 4, ... with one step of 1.5 x
between the last two powers of two) until the target is met; a sweep stops early once a
setting is slower than the best one found so far (or than ``Flat``), since raising it
further only slows the search down, or once doubling it no longer raises the recall. A
refine step's ``k_factor_rf`` is raised (2, 4, ... 64) until the base index at its
largest setting reaches the target; the base setting is then lowered as far as the
target allows, for that ``k_factor_rf`` and the larger ones.

The recall is the mean share of each sample query's exact top k that the index returns
(:func:`recall_of_exact`). A small corpus (fewer than :data:`MIN_VECTORS_FOR_APPROXIMATE`
vectors), or one where no approximate setting reaching the target beats exact search,
gets ``Flat``, and the report says why.

The chosen index is an ordinary :class:`~helpers.index.DocIndex` built by
:func:`~helpers.index.build_index` with the chosen ``index_factory`` and
``search_params``: it searches, saves and loads exactly like one given explicitly.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from helpers.index.build import build_index
from helpers.index.checks import (
    TRAINING_POINTS_PER_CENTROID,
    SearchIndexError,
    check_factory,
    check_metric,
    is_count,
)
from helpers.index.doc_index import DocIndex

#: What ``index_factory`` is set to for the index to be chosen by :func:`tune_index`.
AUTO_FACTORY = "auto"
#: The recall of the exact top k that ``"auto"`` aims at unless told otherwise.
DEFAULT_TARGET_RECALL = 0.99
#: Below this many vectors ``"auto"`` chooses exact search without trying other indexes.
MIN_VECTORS_FOR_APPROXIMATE = 50_000
#: Queries sampled (seeded) from the run's own to tune on.
DEFAULT_SAMPLE_QUERIES = 1000
#: HNSW is left out of the default candidates above this many vectors (slow to build).
HNSW_MAX_DEFAULT = 2_000_000
#: The default candidates' IVF lists stop here: k-means training grows with lists x vectors
#: (at 1M x 384, 4,096 lists took 200 s on 16 cores, 1,024 lists 17 s).
IVF_MAX_LISTS_DEFAULT = 1024
#: A timed search is repeated until it has run this long (short ones are noisy).
MIN_TIMED_S = 0.2
_MAX_EF_SEARCH = 4096
_K_FACTORS = (2, 4, 8, 16, 32, 64)
#: A doubled parameter that raises the recall by less than this has reached its ceiling.
_PLATEAU = 0.0005


def is_auto(factory: object) -> bool:
    """Whether ``factory`` asks for the index to be chosen (``"auto"``, any case)."""
    return isinstance(factory, str) and factory.strip().lower() == AUTO_FACTORY


def check_target_recall(target_recall: object) -> float:
    """A target recall of the exact top k: a number in (0, 1].

    Returns:
        it, as a float.

    Raises:
        SearchIndexError: naming ``target_recall`` and what is expected.
    """
    if (
        isinstance(target_recall, bool)
        or not isinstance(target_recall, numbers.Real)
        or not math.isfinite(float(target_recall))
        or not 0 < float(target_recall) <= 1
    ):
        raise SearchIndexError(
            "target_recall: expected the share of the exact top k the index must find, a "
            f"number in (0, 1] such as 0.99 (1.0: exact results), got {target_recall!r}"
        )
    return float(target_recall)


def _ivf_lists(num_vectors: int) -> int:
    """A power of two near 4 * sqrt(N) lists, at most :data:`IVF_MAX_LISTS_DEFAULT`, with
    FAISS's 39 training vectors per list."""
    lists = min(2 ** round(math.log2(max(4 * math.sqrt(num_vectors), 1))), IVF_MAX_LISTS_DEFAULT)
    while lists > 1 and num_vectors < TRAINING_POINTS_PER_CENTROID * lists:
        lists //= 2
    return lists


def default_candidates(num_vectors: int, dim: int) -> list[str]:
    """The indexes ``"auto"`` tries besides ``Flat`` for ``num_vectors`` vectors of ``dim``.

    ``HNSW32`` (up to :data:`HNSW_MAX_DEFAULT` vectors: its build takes minutes per million
    vectors on a few cores), ``IVF<n>,Flat`` and, when ``dim`` is a multiple of 8,
    ``IVF<n>,PQ<dim/8>x4fs,RFlat`` (a fast-scan product quantizer whose candidates are
    re-scored exactly), with ``n`` a power of two near 4 * sqrt(N) lists, at most
    1,024 (more lists search faster, but train much more slowly).
    """
    lists = _ivf_lists(num_vectors)
    candidates = ["HNSW32"] if num_vectors <= HNSW_MAX_DEFAULT else []
    candidates.append(f"IVF{lists},Flat")
    if dim % 8 == 0 and num_vectors >= TRAINING_POINTS_PER_CENTROID * 16:  # PQ x4: 16
        candidates.append(f"IVF{lists},PQ{dim // 8}x4fs,RFlat")
    return candidates


def recall_of_exact(positions: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean share of each query's exact top k found in its approximate top k.

    Args:
        positions: (n, >= k) rows of vector positions returned by the index (-1: none).
        exact: (n, >= k) rows of the exact top positions, best first (fewer columns when
            the index holds fewer than k vectors: then all of them).
        k: the cut-off.
    """
    width = max(1, min(k, exact.shape[1])) if exact.ndim == 2 else k
    shares = [
        len((set(row[:k].tolist()) - {-1}) & set(true[:k].tolist())) / width
        for row, true in zip(positions, exact, strict=True)
    ]
    return float(np.mean(shares)) if shares else 1.0


@dataclass(frozen=True)
class Trial:
    """One index setting measured on the sample queries.

    Attributes:
        factory: the ``index_factory`` string.
        search_params: the search parameters (FAISS ParameterSpace syntax).
        recall: mean share of the exact top k found (:func:`recall_of_exact`).
        queries_per_s: searches per second on the sample (batches of 256, as a run does).
        speedup_vs_flat: ``queries_per_s`` over exact search's on the same sample.
        build_s: seconds to build (train and fill) the index.
        meets_target: whether ``recall`` reaches the target.
    """

    factory: str
    search_params: str
    recall: float
    queries_per_s: float
    speedup_vs_flat: float
    build_s: float
    meets_target: bool


@dataclass(frozen=True)
class TuneReport:
    """What ``"auto"`` chose, and why.

    Attributes:
        factory: the chosen ``index_factory`` string.
        search_params: the chosen search parameters (``""`` for ``Flat``).
        target_recall: the recall of the exact top k asked for.
        k: the cut-off of the recall (``recall_at_10`` for k = 10).
        recall: the chosen setting's recall, measured on the sample queries.
        queries_per_s: its queries per second on the sample.
        flat_queries_per_s: exact search's queries per second on the same sample.
        speedup_vs_flat: ``queries_per_s / flat_queries_per_s``.
        num_vectors: vectors in the index.
        sample_queries: queries the setting was tuned and measured on.
        reason: why this one, in words.
        tried: every setting measured, in order (the chosen one among them).
        tune_s: seconds spent building and measuring.
    """

    factory: str
    search_params: str
    target_recall: float
    k: int
    recall: float
    queries_per_s: float
    flat_queries_per_s: float
    speedup_vs_flat: float
    num_vectors: int
    sample_queries: int
    reason: str
    tried: tuple[Trial, ...] = field(default_factory=tuple)
    tune_s: float = 0.0

    @property
    def indexes_tried(self) -> list[str]:
        """The factory strings tried, in order, each once."""
        return list(dict.fromkeys(t.factory for t in self.tried))

    def summary(self) -> str:
        """One line: what was chosen, its measured recall and speed, and why."""
        settings, indexes = len(self.tried), len(self.indexes_tried)
        tried = (
            f"; {settings} setting{'s' * (settings != 1)} of {indexes} "
            f"index{'es' * (indexes != 1)} tried"
        )
        if self.factory == "Flat":
            return (
                f"index_factory 'auto' chose Flat (exact search, target recall@{self.k} "
                f"{self.target_recall:g}): {self.reason}" + (tried if settings > 1 else "")
            )
        return (
            f"index_factory 'auto' chose {self.factory} with {self.search_params or 'defaults'}: "
            f"recall@{self.k} {self.recall:.4f} of exact search on {self.sample_queries} "
            f"sample queries (target {self.target_recall:g}), {self.speedup_vs_flat:.1f}x "
            f"Flat's queries/s ({self.queries_per_s:,.0f} vs {self.flat_queries_per_s:,.0f}); "
            f"{self.reason}{tried}"
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record (``recall_at_<k>`` for the recall; rounded timings)."""
        record = asdict(self)
        record[f"recall_at_{self.k}"] = record.pop("recall")
        record["tried"] = [
            {**asdict(t), "queries_per_s": round(t.queries_per_s, 1),
             "speedup_vs_flat": round(t.speedup_vs_flat, 2), "build_s": round(t.build_s, 2)}
            for t in self.tried
        ]  # fmt: skip
        for key in ("queries_per_s", "flat_queries_per_s", "tune_s"):
            record[key] = round(record[key], 1)
        record["speedup_vs_flat"] = round(record["speedup_vs_flat"], 2)
        return record


@dataclass(frozen=True)
class TunedIndex:
    """The index ``"auto"`` chose (built, its search parameters set) and the report."""

    index: DocIndex
    report: TuneReport


def time_search(index: DocIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Search ``queries`` (batches of 256, as a run does) and time it.

    One warm-up search, then the whole set is searched, again and again until at least
    :data:`MIN_TIMED_S` seconds have gone by (short timings are noisy).

    Returns:
        ``(positions of the first pass, queries per second)``.
    """
    index.search(queries[: min(len(queries), 8)], k)
    start = time.perf_counter()
    _, positions = index.search(queries, k)
    passes = 1
    while time.perf_counter() - start < MIN_TIMED_S:
        index.search(queries, k)
        passes += 1
    return positions, passes * len(queries) / (time.perf_counter() - start)


def _powers(top: int, bottom: int = 1) -> list[int]:
    """``bottom, 2 x bottom, 4 x bottom, ...`` below ``top``, then ``top``."""
    values = [bottom]
    while values[-1] * 2 < top:
        values.append(values[-1] * 2)
    return values + ([top] if top > values[-1] else [])


def _sweeps(index: DocIndex) -> tuple[list[int], str, list[int]]:
    """The parameters to tune on ``index``: ``(k_factor_rf values or [], name, values)``
    where ``name`` is the base index's parameter (``""``: none) and ``values`` its powers
    of two, cheapest first."""
    import faiss

    base: Any = index.index
    outer: list[int] = []
    if isinstance(base, faiss.IndexRefine):
        outer = list(_K_FACTORS)
        base = faiss.downcast_index(base.base_index)
    ivf = faiss.try_extract_index_ivf(base)
    if ivf is not None:
        return outer, "nprobe", _powers(int(ivf.nlist))
    if isinstance(base, faiss.IndexHNSW):
        return outer, "efSearch", _powers(_MAX_EF_SEARCH, bottom=16)
    return outer, "", []


def sweep_search_params(
    index: DocIndex,
    queries: np.ndarray,
    exact: np.ndarray,
    k: int,
    target_recall: float,
    flat_queries_per_s: float,
    build_s: float = 0.0,
    floor_queries_per_s: float = 0.0,
) -> list[Trial]:
    """Tune one index's search parameters on ``queries`` against their exact top k.

    Raises each parameter from its cheapest value until the recall reaches the target
    (see the module's docstring); a sweep stops when a setting is slower than
    ``max(flat_queries_per_s, floor_queries_per_s, the best setting found)``. The index
    is left with the last setting measured.

    Args:
        index: the index (built).
        queries: the sample queries (n, dim).
        exact: their exact top positions (n, >= k), best first.
        k: the recall's cut-off.
        target_recall: the recall to reach (:func:`check_target_recall`).
        flat_queries_per_s: exact search's queries per second on the same queries.
        build_s: the index's build time, recorded in each trial.
        floor_queries_per_s: a speed already reached by another index (0: none).

    Returns:
        Every setting measured, in order.
    """
    trials: list[Trial] = []
    outer, name, values = _sweeps(index)

    def measure(params: str) -> Trial:
        if params:
            index.set_search_params(params)
        positions, qps = time_search(index, queries, k)
        recall = recall_of_exact(positions, exact, k)
        trial = Trial(
            index.factory, index.search_params, recall, qps, qps / flat_queries_per_s,
            build_s, recall >= target_recall,
        )  # fmt: skip
        trials.append(trial)
        return trial

    def floor() -> float:
        meeting = [t.queries_per_s for t in trials if t.meets_target]
        return max([flat_queries_per_s, floor_queries_per_s, *meeting])

    def smallest_meeting(prefix: str, top: int) -> int | None:
        """The cheapest value of ``name`` up to ``top`` meeting the target (None: none;
        0: ``name`` is ``""`` and the setting ``prefix`` meets it)."""
        if not name:
            return 0 if measure(prefix.rstrip(",")).meets_target else None
        failed, last_recall = 0, -1.0
        for value in [v for v in values if v <= top]:
            trial = measure(f"{prefix}{name}={value}")
            if trial.meets_target:
                middle = (failed + value) // 2  # the 1.5 x step after the last failure
                if failed and failed < middle < value:
                    if measure(f"{prefix}{name}={middle}").meets_target:
                        return middle
                return value
            if trial.queries_per_s < floor():
                return None  # raising it further only slows the search down
            if trial.recall - last_recall < _PLATEAU:
                return None  # doubling it gained nothing: the index's ceiling
            failed, last_recall = value, trial.recall
        return None

    top = values[-1] if values else 0
    if not outer:
        smallest_meeting("", top)
        return trials
    for k_factor in outer:
        prefix = f"k_factor_rf={k_factor},"
        if values and not measure(f"{prefix}{name}={top}").meets_target:
            continue  # even the largest base setting misses: more candidates are needed
        found = smallest_meeting(prefix, top)
        if found is not None:
            if not values or found == values[0]:
                break  # the cheapest base setting is enough: more candidates only cost
            top = found  # more candidates never need a larger base setting
    return trials


def _sample(queries: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(queries) <= size:
        return queries
    rows = np.sort(np.random.default_rng(seed).choice(len(queries), size, replace=False))
    return queries[rows]


def tune_index(
    vectors: np.ndarray,
    doc_ids: Sequence[str],
    queries: np.ndarray,
    target_recall: float = DEFAULT_TARGET_RECALL,
    k: int = 10,
    candidates: Sequence[str] | None = None,
    metric: str = "ip",
    sample_queries: int = DEFAULT_SAMPLE_QUERIES,
    min_vectors: int = MIN_VECTORS_FOR_APPROXIMATE,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> TunedIndex:
    """Choose the fastest index setting whose recall of the exact top k reaches a target.

    ``Flat`` is built first: its top k of the sample queries is the reference, its speed
    the baseline. Each candidate is then built with :func:`~helpers.index.build_index` and
    its search parameters tuned (:func:`sweep_search_params`); the fastest setting that
    reaches ``target_recall`` wins, ``Flat`` included (recall 1 by definition). Only the
    winner is kept in memory. Timings are on the CPU, where the index is built.

    Args:
        vectors: float32 array (n, dim), one row per document.
        doc_ids: the id of each row.
        queries: float32 array (m, dim): the run's own query vectors.
        target_recall: the share of the exact top ``k`` to keep, in (0, 1] (1.0: results
            identical to exact search's top k).
        k: the recall's cut-off.
        candidates: ``index_factory`` strings to try besides ``Flat`` (None:
            :func:`default_candidates`).
        metric: ``"ip"`` or ``"l2"``.
        sample_queries: tune on a seeded sample of this many queries (all when fewer).
        min_vectors: below this many vectors, ``Flat`` is chosen without trying others.
        seed: the sample's seed.
        log: called with a line per index tried (e.g. ``print``); None: silent.

    Returns:
        The chosen index (its search parameters set) and a :class:`TuneReport`.

    Raises:
        SearchIndexError: naming the parameter: a ``target_recall`` outside (0, 1], a
            non-positive ``k``, ``sample_queries`` or negative ``min_vectors``, queries
            whose dimension differs from the vectors', no queries, or a candidate FAISS
            rejects or cannot train on these vectors; and :func:`build_index`'s errors.
    """
    started = time.perf_counter()
    target = check_target_recall(target_recall)
    check_metric(metric)
    for label, value, least in (("k", k, 1), ("sample_queries", sample_queries, 1),
                                ("min_vectors", min_vectors, 0)):  # fmt: skip
        if not is_count(value) or value < least:
            raise SearchIndexError(f"{label}: expected an integer >= {least}, got {value!r}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(doc_ids) or len(vectors) == 0:
        raise SearchIndexError(
            f"vectors: expected one row per document id ({len(doc_ids)}), got {vectors.shape}"
        )
    if queries.ndim != 2 or len(queries) == 0 or queries.shape[1] != vectors.shape[1]:
        raise SearchIndexError(
            f"queries: expected at least one query of dimension {vectors.shape[1]} "
            f"(the vectors'), got shape {queries.shape}"
        )
    num, dim = vectors.shape
    small = num < min_vectors
    if candidates is None:
        candidates = default_candidates(num, dim)
    elif isinstance(candidates, str) or not all(isinstance(c, str) for c in candidates):
        raise SearchIndexError(
            "candidates: expected a list of index_factory strings such as "
            f"['HNSW32', 'IVF1024,Flat'], got {candidates!r}"
        )
    chosen = [] if small else list(candidates)
    for factory in chosen:
        check_factory(factory, metric, dim=dim, num_vectors=num)
    say = log or (lambda line: None)

    sample = _sample(queries, sample_queries, seed)
    start = time.perf_counter()
    best_index = build_index(vectors, doc_ids, "Flat", metric)
    flat_build = time.perf_counter() - start
    exact, flat_qps = time_search(best_index, sample, k)
    best = Trial("Flat", "", 1.0, flat_qps, 1.0, flat_build, True)
    tried = [best]
    say(f"Flat: {flat_qps:,.0f} queries/s on {len(sample)} sample queries (the reference)")
    for factory in chosen:
        start = time.perf_counter()
        index = build_index(vectors, doc_ids, factory, metric)
        build_s = time.perf_counter() - start
        trials = sweep_search_params(
            index, sample, exact, k, target, flat_qps, build_s, best.queries_per_s
        )
        tried += trials
        meeting = [t for t in trials if t.meets_target]
        winner = max(meeting, key=lambda t: t.queries_per_s, default=None)
        top = max(trials, key=lambda t: t.recall)
        say(
            f"{factory}: built in {build_s:.1f} s; "
            + (
                f"{winner.search_params or 'defaults'} reaches recall@{k} {winner.recall:.4f} "
                f"at {winner.speedup_vs_flat:.1f}x Flat"
                if winner
                else f"no setting reached the target (best recall@{k} {top.recall:.4f} "
                f"with {top.search_params})"
            )
        )
        if winner is not None and winner.queries_per_s > best.queries_per_s:
            index.set_search_params(winner.search_params)
            best, best_index = winner, index
        del index
    if small:
        reason = (
            f"{num:,} vectors, fewer than {min_vectors:,}: exact search is fast enough at this size"
        )
    elif best.factory == "Flat":
        reason = (
            f"no approximate setting reaching recall@{k} {target:g} on {len(sample)} sample "
            "queries was faster than exact search"
        )
    else:
        reason = f"the fastest of the settings reaching the target recall@{k} {target:g}"
    report = TuneReport(
        factory=best.factory,
        search_params=best.search_params,
        target_recall=target,
        k=k,
        recall=best.recall,
        queries_per_s=best.queries_per_s,
        flat_queries_per_s=flat_qps,
        speedup_vs_flat=best.speedup_vs_flat,
        num_vectors=num,
        sample_queries=len(sample),
        reason=reason,
        tried=tuple(tried),
        tune_s=time.perf_counter() - started,
    )
    return TunedIndex(best_index, report)
