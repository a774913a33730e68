"""The FlagEmbedding tutorial's quick corpus: the positive passages of the first queries.

``load_retrieval_data(..., positives_corpus=n)`` makes the corpus of the positive passages
of the first n judged queries only; the big corpus of the hub layout is then neither read
nor downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.data.collection import RetrievalData
from helpers.data.files import DataError, find_file
from helpers.data.layouts import hub_corpus, load_hub_corpus
from helpers.data.records import Located, add_unique, file_records, hub_query, ids_by_text
from helpers.metrics import Qrels


def _hub_positives(
    records: Iterator[Located], count: int, corpus: dict[str, str] | None, source: str
) -> tuple[dict[str, str], Qrels, dict[str, str], int, int]:
    """The quick-mode collection of hub-layout query records: the positives of the first
    ``count`` judged queries (queries with at least one positive) make the corpus.

    The passages are the distinct positive texts in order of first appearance. Their ids
    come from ``corpus`` when given (every document with exactly that text, as in the
    normal mode); a text absent from it (or every text, without ``corpus``) gets the id
    ``pos-<k>``, k its 0-based order of first appearance. Records after the ``count``-th
    judged query are not read.

    Returns:
        ``(queries, qrels, passages, judged queries read, texts given a pos-<k> id)``.

    Raises:
        DataError: for a bad record (:func:`hub_query`), a duplicate query id, an empty
            query or positive, or no judged query at all.
    """
    by_text = ids_by_text(corpus) if corpus is not None else {}
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    passages: dict[str, str] = {}
    ids_of: dict[str, list[str]] = {}
    judged = without_id = 0
    for number, where, rec in records:
        qid, text, positives = hub_query(rec, number, where)
        add_unique(queries, qid, text, where)
        for positive in positives:
            if positive not in ids_of:
                ids = by_text.get(positive)
                if ids is None:
                    ids = [f"pos-{len(ids_of)}"]
                    without_id += 1
                for doc_id in ids:
                    add_unique(passages, doc_id, positive.strip(), f"{where}, positive")
                ids_of[positive] = ids
            for doc_id in ids_of[positive]:
                qrels.setdefault(qid, {})[doc_id] = 1
        if positives:
            judged += 1
            if judged == count:
                break
    if not queries:
        raise DataError(f"{source}: no queries (the file is empty)")
    if not judged:
        raise DataError(f"{source}: no query has a positive passage")
    return queries, qrels, passages, judged, without_id


def local_corpus_for_ids(
    corpus: str | Path | None, folder: Path
) -> tuple[str, dict[str, str]] | None:
    """The local corpus that gives the positives their ids in the quick mode of a
    hub-layout folder: ``corpus`` when given, else ``corpus.jsonl`` next to the queries,
    else None (the positives get ``pos-<k>`` ids)."""
    if corpus is not None and str(corpus):
        docs, source = load_hub_corpus(corpus, None)
        return source, docs
    path = find_file(folder, "corpus.jsonl")
    if path is None:
        return None
    return str(path), hub_corpus(file_records(path), str(path))


def positives_collection(
    records: Iterator[Located],
    count: int,
    local: tuple[str, dict[str, str]] | None,
    source: str,
    notes: dict[str, Any],
) -> tuple[dict[str, str], Qrels, dict[str, str]]:
    """Queries, judgements and corpus of the hub layout's quick mode
    (:func:`_hub_positives`), with what was done written in ``notes``."""
    queries, qrels, docs, judged, without_id = _hub_positives(
        records, count, local[1] if local else None, source
    )
    notes["corpus"] = _positives_note(count, judged)
    if local is None:
        notes["corpus_ids"] = "pos-<k>, k = order of first appearance of the positive text"
    else:
        notes["corpus_ids"] = f"from {local[0]} (matched by exact text)"
        if without_id:
            notes["corpus_ids"] += "; positives not in it: pos-<k>"
            notes["positives_without_corpus_id"] = without_id
    return queries, qrels, docs


def _positives_note(count: int, judged: int) -> str:
    """``notes["corpus"]`` of the quick mode: whose positives, and how many queries."""
    first = "the first judged query" if judged == 1 else f"the first {judged} judged queries"
    note = f"positives of {first}"
    if judged < count:
        note += f" (positives_corpus={count}; only {judged} judged queries)"
    return note


def beir_positives(data: RetrievalData, count: int) -> RetrievalData:
    """The BEIR quick mode: the first ``count`` judged queries, and as corpus the documents
    judged relevant (grade >= 1) for them, in order of first judgement, with their ids.

    Raises:
        DataError: when none of those documents is in the corpus.
    """
    judged = [qid for qid in data.queries if data.qrels.get(qid)][:count]
    passages: dict[str, str] = {}
    for qid in judged:
        for doc_id, grade in data.qrels[qid].items():
            if grade >= 1 and doc_id in data.corpus and doc_id not in passages:
                passages[doc_id] = data.corpus[doc_id]
    if not passages:
        raise DataError(
            f"dataset {data.name!r}: positives_corpus={count}: none of the first "
            f"{len(judged)} judged queries has a document judged relevant (grade >= 1) in "
            "the corpus"
        )
    queries: dict[str, str] = {}
    for qid, text in data.queries.items():
        queries[qid] = text
        if qid == judged[-1]:
            break
    qrels = {qid: judgements for qid, judgements in data.qrels.items() if qid in queries}
    notes = {**data.notes, "corpus": _positives_note(count, len(judged))}
    return RetrievalData(data.name, data.layout, data.split, queries, passages, qrels, notes)
