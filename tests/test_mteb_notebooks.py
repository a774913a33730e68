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


def test_notebook_03_resumes_and_isolates_failures(tmp_path):
    root = _small_data_root(tmp_path / "data")
    out = tmp_path / "mteb"
    params = dict(
        tasks=["STSBenchmark", "Banking77Classification"],
        data_root=str(root),
        output_dir=str(out),
        cache_dir=str(tmp_path / "cache"),
    )
    first = _execute("03_mteb_leaderboard.ipynb", tmp_path, "first", **params)
    text = _outputs_text(first)
    assert "1 done" in text and "1 failed" in text
    assert "Banking77Classification" in text and "needs column(s) ['text']" in text
    sts = out / MODEL_DIR / "STSBenchmark.json"
    assert sts.is_file() and not (out / MODEL_DIR / "Banking77Classification.json").exists()
    before = (sts.stat().st_mtime_ns, sts.read_bytes())

    second = _execute("03_mteb_leaderboard.ipynb", tmp_path, "second", **params)
    text = _outputs_text(second)
    assert "1 skipped" in text and "1 failed" in text and "1 done" not in text
    assert (sts.stat().st_mtime_ns, sts.read_bytes()) == before
    # the model card holds the finished task's score
    card = (out / "model_card.md").read_text()
    assert "STSBenchmark" in card
    assert not list(out.rglob("*.tmp"))


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
