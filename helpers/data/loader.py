"""The public entry point: :func:`load_retrieval_data`, from a local folder or a hub id."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.data.collection import DANGLING_CHOICES, RetrievalData, check_judgements, subset
from helpers.data.files import DataError, find_file
from helpers.data.layouts import (
    EMBEDDED_DATASET,
    detect_layout,
    hub_queries,
    hub_records,
    hub_snapshot,
    is_hub_id,
    load_beir_folder,
    load_hub_corpus,
)
from helpers.data.positives import beir_positives, local_corpus_for_ids, positives_collection
from helpers.data.records import file_records, row_records
from helpers.hub import require_hub

#: The one split a local hub-layout folder holds (recorded as ``RetrievalData.split``).
HUB_FOLDER_SPLIT = "test"


def _count(name: str, value: Any, zero: str, unit: str) -> int:
    """A non-negative integer parameter.

    Raises:
        DataError: naming the parameter, for a negative number or a non-integer.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise DataError(f"{name}: expected 0 ({zero}) or a positive {unit}, got {value!r}")
    return int(value)


def load_retrieval_data(
    dataset: str | Path | None,
    corpus: str | Path | None = None,
    split: str = "",
    num_queries: int = 0,
    max_corpus: int = 0,
    seed: int = 0,
    dangling: str = "warn",
    *,
    positives_corpus: int = 0,
) -> RetrievalData:
    """Load queries, corpus and judgements from a local folder or a hub id.

    Args:
        dataset: a local folder (BEIR or hub MS MARCO layout) or a hub dataset id such as
            ``namespace-Pt/msmarco`` (hub layout) or ``mteb/scifact`` (BEIR files).
        corpus: optional separate corpus (hub layout only): a folder or file holding
            ``{"content"}`` records, or a hub id such as ``namespace-Pt/msmarco-corpus``.
            Empty: ``corpus.jsonl`` next to the queries, or ``<dataset>-corpus`` on the hub.
        split: judgement split. BEIR folder: a ``qrels/<split>.tsv`` file, ``""`` means
            ``test``. Hub-layout folder: it holds one split, ``""`` or ``"test"`` (recorded
            as ``test``). Hub id: a split of the dataset, ``""`` means ``dev``.
        num_queries: keep the first n judged queries (file order); 0 keeps all.
        max_corpus: 0 keeps the whole corpus. Otherwise keep every document judged for the
            kept queries plus a seeded random sample of the others, up to this many in all
            (when the judged documents alone are more, all of them are kept, with a
            warning and ``notes["corpus_kept_judged"]``). Scores on a reduced corpus are
            higher than on the full one.
        seed: seed of that sample.
        dangling: judgements on documents missing from the corpus, or judged queries
            missing from the queries: ``"warn"``, ``"error"`` or ``"ignore"``
            (:func:`check_judgements`). When *no* judgement matches, it is an error anyway.
        positives_corpus: 0: the normal corpus. n > 0: the FlagEmbedding tutorial's quick
            setting: the corpus is only the positive passages of the first n judged
            queries, and the queries are those n (``num_queries`` keeps fewer); the
            tutorial used ``num_queries=100, positives_corpus=5000`` on
            ``namespace-Pt/msmarco``. Hub layout: the distinct positive texts in order of
            first appearance, the big corpus is not read (for a hub id it is not
            downloaded); their ids come from a local corpus when there is one (``corpus``
            if given, else ``corpus.jsonl`` next to a local queries file; matched by exact
            text, every document with that text), otherwise (and for a text the local
            corpus lacks) ``pos-<k>``, k the text's 0-based order of first appearance.
            BEIR: the documents judged relevant (grade >= 1) for those queries, with their
            corpus ids, in order of first judgement; the judgements are kept as given.
            Recorded in ``notes["corpus"]``. Not combinable with ``max_corpus``.

    Returns:
        The collection, with ids kept and judgements restricted to the kept queries.

    Raises:
        DataError: on a missing folder or file, a wrong layout, an unknown split (with the
            splits available), malformed records (file and line), null or float ids,
            non-string texts, non-integer grades, empty files, duplicate ids, empty texts,
            judgements none of which matches the corpus, (``dangling="error"``) dangling
            judgements, or a bad parameter (named).
    """
    if dangling not in DANGLING_CHOICES:
        raise DataError(f"dangling: expected one of {list(DANGLING_CHOICES)}, got {dangling!r}")
    num_queries = _count("num_queries", num_queries, "all", "count")
    max_corpus = _count("max_corpus", max_corpus, "all", "count")
    positives_corpus = _count(
        "positives_corpus", positives_corpus, "the normal corpus", "number of queries"
    )
    if positives_corpus and max_corpus:
        raise DataError(
            f"positives_corpus={positives_corpus} and max_corpus={max_corpus}: two different "
            "corpus modes (the positives of the first queries, or a sample of the corpus); "
            "set one of them to 0"
        )
    split = "" if split is None else split
    if not isinstance(split, str):
        raise DataError(f"split: expected a split name (a string), got {split!r}")
    if dataset is None or not str(dataset):
        raise DataError(f"dataset: expected a folder or a hub id, e.g. {EMBEDDED_DATASET!r}")
    name = str(dataset)
    folder = Path(dataset).expanduser()
    notes: dict[str, Any] = {}
    if folder.is_dir():
        layout = detect_layout(folder)
    elif is_hub_id(name) and not folder.exists():
        layout = "hub-id"
    else:
        raise DataError(f"dataset: {name!r} is neither an existing folder nor a hub id (org/name)")

    if layout == "beir":
        if corpus is not None and str(corpus):
            raise DataError(
                f"corpus: {str(corpus)!r} given, but {name!r} is a BEIR folder, which has its "
                "own corpus.jsonl; `corpus` is for the hub layout only"
            )
        split = split or "test"
        queries, docs, qrels = load_beir_folder(folder, split)
    elif layout == "hub":
        if split not in ("", HUB_FOLDER_SPLIT):
            raise DataError(
                f"split: {split!r} is not a split of {name!r}: a hub-layout folder holds one "
                f"split, {HUB_FOLDER_SPLIT!r} (its queries.jsonl); use split='' or "
                f"{HUB_FOLDER_SPLIT!r}"
            )
        split = HUB_FOLDER_SPLIT
        queries_path = find_file(folder, "queries.jsonl")
        assert queries_path is not None
        records = file_records(queries_path)
        if positives_corpus:
            local = local_corpus_for_ids(corpus, folder)
            queries, qrels, docs = positives_collection(
                records, positives_corpus, local, str(queries_path), notes
            )
        else:
            docs, corpus_source = load_hub_corpus(corpus, default_folder=folder)
            queries, qrels, unmatched = hub_queries(records, docs, str(queries_path), corpus_source)
            notes["positives_not_in_corpus"] = unmatched
    else:  # a hub id: the hub MS MARCO layout through `datasets`, else BEIR files
        try:
            require_hub("dataset", name, EMBEDDED_DATASET)
        except OSError as err:
            raise DataError(str(err)) from err
        hub_split = split or "dev"
        first: dict[str, Any] = {}
        try:
            rows = hub_records(name, hub_split)
            first = next(rows, {})
        except DataError:
            if corpus is not None:
                raise
        if not ("query" in first and "positive" in first):
            snapshot = hub_snapshot(name)
            return load_retrieval_data(
                snapshot,
                None,
                split,
                num_queries,
                max_corpus,
                seed,
                dangling,
                positives_corpus=positives_corpus,
            )
        layout, split = "hub", hub_split
        records = row_records(_chain(first, rows), name)
        if positives_corpus:  # the big corpus is neither downloaded nor read
            given = load_hub_corpus(corpus, None) if corpus else None
            queries, qrels, docs = positives_collection(
                records, positives_corpus, (given[1], given[0]) if given else None, name, notes
            )
        else:
            docs, corpus_source = load_hub_corpus(
                corpus if corpus else f"{name}-corpus", default_folder=None
            )
            queries, qrels, unmatched = hub_queries(records, docs, name, corpus_source)
            notes["positives_not_in_corpus"] = unmatched

    data = RetrievalData(name, layout, split, queries, docs, qrels, notes)
    counts = check_judgements(data, dangling)
    notes.update({k: v for k, v in counts.items() if v})
    if not any(qrels.get(qid) for qid in queries):
        raise DataError(f"dataset {name!r}: no query has a judgement (nothing to evaluate)")
    if positives_corpus and layout == "beir":
        data = beir_positives(data, positives_corpus)
    return subset(data, num_queries, max_corpus, seed)


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``first``, then the rows of ``rest`` (a hub split whose first row was peeked at)."""
    yield first
    yield from rest
