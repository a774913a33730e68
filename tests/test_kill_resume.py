"""A run killed part way loses nothing finished, leaves nothing half-written, and resumes.

Each test runs a notebook under papermill in a child process, kills the whole process
tree with SIGKILL in the middle, runs it again, and compares with an uninterrupted run.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import papermill
import psutil
import pytest

from helpers.notebook import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"
MODEL_DIR = "sentence-transformers__all-MiniLM-L6-v2/8b3219a92973c328a8e22fadcfa821b5dc75636a"
PAPERMILL = [sys.executable, "-m", "papermill", "--kernel", "python3", "--no-progress-bar"]


def _param_args(params: dict) -> list[str]:
    args = []
    for key, value in params.items():
        args += ["-y", json.dumps({key: value})]
    return args


def _kill_tree(proc: subprocess.Popen) -> None:
    parent = psutil.Process(proc.pid)
    for child in parent.children(recursive=True):
        child.kill()
    parent.kill()
    proc.wait(timeout=30)


def _start(notebook: str, output: Path, params: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [*PAPERMILL, str(NOTEBOOKS / notebook), str(output), *_param_args(params)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=output.parent,
        env={**os.environ, "EMBEVAL_PROGRESS": "0"},
    )


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "timed out waiting to kill the run"
        time.sleep(0.1)


def _execute(notebook: str, output: Path, params: dict) -> None:
    papermill.execute_notebook(
        str(NOTEBOOKS / notebook),
        str(output),
        parameters=params,
        kernel_name="python3",
        progress_bar=False,
        cwd=str(output.parent),
    )


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def _data_root(root: Path) -> Path:
    """STSBenchmark (200 pairs) and Banking77 (10 per intent to train, 1,000 to test)."""
    sts = root / "STSBenchmark"
    sts.mkdir(parents=True)
    with gzip.open(PROJECT_ROOT / "data/mteb/STSBenchmark/test.jsonl.gz", "rt") as handle:
        (sts / "test.jsonl").write_text("".join(handle.readlines()[:200]))
    bank = root / "Banking77Classification"
    bank.mkdir()
    src = PROJECT_ROOT / "data/mteb/Banking77Classification"
    with gzip.open(src / "train.jsonl.gz", "rt") as handle:
        per_label: dict[str, int] = {}
        train = []
        for line in handle:
            label = json.loads(line)["label"]
            if per_label.get(label, 0) < 10:
                per_label[label] = per_label.get(label, 0) + 1
                train.append(line)
    (bank / "train.jsonl").write_text("".join(train))
    with gzip.open(src / "test.jsonl.gz", "rt") as handle:
        (bank / "test.jsonl").write_text("".join(handle.readlines()[::3][:1000]))
    return root


def _scores(folder: Path) -> dict[str, float]:
    return {
        p.stem: json.loads(p.read_text())["scores"]["test"][0]["main_score"]
        for p in sorted(folder.glob("*.json"))
        if p.name != "model_meta.json"
    }


def test_notebook_03_killed_between_tasks_resumes_to_the_same_results(tmp_path):
    root = _data_root(tmp_path / "data")
    params = dict(
        tasks=["STSBenchmark", "Banking77Classification"], data_root=str(root), cache_dir=""
    )
    reference = tmp_path / "reference"
    _execute(
        "03_mteb_leaderboard.ipynb",
        tmp_path / "ref.ipynb",
        {**params, "output_dir": str(reference)},
    )

    out = tmp_path / "killed"
    sts = out / MODEL_DIR / "STSBenchmark.json"
    bank = out / MODEL_DIR / "Banking77Classification.json"
    proc = _start(
        "03_mteb_leaderboard.ipynb", tmp_path / "killed.ipynb", {**params, "output_dir": str(out)}
    )
    _wait_for(sts.exists, proc)
    _kill_tree(proc)  # Banking77 is running
    assert not bank.exists(), "Banking77 finished before the kill: the test proves nothing"
    finished = sts.read_bytes()
    json.loads(finished)  # complete, valid JSON

    _execute(
        "03_mteb_leaderboard.ipynb", tmp_path / "resumed.ipynb", {**params, "output_dir": str(out)}
    )
    assert sts.read_bytes() == finished  # not run again
    assert _scores(out / MODEL_DIR) == pytest.approx(_scores(reference / MODEL_DIR), abs=1e-12)
    assert set(_scores(out / MODEL_DIR)) == {"STSBenchmark", "Banking77Classification"}
    assert _leftovers(out) == []


def test_notebook_01_killed_while_encoding_resumes_from_the_cache(tmp_path):
    params = dict(num_queries=5, max_corpus=2500, compare=False)
    reference = tmp_path / "reference"
    _execute(
        "01_msmarco_eval.ipynb",
        tmp_path / "ref.ipynb",
        {**params, "output_dir": str(reference), "cache_dir": ""},
    )

    out, cache = tmp_path / "killed", tmp_path / "cache"
    killed_params = {**params, "output_dir": str(out), "cache_dir": str(cache)}
    proc = _start("01_msmarco_eval.ipynb", tmp_path / "killed.ipynb", killed_params)
    _wait_for(lambda: any(cache.rglob("chunk_00000.json")), proc)
    _kill_tree(proc)  # the first of three corpus chunks is finished, the second is running
    written = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert written == [], f"a killed encoding left results behind: {written}"
    (first_chunk,) = cache.rglob("chunk_00000.npy")
    finished = (first_chunk.stat().st_mtime_ns, first_chunk.read_bytes())
    assert not list(cache.rglob("chunk_00002.json"))

    _execute("01_msmarco_eval.ipynb", tmp_path / "again.ipynb", killed_params)
    assert (first_chunk.stat().st_mtime_ns, first_chunk.read_bytes()) == finished  # reused
    again = json.loads((out / "metrics.json").read_text())["metrics"]
    expected = json.loads((reference / "metrics.json").read_text())["metrics"]
    assert again == pytest.approx(expected, abs=1e-9)
    assert _leftovers(out) == [] and _leftovers(cache) == []

    # a third run with the same cache encodes nothing: every chunk file stays as it was
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("chunk_*")}
    _execute("01_msmarco_eval.ipynb", tmp_path / "third.ipynb", killed_params)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("chunk_*")} == stamps
