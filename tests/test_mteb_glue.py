"""MTEB glue: task selection, local data for each task type, summaries, published scores."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import write_jsonl
from helpers import mteb_glue as G
from helpers.data import DataError
from helpers.models import ModelError
from helpers.notebook import PROJECT_ROOT


def test_benchmark_mteb_eng_v1_has_56_tasks_with_cqadupstack_as_one():
    tasks = G.select_tasks("MTEB(eng, v1)")
    names = [t.metadata.name for t in tasks]
    assert len(tasks) == 56 and len(set(names)) == 56
    assert [n for n in names if n.startswith("CQADupstack")] == ["CQADupstackRetrieval"]
    clustering = G.select_tasks("MTEB(eng, v1)", types=["Clustering"])
    assert len(clustering) == 11 and {t.metadata.type for t in clustering} == {"Clustering"}


def test_task_names_override_the_benchmark_and_keep_their_order():
    tasks = G.select_tasks("MTEB(eng, v1)", tasks=["SciFact", "STSBenchmark"])
    assert [t.metadata.name for t in tasks] == ["SciFact", "STSBenchmark"]
    assert G.select_tasks(tasks=["SciFact", "STSBenchmark"], types=["STS"])[0].metadata.name == (
        "STSBenchmark"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": ["SciFakt"]}, r"tasks: unknown task 'SciFakt'; did you mean 'SciFact'"),
        ({"benchmark": "MTEB(eng, v3)"}, r"benchmark: unknown benchmark .*did you mean"),
        (
            {"types": ["Clustring"]},
            r"task_types: unknown \['Clustring'\]; did you mean 'Clustering'",
        ),
    ],
)
def test_unknown_names_suggest_the_closest(kwargs, message):
    with pytest.raises(G.MtebGlueError, match=message):
        G.select_tasks(**kwargs)


def test_default_model_has_its_official_identity():
    meta = G.model_meta("sentence-transformers/all-MiniLM-L6-v2")
    assert meta.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta.revision == "8b3219a92973c328a8e22fadcfa821b5dc75636a"
    assert meta.model_name_as_path() == "sentence-transformers__all-MiniLM-L6-v2"


def test_local_folder_model_identity(tmp_path):
    meta = G.model_meta(str(tmp_path))
    assert meta.name == f"local/{tmp_path.name}" and meta.revision == "local"


def _sts_folder(root, rows=None):
    folder = root / "STSBenchmark"
    folder.mkdir(parents=True)
    rows = rows or [
        {"sentence1": "A cat sits.", "sentence2": "A cat is sitting.", "score": 4.8, "extra": 1},
        {"sentence1": "A man runs.", "sentence2": "It rains.", "score": 0.2, "extra": 2},
    ]
    write_jsonl(folder / "test.jsonl", rows)
    return folder


def test_local_sts_data_keeps_official_metadata(tmp_path):
    (task,) = G.select_tasks(tasks=["STSBenchmark"])
    G.use_local_data(task, _sts_folder(tmp_path))
    task.load_data()
    assert task.metadata.main_score == "cosine_spearman" and task.metadata.eval_splits == ["test"]
    assert task.dataset["test"]["sentence1"] == ["A cat sits.", "A man runs."]
    assert task.dataset["test"]["score"] == [4.8, 0.2]


def test_local_sts_missing_column_is_named(tmp_path):
    (task,) = G.select_tasks(tasks=["STSBenchmark"])
    G.use_local_data(task, _sts_folder(tmp_path, [{"sentence1": "a", "sentence2": "b"}]))
    with pytest.raises(G.MtebGlueError, match=r"needs column\(s\) \['score'\]"):
        task.load_data()


def test_local_classification_needs_train_split(tmp_path):
    (task,) = G.select_tasks(tasks=["Banking77Classification"])
    folder = tmp_path / "Banking77Classification"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", [{"text": "card?", "label": "card_arrival"}])
    G.use_local_data(task, folder)
    with pytest.raises(G.MtebGlueError, match=r"needs train\.jsonl .*\['text', 'label'\]"):
        task.load_data()


def test_local_retrieval_from_beir_folder(beir_folder):
    (task,) = G.select_tasks(tasks=["SciFact"])
    G.use_local_data(task, beir_folder.rename(beir_folder.parent / "SciFact"))
    task.load_data()
    split = task.dataset["default"]["test"]
    assert split["corpus"]["id"] == ["d1", "d2", "d3"]
    assert split["corpus"]["title"] == ["Cats", "", ""]
    assert split["queries"]["id"] == ["q1", "q2"]  # only judged queries, as mteb keeps
    assert split["relevant_docs"] == {"q1": {"d1": 2, "d3": 0}, "q2": {"d2": 1}}


def test_local_retrieval_wrong_layout(tmp_path):
    (task,) = G.select_tasks(tasks=["SciFact"])
    folder = tmp_path / "SciFact"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", [{"text": "x"}])
    G.use_local_data(task, folder)
    with pytest.raises(G.MtebGlueError, match="needs the BEIR layout"):
        task.load_data()


def test_missing_data_folder(tmp_path):
    (task,) = G.select_tasks(tasks=["SciFact"])
    with pytest.raises(G.MtebGlueError, match="does not exist"):
        G.use_local_data(task, tmp_path / "nope")


def test_malformed_local_file(tmp_path):
    (task,) = G.select_tasks(tasks=["STSBenchmark"])
    folder = _sts_folder(tmp_path)
    (folder / "test.jsonl").write_text(
        '{"sentence1": "a", "sentence2": "b", "score": 1}\nnot json\n'
    )
    G.use_local_data(task, folder)
    with pytest.raises(DataError, match=r"test\.jsonl, line 2"):
        task.load_data()


def test_attach_local_data_by_task_name(tmp_path):
    _sts_folder(tmp_path)
    tasks = G.select_tasks(tasks=["STSBenchmark", "SciFact"])
    assert G.attach_local_data(tasks, tmp_path) == {"STSBenchmark": "local", "SciFact": "hub"}


class _FakeResult:
    """A TaskResult stand-in: one main score per split."""

    def __init__(self, name, scores):
        self.task_name = name
        self.dataset_revision = "rev"
        self.scores = {split: [{"main_score": s}] for split, s in scores.items()}

    def get_score(self, splits, languages=None):
        return sum(self.scores[s][0]["main_score"] for s in splits) / len(splits)


def _fake_task(name, task_type, splits=("test",)):
    return SimpleNamespace(
        metadata=SimpleNamespace(
            name=name,
            type=task_type,
            eval_splits=list(splits),
            main_score="m",
            is_multilingual=False,
            revision="rev",
        )
    )


def test_summarize_like_the_leaderboard():
    tasks = [
        _fake_task("R1", "Retrieval"),
        _fake_task("R2", "Retrieval"),
        _fake_task("S1", "STS"),
        _fake_task("C1", "Classification"),
    ]
    results = [
        _FakeResult("R1", {"test": 0.2}),
        _FakeResult("R2", {"test": 0.4}),
        _FakeResult("S1", {"test": 0.9, "dev": 0.1}),
    ]
    summary = G.summarize(results, tasks)
    assert summary["per_task"]["S1"]["main_score"] == 0.9  # only the evaluation split
    assert summary["per_type"] == pytest.approx({"Retrieval": 0.3, "STS": 0.9})
    assert summary["mean_task"] == pytest.approx((0.2 + 0.4 + 0.9) / 3)
    assert summary["mean_task_type"] == pytest.approx((0.3 + 0.9) / 2)
    assert summary["missing"] == ["C1"]
    assert summary["failed"] == [] and summary["stale"] == []
    assert summary["reasons"] == {"C1": "no result"}


def test_published_snapshot_is_complete_and_has_the_scores_data_readme_names():
    published = G.published_scores()
    assert published[("sentence-transformers/all-MiniLM-L6-v2", "STSBenchmark", "test")] == (
        pytest.approx(0.820325, abs=1e-6)
    )
    assert published[("BAAI/bge-base-en-v1.5", "SciFact", "test")] == 0.74345
    raw = json.loads(G.PUBLISHED_SCORES_FILE.read_text())
    assert raw["repo"] == "embeddings-benchmark/results" and len(raw["commit"]) == 40
    fields = {"model", "task", "file", "mteb_version", "split", "subset", "main_score"}
    for row in raw["rows"]:
        assert fields <= set(row), row
        assert row["file"].startswith(f"results/{row['model']}/"), row
        assert row["file"].endswith(f"/{row['task']}.json"), row
        assert 0 < row["main_score"] <= 1, row
    assert len(published) == len(raw["rows"])  # one score per model, task and split
    readme = " ".join((PROJECT_ROOT / "data" / "README.md").read_text().split())
    assert f"| {len(raw['rows'])} rows |" in readme
    for task, metric, score in [
        ("SciFact", "nDCG@10", "0.64508"),
        ("STSBenchmark", "cosine Spearman", "0.82032"),
        ("Banking77Classification", "accuracy", "0.80042"),
    ]:
        assert f"{task} {metric} {score}" in readme
        minilm = published[("sentence-transformers/all-MiniLM-L6-v2", task, "test")]
        assert minilm == pytest.approx(float(score), abs=1e-5)  # the README's 5 decimals


def test_compare_with_published():
    summary = {
        "per_task": {
            "STSBenchmark": {"split": "test", "metric": "cosine_spearman", "main_score": 0.8213},
            "Unknown": {"split": "test", "metric": "m", "main_score": 0.5},
        }
    }
    published = {("m/x", "STSBenchmark", "test"): 0.8203}
    rows = {r["task"]: r for r in G.compare_with_published(summary, "m/x", published, 0.002)}
    assert rows["STSBenchmark"]["difference"] == pytest.approx(0.001)
    assert rows["STSBenchmark"]["reproduced"] is True
    assert rows["Unknown"]["published"] is None and rows["Unknown"]["reproduced"] is None
    strict = G.compare_with_published(summary, "m/x", published, 0.0005)
    assert strict[0]["reproduced"] is False


def test_missing_data_root_is_named(tmp_path):
    tasks = G.select_tasks(tasks=["STSBenchmark"])
    with pytest.raises(G.MtebGlueError, match="data_root: .* is not a folder"):
        G.attach_local_data(tasks, tmp_path / "nowhere")


def test_truncated_result_is_not_finished(tmp_path, caplog):
    (task,) = G.select_tasks(tasks=["STSBenchmark"])
    meta = G.model_meta("sentence-transformers/all-MiniLM-L6-v2")
    path = G.result_path(tmp_path, meta, "STSBenchmark")
    path.parent.mkdir(parents=True)
    path.write_text('{"task_name": "STSBenchmark", "scores": {"te')  # killed mid-write
    with caplog.at_level(logging.WARNING, logger="helpers.mteb_glue"):
        assert not G.is_finished(path, task)
    assert "is unreadable; the task runs again" in caplog.text


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_run_tasks_removes_only_stale_temporaries(tmp_path):
    """A killed run's temporaries go; a live writer's write in flight stays."""
    from helpers.io import host_token, temporary_path

    (task,) = G.select_tasks(tasks=["STSBenchmark"])
    meta = G.model_meta("sentence-transformers/all-MiniLM-L6-v2")
    path = G.result_path(tmp_path, meta, "STSBenchmark")
    path.parent.mkdir(parents=True)
    live = temporary_path(path)  # this process: alive
    dead = path.with_name(f".{path.name}.{host_token()}.{_dead_pid()}.deadbeef.tmp")
    old = path.with_name(f".{path.name}.abc.tmp")  # old name format, 2 hours old
    recent = path.with_name(f".{path.name}.xyz.tmp")  # old name format, just written
    for tmp in (live, dead, old, recent):
        tmp.write_text("{")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    bad_root = tmp_path / "data"
    (bad_root / "STSBenchmark").mkdir(parents=True)  # no test.jsonl: the task fails fast
    G.attach_local_data([task], bad_root)
    (outcome,) = G.run_tasks(SimpleNamespace(mteb_model_meta=meta), [task], tmp_path)
    assert outcome.status == "failed" and "missing test.jsonl" in outcome.error
    assert live.exists() and recent.exists()
    assert not dead.exists() and not old.exists()


def test_missing_data_folder_names_the_parameter(tmp_path):
    (task,) = G.select_tasks(tasks=["STSBenchmark"])
    with pytest.raises(G.MtebGlueError, match=r"^data_dir: data folder .*nope' for task"):
        G.use_local_data(task, tmp_path / "nope")
    with pytest.raises(G.MtebGlueError, match=r"^my_folder: data folder"):
        G.use_local_data(task, tmp_path / "nope", param="my_folder")


def test_missing_local_files_are_reported_before_anything_runs(tmp_path):
    (tmp_path / "SciFact").mkdir()
    (tmp_path / "STSBenchmark").mkdir()
    tasks = G.select_tasks(tasks=["SciFact", "STSBenchmark"])
    sources = G.attach_local_data(tasks, tmp_path)
    assert sources["SciFact"].startswith(
        "local: missing corpus.jsonl, queries.jsonl, qrels/test.tsv"
    )
    assert sources["STSBenchmark"].startswith("local: missing test.jsonl")


def test_mteb_cache_key_holds_the_dtype_the_model_runs_in(tmp_path):
    """mteb runs a model in its checkpoint's dtype; a model changed to float16 after loading
    must miss the cache its float32 vectors are in, never be served them."""
    import mteb
    from datasets import Dataset
    from torch.utils.data import DataLoader

    model = G.load_mteb_model(device="cpu", cache_dir=tmp_path)
    texts = ["A man is playing a guitar.", "A woman is slicing an onion."]
    meta = mteb.get_task("STSBenchmark").metadata

    def encode():
        loader = DataLoader(Dataset.from_dict({"text": texts}), batch_size=2)
        return model.encode(loader, task_metadata=meta, hf_split="test", hf_subset="default")

    first = encode()
    model.model.half()
    half = encode()
    dtypes = sorted(
        json.loads(p.read_text())["settings"]["dtype"] for p in tmp_path.glob("*/meta.json")
    )
    assert dtypes == ["float16", "float32"]
    assert not np.array_equal(first, half)
    np.testing.assert_allclose(first, half, atol=5e-3)
    with pytest.raises(ModelError, match="dtype: expected one of"):
        G.load_mteb_model(dtype="fp8")


def test_mteb_model_runs_in_float32_on_the_cpu_whatever_the_checkpoint(fp16_checkpoint):
    """mteb would keep a float16 checkpoint in float16; on the CPU that is slow and changes
    the scores, so the glue loads it in float32 there unless another dtype is asked (a GPU
    keeps the stored dtype)."""
    import torch

    for dtype in (None, "float32"):  # bfloat16 on the CPU: tests/test_bf16_cpu.py
        model = G.load_mteb_model(fp16_checkpoint, device="cpu", dtype=dtype)
        assert {p.dtype for p in model.model.parameters()} == {torch.float32}


# ---------------------------------------------------------------------------
# Local data must be the task's own
# ---------------------------------------------------------------------------

SHIPPED = PROJECT_ROOT / "data" / "mteb"


def test_mteb_records_the_sizes_of_the_shipped_tasks():
    sizes = {
        name: G.expected_sizes(G.select_tasks(tasks=[name])[0])
        for name in ("STSBenchmark", "Banking77Classification", "SciFact", "STS12")
    }
    assert sizes == {
        "STSBenchmark": {"test": {"num_samples": 1379}},
        "Banking77Classification": {
            "test": {"num_samples": 3080},
            "train": {"num_samples": 10003},
        },
        "SciFact": {"test": {"num_samples": 5483, "num_documents": 5183, "num_queries": 300}},
        "STS12": {"test": {"num_samples": 3108}},
    }


@pytest.mark.parametrize("name", ["STSBenchmark", "Banking77Classification", "SciFact"])
def test_shipped_data_fits_its_task_under_any_folder_name(tmp_path, name):
    import shutil

    copy = shutil.copytree(SHIPPED / name, tmp_path / "my copy")
    (task,) = G.select_tasks(tasks=[name])
    assert G.local_data_mismatch(task, copy) == []
    assert G.local_source(G.use_local_data(task, copy)) == G.LocalSource(copy)


def test_another_tasks_folder_is_refused():
    """papermill 02 -p task STS12 kept data_dir at data/mteb/STSBenchmark and scored
    STS12 on STSBenchmark's data."""
    (task,) = G.select_tasks(tasks=["STS12"])
    with pytest.raises(G.MtebGlueError) as err:
        G.use_local_data(task, SHIPPED / "STSBenchmark")
    assert str(err.value).startswith(
        "data_dir: data folder 'data/mteb/STSBenchmark' was given for task STS12: its folder "
        "is named for another task (STSBenchmark), and test has 1,379 rows where STS12 has "
        "3,108. Give data_dir the folder of STS12's data"
    )
    assert G.local_source(task) is None


def test_another_retrieval_tasks_folder_is_refused():
    (task,) = G.select_tasks(tasks=["ArguAna"])
    with pytest.raises(G.MtebGlueError, match="task ArguAna") as err:
        G.use_local_data(task, SHIPPED / "SciFact", param="data_root")
    assert (
        "test has 5,183 documents and 300 judged queries where ArguAna has 8,674 and 1,406"
        in str(err.value)
    )


def test_a_folder_of_another_name_must_match_columns_and_sizes(tmp_path):
    folder = tmp_path / "sts"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", [{"sentence1": "a", "text": "b"}] * 10)
    (task,) = G.select_tasks(tasks=["STSBenchmark"])
    assert G.local_data_mismatch(task, folder) == [
        "test.jsonl has no column(s) ['sentence2', 'score']",
        "test has 10 rows where STSBenchmark has 1,379",
    ]
    with pytest.raises(G.MtebGlueError, match=r"its folder is named 'sts', not 'STSBenchmark'"):
        G.use_local_data(task, folder)
    (classification,) = G.select_tasks(tasks=["Banking77Classification"])
    assert G.local_data_mismatch(classification, folder) == [
        "test.jsonl has no column(s) ['label']",
        "test has 10 rows where Banking77Classification has 3,080",
        "train.jsonl is missing",
    ]


def test_a_folder_named_for_the_task_is_taken_as_its_data(tmp_path):
    """A folder named for its task may hold a sample (the tests' small data does)."""
    (task,) = G.select_tasks(tasks=["STSBenchmark"])
    folder = _sts_folder(tmp_path)  # 2 rows, named STSBenchmark
    assert G.local_data_mismatch(task, folder) == ["test has 2 rows where STSBenchmark has 1,379"]
    assert G.local_source(G.use_local_data(task, folder)) == G.LocalSource(folder)


# ---------------------------------------------------------------------------
# Names: benchmarks, parameters
# ---------------------------------------------------------------------------


def test_mteb_main_en_is_mteb_eng_v1_with_a_note(caplog):
    with caplog.at_level(logging.WARNING, logger="helpers.mteb_glue"):
        tasks = G.select_tasks(benchmark="MTEB_MAIN_EN")
    assert [t.metadata.name for t in tasks] == [
        t.metadata.name for t in G.select_tasks("MTEB(eng, v1)")
    ]
    assert len(tasks) == 56
    assert "benchmark: 'MTEB_MAIN_EN' is mteb 1.x's name; mteb 2.x calls it 'MTEB(eng, v1)'" in (
        caplog.text
    )


@pytest.mark.parametrize(
    ("name", "suggested"),
    [
        ("MTEB(eng,v1)", "'MTEB(eng, v1)'"),
        ("mteb(eng, v1)", "'MTEB(eng, v1)'"),
        ("mteb eng", "'MTEB(eng, v"),
        ("MTEB_MAIN_ENG", "'MTEB_MAIN_EN'"),
    ],
)
def test_unknown_benchmarks_suggest_close_names_case_insensitively(name, suggested):
    with pytest.raises(G.MtebGlueError) as err:
        G.select_tasks(benchmark=name)
    message = str(err.value)
    assert message.startswith(f"benchmark: unknown benchmark {name!r}; did you mean ")
    assert suggested in message


def test_task_names_are_suggested_case_insensitively():
    with pytest.raises(G.MtebGlueError, match=r"did you mean 'SciFact'"):
        G.select_tasks(tasks=["scifact"])


def test_error_messages_use_the_callers_parameter_names(tmp_path):
    with pytest.raises(G.MtebGlueError, match=r"^task: unknown task 'SciFakt'"):
        G.select_tasks(tasks=["SciFakt"], task_param="task")
    with pytest.raises(G.MtebGlueError, match=r"^bench: unknown benchmark"):
        G.select_tasks(benchmark="nope", benchmark_param="bench")
    with pytest.raises(G.MtebGlueError, match=r"^types: unknown \['Clustring'\]"):
        G.select_tasks(types=["Clustring"], types_param="types")
    tasks = G.select_tasks(tasks=["STSBenchmark"])
    with pytest.raises(G.MtebGlueError, match=r"^root: .* is not a folder"):
        G.attach_local_data(tasks, tmp_path / "nowhere", param="root")
