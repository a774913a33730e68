"""Notebooks 2 and 3 under papermill: reproduction, resume, failure isolation.

Published scores are read here straight from the shipped snapshot of
embeddings-benchmark/results, not through the helpers.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import papermill
import pytest

from helpers.notebook import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"
MODEL_DIR = "sentence-transformers__all-MiniLM-L6-v2/8b3219a92973c328a8e22fadcfa821b5dc75636a"


def _published(task: str, split: str = "test") -> float:
    data = json.loads(
        (PROJECT_ROOT / "data/reference-scores/mteb_reference_scores.json").read_text()
    )
    (row,) = [
        r
        for r in data["rows"]
        if r["model"] == "sentence-transformers__all-MiniLM-L6-v2"
        and r["task"] == task
        and r["split"] == split
    ]
    return float(row["main_score"])


def _main_score(path: Path, split: str = "test") -> float:
    return float(json.loads(path.read_text())["scores"][split][0]["main_score"])


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _execute(name: str, tmp_path: Path, tag: str, **params):
    return papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(tmp_path / f"{tag}.ipynb"),
        parameters=params,
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )


def test_notebook_02_reproduces_stsbenchmark(tmp_path):
    out = tmp_path / "mteb"
    nb = _execute(
        "02_mteb_single_task.ipynb",
        tmp_path,
        "run",
        output_dir=str(out),
        cache_dir=str(tmp_path / "cache"),
    )
    path = out / MODEL_DIR / "STSBenchmark.json"
    assert path.is_file() and (path.parent / "model_meta.json").is_file()
    assert not list(out.rglob("*no_model_name_available*"))
    score = _main_score(path)
    assert score == pytest.approx(_published("STSBenchmark"), abs=0.002)
    assert "Reproduced: within 0.002" in _outputs_text(nb)
    # readable by mteb's own tools
    from mteb.results import TaskResult

    assert TaskResult.from_disk(path).get_score() == pytest.approx(score)


def _small_data_root(root: Path) -> Path:
    sts = root / "STSBenchmark"
    sts.mkdir(parents=True)
    with gzip.open(PROJECT_ROOT / "data/mteb/STSBenchmark/test.jsonl.gz", "rt") as handle:
        lines = handle.readlines()[:150]
    (sts / "test.jsonl").write_text("".join(lines))
    broken = root / "Banking77Classification"  # wrong column name: fails alone
    broken.mkdir()
    for split in ("train", "test"):
        (broken / f"{split}.jsonl").write_text(
            "".join(
                json.dumps({"sentence": f"s{i}", "label": f"l{i % 2}"}) + "\n" for i in range(20)
            )
        )
    return root


def _foreign_result(sts_result: Path, task: str, revision: str, score: float) -> Path:
    """A result file for ``task`` that this run did not compute (an old or copied one)."""
    raw = json.loads(sts_result.read_text())
    raw["task_name"] = task
    raw["dataset_revision"] = revision
    raw["scores"] = {"test": [{**raw["scores"]["test"][0], "main_score": score}]}
    path = sts_result.with_name(f"{task}.json")
    path.write_text(json.dumps(raw))
    return path


def test_notebook_03_resumes_and_isolates_failures(tmp_path):
    root = _small_data_root(tmp_path / "data")
    out = tmp_path / "mteb"
    params = dict(
        # as papermill's -p passes it: a string
        tasks='["STSBenchmark", "Banking77Classification"]',
        data_root=str(root),
        output_dir=str(out),
        cache_dir=str(tmp_path / "cache"),
    )
    first = _execute("03_mteb_leaderboard.ipynb", tmp_path, "first", **params)
    text = _outputs_text(first)
    assert "1 done" in text and "1 failed" in text
    assert "Banking77Classification" in text and "needs column(s) ['text']" in text
    assert "missing: ['Banking77Classification']" in text
    # a result from local files says so: never taken for the official dataset
    sts_raw = json.loads((out / MODEL_DIR / "STSBenchmark.json").read_text())
    assert sts_raw["dataset_revision"].startswith("local:sha256:")
    sts = out / MODEL_DIR / "STSBenchmark.json"
    assert sts.is_file() and not (out / MODEL_DIR / "Banking77Classification.json").exists()
    before = (sts.stat().st_mtime_ns, sts.read_bytes())

    second = _execute("03_mteb_leaderboard.ipynb", tmp_path, "second", **params)
    text = _outputs_text(second)
    assert "1 skipped" in text and "1 failed" in text and "1 done" not in text
    assert (sts.stat().st_mtime_ns, sts.read_bytes()) == before
    # the model card holds the finished task's scores, every metric, in percent
    card = (out / "model_card.md").read_text()
    spearman = sts_raw["scores"]["test"][0]["cosine_spearman"]
    assert "name: MTEB STSBenchmark" in card and f"value: {round(spearman * 100, 4)}" in card
    assert "cosine_pearson" in card and "Banking77Classification" not in card
    assert not list(out.rglob("*.tmp"))

    # an old result of the failing task (another data version) in output_dir: the task
    # still fails now, and nothing says it is done or reproduced
    _foreign_result(sts, "Banking77Classification", "0fd18e25b25c072e09e0d92ab615fda904d66300", 0.8)
    third = _execute("03_mteb_leaderboard.ipynb", tmp_path, "third", **params)
    text = _outputs_text(third)
    assert "1 skipped" in text and "1 failed" in text
    assert "1 of 2 tasks have results; missing: ['Banking77Classification']" in text
    assert "Every task with a published score reproduces it" not in text
    assert "failed in this run: Banking77Classification" in text


def test_notebook_03_finishes_when_every_task_fails(tmp_path):
    """Offline, MTEB(eng, v1)'s Clustering tasks all need the hub: the run still ends,
    with each failure and what can run from data_root."""
    nb = _execute(
        "03_mteb_leaderboard.ipynb",
        tmp_path,
        "all-fail",
        tasks="[]",
        task_types="Clustering",
        output_dir=str(tmp_path / "mteb"),
        cache_dir=str(tmp_path / "cache"),
    )
    text = _outputs_text(nb)
    assert "11 failed" in text and "0 of 11 tasks have results" in text
    assert "Nothing to plot: no task has a score." in text
    assert "11 of 11 task(s) failed:" in text
    assert " - TwentyNewsgroupsClustering: MtebGlueError: no local data" in text
    assert "The Hugging Face hub is not reachable" in text
    assert "data_root has data for: Banking77Classification, STSBenchmark, SciFact" in text


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # the folder of another task, given for STS12: refused, not scored
        ({"task": "STS12", "data_dir": "data/mteb/STSBenchmark"},
         "data_dir: data folder 'data/mteb/STSBenchmark' was given for task STS12"),
        # the default data_dir is data/mteb/{task}: no such folder for STS12
        ({"task": "STS12"}, "STS12"),
        ({"task": "STS-12"}, "task: unknown task 'STS-12'; did you mean"),
    ],
    ids=["another-tasks-folder", "no-folder", "unknown-task"],
)
def test_notebook_02_refuses_data_of_another_task(tmp_path, params, expected):
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        _execute("02_mteb_single_task.ipynb", tmp_path, "bad", output_dir=str(tmp_path / "mteb"),
                 cache_dir=str(tmp_path / "cache"), **params)
    assert expected in caught.value.evalue
    assert not list((tmp_path / "mteb").rglob("STS12.json"))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["SciFact", "Banking77Classification", "STSBenchmark"])
def test_shipped_tasks_reproduce_published_scores(tmp_path, task):
    """Every shipped task, full size (SciFact takes about 4 minutes on 2 CPU cores)."""
    from helpers import mteb_glue as G

    model = G.load_mteb_model()
    tasks = G.select_tasks(tasks=[task])
    G.attach_local_data(tasks, PROJECT_ROOT / "data" / "mteb")
    (outcome,) = G.run_tasks(model, tasks, tmp_path)
    assert outcome.status == "done", outcome.error
    assert _main_score(outcome.path) == pytest.approx(_published(task), abs=0.002)
