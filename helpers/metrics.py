"""Retrieval metrics with trec_eval's definitions, written down once.

Every metric here is computed per query from a ranking and the query's graded
judgements, then averaged over queries (arithmetic mean, as trec_eval does).

Conventions shared by all metrics (those of trec_eval 9 and ``pytrec_eval``):

* **Ranking.** A run gives each retrieved document a score. Documents are ranked by
  score, descending; ties are broken by document id, descending (string order), as
  trec_eval does. :func:`rank_documents` implements this order.
* **Relevance.** A judged document is *relevant* when its grade is at least
  ``relevance_level`` (trec_eval's ``-l``; 1 by default, 2 is customary for the graded
  0-3 judgements of TREC Deep Learning). Unjudged documents are non-relevant.
  ``R`` is the number of relevant documents of the query.
* **Gain.** nDCG uses the grade itself as gain (linear gain, trec_eval's
  ``ndcg_cut``); grades below 1 give no gain; ``relevance_level`` does not apply.
* **Cut-off.** ``@k`` looks at the first ``k`` ranked documents; a run with fewer
  than ``k`` documents is not padded, except that precision still divides by ``k``.

Definitions, with ``rel_i`` = 1 if the document at rank ``i`` is relevant, else 0, and
``hits@k = sum_{i<=k} rel_i``:

* ``precision_at_k`` = hits@k / k  (trec_eval ``P_k``)
* ``recall_at_k`` = hits@k / R  (trec_eval ``recall_k``; 0 when R = 0)
* ``capped_recall_at_k`` = hits@k / min(k, R)  (BEIR's and FlagEmbedding's
  "capped recall": reaches 1 when the first k are all relevant even if R > k;
  0 when R = 0)
* ``success_at_k`` = 1 if hits@k > 0 else 0  (trec_eval ``success_k``; also called
  hit rate or top-k accuracy)
* ``mrr_at_k`` = 1 / (rank of the first relevant document) if it is within the first
  k, else 0  (trec_eval ``recip_rank`` on the run cut at k; Voorhees, TREC-8 QA)
* ``map_at_k`` = (1/R) * sum_{i<=k} rel_i * precision_at_i  (trec_eval ``map_cut_k``:
  the divisor is all R relevant documents, not only those within k; 0 when R = 0)
* ``ndcg_at_k`` = DCG@k / IDCG@k with DCG@k = sum_{i<=k} g_i / log2(i + 1), g_i the
  grade of the document at rank i, and IDCG@k the DCG@k of the ideal ranking of
  *all* judged documents of the query (trec_eval ``ndcg_cut_k``; Järvelin and
  Kekäläinen, TOIS 2002, https://doi.org/10.1145/582415.582418); 0 when IDCG = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Qrels = dict[str, dict[str, int]]
"""Judgements: query id -> document id -> relevance grade."""

Run = dict[str, dict[str, float]]
"""Retrieval result: query id -> document id -> score (higher is better)."""

# ---------------------------------------------------------------------------
# LOW LEVEL FUNCTIONS: one query, one cut-off
# ---------------------------------------------------------------------------


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Order documents as trec_eval does: score descending, then document id descending.

    Args:
        scores: document id -> score for one query.

    Returns:
        Document ids, best first.
    """
    return [doc for doc, _ in sorted(scores.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def _relevance_flags(
    ranking: Sequence[str], judgements: Mapping[str, int], k: int, relevance_level: int
) -> list[int]:
    return [1 if judgements.get(doc, 0) >= relevance_level else 0 for doc in ranking[:k]]


def _num_relevant(judgements: Mapping[str, int], relevance_level: int) -> int:
    return sum(1 for grade in judgements.values() if grade >= relevance_level)


def precision_at_k(
    ranking: Sequence[str], judgements: Mapping[str, int], k: int, relevance_level: int = 1
) -> float:
    """P@k = hits@k / k (trec_eval ``P_k``). Range [0, 1]."""
    return sum(_relevance_flags(ranking, judgements, k, relevance_level)) / k


def recall_at_k(
    ranking: Sequence[str], judgements: Mapping[str, int], k: int, relevance_level: int = 1
) -> float:
    """Recall@k = hits@k / R (trec_eval ``recall_k``); 0 when R = 0. Range [0, 1]."""
    num_rel = _num_relevant(judgements, relevance_level)
    if num_rel == 0:
        return 0.0
    return sum(_relevance_flags(ranking, judgements, k, relevance_level)) / num_rel


def capped_recall_at_k(
    ranking: Sequence[str], judgements: Mapping[str, int], k: int, relevance_level: int = 1
) -> float:
    """Capped recall@k = hits@k / min(k, R) (BEIR, FlagEmbedding); 0 when R = 0."""
    num_rel = _num_relevant(judgements, relevance_level)
    if num_rel == 0:
        return 0.0
    return sum(_relevance_flags(ranking, judgements, k, relevance_level)) / min(k, num_rel)


def success_at_k(
    ranking: Sequence[str], judgements: Mapping[str, int], k: int, relevance_level: int = 1
) -> float:
    """Success@k = 1 if a relevant document is in the first k, else 0 (trec_eval ``success_k``)."""
    return 1.0 if any(_relevance_flags(ranking, judgements, k, relevance_level)) else 0.0


def mrr_at_k(
    ranking: Sequence[str], judgements: Mapping[str, int], k: int, relevance_level: int = 1
) -> float:
    """Reciprocal rank of the first relevant document within the first k, else 0."""
    for i, flag in enumerate(_relevance_flags(ranking, judgements, k, relevance_level), start=1):
        if flag:
            return 1.0 / i
    return 0.0


def map_at_k(
    ranking: Sequence[str], judgements: Mapping[str, int], k: int, relevance_level: int = 1
) -> float:
    """AP@k = (1/R) * sum_{i<=k} rel_i * P@i (trec_eval ``map_cut_k``); 0 when R = 0."""
    num_rel = _num_relevant(judgements, relevance_level)
    if num_rel == 0:
        return 0.0
    hits = 0
    total = 0.0
    for i, flag in enumerate(_relevance_flags(ranking, judgements, k, relevance_level), start=1):
        if flag:
            hits += 1
            total += hits / i
    return total / num_rel


def _dcg(gains: Iterable[float]) -> float:
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1))


def ndcg_at_k(
    ranking: Sequence[str], judgements: Mapping[str, int], k: int, relevance_level: int = 1
) -> float:
    """nDCG@k with linear gains and the ideal from all judgements (trec_eval ``ndcg_cut_k``).

    ``relevance_level`` is accepted for a uniform signature and ignored: trec_eval's
    nDCG uses the grades themselves.
    """
    del relevance_level
    gains = [max(judgements.get(doc, 0), 0) for doc in ranking[:k]]
    ideal = sorted((max(g, 0) for g in judgements.values()), reverse=True)[:k]
    idcg = _dcg(ideal)
    if idcg == 0:
        return 0.0
    return _dcg(gains) / idcg


MetricFn = Callable[[Sequence[str], Mapping[str, int], int, int], float]

METRICS: dict[str, MetricFn] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "capped_recall": capped_recall_at_k,
    "success": success_at_k,
    "mrr": mrr_at_k,
    "map": map_at_k,
    "precision": precision_at_k,
}
"""Metric name -> per-query function. Result keys are ``f"{name}_at_{k}"``."""

METRIC_DEFINITIONS: dict[str, str] = {
    "ndcg": "nDCG@k: DCG of the top k (linear gain = grade, discount log2(i+1)) over the "
    "DCG of the ideal ranking of all judged documents (trec_eval ndcg_cut)",
    "recall": "Recall@k: relevant documents in the top k / all relevant documents R "
    "(trec_eval recall)",
    "capped_recall": "Capped recall@k: relevant in the top k / min(k, R) (BEIR, FlagEmbedding)",
    "success": "Success@k: 1 if any relevant document is in the top k (hit rate)",
    "mrr": "MRR@k: 1 / rank of the first relevant document if within k, else 0",
    "map": "MAP@k: sum of precision at each relevant rank <= k, divided by R (trec_eval map_cut)",
    "precision": "P@k: relevant documents in the top k / k (trec_eval P)",
}


SHORT_DEFINITIONS: dict[str, str] = {
    "ndcg": "graded gain, ideal from all judgements",
    "recall": "relevant in top k / all relevant R",
    "capped_recall": "relevant in top k / min(k, R)",
    "success": "1 if any relevant in top k",
    "mrr": "1 / rank of first relevant, if <= k",
    "map": "AP of the top k, divided by R",
    "precision": "relevant in top k / k",
}
"""One line per metric, for the column next to its numbers."""

# ---------------------------------------------------------------------------
# HIGH LEVEL FUNCTIONS: a whole run
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Per-query and mean metrics of one run.

    Attributes:
        per_query: query id -> metric key (``"ndcg_at_10"``) -> value.
        mean: metric key -> mean over the evaluated queries.
        num_queries: how many queries were averaged.
        relevance_level: the grade from which a judgement counts as relevant.
    """

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    num_queries: int
    relevance_level: int


def check_cutoffs(cutoffs: Sequence[Any]) -> list[int]:
    """Validate cut-offs and return them sorted and without repeats.

    Raises:
        ValueError: unless every cut-off is a positive integer and there is at least one.
    """
    values = list(cutoffs) if isinstance(cutoffs, (list, tuple)) else None
    if not values or any(
        isinstance(k, bool) or not isinstance(k, (int, float)) or int(k) != k or k < 1
        for k in values
    ):
        raise ValueError(f"cutoffs: expected a list of positive integers, got {cutoffs!r}")
    return sorted({int(k) for k in values})


def metric_keys(metrics: Sequence[str], cutoffs: Sequence[int]) -> list[str]:
    """Result keys in a fixed order: metric by metric, each at every cut-off."""
    return [f"{m}_at_{k}" for m in metrics for k in cutoffs]


def evaluate(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    cutoffs: Sequence[int] = (1, 3, 5, 10, 100),
    metrics: Sequence[str] = tuple(METRICS),
    relevance_level: int = 1,
) -> Evaluation:
    """Evaluate a run against judgements.

    Every query that has judgements is evaluated; a judged query missing from the run
    scores 0 on every metric (trec_eval ``-c``; without ``-c`` trec_eval would skip it
    and report a higher mean). Queries of the run without judgements are ignored.
    Neither input is modified.

    Args:
        qrels: query id -> document id -> grade.
        run: query id -> document id -> score.
        cutoffs: positive cut-offs k.
        metrics: names from :data:`METRICS`.
        relevance_level: minimum grade of a relevant document (>= 1).

    Returns:
        The per-query values and their means.

    Raises:
        ValueError: on an unknown metric, a cut-off below 1, a relevance level below 1
            or empty judgements.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; expected names from {list(METRICS)}")
    check_cutoffs(cutoffs)
    if relevance_level < 1:
        raise ValueError(f"relevance_level: expected an integer >= 1, got {relevance_level}")
    if not qrels:
        raise ValueError("qrels: no judgements to evaluate against")
    k_max = max(cutoffs)
    keys = metric_keys(metrics, cutoffs)
    per_query: dict[str, dict[str, float]] = {}
    for qid, judgements in qrels.items():
        ranking = rank_documents(run.get(qid, {}))[:k_max]
        per_query[qid] = {
            f"{m}_at_{k}": METRICS[m](ranking, judgements, k, relevance_level)
            for m in metrics
            for k in cutoffs
        }
    mean = {key: float(np.mean([values[key] for values in per_query.values()])) for key in keys}
    return Evaluation(per_query, mean, len(per_query), relevance_level)


def default_relevance_level(qrels: Mapping[str, Mapping[str, int]]) -> int:
    """The customary relevance level for a set of judgements.

    TREC Deep Learning judges passages 0-3 and counts grades >= 2 as relevant for the
    binary metrics; binary judgements (and BEIR's 0-2 graded sets) use 1.

    Returns:
        2 when the highest grade is 3 or more, else 1.
    """
    top = max((g for j in qrels.values() for g in j.values()), default=1)
    return 2 if top >= 3 else 1


# ---------------------------------------------------------------------------
# THE FLAGEMBEDDING TUTORIAL'S FORMULAS, kept to show how they differ
# ---------------------------------------------------------------------------


def tutorial_recall_at_k(ranking: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """The FlagEmbedding evaluation tutorial's ``calc_recall`` for one query, as written.

    The tutorial (``recalls[i] += len(hits) / max(min(c, len(truth)), 1)`` with
    ``hits = np.intersect1d(truth, text[:c])``) divides the hits in the top k by
    ``max(min(k, R), 1)``: this is *capped recall* (:func:`capped_recall_at_k`), and 0
    for a query with no relevant document. The tutorial matched texts; here ids.
    """
    relevant_set = set(relevant)
    hits = len(relevant_set.intersection(ranking[:k]))
    return hits / max(min(k, len(relevant_set)), 1)


def tutorial_ndcg_at_k(
    ranking: Sequence[str], scores: Sequence[float], relevant: Iterable[str], k: int
) -> float:
    """The tutorial's nDCG: ``sklearn.metrics.ndcg_score`` on binary labels of the retrieved list.

    Its ideal ranking is built from the retrieved documents only (all ``max(cutoffs)`` of
    them), so relevant documents that were not retrieved cost nothing (a run with one
    relevant document in the top k and none elsewhere can score 1.0), and the value at a
    cut-off k depends on how many documents were retrieved: searching deeper (a larger
    ``max(cutoffs)``) brings more relevant documents into the ideal and lowers it.
    """
    from sklearn.metrics import ndcg_score

    relevant_set = set(relevant)
    labels = [[1 if doc in relevant_set else 0 for doc in ranking]]
    if sum(labels[0]) == 0:
        return 0.0
    return float(ndcg_score(labels, [list(scores)], k=k))


def tutorial_comparison(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    cutoffs: Sequence[int],
    relevance_level: int = 1,
) -> dict[str, dict[str, float]]:
    """The tutorial's recall and nDCG next to the definitions they should have matched.

    Returns:
        ``{"@k": {row label: mean over the judged queries}}`` for every cut-off, with rows
        tutorial recall (equal to capped recall), success, capped recall, recall,
        tutorial nDCG and nDCG.
    """
    evaluation = evaluate(
        qrels, run, cutoffs, ["success", "capped_recall", "recall", "ndcg"], relevance_level
    )
    rankings = {q: rank_documents(run.get(q, {})) for q in qrels}
    relevant = {q: [d for d, g in j.items() if g >= relevance_level] for q, j in qrels.items()}
    n = len(qrels)
    table: dict[str, dict[str, float]] = {}
    for k in cutoffs:
        tutorial_recall = sum(tutorial_recall_at_k(rankings[q], relevant[q], k) for q in qrels) / n
        tutorial_ndcg = (
            sum(
                tutorial_ndcg_at_k(rankings[q], [run[q][d] for d in rankings[q]], relevant[q], k)
                for q in qrels
            )
            / n
        )
        table[f"@{k}"] = {
            "tutorial recall": tutorial_recall,
            "success": evaluation.mean[f"success_at_{k}"],
            "capped_recall": evaluation.mean[f"capped_recall_at_{k}"],
            "recall": evaluation.mean[f"recall_at_{k}"],
            "tutorial nDCG (binary, retrieved only)": tutorial_ndcg,
            "ndcg": evaluation.mean[f"ndcg_at_{k}"],
        }
    return table
