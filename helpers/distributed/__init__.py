"""Runs that outgrow one machine, on Ray: many MTEB (model, task) pairs, one large corpus.

The top layer of the helpers (like :mod:`helpers.evaluation`): it may import every other
helpers module, and only notebooks, tests and benchmarks import it. ``import ray`` happens
inside the functions that need it: ``executor="local"`` never imports Ray.

* :mod:`~helpers.distributed.session`: the ``executor`` / ``ray_address`` parameters,
  starting or joining Ray (:func:`connect`), and the check that every node sees the same
  output and cache folders (:func:`check_shared_storage`);
* :mod:`~helpers.distributed.corpus`: notebook 1's corpus encoded on Ray into the
  embedding cache (:func:`encode_corpus_on_ray`);
* :mod:`~helpers.distributed.mteb_runs`: several models on MTEB tasks, one Ray task per
  (model, task) pair, or all in this process (:func:`run_mteb`).
"""

from helpers.distributed.corpus import CorpusRunReport, encode_corpus_on_ray
from helpers.distributed.mteb_runs import TaskSpec, run_mteb
from helpers.distributed.session import (
    EXECUTORS,
    RayCluster,
    StorageError,
    check_executor,
    check_shared_storage,
    connect,
    shutdown,
)

__all__ = [
    "EXECUTORS",
    "CorpusRunReport",
    "RayCluster",
    "StorageError",
    "TaskSpec",
    "check_executor",
    "check_shared_storage",
    "connect",
    "encode_corpus_on_ray",
    "run_mteb",
    "shutdown",
]
