"""One configuration evaluated end to end, and the record of what was evaluated.

A *configuration* is a model with its settings (backend, query instruction, dtype, ...)
searched through one index. :func:`evaluate_configuration` runs its whole path: encode
the corpus and the queries, build the index (save it and load it back, when asked),
search, and compute every metric. Notebook 1 calls it for both of its configurations;
the second one may reuse the first one's corpus vectors or index (same model: only the
queries change).

:func:`results_record` builds what ``metrics.json`` holds: the mean metrics with the
settings that produced them and their provenance (library versions, the model's name,
revision and fingerprint, a fingerprint of the data actually evaluated, the notebook's
parameters and the date); :func:`write_results` writes it with the per-query metrics and
the TREC run files.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from helpers.data import RetrievalData
from helpers.index import (
    DEFAULT_TARGET_RECALL,
    DocIndex,
    TuneReport,
    build_index,
    check_factory,
    check_search_params,
    check_target_recall,
    is_auto,
    tune_index,
)
from helpers.io import write_json
from helpers.metrics import (
    METRIC_DEFINITIONS,
    METRICS,
    Evaluation,
    Run,
    check_cutoffs,
    evaluate,
    metric_keys,
)
from helpers.reports import write_per_query_csv, write_trec_run
from helpers.stats import compare_runs

PROVENANCE_LIBRARIES = (
    "numpy", "faiss-cpu", "faiss-gpu", "torch", "transformers", "tokenizers",
    "sentence-transformers", "FlagEmbedding", "datasets", "pandas", "scipy",
)  # fmt: skip
"""The distributions whose versions :func:`results_record` records (those installed)."""


class EncoderLike(Protocol):
    """What a configuration needs from an encoder (every encoder of
    :func:`helpers.models.load_encoder` has it)."""

    @property
    def dim(self) -> int: ...  # the dimension of the vectors

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...  # float32 rows

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray: ...  # float32 rows

    def model_fingerprint(self) -> str: ...  # what makes the document vectors what they are

    def settings(self) -> dict[str, Any]: ...  # "model", "revision", ... for the results


@dataclass(frozen=True)
class ConfigurationResult:
    """One configuration, evaluated.

    Attributes:
        run: query id -> document id -> score, the top ``max(cutoffs)`` of each query.
        evaluation: per-query and mean metrics of the run.
        index: the index searched.
        query_vectors: one row per query, in ``query_ids`` order.
        corpus_vectors: one row per document, in ``doc_ids`` order; None when a given
            index was searched (nothing was encoded for the corpus).
        query_ids: the queries, in the collection's order.
        doc_ids: the documents, in the collection's order.
        cutoffs: the cut-offs k, sorted.
        metrics: the metric names evaluated (keys of :data:`helpers.metrics.METRICS`).
        tuning: with ``factory="auto"``, what was chosen and why
            (:class:`helpers.index.TuneReport`; ``.summary()`` is one line); else None.
    """

    run: Run
    evaluation: Evaluation
    index: DocIndex
    query_vectors: np.ndarray
    corpus_vectors: np.ndarray | None
    query_ids: list[str]
    doc_ids: list[str]
    cutoffs: list[int]
    metrics: list[str]
    tuning: TuneReport | None = None


def _check_rows(name: str, vectors: np.ndarray, expected: int) -> None:
    if vectors.ndim != 2 or len(vectors) != expected:
        raise ValueError(f"{name}: expected {expected} rows (one per id), got {vectors.shape}")


def corpus_texts(data: RetrievalData) -> list[str]:
    """The corpus texts :func:`evaluate_configuration` encodes, in its order: one per
    document of ``data.corpus``, in the corpus's order (row i of the corpus vectors is
    document ``list(data.corpus)[i]``). Encoding them elsewhere (another process, a
    cluster) into the embedding cache fills the very entry it then reads.

    Args:
        data: the collection.

    Returns:
        The texts, in order.
    """
    return [data.corpus[doc_id] for doc_id in data.corpus]


def evaluate_configuration(
    encoder: EncoderLike,
    data: RetrievalData,
    cutoffs: Sequence[int],
    relevance_level: int,
    *,
    metrics: Sequence[str] = tuple(METRICS),
    corpus_vectors: np.ndarray | None = None,
    query_vectors: np.ndarray | None = None,
    index: DocIndex | None = None,
    factory: str = "Flat",
    search_params: str = "",
    target_recall: float | None = None,
    index_folder: str | Path | None = None,
    search_device: str | None = None,
    progress: bool = False,
) -> ConfigurationResult:
    """Encode, index, search and evaluate one configuration on a collection.

    In order: the index settings are checked (before anything is encoded), the corpus is
    encoded and the index built (unless ``corpus_vectors`` or ``index`` is given), the
    queries are encoded (unless ``query_vectors`` is given), the index is saved to
    ``index_folder`` with the model's fingerprint and loaded back from it (when given),
    moved to ``search_device`` (when given), searched for the top ``max(cutoffs)`` of every
    query, and the run is evaluated against the judgements.

    Args:
        encoder: the configuration's model.
        data: the collection (queries, corpus and judgements).
        cutoffs: the cut-offs k of every metric.
        relevance_level: the grade from which a judgement counts as relevant (>= 1).
        metrics: the metric names to compute (default: all of them).
        corpus_vectors: the corpus already encoded by this model (one row per document of
            ``data.corpus``, in its order): reused, not encoded again.
        query_vectors: the queries already encoded the same way (one row per query).
        index: an index over this collection's corpus to search instead of building one
            (for a second configuration whose corpus vectors are the first one's).
        factory: the FAISS ``index_factory`` string of the index to build, or ``"auto"``:
            after both sides are encoded, :func:`helpers.index.tune_index` chooses the
            fastest index and search parameters whose recall of the exact top 10, measured
            on a sample of these queries, reaches ``target_recall`` (``Flat`` below 50,000
            documents); the index it returns is then used as if given explicitly (saved,
            loaded back, searched), and :attr:`ConfigurationResult.tuning` says what it
            chose.
        search_params: FAISS search parameters of the index to build (``""``: defaults;
            must be ``""`` with ``"auto"``, which chooses them).
        target_recall: with ``factory="auto"``, the share of the exact top 10 the index
            must keep, in (0, 1] (None: 0.99; 1.0: the exact top 10). Checked whenever
            given; an explicit ``factory`` does not use it.
        index_folder: where to save the index, with the model's fingerprint; the copy
            loaded back from it is the one searched (None: not saved).
        search_device: where to search (see :meth:`helpers.index.DocIndex.to_device`;
            None: where the index is).
        progress: show progress bars while searching.

    Returns:
        The run, its evaluation, the index and the vectors.

    Raises:
        ValueError: when both ``index`` and ``corpus_vectors`` are given, or vectors do not
            have one row per query or document; and the errors of the index checks
            (:func:`helpers.index.check_factory`, a ``target_recall`` outside (0, 1],
            ``search_params`` given with ``"auto"``), of the encoder, of the search and of
            :func:`helpers.metrics.evaluate`.
    """
    if index is not None and corpus_vectors is not None:
        raise ValueError("index, corpus_vectors: give one of them (the index holds the vectors)")
    cutoffs = check_cutoffs(list(cutoffs))
    doc_ids, query_ids = list(data.corpus), list(data.queries)
    auto = is_auto(factory)
    target = check_target_recall(DEFAULT_TARGET_RECALL if target_recall is None else target_recall)
    tuning = None
    if index is None:
        if auto and (not isinstance(search_params, str) or search_params.strip()):
            raise ValueError(
                f"search_params: index_factory 'auto' chooses them; got {search_params!r}: "
                "leave search_params empty, or give an index_factory such as 'IVF1024,Flat'"
            )
        if not auto:
            check_factory(factory, dim=encoder.dim, num_vectors=len(doc_ids))
            check_search_params(factory, search_params, dim=encoder.dim)
        if corpus_vectors is None:
            corpus_vectors = encoder.encode_corpus(corpus_texts(data))
        _check_rows("corpus_vectors", corpus_vectors, len(doc_ids))
        if not auto:
            index = build_index(
                corpus_vectors, doc_ids, factory=factory, search_params=search_params
            )
    elif index.size != len(doc_ids):
        raise ValueError(f"index: holds {index.size} vectors, the corpus has {len(doc_ids)}")
    if query_vectors is None:
        query_vectors = encoder.encode_queries([data.queries[q] for q in query_ids])
    _check_rows("query_vectors", query_vectors, len(query_ids))
    if index is None:  # "auto": tuned on these very queries
        assert corpus_vectors is not None
        tuned = tune_index(corpus_vectors, doc_ids, query_vectors, target_recall=target)
        index, tuning = tuned.index, tuned.report
    if index_folder is not None:
        fingerprint = encoder.model_fingerprint()
        index.save(index_folder, model_fingerprint=fingerprint)
        index = DocIndex.load(
            index_folder, expected_dim=encoder.dim, expected_metric="ip", expected_model=fingerprint
        )
    if search_device is not None:
        index.to_device(search_device)
    run = index.search_run(query_ids, query_vectors, k=max(cutoffs), progress=progress)
    evaluation = evaluate(
        data.qrels, run, cutoffs=cutoffs, metrics=list(metrics), relevance_level=relevance_level
    )
    return ConfigurationResult(
        run=run,
        evaluation=evaluation,
        index=index,
        query_vectors=query_vectors,
        corpus_vectors=corpus_vectors,
        query_ids=query_ids,
        doc_ids=doc_ids,
        cutoffs=cutoffs,
        metrics=list(metrics),
        tuning=tuning,
    )


def compare_configurations(
    first: ConfigurationResult,
    second: ConfigurationResult,
    keys: Sequence[str],
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Paired tests of the second configuration against the first, one row per metric key.

    Args:
        first: configuration a.
        second: configuration b, on the same queries.
        keys: metric keys to test, e.g. ``["ndcg_at_10", "recall_at_100"]``.
        seed: seed of the bootstrap and randomisation samples.

    Returns:
        :meth:`helpers.stats.PairedComparison.as_dict` of each key (b - a), in order.
    """
    a, b = first.evaluation.per_query, second.evaluation.per_query
    return [compare_runs(a, b, key, seed=seed).as_dict() for key in keys]


def data_fingerprint(data: RetrievalData) -> str:
    """SHA-256 of the queries, documents and judgements of a collection (ids and texts).

    Each query ``[id, text]``, document ``[id, text]`` and judgement
    ``[query id, document id, grade]`` is written as one line of compact JSON, each kind
    sorted by id, and the lines are hashed in that order: the same collection gives the
    same fingerprint whatever order it was read in, and any changed text, id or grade
    gives another.

    Returns:
        The hexadecimal digest (64 characters).
    """
    digest = hashlib.sha256()
    parts: list[tuple[str, Any]] = [
        ("query", sorted(data.queries.items())),
        ("document", sorted(data.corpus.items())),
        ("judgement", sorted((q, d, g) for q, j in data.qrels.items() for d, g in j.items())),
    ]
    for kind, rows in parts:
        for row in rows:
            line = json.dumps([kind, *row], ensure_ascii=False, separators=(",", ":"))
            digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def installed_versions(names: Sequence[str] = PROVENANCE_LIBRARIES) -> dict[str, str]:
    """Python's version and the installed version of each distribution (absent ones left out)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def notebook_parameters(notebook: str | Path, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a notebook's parameters, as the run was given them.

    The names are those assigned in the notebook's cell tagged ``parameters`` (read from
    the file); the values are taken from ``namespace`` (``globals()`` in the notebook,
    where papermill's injected cell has already replaced them), copied.

    Args:
        notebook: the ``.ipynb`` file.
        namespace: where the parameters live.

    Raises:
        ValueError: naming the notebook when it has no cell tagged ``parameters``, or a
            parameter missing from ``namespace``.
    """
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    sources = [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in cells
        if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if not sources:
        raise ValueError(f"notebook: {notebook} has no cell tagged 'parameters'")
    names: list[str] = []
    for statement in ast.parse(sources[0]).body:
        targets = (
            statement.targets
            if isinstance(statement, ast.Assign)
            else ([statement.target] if isinstance(statement, ast.AnnAssign) else [])
        )
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    missing = [n for n in names if n not in namespace]
    if missing:
        raise ValueError(f"namespace: parameters {missing} of {notebook} are not defined")
    return {name: copy.deepcopy(namespace[name]) for name in names}


def results_record(
    result: ConfigurationResult,
    encoder: EncoderLike,
    data: RetrievalData,
    *,
    dataset: str,
    parameters: Mapping[str, Any],
    comparison: Sequence[Mapping[str, Any]] = (),
    second_encoder: EncoderLike | None = None,
    date: datetime | None = None,
) -> dict[str, Any]:
    """What ``metrics.json`` holds: the mean metrics, how they were obtained, provenance.

    Keys, in order: ``model`` (the encoder's settings and fingerprint), ``dataset`` (as
    given), ``data`` (its summary), ``index_factory``, ``search_params``, with
    ``index_factory="auto"`` ``index_tuning`` (:meth:`helpers.index.TuneReport.as_dict`:
    what was chosen, its measured recall and speed, every setting tried),
    ``relevance_level``, ``cutoffs``, ``num_queries``, ``metrics`` (metric key -> mean,
    metric by metric, each at every cut-off), ``definitions``, ``comparison`` (the paired
    tests, :func:`compare_configurations`) and ``provenance``: ``date`` (UTC, ISO 8601),
    ``libraries`` (:func:`installed_versions`), ``model`` and, with a second configuration,
    ``second_model`` (name, revision, fingerprint), ``data_sha256``
    (:func:`data_fingerprint`) and ``parameters``.

    Args:
        result: the (first) configuration.
        encoder: its model.
        data: the collection it was evaluated on.
        dataset: the dataset parameter (folder or hub id) as given.
        parameters: the notebook's parameters (:func:`notebook_parameters`).
        comparison: the paired tests against a second configuration, if any.
        second_encoder: the second configuration's model, if any.
        date: when (default: now).
    """
    fingerprint = encoder.model_fingerprint()
    return {
        "model": {**encoder.settings(), "fingerprint": fingerprint},
        "dataset": dataset,
        "data": data.summary(),
        "index_factory": result.index.factory,
        "search_params": result.index.search_params,
        **({"index_tuning": result.tuning.as_dict()} if result.tuning is not None else {}),
        "relevance_level": result.evaluation.relevance_level,
        "cutoffs": list(result.cutoffs),
        "num_queries": result.evaluation.num_queries,
        "metrics": {
            key: result.evaluation.mean[key] for key in metric_keys(result.metrics, result.cutoffs)
        },
        "definitions": METRIC_DEFINITIONS,
        "comparison": [dict(row) for row in comparison],
        "provenance": {
            "date": (date or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds"),
            "libraries": installed_versions(),
            "model": _identity(encoder, fingerprint),
            **(
                {"second_model": _identity(second_encoder, second_encoder.model_fingerprint())}
                if second_encoder is not None
                else {}
            ),
            "data_sha256": data_fingerprint(data),
            "parameters": dict(parameters),
        },
    }


def _identity(encoder: EncoderLike, fingerprint: str) -> dict[str, Any]:
    settings = encoder.settings()
    return {
        "name": settings.get("model"),
        "revision": settings.get("revision"),
        "fingerprint": fingerprint,
    }


def write_results(
    folder: str | Path,
    record: Mapping[str, Any],
    first: ConfigurationResult,
    tag: str,
    second: ConfigurationResult | None = None,
    second_tag: str = "",
) -> list[Path]:
    """Write a record and the runs behind it into ``folder``, each file atomically.

    ``metrics.json`` (the record), ``per_query.csv`` (every metric of every query) and
    ``run.trec`` (the ranking, for ``trec_eval``); with a second configuration also
    ``per_query_b.csv`` and ``run_b.trec``.

    Args:
        folder: the output folder (notebook 1: its staging folder).
        record: :func:`results_record`'s output.
        first: the configuration of the record.
        tag: the TREC run tag of ``run.trec`` (one word, e.g. the model's short name).
        second: the second configuration, if any.
        second_tag: the TREC run tag of ``run_b.trec``.

    Returns:
        The files written.
    """
    folder = Path(folder)
    written = [write_json(folder / "metrics.json", dict(record))]
    runs = [("", first, tag)] + ([("_b", second, second_tag)] if second is not None else [])
    for suffix, result, run_tag in runs:
        keys = metric_keys(result.metrics, result.cutoffs)
        per_query = result.evaluation.per_query
        written.append(write_per_query_csv(folder / f"per_query{suffix}.csv", per_query, keys))
        written.append(write_trec_run(folder / f"run{suffix}.trec", result.run, tag=run_tag))
    return written
