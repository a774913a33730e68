"""One configuration end to end (encode, index, search, evaluate) and the results record,
with a deterministic mock encoder; every value checked against an independent computation
(numpy brute force, pytrec_eval, scipy, hashlib)."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from datetime import UTC, datetime

import numpy as np
import pytest
import pytrec_eval
from scipy.stats import ttest_rel

from conftest import MockEncoder
from helpers import evaluation as E
from helpers.data import RetrievalData
from helpers.index import tune
from helpers.metrics import METRICS
from helpers.notebook import PROJECT_ROOT
from helpers.reports import read_trec_run

CUTOFFS = [1, 3, 10]
NOTEBOOK_1 = PROJECT_ROOT / "notebooks" / "01_msmarco_eval.ipynb"


class InstructedMock(MockEncoder):
    """The mock encoder with a query instruction, the encoder's identity, and counts."""

    def __init__(self, instruction: str = "", name: str = "mock/model", dim: int = 8):
        super().__init__(dim)
        self.instruction = instruction
        self.name = name
        self.corpus_calls = 0
        self.query_calls = 0

    def encode_queries(self, queries):
        self.query_calls += 1
        return self.vectors([self.instruction + q for q in queries])

    def encode_corpus(self, texts):
        self.corpus_calls += 1
        return self.vectors(texts)

    def model_fingerprint(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:16]

    def settings(self) -> dict:
        return {"model": self.name, "revision": "r1", "query_instruction": self.instruction}


@pytest.fixture
def collection() -> RetrievalData:
    rng = np.random.default_rng(7)
    corpus = {f"d{i:02d}": f"passage number {i} about topic {i % 5}" for i in range(40)}
    queries = {f"q{i}": f"question {i} on topic {i % 5}" for i in range(6)}
    qrels = {
        q: {d: int(rng.integers(0, 4)) for d in rng.choice(list(corpus), 8, replace=False)}
        for q in queries
    }
    for q in qrels:  # every query has a relevant passage at level 2
        qrels[q][next(iter(qrels[q]))] = 3
    return RetrievalData("toy", "beir", "test", queries, corpus, qrels)


def _brute_force_run(encoder, data, k, instruction=""):
    docs = list(data.corpus)
    d = encoder.vectors([data.corpus[i] for i in docs]).astype(np.float64)
    run = {}
    for qid, text in data.queries.items():
        scores = d @ encoder.vectors([instruction + text])[0].astype(np.float64)
        top = np.argsort(-scores, kind="stable")[:k]
        run[qid] = {docs[i]: float(scores[i]) for i in top}
    return run


def _pytrec(data, run, level):
    measures = {"ndcg_cut.1,3,10", "recall.1,3,10", "P.1,3,10", "success.1,3,10"}
    evaluator = pytrec_eval.RelevanceEvaluator(data.qrels, measures, relevance_level=level)
    return evaluator.evaluate(run)


def test_evaluate_configuration_matches_brute_force_and_pytrec_eval(collection):
    encoder = InstructedMock()
    result = E.evaluate_configuration(encoder, collection, [10, 1, 3], relevance_level=2)
    assert result.cutoffs == CUTOFFS and result.metrics == list(METRICS)
    assert result.doc_ids == list(collection.corpus)
    assert result.query_ids == list(collection.queries)
    assert result.corpus_vectors is not None and result.corpus_vectors.shape == (40, 8)
    assert result.query_vectors.shape == (6, 8)
    assert (encoder.corpus_calls, encoder.query_calls) == (1, 1)
    expected_run = _brute_force_run(encoder, collection, 10)
    assert {q: set(docs) for q, docs in result.run.items()} == {
        q: set(docs) for q, docs in expected_run.items()
    }
    for qid, docs in expected_run.items():
        for doc, score in docs.items():
            assert result.run[qid][doc] == pytest.approx(score, abs=1e-5)
    reference = _pytrec(collection, result.run, 2)
    names = {"ndcg": "ndcg_cut", "recall": "recall", "precision": "P", "success": "success"}
    for qid, values in reference.items():
        for ours, theirs in names.items():
            for k in CUTOFFS:
                assert result.evaluation.per_query[qid][f"{ours}_at_{k}"] == pytest.approx(
                    values[f"{theirs}_{k}"], abs=1e-9
                )
    mean_ndcg10 = sum(v["ndcg_cut_10"] for v in reference.values()) / len(reference)
    assert result.evaluation.mean["ndcg_at_10"] == pytest.approx(mean_ndcg10, abs=1e-12)
    assert result.evaluation.relevance_level == 2 and result.evaluation.num_queries == 6


def test_second_configuration_reuses_the_index_or_the_corpus_vectors(collection):
    first_encoder = InstructedMock()
    first = E.evaluate_configuration(first_encoder, collection, CUTOFFS, 2, metrics=["ndcg"])
    second_encoder = InstructedMock(instruction="Represent this: ")
    second = E.evaluate_configuration(
        second_encoder, collection, CUTOFFS, 2, metrics=["ndcg"], index=first.index
    )
    assert (second_encoder.corpus_calls, second_encoder.query_calls) == (0, 1)
    assert second.index is first.index and second.corpus_vectors is None
    expected = _brute_force_run(first_encoder, collection, 10, instruction="Represent this: ")
    assert {q: set(d) for q, d in second.run.items()} == {q: set(d) for q, d in expected.items()}
    assert list(second.evaluation.mean) == ["ndcg_at_1", "ndcg_at_3", "ndcg_at_10"]

    # the same vectors given: nothing is encoded, the same run comes back
    again = E.evaluate_configuration(
        second_encoder,
        collection,
        CUTOFFS,
        2,
        corpus_vectors=first.corpus_vectors,
        query_vectors=second.query_vectors,
    )
    assert (second_encoder.corpus_calls, second_encoder.query_calls) == (0, 1)
    assert again.run == second.run

    rows = E.compare_configurations(first, second, ["ndcg_at_10", "ndcg_at_3"], seed=3)
    assert [r["metric"] for r in rows] == ["ndcg_at_10", "ndcg_at_3"]
    a = [first.evaluation.per_query[q]["ndcg_at_10"] for q in collection.queries]
    b = [second.evaluation.per_query[q]["ndcg_at_10"] for q in collection.queries]
    assert rows[0]["num_queries"] == 6
    assert rows[0]["mean_difference"] == pytest.approx(np.mean(b) - np.mean(a), abs=1e-12)
    assert rows[0]["wins"] == sum(y > x for x, y in zip(a, b, strict=True))
    if a != b:
        assert rows[0]["t_test_p"] == pytest.approx(ttest_rel(b, a).pvalue, abs=1e-9)


def test_the_index_is_saved_with_the_model_and_loaded_back(collection, tmp_path):
    encoder = InstructedMock()
    result = E.evaluate_configuration(
        encoder, collection, CUTOFFS, 1, index_folder=tmp_path / "index", search_device="cpu"
    )
    meta = json.loads((tmp_path / "index" / "index_meta.json").read_text())
    assert meta["factory"] == "Flat"
    assert encoder.model_fingerprint() in json.dumps(meta)
    assert result.index.model_fingerprint == encoder.model_fingerprint()
    assert result.index.size == 40
    assert result.run == E.evaluate_configuration(encoder, collection, CUTOFFS, 1).run


def test_bad_inputs_fail_before_encoding_and_name_the_parameter(collection):
    encoder = InstructedMock()
    with pytest.raises(ValueError, match="IVF4096"):
        E.evaluate_configuration(encoder, collection, CUTOFFS, 1, factory="IVF4096,Flat")
    assert (encoder.corpus_calls, encoder.query_calls) == (0, 0)
    with pytest.raises(ValueError, match="cutoffs"):
        E.evaluate_configuration(encoder, collection, [0, 5], 1)
    with pytest.raises(ValueError, match="corpus_vectors: expected 40 rows"):
        E.evaluate_configuration(encoder, collection, CUTOFFS, 1, corpus_vectors=np.zeros((3, 8)))
    first = E.evaluate_configuration(encoder, collection, CUTOFFS, 1)
    with pytest.raises(ValueError, match="index, corpus_vectors: give one of them"):
        E.evaluate_configuration(
            encoder, collection, CUTOFFS, 1, index=first.index, corpus_vectors=first.corpus_vectors
        )
    with pytest.raises(ValueError, match="query_vectors: expected 6 rows"):
        E.evaluate_configuration(
            encoder, collection, CUTOFFS, 1, index=first.index, query_vectors=np.zeros((2, 8))
        )


def test_corpus_texts_are_what_evaluate_configuration_encodes(collection):
    seen = []

    class Recording(InstructedMock):
        def encode_corpus(self, texts):
            seen.append(list(texts))
            return super().encode_corpus(texts)

    result = E.evaluate_configuration(Recording(), collection, CUTOFFS, 1)
    expected = [f"passage number {i} about topic {i % 5}" for i in range(40)]
    assert E.corpus_texts(collection) == expected and seen == [expected]
    assert result.doc_ids == [f"d{i:02d}" for i in range(40)]


def test_auto_index_of_a_small_collection_is_flat_and_reported(collection):
    encoder = InstructedMock()
    result = E.evaluate_configuration(encoder, collection, CUTOFFS, 2, factory="auto")
    tuning = result.tuning
    assert tuning is not None and (tuning.factory, tuning.search_params) == ("Flat", "")
    assert result.index.factory == "Flat" and tuning.target_recall == 0.99
    assert tuning.num_vectors == 40 and tuning.sample_queries == 6
    assert "fewer than 50,000" in tuning.summary()
    explicit = E.evaluate_configuration(encoder, collection, CUTOFFS, 2, target_recall=0.5)
    assert explicit.tuning is None and result.run == explicit.run
    record = E.results_record(result, encoder, collection, dataset="d", parameters={})
    assert record["index_tuning"] == tuning.as_dict()
    assert list(record).index("index_tuning") == list(record).index("search_params") + 1
    plain = E.results_record(explicit, encoder, collection, dataset="d", parameters={})
    assert "index_tuning" not in plain
    # a second configuration searching the first one's index tunes nothing
    second = E.evaluate_configuration(
        InstructedMock("Q: "), collection, CUTOFFS, 2, factory="auto", index=result.index
    )
    assert second.tuning is None and second.index is result.index


def test_auto_index_is_saved_loaded_and_searched_as_an_explicit_one(tmp_path, monkeypatch):
    corpus = {f"d{i:03d}": f"passage {i}" for i in range(600)}
    queries = {f"q{i}": f"question {i}" for i in range(30)}
    data = RetrievalData(
        "toy", "beir", "test", queries, corpus, {q: {f"d{i:03d}": 1} for i, q in enumerate(queries)}
    )
    measured = tune.time_search

    def flat_slowed(index, vectors, k):  # the choice must not hang on this machine's timings
        positions, qps = measured(index, vectors, k)
        return positions, qps / 1000 if index.factory == "Flat" else qps

    monkeypatch.setattr(tune, "time_search", flat_slowed)
    monkeypatch.setattr(
        E, "tune_index", functools.partial(tune.tune_index, min_vectors=0, candidates=["IVF8,Flat"])
    )
    encoder = InstructedMock(dim=16)
    result = E.evaluate_configuration(
        encoder, data, CUTOFFS, 1, factory="auto", target_recall=0.9, index_folder=tmp_path / "ix"
    )
    tuning = result.tuning
    assert tuning is not None and tuning.factory == "IVF8,Flat"
    assert tuning.search_params.startswith("nprobe=") and tuning.search_params != "nprobe=8"
    assert (result.index.factory, result.index.search_params) == ("IVF8,Flat", tuning.search_params)
    meta = json.loads((tmp_path / "ix" / "index_meta.json").read_text())
    assert (meta["factory"], meta["search_params"]) == ("IVF8,Flat", tuning.search_params)
    explicit = E.evaluate_configuration(
        encoder, data, CUTOFFS, 1, factory="IVF8,Flat", search_params=tuning.search_params
    )
    assert result.run == explicit.run
    exact = _brute_force_run(encoder, data, 10)
    recall = np.mean([len(set(result.run[q]) & set(exact[q])) / 10 for q in queries])
    assert recall >= 0.9 and tuning.recall == pytest.approx(recall, abs=1e-12)


def test_auto_settings_are_checked_before_encoding(collection):
    encoder = InstructedMock()
    with pytest.raises(ValueError, match="search_params: index_factory 'auto' chooses them"):
        E.evaluate_configuration(
            encoder, collection, CUTOFFS, 1, factory="auto", search_params="nprobe=8"
        )
    for bad in (0, 1.5, -1, float("nan"), "high", True):
        with pytest.raises(ValueError, match=r"target_recall: .* in \(0, 1\]"):
            E.evaluate_configuration(
                encoder, collection, CUTOFFS, 1, factory="auto", target_recall=bad
            )
    with pytest.raises(ValueError, match="target_recall"):  # checked with any factory
        E.evaluate_configuration(encoder, collection, CUTOFFS, 1, target_recall=2)
    assert (encoder.corpus_calls, encoder.query_calls) == (0, 0)


def _expected_fingerprint(data: RetrievalData) -> str:
    lines = [["query", q, t] for q, t in sorted(data.queries.items())]
    lines += [["document", d, t] for d, t in sorted(data.corpus.items())]
    lines += sorted(["judgement", q, d, g] for q, j in data.qrels.items() for d, g in j.items())
    text = "".join(json.dumps(x, ensure_ascii=False, separators=(",", ":")) + "\n" for x in lines)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_data_fingerprint_is_a_sha256_of_what_was_evaluated(collection):
    fingerprint = E.data_fingerprint(collection)
    assert fingerprint == _expected_fingerprint(collection) and len(fingerprint) == 64
    reordered = RetrievalData(
        "other name",
        "hub",
        "dev",
        dict(reversed(collection.queries.items())),
        dict(reversed(collection.corpus.items())),
        collection.qrels,
    )
    assert E.data_fingerprint(reordered) == fingerprint  # order and labels do not count
    changed = RetrievalData(
        "toy",
        "beir",
        "test",
        collection.queries,
        {**collection.corpus, "d00": "another text"},
        collection.qrels,
    )
    assert E.data_fingerprint(changed) != fingerprint


def test_results_record_keeps_the_keys_and_adds_provenance(collection):
    encoder, second_encoder = InstructedMock(), InstructedMock("Q: ", name="mock/other")
    first = E.evaluate_configuration(encoder, collection, CUTOFFS, 2)
    second = E.evaluate_configuration(second_encoder, collection, CUTOFFS, 2)
    rows = E.compare_configurations(first, second, ["ndcg_at_10"])
    when = datetime(2024, 5, 17, 12, 30, 5, tzinfo=UTC)
    parameters = {"model": "mock/model", "cutoffs": [1, 3, 10], "relevance_level": 0}
    record = E.results_record(
        first,
        encoder,
        collection,
        dataset="data/toy",
        parameters=parameters,
        comparison=rows,
        second_encoder=second_encoder,
        date=when,
    )
    assert list(record) == [
        "model",
        "dataset",
        "data",
        "index_factory",
        "search_params",
        "relevance_level",
        "cutoffs",
        "num_queries",
        "metrics",
        "definitions",
        "comparison",
        "provenance",
    ]
    assert record["model"] == {**encoder.settings(), "fingerprint": encoder.model_fingerprint()}
    assert record["dataset"] == "data/toy" and record["data"] == collection.summary()
    assert (record["index_factory"], record["search_params"]) == ("Flat", "")
    assert (record["relevance_level"], record["cutoffs"], record["num_queries"]) == (2, CUTOFFS, 6)
    expected_keys = [f"{m}_at_{k}" for m in METRICS for k in CUTOFFS]
    assert list(record["metrics"]) == expected_keys
    assert record["metrics"] == {k: first.evaluation.mean[k] for k in expected_keys}
    assert record["comparison"] == rows
    provenance = record["provenance"]
    assert provenance["date"] == "2024-05-17T12:30:05+00:00"
    assert provenance["libraries"]["numpy"] == np.__version__
    assert provenance["model"] == {
        "name": "mock/model",
        "revision": "r1",
        "fingerprint": encoder.model_fingerprint(),
    }
    assert provenance["second_model"]["name"] == "mock/other"
    assert provenance["data_sha256"] == _expected_fingerprint(collection)
    assert provenance["parameters"] == parameters
    assert json.loads(json.dumps(record))["metrics"] == record["metrics"]

    alone = E.results_record(first, encoder, collection, dataset="d", parameters={})
    assert alone["comparison"] == [] and "second_model" not in alone["provenance"]
    assert datetime.fromisoformat(alone["provenance"]["date"]).tzinfo is not None


def test_installed_versions_leave_out_what_is_not_installed():
    versions = E.installed_versions(["numpy", "no-such-distribution-here"])
    assert set(versions) == {"python", "numpy"} and versions["numpy"] == np.__version__


def test_write_results_writes_every_file(collection, tmp_path):
    encoder = InstructedMock()
    first = E.evaluate_configuration(encoder, collection, CUTOFFS, 2, metrics=["ndcg", "mrr"])
    second = E.evaluate_configuration(
        InstructedMock("Q: "), collection, CUTOFFS, 2, metrics=["ndcg", "mrr"]
    )
    record = E.results_record(first, encoder, collection, dataset="d", parameters={})
    written = E.write_results(tmp_path, record, first, "mini", second, "mini-b")
    assert sorted(p.name for p in written) == sorted(
        ["metrics.json", "per_query.csv", "run.trec", "per_query_b.csv", "run_b.trec"]
    )
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"] == record["metrics"]
    assert read_trec_run(tmp_path / "run.trec") == first.run
    assert read_trec_run(tmp_path / "run_b.trec") == second.run
    assert (tmp_path / "run_b.trec").read_text().split("\n")[0].endswith(" mini-b")
    with open(tmp_path / "per_query.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["query_id"] + [f"{m}_at_{k}" for m in ("ndcg", "mrr") for k in CUTOFFS]
    assert {r["query_id"]: float(r["mrr_at_10"]) for r in rows} == {
        q: v["mrr_at_10"] for q, v in first.evaluation.per_query.items()
    }
    only_first = E.write_results(tmp_path / "one", record, first, "mini")
    assert sorted(p.name for p in only_first) == ["metrics.json", "per_query.csv", "run.trec"]


def test_notebook_parameters_are_read_from_the_parameters_cell(tmp_path):
    from papermill.inspection import inspect_notebook

    names = list(inspect_notebook(str(NOTEBOOK_1)))
    namespace = {name: f"value of {name}" for name in names}
    namespace["cutoffs"] = [1, 10]
    parameters = E.notebook_parameters(NOTEBOOK_1, {**namespace, "unrelated": 1})
    assert list(parameters) == names and "stream_demo" not in parameters
    assert parameters["cutoffs"] == [1, 10] and parameters["cutoffs"] is not namespace["cutoffs"]
    with pytest.raises(ValueError, match=r"namespace: parameters \['model'\]"):
        E.notebook_parameters(NOTEBOOK_1, {k: v for k, v in namespace.items() if k != "model"})
    bare = tmp_path / "bare.ipynb"
    bare.write_text(
        json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "source": "x = 1"}]})
    )
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        E.notebook_parameters(bare, {"x": 1})
