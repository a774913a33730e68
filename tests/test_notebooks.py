"""Notebook 1 under papermill with small parameters, checked against an independent trec_eval.

The check reads the notebook's own ``run.trec`` and the shipped judgement files with
nothing but the standard library, and scores them with ``pytrec_eval``.
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import json
from pathlib import Path

import papermill
import pytest
import pytrec_eval
from scipy.stats import ttest_rel

from helpers.notebook import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "01_msmarco_eval.ipynb"
DL19 = PROJECT_ROOT / "data" / "msmarco-dl19"


def _jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _beir_qrels() -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(DL19 / "beir" / "qrels" / "test.tsv", encoding="utf-8") as handle:
        for row in list(csv.reader(handle, delimiter="\t"))[1:]:
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def _hub_qrels() -> dict[str, dict[str, int]]:
    contents = [r["content"] for r in _jsonl_gz(DL19 / "corpus.jsonl.gz")]
    queries = _jsonl_gz(DL19 / "queries.jsonl.gz")
    return {
        str(i): {str(j): 1 for j, text in enumerate(contents) if text in set(q["positive"])}
        for i, q in enumerate(queries)
    }


def _read_run(path: Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        qid, q0, doc, rank, score, tag = line.split()
        assert q0 == "Q0" and int(rank) >= 1 and tag
        run.setdefault(qid, {})[doc] = float(score)
    return run


def _trec_eval(qrels, run, cutoffs, level):
    ks = ",".join(map(str, cutoffs))
    measures = {f"ndcg_cut.{ks}", f"recall.{ks}", f"P.{ks}", f"map_cut.{ks}", f"success.{ks}"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=level).evaluate(run)
    names = {
        "ndcg": "ndcg_cut",
        "recall": "recall",
        "precision": "P",
        "map": "map_cut",
        "success": "success",
    }
    return {
        f"{ours}_at_{k}": sum(v[f"{theirs}_{k}"] for v in per_query.values()) / len(per_query)
        for ours, theirs in names.items()
        for k in cutoffs
    }


BEIR = dict(
    dataset="data/msmarco-dl19/beir",
    backend="pipeline",
    index_factory="Flat",
    level=2,
    qrels=_beir_qrels,
)
CASES = {
    "beir": BEIR,
    # several devices inside a Jupyter kernel: sentence-transformers' pool (spawn)
    "beir-two-processes": {**BEIR, "backend": "sentence-transformers", "device": "cpu,cpu"},
    "hub": dict(
        dataset="data/msmarco-dl19",
        backend="flagembedding",
        index_factory="HNSW32",
        level=1,
        qrels=_hub_qrels,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_notebook_01_small_run_matches_trec_eval(tmp_path, case):
    spec = CASES[case]
    cutoffs = [1, 5, 10, 50]
    params = dict(
        dataset=spec["dataset"],
        backend=spec["backend"],
        num_queries=4,
        max_corpus=400,
        index_factory=spec["index_factory"],
        cutoffs=cutoffs,
        output_dir=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
    )
    if "device" in spec:
        params["device"] = spec["device"]
    executed = papermill.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "executed.ipynb"),
        parameters=params,
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    assert executed.metadata.papermill.parameters == params

    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "index",
        "metrics.json",
        "per_query.csv",
        "per_query_b.csv",
        "run.trec",
        "run_b.trec",
    ]
    result = json.loads((out / "metrics.json").read_text())
    assert result["relevance_level"] == spec["level"]
    assert result["num_queries"] == 4 and result["data"]["documents"] == 400
    assert result["model"]["backend"] == spec["backend"]
    assert result["model"]["device"] == spec.get("device", "cpu")
    # provenance: what produced these numbers
    provenance = result["provenance"]
    assert {k: provenance["parameters"][k] for k in params} == params
    assert provenance["parameters"]["compare"] is True
    assert "stream_demo" not in provenance["parameters"]
    assert provenance["model"]["fingerprint"] == result["model"]["fingerprint"]
    assert provenance["model"]["revision"] == result["model"]["revision"]
    assert provenance["libraries"]["faiss-cpu"] == importlib.metadata.version("faiss-cpu")
    assert len(provenance["data_sha256"]) == 64 and provenance["date"].endswith("+00:00")

    run = _read_run(out / "run.trec")
    assert len(run) == 4 and all(len(docs) == 50 for docs in run.values())
    qrels = {q: j for q, j in spec["qrels"]().items() if q in run}
    assert len(qrels) == 4
    expected = _trec_eval(qrels, run, cutoffs, spec["level"])
    for key, value in expected.items():
        assert result["metrics"][key] == pytest.approx(value, abs=1e-9), key

    with open(out / "per_query.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["query_id"] for r in rows) == sorted(run)
    mean_ndcg10 = sum(float(r["ndcg_at_10"]) for r in rows) / len(rows)
    assert mean_ndcg10 == pytest.approx(result["metrics"]["ndcg_at_10"], abs=1e-12)

    # the paired test of the second configuration, recomputed from the two run files
    run_b = _read_run(out / "run_b.trec")
    per_a = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}, spec["level"]).evaluate(run)
    per_b = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}, spec["level"]).evaluate(run_b)
    shared = sorted(per_a)
    a = [per_a[q]["ndcg_cut_10"] for q in shared]
    b = [per_b[q]["ndcg_cut_10"] for q in shared]
    (test,) = [c for c in result["comparison"] if c["metric"] == "ndcg_at_10"]
    assert test["mean_difference"] == pytest.approx(sum(b) / 4 - sum(a) / 4, abs=1e-9)
    if a != b:
        assert test["t_test_p"] == pytest.approx(ttest_rel(b, a).pvalue, abs=1e-9)


def _fails(tmp_path: Path, **params) -> str:
    """Run notebook 1 expecting an error; return the error's text."""
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(NOTEBOOK),
            str(tmp_path / "failed.ipynb"),
            parameters={"cache_dir": str(tmp_path / "cache"), **params},
            kernel_name="python3",
            cwd=str(tmp_path),
            progress_bar=False,
        )
    return f"{caught.value.ename}: {caught.value.evalue}"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_notebook_01_failed_run_keeps_the_previous_results(tmp_path):
    """A run that fails (here: an empty corpus) leaves the last good outputs untouched."""
    out = tmp_path / "out"
    (out / "index").mkdir(parents=True)
    (out / "metrics.json").write_text('{"metrics": {"ndcg_at_10": 0.5}}\n')
    (out / "index" / "index.faiss").write_bytes(b"previous index")
    before = _tree(out)
    data = tmp_path / "empty"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text("")
    (data / "queries.jsonl").write_text('{"_id": "q1", "text": "a question"}\n')
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    error = _fails(tmp_path, dataset=str(data), output_dir=str(out))
    assert "corpus" in error and "no documents" in error
    assert _tree(out) == before
    # beside it at most the dead run's staging folder, which the next run removes
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert all(name.startswith(".out.staging-") for name in leftovers), leftovers


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"output_dir": "FILE"}, "output_dir: "),
        ({"device": "cuda:7"}, "device: 'cuda:7' asked, but torch sees no such GPU"),
        ({"cutoffs": "1,ten"}, "cutoffs: expected whole numbers"),
        ({"index_factory": "IVF4096,Flat", "num_queries": 2, "max_corpus": 300},
         "IVF4096"),
        ({"split": "nonsense", "dataset": "data/msmarco-dl19"}, "split: 'nonsense'"),
    ],
    ids=["output-dir-is-a-file", "no-such-gpu", "cutoffs", "ivf-lists", "hub-split"],
)
def test_notebook_01_bad_settings_fail_early_and_name_the_parameter(tmp_path, params, expected):
    """Each of these is known before any passage is encoded; the error names the parameter."""
    if params.get("output_dir") == "FILE":
        (tmp_path / "a-file").write_text("not a folder")
        params = {**params, "output_dir": str(tmp_path / "a-file")}
    params.setdefault("output_dir", str(tmp_path / "out"))
    error = _fails(tmp_path, **params)
    assert expected in error, error
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))
