"""MTEB glue, results side: data fingerprints in the result JSON, resuming, summaries that
tell the truth about this run, tables with fixed columns, failure reports, model cards.

Results are mteb's own ``TaskResult`` objects built from literal JSON; runs use a hashing
mock encoder on a few rows (seconds), never the hub.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import write_jsonl
from helpers import mteb_glue as G
from helpers.notebook import PROJECT_ROOT

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
STS_HUB_REVISION = "b0fddb56ed78048fa8b90373c8a3cfc37b684831"


def _result(task: str, revision: str, scores: dict | None = None, split: str = "test"):
    from mteb.results import TaskResult

    scores = scores or {"main_score": 0.5}
    return TaskResult.from_dict(
        {
            "dataset_revision": revision,
            "task_name": task,
            "mteb_version": "2.26.24",
            "evaluation_time": 1.0,
            "scores": {split: [{**scores, "hf_subset": "default", "languages": ["eng-Latn"]}]},
        }
    )


class HashEncoder:
    """A mock mteb encoder: a seeded vector per text (from its SHA-256), the real model's
    identity, and a count of the texts it encodes."""

    def __init__(self) -> None:
        self.mteb_model_meta = G.model_meta(MODEL)
        self.encoded = 0

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **_):
        texts = [text for batch in inputs for text in batch["text"]]
        self.encoded += len(texts)
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return np.array([np.random.default_rng(s).random(8) for s in seeds], dtype=np.float32)


def _mock_encoder():
    from mteb.models.abs_encoder import AbsEncoder

    class Encoder(HashEncoder, AbsEncoder):  # AbsEncoder: what mteb.evaluate accepts
        pass

    return Encoder()


def _sts_root(root: Path, n: int = 8) -> Path:
    folder = root / "STSBenchmark"
    folder.mkdir(parents=True)
    rows = [
        {"sentence1": f"a sentence {i}", "sentence2": f"another one {i}", "score": float(i % 5)}
        for i in range(n)
    ]
    write_jsonl(folder / "test.jsonl", rows)
    return root


def _sts_task(data_root: Path | None = None):
    (task,) = G.select_tasks(tasks=["STSBenchmark"])
    if data_root is not None:
        G.attach_local_data([task], data_root)
    return task


# ---------------------------------------------------------------------------
# The data fingerprint lives in the result JSON
# ---------------------------------------------------------------------------


def test_fingerprint_of_local_and_hub_data(tmp_path):
    hub = _sts_task()
    assert G.data_fingerprint(hub) == STS_HUB_REVISION == hub.metadata.revision
    local = _sts_task(_sts_root(tmp_path / "data"))
    fingerprint = G.data_fingerprint(local)
    assert fingerprint.startswith("local:sha256:") and len(fingerprint) == 13 + 64
    (tmp_path / "data" / "STSBenchmark" / "test.jsonl").write_text(
        '{"sentence1": "a", "sentence2": "b", "score": 1.0}\n'
    )
    assert G.data_fingerprint(local) not in (fingerprint, STS_HUB_REVISION)


def test_a_local_run_records_its_data_in_the_result_and_resumes_only_on_it(tmp_path, caplog):
    from mteb.results import TaskResult

    root = _sts_root(tmp_path / "data")
    task = _sts_task(root)
    encoder = _mock_encoder()
    (first,) = G.run_tasks(encoder, [task], tmp_path / "out")
    assert first.status == "done", first.traceback
    raw = json.loads(first.path.read_text())
    assert raw["dataset_revision"] == G.data_fingerprint(task)
    assert raw["dataset_revision"].startswith("local:sha256:")
    assert TaskResult.from_disk(first.path).dataset_revision == raw["dataset_revision"]
    assert not list(first.path.parent.glob("*.source"))  # no side file any more
    encoded = encoder.encoded
    (second,) = G.run_tasks(encoder, [task], tmp_path / "out")
    assert second.status == "skipped" and encoder.encoded == encoded
    # the data changes: the result is not the task's any more
    write_jsonl(
        root / "STSBenchmark" / "test.jsonl",
        [{"sentence1": f"x{i}", "sentence2": f"y{i}", "score": float(i)} for i in range(5)],
    )
    with caplog.at_level(logging.WARNING, logger="helpers.mteb_glue"):
        (third,) = G.run_tasks(encoder, [task], tmp_path / "out")
    assert third.status == "done" and encoder.encoded == encoded + 10
    assert "was computed from other data" in caplog.text
    assert json.loads(third.path.read_text())["dataset_revision"] == G.data_fingerprint(task)


def _saved(tmp_path: Path, revision: str) -> Path:
    meta = G.model_meta(MODEL)
    path = G.result_path(tmp_path / "out", meta, "STSBenchmark")
    path.parent.mkdir(parents=True, exist_ok=True)
    G.save_task_result(_result("STSBenchmark", revision), path)
    return path


def test_a_result_without_the_fingerprint_of_its_local_data_runs_again(tmp_path, caplog):
    """The old code wrote the JSON, then <Task>.source: a run killed in between left a
    result that was taken as finished, whatever data it came from."""
    task = _sts_task(_sts_root(tmp_path / "data"))
    path = _saved(tmp_path, STS_HUB_REVISION)  # as the old code wrote it for local data
    with caplog.at_level(logging.WARNING, logger="helpers.mteb_glue"):
        assert not G.is_finished(path, task)
    assert f"dataset_revision '{STS_HUB_REVISION}'" in caplog.text
    assert "the task runs again" in caplog.text
    path = _saved(tmp_path, G.data_fingerprint(task))
    assert G.is_finished(path, task)
    # a side file of the earlier version: its revision proves nothing
    path.with_suffix(".source").write_text(G.data_fingerprint(task) + "\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="helpers.mteb_glue"):
        assert not G.is_finished(path, task)
    assert "earlier version" in caplog.text


def test_hub_results_are_finished_on_the_official_revision_only(tmp_path):
    task = _sts_task()
    assert G.is_finished(_saved(tmp_path, STS_HUB_REVISION), task)
    assert not G.is_finished(_saved(tmp_path, "0123456789abcdef"), task)
    assert not G.is_finished(_saved(tmp_path, "local:sha256:" + "0" * 64), task)


def test_a_result_missing_an_evaluation_split_runs_again(tmp_path):
    task = _sts_task()
    path = G.result_path(tmp_path, G.model_meta(MODEL), "STSBenchmark")
    path.parent.mkdir(parents=True)
    G.save_task_result(_result("STSBenchmark", STS_HUB_REVISION, split="dev"), path)
    assert not G.is_finished(path, task)


# ---------------------------------------------------------------------------
# Failures: kept whole, logged, reported with what to do
# ---------------------------------------------------------------------------


def test_a_failure_keeps_its_traceback_and_is_logged_as_a_warning(tmp_path, caplog):
    root = tmp_path / "data"
    (root / "STSBenchmark").mkdir(parents=True)  # no test.jsonl
    task = _sts_task(root)
    with caplog.at_level(logging.WARNING, logger="helpers.mteb_glue"):
        (outcome,) = G.run_tasks(
            SimpleNamespace(mteb_model_meta=G.model_meta(MODEL)), [task], tmp_path
        )
    assert outcome.status == "failed" and outcome.path is None
    assert outcome.error.startswith(
        "MtebGlueError: data folder for STSBenchmark: missing test.jsonl"
    )
    assert outcome.traceback.startswith("Traceback (most recent call last):")
    assert "helpers/mteb_glue/runner.py" in outcome.traceback
    assert outcome.traceback.rstrip().endswith(outcome.error)
    (record,) = [r for r in caplog.records if "task STSBenchmark failed" in r.getMessage()]
    # the helpers' own checks are logged by their message alone (it names what to fix)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"task STSBenchmark failed: {outcome.error}"


def test_an_unexpected_failure_is_logged_with_its_traceback(tmp_path, caplog):
    task = _sts_task(_sts_root(tmp_path / "data"))  # data are fine; the model breaks

    class Broken:  # an mteb encoder (EncoderProtocol) whose encoding breaks
        mteb_model_meta = G.model_meta(MODEL)

        def __init__(self, *args, **kwargs):
            pass

        def encode(self, *args, **kwargs):
            raise ZeroDivisionError("model broke")

        def similarity(self, *args):
            raise NotImplementedError

        def similarity_pairwise(self, *args):
            raise NotImplementedError

    with caplog.at_level(logging.WARNING, logger="helpers.mteb_glue"):
        (outcome,) = G.run_tasks(Broken(), [task], tmp_path / "out")
    assert outcome.status == "failed"
    (record,) = [r for r in caplog.records if "task STSBenchmark failed" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert outcome.traceback and outcome.traceback in record.getMessage()
    assert "ZeroDivisionError: model broke" in outcome.traceback


def _offline(monkeypatch):
    from helpers.mteb_glue import results, runner

    for module in (runner, results):
        monkeypatch.setattr(module, "hub_offline_reason", lambda: "no network: test")


def test_every_task_failing_offline_gives_empty_tables_and_a_report(tmp_path, monkeypatch):
    """tasks: [], task_types: [Clustering], no network: every task fails; the tables
    keep their columns and the report says what can run from data_root."""
    _offline(monkeypatch)
    tasks = G.select_tasks("MTEB(eng, v1)", types=["Clustering"])
    data_root = PROJECT_ROOT / "data" / "mteb"
    assert G.attach_local_data(tasks, data_root) == {t.metadata.name: "hub" for t in tasks}
    model = SimpleNamespace(mteb_model_meta=G.model_meta(MODEL))
    outcomes = G.run_tasks(model, tasks, tmp_path)
    assert [o.status for o in outcomes] == ["failed"] * 11
    assert "put its data in a folder named 'ArxivClusteringP2P' under data_root" in (
        outcomes[0].error
    )
    summary = G.summarize([], tasks, outcomes)
    assert summary["failed"] == [t.metadata.name for t in tasks] == summary["missing"]
    per_task = G.per_task_frame(summary)
    assert per_task.empty and list(per_task.columns) == ["type", "metric", "split", "main_score"]
    assert per_task.index.name == "task"
    averages = G.averages_frame(summary)
    assert list(averages.index) == ["Mean (Task)", "Mean (TaskType)"]
    assert list(averages.columns) == ["score"] and averages["score"].isna().all()
    comparison = G.comparison_frame(
        summary, MODEL, G.published_scores(), ["BAAI/bge-small-en-v1.5"]
    )
    assert comparison.empty and list(comparison.columns) == [
        "split", "metric", "ours", "published", "difference", "reproduced", "bge-small-en-v1.5",
    ]  # fmt: skip
    assert G.summary_text(summary).startswith(
        "0 of 11 tasks have results; missing: ['ArxivClusteringP2P', "
    )
    report = G.failure_report(outcomes, tasks, data_root)
    lines = report.splitlines()
    assert lines[0] == "11 of 11 task(s) failed:"
    assert lines[1].startswith(" - ArxivClusteringP2P: MtebGlueError: no local data for ")
    assert "The Hugging Face hub is not reachable (no network: test)." in lines
    assert "Of the 11 selected task(s), 0 can run from data_root data/mteb: none." in lines
    assert "11 need the network (or a folder named for the task under data_root): " in report
    assert (
        "data_root has data for: Banking77Classification, STSBenchmark, SciFact "
        "(select them with tasks=[...])." in lines
    )


def test_failure_report_splits_local_and_network_tasks(tmp_path, monkeypatch):
    _offline(monkeypatch)
    tasks = G.select_tasks(tasks=["STSBenchmark", "STS12"])
    root = _sts_root(tmp_path / "data")
    G.attach_local_data(tasks, root, param="root")
    outcomes = [
        G.TaskOutcome("STSBenchmark", "done", tmp_path / "x.json"),
        G.TaskOutcome("STS12", "failed", None, "MtebGlueError: no local data"),
    ]
    report = G.failure_report(outcomes, tasks, root, param="root")
    assert "Of the 2 selected task(s), 1 can run from root " in report
    assert ": STSBenchmark." in report
    assert "1 need the network (or a folder named for the task under root): STS12." in report
    assert G.failure_report(outcomes[:1], tasks, root) == "No task failed."


def test_hub_message_names_notebook_2s_parameter(tmp_path, monkeypatch):
    _offline(monkeypatch)
    tasks = G.select_tasks(tasks=["STS12"], task_param="task")
    model = SimpleNamespace(mteb_model_meta=G.model_meta(MODEL))
    (outcome,) = G.run_tasks(model, tasks, tmp_path, data_param="data_dir")
    assert outcome.error.endswith("give data_dir a folder with STS12's data")


# ---------------------------------------------------------------------------
# Summaries: only what this run can stand for
# ---------------------------------------------------------------------------


def test_a_task_that_failed_now_or_has_foreign_results_does_not_count(tmp_path):
    tasks = G.select_tasks(tasks=["STSBenchmark", "Banking77Classification", "SciFact"])
    results = [  # all three have a result file in output_dir, from earlier or elsewhere
        _result("STSBenchmark", STS_HUB_REVISION, {"main_score": 0.820325}),
        _result("Banking77Classification", "old", {"main_score": 0.800422}),
        _result("SciFact", "whatever", {"main_score": 0.64508}),
    ]
    outcomes = [
        G.TaskOutcome("STSBenchmark", "skipped", tmp_path / "a.json"),
        G.TaskOutcome("Banking77Classification", "skipped", tmp_path / "b.json"),
        G.TaskOutcome("SciFact", "failed", None, "RuntimeError: out of memory"),
    ]
    summary = G.summarize(results, tasks, outcomes)
    assert list(summary["per_task"]) == ["STSBenchmark"]
    assert summary["failed"] == ["SciFact"]
    assert summary["stale"] == ["Banking77Classification"]
    assert summary["missing"] == ["Banking77Classification", "SciFact"]
    assert summary["reasons"]["SciFact"] == "failed in this run (RuntimeError: out of memory)"
    assert "dataset_revision 'old'" in summary["reasons"]["Banking77Classification"]
    assert summary["mean_task"] == pytest.approx(0.820325)
    assert G.summary_text(summary).splitlines() == [
        "1 of 3 tasks have results; missing: ['Banking77Classification', 'SciFact']",
        f" - Banking77Classification: {summary['reasons']['Banking77Classification']}",
        " - SciFact: failed in this run (RuntimeError: out of memory)",
    ]
    published = G.published_scores()
    rows = G.compare_with_published(summary, MODEL, published)
    assert [(r["task"], r["reproduced"]) for r in rows] == [("STSBenchmark", True)]
    comparison = G.comparison_frame(summary, MODEL, published)
    text = G.reproduction_summary(comparison, summary)
    assert text.splitlines()[0] == "Every task with a published score reproduces it within 0.002."
    assert text.splitlines()[1] == (
        "Not checked, 2 task(s) without a valid score now (why: the summary above): "
        "failed in this run: SciFact; results from other data: Banking77Classification"
    )


def test_compare_never_reports_a_failed_or_stale_task_as_reproduced():
    summary = {
        "per_task": {
            "STSBenchmark": {"split": "test", "metric": "m", "main_score": 0.820325},
            "SciFact": {"split": "test", "metric": "m", "main_score": 0.64508},
        },
        "failed": ["SciFact"],
        "stale": ["STSBenchmark"],
    }
    assert G.compare_with_published(summary, MODEL, G.published_scores()) == []


def test_without_outcomes_results_of_the_same_data_count(tmp_path):
    task = _sts_task()
    summary = G.summarize([_result("STSBenchmark", STS_HUB_REVISION)], [task])
    assert summary["per_task"]["STSBenchmark"]["main_score"] == 0.5
    assert G.summary_text(summary) == "1 of 1 tasks have results; missing: none"


# ---------------------------------------------------------------------------
# Tables with fixed columns
# ---------------------------------------------------------------------------


def test_tables_round_to_4_decimals_without_negative_zero():
    tasks = G.select_tasks(tasks=["STSBenchmark", "Banking77Classification"])
    summary = G.summarize(
        [
            _result("STSBenchmark", STS_HUB_REVISION, {"main_score": 0.820325}),
            _result(
                "Banking77Classification",
                tasks[1].metadata.revision,
                {"main_score": 0.800422},
            ),
        ],
        tasks,
    )
    per_task = G.per_task_frame(summary)
    assert per_task.to_dict("index") == {
        "STSBenchmark": {
            "type": "STS",
            "metric": "cosine_spearman",
            "split": "test",
            "main_score": 0.8203,
        },
        "Banking77Classification": {
            "type": "Classification",
            "metric": "accuracy",
            "split": "test",
            "main_score": 0.8004,
        },
    }
    averages = G.averages_frame(summary)["score"].to_dict()
    assert averages == {
        "Classification (mean of 1)": 0.8004,
        "STS (mean of 1)": 0.8203,
        "Mean (Task)": 0.8104,
        "Mean (TaskType)": 0.8104,
    }
    published = {(MODEL, "STSBenchmark", "test"): 0.82032, ("o/ref", "STSBenchmark", "test"): 0.7}
    comparison = G.comparison_frame(summary, MODEL, published, references=["o/ref"])
    assert list(comparison.columns) == [
        "split", "metric", "ours", "published", "difference", "reproduced", "ref",
    ]  # fmt: skip
    sts = comparison.loc["STSBenchmark"]
    assert (sts["ours"], sts["published"], sts["ref"]) == (0.8203, 0.8203, 0.7)
    assert sts["difference"] == 0.0 and math.copysign(1, sts["difference"]) == 1.0  # no -0.0
    assert sts["reproduced"] is True
    banking = comparison.loc["Banking77Classification"]
    assert math.isnan(banking["published"]) and banking["reproduced"] is None
    negative = G.comparison_frame(
        {"per_task": {"T": {"split": "test", "metric": "m", "main_score": 0.50001}}},
        "m/x",
        {("m/x", "T", "test"): 0.50003},
    )
    assert str(negative.loc["T", "difference"]) == "0.0"  # -0.00002 rounds to 0.0, not -0.0


def test_outcomes_frame_has_fixed_columns():
    empty = G.outcomes_frame([])
    assert empty.empty and list(empty.columns) == ["status", "seconds", "error"]
    frame = G.outcomes_frame(
        [G.TaskOutcome("A", "done", None, seconds=1.5), G.TaskOutcome("B", "failed", None, "E: x")]
    )
    assert frame.to_dict("index") == {
        "A": {"status": "done", "seconds": 1.5, "error": ""},
        "B": {"status": "failed", "seconds": 0.0, "error": "E: x"},
    }


# ---------------------------------------------------------------------------
# Model cards, submission, the result cache
# ---------------------------------------------------------------------------

SCIFACT_SCORES = {
    "main_score": 0.64508,
    "ndcg_at_10": 0.64508,
    "ndcg_at_1": 0.5,
    "recall_at_100": 0.92533,
    "map_at_10": 0.59,
    "mrr_at_10": 0.61,
    "ap": float("nan"),  # a NaN score is left out of the card
}


def _scifact_result_dir(tmp_path: Path) -> tuple[Path, list]:
    (task,) = G.select_tasks(tasks=["SciFact"])
    out = tmp_path / "out"
    path = G.result_path(out, G.model_meta(MODEL), "SciFact")
    path.parent.mkdir(parents=True)
    G.save_task_result(_result("SciFact", "local:sha256:" + "a" * 64, SCIFACT_SCORES), path)
    return out, [task]


def _front_matter(path: Path) -> tuple[dict, str]:
    import yaml

    text = path.read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_model_card_has_every_metric_as_create_meta_wrote(tmp_path):
    out, tasks = _scifact_result_dir(tmp_path)
    card = G.model_card(MODEL, tasks, out, tmp_path / "card.md")
    front, _ = _front_matter(card)
    assert front["tags"].count("mteb") == 1
    (index,) = front["model-index"]
    assert index["name"] == MODEL
    (entry,) = index["results"]
    assert entry["task"] == {"type": "Retrieval"}
    assert entry["dataset"] == {
        "type": "mteb/scifact",
        "name": "MTEB SciFact (default)",
        "config": "default",
        "split": "test",
        "revision": "local:sha256:" + "a" * 64,  # what the result was computed from
    }
    metrics = {m["type"]: m["value"] for m in entry["metrics"]}
    assert metrics == {
        "main_score": 64.508,
        "ndcg_at_10": 64.508,
        "ndcg_at_1": 50.0,
        "recall_at_100": 92.533,
        "map_at_10": 59.0,
        "mrr_at_10": 61.0,
    }
    main_only = G.model_card(MODEL, tasks, out, tmp_path / "main.md", all_metrics=False)
    (entry,) = _front_matter(main_only)[0]["model-index"][0]["results"]
    assert entry["metrics"] == [{"type": "ndcg_at_10", "value": 64.508}]


EXISTING_README = """---
language: en
license: apache-2.0
tags:
- sentence-transformers
- mteb
model-index:
- name: all-MiniLM-L6-v2
  results:
  - task:
      type: Classification
    dataset:
      type: mteb/amazon_counterfactual
      name: MTEB AmazonCounterfactualClassification (en)
      config: en
      split: test
      revision: e8379541af4e31359cca9fbcf4b00f2671dba205
    metrics:
    - type: accuracy
      value: 64.15
  - task:
      type: Retrieval
    dataset:
      type: mteb/scifact
      name: MTEB SciFact (default)
      config: default
      split: test
      revision: 0228b52cf27578f30900b9e5271d331663a030d7
    metrics:
    - type: ndcg_at_10
      value: 60.0
---

# all-MiniLM-L6-v2

This is a sentence-transformers model: it maps sentences to a 384 dimensional space.

---

A horizontal rule above, and more text.
"""


def test_model_card_merges_into_an_existing_readme(tmp_path):
    out, tasks = _scifact_result_dir(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(EXISTING_README)
    card = G.model_card(MODEL, tasks, out, tmp_path / "card.md", existing_readme=readme)
    front, body = _front_matter(card)
    assert body == EXISTING_README.split("\n---\n", 1)[1]  # the body as it was
    assert front["language"] == "en" and front["license"] == "apache-2.0"
    assert front["tags"] == ["sentence-transformers", "mteb"]
    (index,) = front["model-index"]
    assert index["name"] == "all-MiniLM-L6-v2"  # the README's own name is kept
    amazon, scifact = index["results"]
    assert amazon["dataset"]["name"] == "MTEB AmazonCounterfactualClassification (en)"
    assert amazon["metrics"] == [{"type": "accuracy", "value": 64.15}]  # kept
    assert scifact["dataset"]["revision"] == "local:sha256:" + "a" * 64  # replaced
    assert {m["type"]: m["value"] for m in scifact["metrics"]}["recall_at_100"] == 92.533
    assert readme.read_text() == EXISTING_README  # the README itself is not touched


def test_model_card_without_results_has_no_model_index(tmp_path):
    """Every task failed: the card is still written, without an empty model-index."""
    out = tmp_path / "out"
    card = G.model_card(MODEL, [], out, tmp_path / "card.md")
    front, _ = _front_matter(card)
    assert front == {"tags": ["mteb"]}


def test_model_card_existing_readme_must_exist(tmp_path):
    out, tasks = _scifact_result_dir(tmp_path)
    with pytest.raises(G.MtebGlueError, match=r"^existing_readme: .*nope\.md' is not a file"):
        G.model_card(MODEL, tasks, out, tmp_path / "c.md", existing_readme=tmp_path / "nope.md")


def test_result_cache_and_model_card_leave_no_temporary_folder(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out, tasks = _scifact_result_dir(tmp_path)
    with G.result_cache(out) as cache:
        (bridge,) = scratch.glob("mteb-cache-*")
        assert (bridge / "results").resolve() == out.resolve()
        assert cache.cache_path == bridge
    assert not list(scratch.iterdir())
    assert (out / G.model_meta(MODEL).model_name_as_path()).is_dir()  # the target stays
    G.model_card(MODEL, tasks, out, tmp_path / "card.md")
    assert not list(scratch.iterdir())


def test_submission_instructions_name_the_folder_and_local_results(tmp_path):
    out, _ = _scifact_result_dir(tmp_path)
    meta = G.model_meta(MODEL)
    text = G.submission_instructions(out, meta)
    folder = "sentence-transformers__all-MiniLM-L6-v2/8b3219a92973c328a8e22fadcfa821b5dc75636a"
    assert text.splitlines()[0] == G.SUBMISSION_NOTE
    assert "embeddings-benchmark/results" in G.SUBMISSION_NOTE
    assert f"copy the folder {folder}/ " in text and f"to results/{folder}/ in the fork" in text
    assert "Not submittable: SciFact (computed from local data" in text


SHIPPED_FINGERPRINTS = {
    "STSBenchmark": "720208def0cfc30c1ba4a18354e2d9251132573da244dbe2990d8efcfa37fd5e",
    "Banking77Classification": "eec1a677dd2e054990acf6d26f9c0ef1acc5ce23337ce82bbe116caa7623a5c3",
    "SciFact": "52f561967c1fd9f6ca67c8c3c5afe7033ac207699e1b91420511320a32bbf0bb",
}


def test_fingerprints_of_the_shipped_data():
    tasks = G.select_tasks(tasks=list(SHIPPED_FINGERPRINTS))
    G.attach_local_data(tasks, PROJECT_ROOT / "data" / "mteb")
    assert {t.metadata.name: G.data_fingerprint(t) for t in tasks} == {
        name: f"local:sha256:{digest}" for name, digest in SHIPPED_FINGERPRINTS.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "score"), [("STSBenchmark", 0.820325), ("Banking77Classification", 0.800422)]
)
def test_shipped_defaults_keep_their_scores_and_say_their_data_is_local(tmp_path, task, score):
    """The real model on the shipped data (STSBenchmark ~50 s, Banking77 ~150 s on 2 CPU
    cores): the scores of before, to the last stored digit; the data named in the JSON."""
    from mteb.results import TaskResult

    model = G.load_mteb_model(device="cpu")
    tasks = G.select_tasks(tasks=[task])
    G.attach_local_data(tasks, PROJECT_ROOT / "data" / "mteb")
    (outcome,) = G.run_tasks(model, tasks, tmp_path)
    assert outcome.status == "done", outcome.traceback
    raw = json.loads(outcome.path.read_text())
    assert raw["scores"]["test"][0]["main_score"] == score
    assert raw["dataset_revision"] == f"local:sha256:{SHIPPED_FINGERPRINTS[task]}"
    assert TaskResult.from_disk(outcome.path).dataset_revision == raw["dataset_revision"]
