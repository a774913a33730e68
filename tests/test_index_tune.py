"""``index_factory="auto"``: the chosen setting's recall checked against a brute-force numpy
top 10, exact results at a target of 1.0, Flat for small corpora, the report's numbers,
errors naming the parameter, and the tuned index saved and loaded with its parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.index import (
    META_FILE,
    DocIndex,
    SearchIndexError,
    build_index,
    check_factory,
    default_candidates,
    sweep_search_params,
    tune_index,
)
from helpers.index import tune as tune_module

K = 10


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Seeded unit vectors around 64 fixed centres (shaped like embeddings, not uniform)."""
    centres = np.random.default_rng(99).standard_normal((64, dim))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 64, n)] + 1.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


DOCS = _clustered(4000, 32, seed=0)
QUERIES = _clustered(120, 32, seed=1)
DOC_IDS = [f"d{i}" for i in range(len(DOCS))]


def _numpy_top(queries: np.ndarray, docs: np.ndarray, k: int = K) -> np.ndarray:
    """The exact top k of every query by brute force in float64 (no FAISS)."""
    scores = queries.astype(np.float64) @ docs.astype(np.float64).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _recall(positions: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row of ``exact`` found in the same row of ``positions``."""
    return float(
        np.mean([len(set(p[:K]) & set(e[:K])) / K for p, e in zip(positions, exact, strict=True)])
    )


EXACT = _numpy_top(QUERIES, DOCS)


@pytest.fixture(autouse=True)
def quick_timings(monkeypatch):
    """Time each search once (the choice is checked by recall, not by speed)."""
    monkeypatch.setattr(tune_module, "MIN_TIMED_S", 0.0)


@pytest.fixture
def slow_flat(monkeypatch):
    """Make exact search look 1,000 times slower than measured, so that the choice does
    not depend on this machine's timings (every approximate setting is then faster)."""
    measured = tune_module.time_search

    def timed(index, queries, k):
        positions, qps = measured(index, queries, k)
        return positions, qps / 1000 if index.factory == "Flat" else qps

    monkeypatch.setattr(tune_module, "time_search", timed)


def test_small_corpus_gets_flat_and_says_why():
    tuned = tune_index(DOCS, DOC_IDS, QUERIES)  # 4,000 vectors < 50,000
    report = tuned.report
    assert (report.factory, report.search_params, tuned.index.factory) == ("Flat", "", "Flat")
    assert report.recall == 1.0 and report.speedup_vs_flat == 1.0
    assert [t.factory for t in report.tried] == ["Flat"]
    assert "4,000 vectors, fewer than 50,000" in report.reason
    assert report.summary() == (
        "index_factory 'auto' chose Flat (exact search, target recall@10 0.99): "
        "4,000 vectors, fewer than 50,000: exact search is fast enough at this size"
    )
    positions = tuned.index.search(QUERIES, K)[1]
    assert _recall(positions, EXACT) == 1.0


def test_sweep_recalls_equal_an_independent_computation_and_the_setting_is_the_smallest():
    index = build_index(DOCS, DOC_IDS, "IVF64,Flat")
    # flat_queries_per_s tiny: nothing is pruned for being slow
    trials = sweep_search_params(index, QUERIES, EXACT, K, 0.95, flat_queries_per_s=1e-9)
    nprobes = [int(t.search_params.split("=")[1]) for t in trials]
    for trial in trials:  # each recall, measured again by numpy on a fresh setting
        index.set_search_params(trial.search_params)
        independent = _recall(index.search(QUERIES, K)[1], EXACT)
        assert trial.recall == pytest.approx(independent, abs=1e-12)
        assert trial.meets_target == (independent >= 0.95)
    meeting = [n for n, t in zip(nprobes, trials, strict=True) if t.meets_target]
    first = nprobes.index(meeting[0])  # up to the first success: 1, 2, 4, ...
    assert nprobes[:first] == [2**i for i in range(first)]
    best = min(meeting)
    assert all(not t.meets_target for n, t in zip(nprobes, trials, strict=True) if n < best)
    assert 1 < best < 64  # a real trade: neither the first setting nor a full scan


@pytest.mark.parametrize("timings", ["measured", "flat slowed"])
def test_auto_choice_reaches_the_target_measured_independently(request, timings):
    if timings == "flat slowed":
        request.getfixturevalue("slow_flat")
    tuned = tune_index(
        DOCS, DOC_IDS, QUERIES, target_recall=0.95, min_vectors=0,
        candidates=["IVF64,Flat", "HNSW16"],
    )  # fmt: skip
    report = tuned.report
    positions = tuned.index.search(QUERIES, K)[1]
    independent = _recall(positions, EXACT)
    assert independent >= 0.95
    assert report.recall == pytest.approx(independent, abs=1e-12)
    assert (tuned.index.factory, tuned.index.search_params) == (
        report.factory, report.search_params,
    )  # fmt: skip
    assert report.sample_queries == len(QUERIES) and report.num_vectors == len(DOCS)
    assert report.indexes_tried == ["Flat", "IVF64,Flat", "HNSW16"]
    fastest = max((t for t in report.tried if t.meets_target), key=lambda t: t.queries_per_s)
    assert (fastest.factory, fastest.search_params) == (report.factory, report.search_params)
    if timings == "flat slowed":
        assert report.factory != "Flat" and report.search_params
        assert report.speedup_vs_flat > 1 and "fastest of the settings" in report.reason


def test_target_one_gives_the_exact_top_k(slow_flat):
    tuned = tune_index(
        DOCS, DOC_IDS, QUERIES, target_recall=1.0, min_vectors=0, candidates=["IVF64,Flat"]
    )
    assert tuned.report.factory == "IVF64,Flat" and tuned.report.recall == 1.0
    positions = tuned.index.search(QUERIES, K)[1]
    for row, exact in zip(positions, EXACT, strict=True):
        assert set(row) == set(exact)


def test_flat_is_chosen_where_no_approximate_setting_is_faster(monkeypatch):
    measured = tune_module.time_search

    def timed(index, queries, k):  # every approximate search 1,000 times slower
        positions, qps = measured(index, queries, k)
        return positions, qps if index.factory == "Flat" else qps / 1000

    monkeypatch.setattr(tune_module, "time_search", timed)
    tuned = tune_index(
        DOCS, DOC_IDS, QUERIES, target_recall=0.95, min_vectors=0, candidates=["IVF64,Flat"]
    )
    report = tuned.report
    assert (report.factory, tuned.index.factory, report.recall) == ("Flat", "Flat", 1.0)
    # nprobe=1 misses the target and is already slower than Flat: the sweep stops there
    assert [(t.factory, t.search_params) for t in report.tried] == [
        ("Flat", ""), ("IVF64,Flat", "nprobe=1"),
    ]  # fmt: skip
    assert report.summary() == (
        "index_factory 'auto' chose Flat (exact search, target recall@10 0.95): no "
        "approximate setting reaching recall@10 0.95 on 120 sample queries was faster than "
        "exact search; 2 settings of 2 indexes tried"
    )


def test_a_sample_of_the_queries_is_tuned_on_and_reported():
    tuned = tune_index(
        DOCS, DOC_IDS, QUERIES, target_recall=0.9, min_vectors=0, candidates=["IVF64,Flat"],
        sample_queries=50, seed=3,
    )  # fmt: skip
    report = tuned.report
    assert report.sample_queries == 50
    rows = np.sort(np.random.default_rng(3).choice(len(QUERIES), 50, replace=False))
    positions = tuned.index.search(QUERIES[rows], K)[1]
    assert report.recall == pytest.approx(_recall(positions, EXACT[rows]), abs=1e-12)


def test_tuned_index_is_saved_and_loaded_with_its_search_params(tmp_path, slow_flat):
    tuned = tune_index(
        DOCS, DOC_IDS, QUERIES, target_recall=0.95, min_vectors=0, candidates=["IVF64,Flat"]
    )
    params = tuned.report.search_params
    assert params.startswith("nprobe=") and params != "nprobe=1"
    before = tuned.index.search(QUERIES, K)
    tuned.index.save(tmp_path / "idx")
    assert json.loads((tmp_path / "idx" / META_FILE).read_text())["search_params"] == params
    loaded = DocIndex.load(tmp_path / "idx")
    assert (loaded.factory, loaded.search_params) == ("IVF64,Flat", params)
    after = loaded.search(QUERIES, K)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])
    # and it is the index an explicit factory and search_params give
    explicit = build_index(DOCS, DOC_IDS, "IVF64,Flat", search_params=params)
    np.testing.assert_array_equal(explicit.search(QUERIES, K)[1], after[1])


def test_report_record_and_summary(slow_flat):
    report = tune_index(
        DOCS, DOC_IDS, QUERIES, target_recall=0.95, min_vectors=0, candidates=["IVF64,Flat"]
    ).report
    record = report.as_dict()
    assert record["factory"] == "IVF64,Flat" and record["search_params"] == report.search_params
    assert record["recall_at_10"] == report.recall and "recall" not in record
    assert record["target_recall"] == 0.95 and record["k"] == K
    assert len(record["tried"]) == len(report.tried) and record["tried"][0]["factory"] == "Flat"
    json.dumps(record)  # JSON-ready
    line = report.summary()
    assert "\n" not in line
    assert f"chose IVF64,Flat with {report.search_params}" in line
    assert f"recall@10 {report.recall:.4f}" in line and "target 0.95" in line


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.01, 2, float("nan"), True, "0.99", None])
def test_bad_target_recall_is_refused_naming_it(bad):
    with pytest.raises(SearchIndexError, match="target_recall.*in \\(0, 1\\]"):
        tune_index(DOCS, DOC_IDS, QUERIES, target_recall=bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidates": "IVF64,Flat"}, "candidates: expected a list"),
        ({"candidates": ["NoSuchIndex"], "min_vectors": 0}, "index_factory"),
        ({"candidates": ["IVF8192,Flat"], "min_vectors": 0}, "IVF8192"),
        ({"k": 0}, "k: expected an integer >= 1"),
        ({"sample_queries": 0}, "sample_queries"),
        ({"min_vectors": -1}, "min_vectors"),
        ({"metric": "cosine"}, "metric"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, message):
    with pytest.raises(SearchIndexError, match=message):
        tune_index(DOCS, DOC_IDS, QUERIES, **kwargs)


def test_queries_must_match_the_vectors():
    with pytest.raises(SearchIndexError, match=r"vectors: expected one row per .* \(3999\)"):
        tune_index(DOCS, DOC_IDS[:-1], QUERIES)
    with pytest.raises(SearchIndexError, match="queries: expected at least one query"):
        tune_index(DOCS, DOC_IDS, QUERIES[:, :16])
    with pytest.raises(SearchIndexError, match="queries: expected at least one query"):
        tune_index(DOCS, DOC_IDS, QUERIES[:0])


def test_default_candidates_fit_the_corpus():
    assert default_candidates(1_000_000, 384) == [
        "HNSW32", "IVF1024,Flat", "IVF1024,PQ48x4fs,RFlat",
    ]  # fmt: skip
    assert default_candidates(30_000, 384) == [
        "HNSW32", "IVF512,Flat", "IVF512,PQ48x4fs,RFlat",
    ]  # fmt: skip
    assert default_candidates(3_000_000, 100) == ["IVF1024,Flat"]  # no HNSW; 100 % 8 != 0
    assert default_candidates(5_000, 64)[1] == "IVF128,Flat"  # 39 training vectors per list
    for n in (5_000, 50_000, 1_000_000):  # FAISS accepts them, with enough training vectors
        for factory in default_candidates(n, 384):
            check_factory(factory, dim=384, num_vectors=n)
