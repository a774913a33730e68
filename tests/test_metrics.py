"""Metrics: hand-computed cases for each definition, and agreement with pytrec_eval."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
import pytrec_eval

from helpers import metrics as M

# One query, graded judgements; ranking d1..d5 (d3 and d9 unjudged / absent).
JUDGEMENTS = {"d1": 0, "d2": 2, "d4": 1, "d6": 3}  # R = 3 at level 1, 2 at level 2
RANKING = ["d1", "d2", "d3", "d4", "d5"]


@pytest.mark.parametrize(
    ("fn", "k", "level", "expected"),
    [
        (M.precision_at_k, 1, 1, 0.0),
        (M.precision_at_k, 2, 1, 0.5),
        (M.precision_at_k, 5, 1, 2 / 5),
        (M.precision_at_k, 10, 1, 2 / 10),  # divides by k even past the end of the run
        (M.recall_at_k, 2, 1, 1 / 3),
        (M.recall_at_k, 5, 1, 2 / 3),
        (M.recall_at_k, 5, 2, 1 / 2),
        (M.capped_recall_at_k, 2, 1, 1 / 2),  # 1 hit / min(2, 3)
        (M.capped_recall_at_k, 1, 1, 0.0),
        (M.capped_recall_at_k, 5, 1, 2 / 3),
        (M.success_at_k, 1, 1, 0.0),
        (M.success_at_k, 2, 1, 1.0),
        (M.mrr_at_k, 1, 1, 0.0),
        (M.mrr_at_k, 5, 1, 1 / 2),
        (M.mrr_at_k, 5, 3, 0.0),  # no grade-3 document retrieved
        (M.map_at_k, 5, 1, (1 / 2 + 2 / 4) / 3),
        (M.map_at_k, 2, 1, (1 / 2) / 3),
        (M.map_at_k, 5, 2, (1 / 2) / 2),
    ],
)
def test_hand_computed(fn, k, level, expected):
    assert fn(RANKING, JUDGEMENTS, k, level) == pytest.approx(expected, abs=1e-12)


def test_ndcg_hand_computed():
    # DCG@5: d2 (grade 2) at rank 2, d4 (grade 1) at rank 4
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    # ideal from all judgements: 3, 2, 1
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(RANKING, JUDGEMENTS, 5) == pytest.approx(dcg / idcg, abs=1e-12)
    # at k=1 the ideal is grade 3 at rank 1; d1 has grade 0
    assert M.ndcg_at_k(RANKING, JUDGEMENTS, 1) == 0.0
    # relevance level does not change nDCG
    assert M.ndcg_at_k(RANKING, JUDGEMENTS, 5, 3) == M.ndcg_at_k(RANKING, JUDGEMENTS, 5, 1)
    assert M.ndcg_at_k(["d6", "d2", "d4"], JUDGEMENTS, 3) == pytest.approx(1.0)


def test_no_relevant_documents_score_zero():
    judgements = {"a": 0}
    for fn in M.METRICS.values():
        assert fn(["a", "b"], judgements, 2, 1) == 0.0


def test_ties_broken_by_docid_descending():
    assert M.rank_documents({"a": 1.0, "c": 1.0, "b": 2.0}) == ["b", "c", "a"]
    # with a tie at the top, the larger id wins rank 1
    ev = M.evaluate({"q": {"a": 1}}, {"q": {"a": 0.5, "b": 0.5}}, cutoffs=[1], metrics=["mrr"])
    assert ev.mean["mrr_at_1"] == 0.0


def test_evaluate_means_missing_queries_and_does_not_mutate():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 0.9, "x": 0.1}, "other": {"b": 1.0}}
    before = (copy.deepcopy(qrels), copy.deepcopy(run))
    ev = M.evaluate(qrels, run, cutoffs=[1, 2], metrics=["success", "recall"])
    assert ev.num_queries == 2
    assert ev.per_query["q2"] == {
        "success_at_1": 0,
        "success_at_2": 0,
        "recall_at_1": 0,
        "recall_at_2": 0,
    }
    assert ev.mean["success_at_1"] == 0.5
    assert list(ev.mean) == ["success_at_1", "success_at_2", "recall_at_1", "recall_at_2"]
    assert (qrels, run) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cutoffs": [0]}, "cutoffs"),
        ({"cutoffs": []}, "cutoffs"),
        ({"metrics": ["ndgc"]}, "metrics"),
        ({"relevance_level": 0}, "relevance_level"),
    ],
)
def test_evaluate_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        M.evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, **kwargs)


def test_default_relevance_level():
    assert M.default_relevance_level({"q": {"a": 3, "b": 0}}) == 2
    assert M.default_relevance_level({"q": {"a": 1}}) == 1
    assert M.default_relevance_level({"q": {"a": 2}}) == 1


def _random_collection(seed: int, num_queries: int = 400):
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(num_queries):
        qid = f"q{q}"
        docs = [f"d{rng.randrange(80)}" for _ in range(60)]
        judged = docs[: rng.randrange(1, 20)] + [
            f"d{rng.randrange(80, 120)}"
        ]  # some never retrieved
        qrels[qid] = {d: rng.choice([0, 0, 1, 2, 3]) for d in judged}
        # few distinct scores: many ties, broken by doc id as trec_eval does
        run[qid] = {d: float(rng.randrange(6)) / 7 for d in docs[rng.randrange(10) :]}
    return qrels, run


CUTOFFS = [1, 3, 5, 10, 20, 100]


@pytest.mark.parametrize("level", [1, 2])
def test_agrees_with_pytrec_eval(level):
    qrels, run = _random_collection(seed=level)
    ours = M.evaluate(qrels, run, cutoffs=CUTOFFS, relevance_level=level)
    ks = ",".join(map(str, CUTOFFS))
    measures = {
        f"ndcg_cut.{ks}",
        f"recall.{ks}",
        f"P.{ks}",
        f"map_cut.{ks}",
        f"success.{ks}",
        "num_rel",
    }
    theirs = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=level).evaluate(run)
    assert set(theirs) <= set(ours.per_query)
    pairs = {
        "ndcg": "ndcg_cut",
        "recall": "recall",
        "precision": "P",
        "map": "map_cut",
        "success": "success",
    }
    checked = 0
    for qid, values in theirs.items():
        num_rel = values["num_rel"]
        for k in CUTOFFS:
            for name, trec_name in pairs.items():
                assert ours.per_query[qid][f"{name}_at_{k}"] == pytest.approx(
                    values[f"{trec_name}_{k}"], abs=1e-9
                ), (qid, name, k)
                checked += 1
            capped = values[f"recall_{k}"] * num_rel / min(k, num_rel) if num_rel else 0.0
            assert ours.per_query[qid][f"capped_recall_at_{k}"] == pytest.approx(capped, abs=1e-9)
    assert checked > 10_000
    # MRR@k: trec_eval's recip_rank on the run cut at k (in trec_eval's order)
    for k in CUTOFFS:
        cut = {q: {d: run[q][d] for d in M.rank_documents(run[q])[:k]} for q in run}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=level)
        for qid, values in rr.evaluate(cut).items():
            assert ours.per_query[qid][f"mrr_at_{k}"] == pytest.approx(
                values["recip_rank"], abs=1e-9
            )


# The FlagEmbedding evaluation tutorial's function, quoted as published (it takes lists
# of retrieved and of relevant texts per query); the helpers must give its numbers.
def _tutorial_calc_recall(preds, truths, cutoffs):
    recalls = np.zeros(len(cutoffs))
    for text, truth in zip(preds, truths):  # noqa: B905 (quoted as published)
        for i, c in enumerate(cutoffs):
            recall = np.intersect1d(truth, text[:c])
            recalls[i] += len(recall) / max(min(c, len(truth)), 1)
    recalls /= len(preds)
    return recalls


def test_tutorial_recall_equals_the_tutorials_function():
    qrels, run = _random_collection(seed=7, num_queries=100)
    cutoffs = [1, 3, 10, 50]
    for level in (1, 2):
        preds = [np.array(M.rank_documents(run[q])) for q in qrels]
        truths = [np.array([d for d, g in j.items() if g >= level]) for j in qrels.values()]
        expected = _tutorial_calc_recall(preds, truths, cutoffs)
        table = M.tutorial_comparison(qrels, run, cutoffs, relevance_level=level)
        for value, k in zip(expected, cutoffs, strict=True):
            assert table[f"@{k}"]["tutorial recall"] == pytest.approx(value, abs=1e-12)
            # ... which is capped recall, not success (they differ on this collection)
            assert table[f"@{k}"]["tutorial recall"] == pytest.approx(
                table[f"@{k}"]["capped_recall"], abs=1e-12
            )
        assert any(
            table[f"@{k}"]["tutorial recall"] != table[f"@{k}"]["success"] for k in cutoffs
        )


def test_tutorial_recall_hand_computed():
    # 3 relevant, 1 of them in the top 2: 1 / min(2, 3) = 0.5; at k=10: 2 hits / 3
    ranking = ["a", "x", "b", "y"]
    assert M.tutorial_recall_at_k(ranking, ["a", "b", "c"], 2) == 0.5
    assert M.tutorial_recall_at_k(ranking, ["a", "b", "c"], 10) == pytest.approx(2 / 3)
    assert M.tutorial_recall_at_k(ranking, [], 10) == 0.0


def test_tutorial_ndcg_ignores_unretrieved_relevant():
    # one relevant retrieved at rank 1, two more relevant never retrieved
    ranking, scores = ["a", "b"], [0.9, 0.1]
    assert M.tutorial_ndcg_at_k(ranking, scores, ["a", "x", "y"], 10) == pytest.approx(1.0)
    assert M.ndcg_at_k(ranking, {"a": 1, "x": 1, "y": 1}, 10) < 0.5


def test_tutorial_comparison_rows():
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    run = {"q": {"c": 0.9, "a": 0.5, "z": 0.1}}
    table = M.tutorial_comparison(qrels, run, [1, 2], relevance_level=1)
    # two relevant (a, b), one (a) in the top 2: hits / min(2, 2)
    assert table["@2"]["tutorial recall"] == 0.5 == table["@2"]["capped_recall"]
    assert table["@2"]["success"] == 1.0
    assert table["@2"]["recall"] == 0.5
    assert table["@1"]["success"] == 0.0
    # binary, retrieved-only ideal: one relevant retrieved at rank 2 of 3 -> 1/log2(3)
    assert table["@2"]["tutorial nDCG (binary, retrieved only)"] == pytest.approx(1 / math.log2(3))


@pytest.mark.parametrize("bad", [[], [0], [1, -5], [2.5], ["10"], "10", [True], None])
def test_check_cutoffs_rejects(bad):
    with pytest.raises(ValueError, match="cutoffs: expected a list of positive integers"):
        M.check_cutoffs(bad)


def test_check_cutoffs_sorts_and_dedups():
    assert M.check_cutoffs([100, 10, 1, 10, 5.0]) == [1, 5, 10, 100]
