"""A loaded retrieval collection, its judgement checks and its sub-setting."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from helpers.data.files import DataError
from helpers.metrics import Qrels


@dataclass(frozen=True)
class RetrievalData:
    """A retrieval test collection.

    Attributes:
        name: where it came from (folder or hub id).
        layout: ``"beir"`` or ``"hub"``.
        split: the split of the judgements.
        queries: query id -> text, in file order.
        corpus: document id -> text (BEIR: ``title + " " + text``), in file order.
        qrels: query id -> document id -> grade, for the queries in ``queries``.
        notes: counts a user should know (unmatched positives, sub-sampling, ...).
    """

    name: str
    layout: str
    split: str
    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: Qrels
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts for display: queries, documents, judgements by grade."""
        grades: dict[int, int] = {}
        for judgements in self.qrels.values():
            for grade in judgements.values():
                grades[grade] = grades.get(grade, 0) + 1
        return {
            "layout": self.layout,
            "split": self.split,
            "queries": len(self.queries),
            "documents": len(self.corpus),
            "judgements": sum(grades.values()),
            "judgements_by_grade": dict(sorted(grades.items())),
            **self.notes,
        }


DANGLING_CHOICES = ("warn", "error", "ignore")


def check_judgements(data: RetrievalData, dangling: str = "warn") -> dict[str, int]:
    """Count judgements that point outside the collection, and act on them.

    Args:
        data: a loaded collection (before sub-setting).
        dangling: ``"warn"`` (a warning, then go on), ``"error"`` (raise) or ``"ignore"``.

    Returns:
        ``{"judged_queries_not_in_queries": n, "judgements_on_documents_not_in_corpus": m}``
        (for the hub layout the second counts positive texts found nowhere in the corpus).

    Raises:
        DataError: whatever ``dangling`` says, when none of the judgements points at a
            document of the corpus, or none of the judged queries is in the queries (the
            ids of the two sides differ, e.g. ``'1722.0'`` vs ``'1722'``: every score would
            be 0), with example ids of both sides; with ``dangling="error"`` when either
            count is positive; on an unknown ``dangling`` value.
    """
    if dangling not in DANGLING_CHOICES:
        raise DataError(f"dangling: expected one of {list(DANGLING_CHOICES)}, got {dangling!r}")
    unknown_queries = [q for q in data.qrels if q not in data.queries]
    unknown_docs = [
        (q, d) for q, judged in data.qrels.items() for d in judged if d not in data.corpus
    ]
    total = sum(len(judged) for judged in data.qrels.values())
    if total and len(unknown_docs) == total:
        raise DataError(
            f"dataset {data.name!r}: none of the {total} judgements point at a document of "
            f"the corpus: judged document ids e.g. {_examples(d for _, d in unknown_docs)}, "
            f"corpus ids e.g. {_examples(data.corpus)}; the qrels and the corpus must use "
            "the same ids"
        )
    if data.qrels and len(unknown_queries) == len(data.qrels):
        raise DataError(
            f"dataset {data.name!r}: none of the {len(data.qrels)} judged queries is in the "
            f"queries: judged query ids e.g. {_examples(unknown_queries)}, query ids e.g. "
            f"{_examples(data.queries)}; the qrels and the queries must use the same ids"
        )
    counts = {
        "judged_queries_not_in_queries": len(unknown_queries),
        "judgements_on_documents_not_in_corpus": len(unknown_docs)
        + int(data.notes.get("positives_not_in_corpus", 0)),
    }
    if any(counts.values()) and dangling != "ignore":
        problems = []
        if unknown_queries:
            problems.append(
                f"{len(unknown_queries)} judged queries are not in the queries file "
                f"(e.g. {unknown_queries[:3]})"
            )
        if counts["judgements_on_documents_not_in_corpus"]:
            example = f" (e.g. {unknown_docs[:3]})" if unknown_docs else ""
            problems.append(
                f"{counts['judgements_on_documents_not_in_corpus']} judgements point at "
                f"documents not in the corpus{example}; they can never be retrieved, so recall "
                "and nDCG cannot reach 1"
            )
        message = (
            f"dataset {data.name!r}: {'; '.join(problems)}. Set dangling='ignore' to accept "
            "this, or 'error' to refuse it."
        )
        if dangling == "error":
            raise DataError(message)
        warnings.warn(message, stacklevel=2)
    return counts


def _examples(ids: Iterable[str], count: int = 3) -> list[str]:
    """The first few distinct ids, for an error message."""
    found: list[str] = []
    for item in ids:
        if item not in found:
            found.append(item)
            if len(found) == count:
                break
    return found


def subset(data: RetrievalData, num_queries: int, max_corpus: int, seed: int) -> RetrievalData:
    """The first ``num_queries`` judged queries (0: all) and a corpus of at most
    ``max_corpus`` documents (0: all): every document judged for the kept queries plus a
    sample of the others drawn with ``random.Random(seed)``; what was done goes into the
    notes (``queries_without_judgements``, ``corpus_reduced_from``, ``corpus_kept_judged``).

    Warns:
        UserWarning: when the judged documents alone are more than ``max_corpus`` (all
            of them are kept).
    """
    judged = [qid for qid in data.queries if data.qrels.get(qid)]
    keep_queries = judged[:num_queries] if num_queries else judged
    queries = {qid: data.queries[qid] for qid in keep_queries}
    qrels = {qid: dict(data.qrels[qid]) for qid in keep_queries}
    notes = dict(data.notes)
    if len(judged) < len(data.queries):
        notes["queries_without_judgements"] = len(data.queries) - len(judged)
    docs = data.corpus
    if max_corpus and max_corpus < len(docs):
        judged_docs = {doc for j in qrels.values() for doc in j if doc in docs}
        others = [doc for doc in docs if doc not in judged_docs]
        extra = max(max_corpus - len(judged_docs), 0)
        sampled = set(random.Random(seed).sample(others, min(extra, len(others))))
        docs = {doc: text for doc, text in docs.items() if doc in judged_docs or doc in sampled}
        notes["corpus_reduced_from"] = len(data.corpus)
        if len(judged_docs) > max_corpus:
            notes["corpus_kept_judged"] = len(judged_docs)
            warnings.warn(
                f"max_corpus={max_corpus}: kept {len(judged_docs):,} passages, all judged "
                "passages of the kept queries (more than max_corpus); lower num_queries for "
                "a smaller corpus",
                stacklevel=3,
            )
    return RetrievalData(data.name, data.layout, data.split, queries, docs, qrels, notes)
