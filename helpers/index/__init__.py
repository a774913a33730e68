"""FAISS indexes built from ``index_factory`` strings, searched in batches, saved with their ids.

Modules, lowest first: :mod:`~helpers.index.checks` (metric, factory strings, search
parameters, training sizes: checked before any vector is computed),
:mod:`~helpers.index.gpu` (FAISS's GPU index, exact torch search),
:mod:`~helpers.index.doc_index` (:class:`DocIndex`: search, devices, save/load) and
:mod:`~helpers.index.build` (building from vectors, chunks or a stream; cost estimates;
top-k overlap) and :mod:`~helpers.index.tune` (``index_factory="auto"``: the fastest
setting that keeps a target recall of exact search).
"""

from helpers.index.build import (
    build_index,
    build_index_from_chunks,
    build_index_from_stream,
    estimate_resources,
    top_k_overlap,
)
from helpers.index.checks import (
    FAISS_METRICS,
    TRAINING_POINTS_PER_CENTROID,
    SearchIndexError,
    check_factory,
    check_search_params,
)
from helpers.index.doc_index import IDS_FILE, INDEX_FILE, META_FILE, DocIndex
from helpers.index.tune import (
    AUTO_FACTORY,
    DEFAULT_TARGET_RECALL,
    MIN_VECTORS_FOR_APPROXIMATE,
    Trial,
    TunedIndex,
    TuneReport,
    check_target_recall,
    default_candidates,
    is_auto,
    recall_of_exact,
    sweep_search_params,
    time_search,
    tune_index,
)

__all__ = [
    "AUTO_FACTORY",
    "DEFAULT_TARGET_RECALL",
    "MIN_VECTORS_FOR_APPROXIMATE",
    "IDS_FILE",
    "INDEX_FILE",
    "META_FILE",
    "FAISS_METRICS",
    "TRAINING_POINTS_PER_CENTROID",
    "DocIndex",
    "SearchIndexError",
    "Trial",
    "TuneReport",
    "TunedIndex",
    "build_index",
    "build_index_from_chunks",
    "build_index_from_stream",
    "check_factory",
    "check_search_params",
    "check_target_recall",
    "default_candidates",
    "estimate_resources",
    "is_auto",
    "recall_of_exact",
    "sweep_search_params",
    "time_search",
    "top_k_overlap",
    "tune_index",
]
