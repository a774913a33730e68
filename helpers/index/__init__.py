"""FAISS indexes built from ``index_factory`` strings, searched in batches, saved with their ids.

Modules, lowest first: :mod:`~helpers.index.checks` (metric, factory strings, search
parameters, training sizes: checked before any vector is computed),
:mod:`~helpers.index.gpu` (FAISS's GPU index, exact torch search),
:mod:`~helpers.index.doc_index` (:class:`DocIndex`: search, devices, save/load) and
:mod:`~helpers.index.build` (building from vectors, chunks or a stream; cost estimates;
top-k overlap).
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

__all__ = [
    "IDS_FILE",
    "INDEX_FILE",
    "META_FILE",
    "FAISS_METRICS",
    "TRAINING_POINTS_PER_CENTROID",
    "DocIndex",
    "SearchIndexError",
    "build_index",
    "build_index_from_chunks",
    "build_index_from_stream",
    "check_factory",
    "check_search_params",
    "estimate_resources",
    "top_k_overlap",
]
