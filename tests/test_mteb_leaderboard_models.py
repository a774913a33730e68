"""The multi-model leaderboard: several models' summaries side by side, published scores
beside them, the leaderboard's averages, failed tasks marked.

Every expected value is written out and checked by hand in the comments; no model runs.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from helpers import mteb_glue as G

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SMALL, BASE = "BAAI/bge-small-en-v1.5", "BAAI/bge-base-en-v1.5"
STS_HUB_REVISION = "b0fddb56ed78048fa8b90373c8a3cfc37b684831"
NAN = float("nan")


def _row(kind: str, score: float) -> dict:
    return {"type": kind, "metric": "m", "split": "test", "main_score": score}


# org/a has all three tasks; org/b has T1 only: T2 failed in this run, T3's result is stale
A = {
    "tasks": ["T1", "T2", "T3"],
    "per_task": {"T1": _row("STS", 0.8), "T2": _row("STS", 0.6), "T3": _row("Classification", 0.5)},
    "failed": [],
    "stale": [],
}
B = {
    "tasks": ["T1", "T2", "T3"],
    "per_task": {"T1": _row("STS", 0.4)},
    "failed": ["T2"],
    "stale": ["T3"],
}
PUBLISHED = {
    ("org/a", "T1", "test"): 0.81,
    ("org/a", "T3", "test"): 0.52,
    ("r/ref", "T1", "test"): 0.9,
    ("r/ref", "T2", "test"): 0.7,
    ("r/ref", "T3", "test"): 0.3,
    ("r/ref", "T3", "dev"): 0.99,  # another split: never shown
}
COLUMNS = [
    "type",
    "org/a",
    "org/b",
    "org/a (published)",
    "org/b (published)",
    "r/ref (published)",
    "note",
]


def _records(frame: pd.DataFrame) -> dict:
    """Rows as dicts with NaN written as None (NaN != NaN)."""
    return {
        index: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for index, row in frame.to_dict("index").items()
    }


def test_task_averages_are_the_leaderboards():
    averages = G.task_averages(
        {"T1": _row("STS", 0.8), "T2": _row("STS", 0.6), "T3": _row("Classification", 0.5)}
    )
    # STS: (0.8 + 0.6) / 2 = 0.7; Classification: 0.5; tasks: 1.9 / 3; types: (0.7 + 0.5) / 2
    assert averages["per_type"] == pytest.approx({"Classification": 0.5, "STS": 0.7})
    assert list(averages["per_type"]) == ["Classification", "STS"]
    assert averages["mean_task"] == pytest.approx(1.9 / 3)
    assert averages["mean_task_type"] == pytest.approx(0.6)
    empty = G.task_averages({})
    assert empty["per_type"] == {} and math.isnan(empty["mean_task"])
    assert math.isnan(empty["mean_task_type"])


def test_leaderboard_frame_puts_models_and_published_scores_side_by_side():
    frame = G.leaderboard_frame({"org/a": A, "org/b": B}, PUBLISHED, references=["r/ref", "org/a"])
    assert list(frame.columns) == COLUMNS  # org/a is evaluated: no second column for it
    assert frame.index.name == "task"
    partial = "org/b: 1 of 3 tasks; org/a (published): 2 of 3 tasks"
    assert _records(frame) == {
        "T1": {"type": "STS", "org/a": 0.8, "org/b": 0.4, "org/a (published)": 0.81,
               "org/b (published)": None, "r/ref (published)": 0.9, "note": ""},
        "T2": {"type": "STS", "org/a": 0.6, "org/b": None, "org/a (published)": None,
               "org/b (published)": None, "r/ref (published)": 0.7, "note": "failed: org/b"},
        "T3": {"type": "Classification", "org/a": 0.5, "org/b": None,
               "org/a (published)": 0.52, "org/b (published)": None,
               "r/ref (published)": 0.3, "note": "stale: org/b"},
        # org/a 1.9/3; org/b 0.4 (T1 only); org/a published (0.81+0.52)/2; ref 1.9/3
        "Mean (Task)": {"type": "", "org/a": 0.6333, "org/b": 0.4, "org/a (published)": 0.665,
                        "org/b (published)": None, "r/ref (published)": 0.6333,
                        "note": partial},
        # org/a (0.7+0.5)/2; org/b 0.4; org/a published (0.81+0.52)/2; ref ((0.9+0.7)/2+0.3)/2
        "Mean (TaskType)": {"type": "", "org/a": 0.6, "org/b": 0.4, "org/a (published)": 0.665,
                            "org/b (published)": None, "r/ref (published)": 0.55,
                            "note": partial},
    }  # fmt: skip


def test_type_leaderboard_frame_has_one_row_per_type():
    frame = G.type_leaderboard_frame({"org/a": A, "org/b": B}, PUBLISHED, references=["r/ref"])
    assert list(frame.columns) == ["tasks", *COLUMNS[1:]]
    assert frame.index.name == "type" and str(frame["tasks"].dtype) == "int64"
    assert _records(frame) == {
        "Classification": {"tasks": 1, "org/a": 0.5, "org/b": None, "org/a (published)": 0.52,
                           "org/b (published)": None, "r/ref (published)": 0.3, "note": ""},
        "STS": {"tasks": 2, "org/a": 0.7, "org/b": 0.4, "org/a (published)": 0.81,
                "org/b (published)": None, "r/ref (published)": 0.8,
                "note": "org/b: 1 of 2 tasks; org/a (published): 1 of 2 tasks"},
    }  # fmt: skip


def test_a_task_without_result_is_marked_and_tasks_keep_their_first_order():
    c = {"tasks": ["T3", "T4"], "per_task": {"T3": _row("Classification", 0.25)}}
    board = G.leaderboard({"org/a": A, "org/c": c}, {})
    assert board["tasks"] == ["T1", "T2", "T3", "T4"]
    assert board["types"]["T4"] == ""  # no summary knows it
    assert board["missing"] == {
        "T1": {"org/c": "no result"},
        "T2": {"org/c": "no result"},
        "T4": {"org/a": "no result", "org/c": "no result"},
    }
    frame = G.leaderboard_frame({"org/a": A, "org/c": c}, {})
    assert frame.loc["T4", "note"] == "no result: org/a, org/c"
    assert frame.loc["T3", "note"] == ""
    assert list(G.type_leaderboard_frame({"org/a": A, "org/c": c}, {}).index) == [
        "Classification", "STS",
    ]  # fmt: skip


def test_leaderboard_tables_keep_their_columns_when_empty():
    frame = G.leaderboard_frame({}, PUBLISHED, references=["r/ref"])
    assert list(frame.columns) == ["type", "r/ref (published)", "note"]
    assert list(frame.index) == ["Mean (Task)", "Mean (TaskType)"]
    assert frame["r/ref (published)"].isna().all()
    nothing = {"tasks": ["T1"], "per_task": {}, "failed": ["T1"], "stale": []}
    frame = G.leaderboard_frame({"org/x": nothing}, {})
    assert list(frame.columns) == ["type", "org/x", "org/x (published)", "note"]
    assert frame.loc["T1", "note"] == "failed: org/x" and frame["org/x"].isna().all()
    types = G.type_leaderboard_frame({}, {})
    assert types.empty and list(types.columns) == ["tasks", "note"]


def _result(task: str, revision: str, score: float):
    from mteb.results import TaskResult

    return TaskResult.from_dict(
        {
            "dataset_revision": revision,
            "task_name": task,
            "mteb_version": "2.26.24",
            "evaluation_time": 1.0,
            "scores": {
                "test": [{"main_score": score, "hf_subset": "default", "languages": ["eng-Latn"]}]
            },
        }
    )


def test_leaderboard_of_real_summaries_with_the_shipped_published_scores():
    tasks = G.select_tasks(tasks=["STSBenchmark", "Banking77Classification"])
    banking_revision = tasks[1].metadata.revision
    minilm = G.summarize(
        [
            _result("STSBenchmark", STS_HUB_REVISION, 0.820325),
            _result("Banking77Classification", banking_revision, 0.800422),
        ],
        tasks,
    )
    small = G.summarize(
        [_result("STSBenchmark", STS_HUB_REVISION, 0.45)],
        tasks,
        [G.TaskOutcome("Banking77Classification", "failed", None, "DataError: x", model="l3")],
    )
    assert small["task_info"]["Banking77Classification"] == {
        "type": "Classification", "metric": "accuracy", "split": "test",
    }  # fmt: skip
    frame = G.leaderboard_frame(
        {MODEL: minilm, "local/minilm-l3": small}, G.published_scores(), [SMALL, BASE]
    )
    cols = [MODEL, "local/minilm-l3", f"{MODEL} (published)", "local/minilm-l3 (published)",
            f"{SMALL} (published)", f"{BASE} (published)"]  # fmt: skip
    assert list(frame.columns) == ["type", *cols, "note"]
    # published: STS 0.82032, 0.85863, 0.86418; Banking77 0.80042, 0.85740, 0.86951
    row = lambda *values: dict(zip(cols, values, strict=True))  # noqa: E731
    assert _records(frame[cols]) == {
        "STSBenchmark": row(0.8203, 0.45, 0.8203, None, 0.8586, 0.8642),
        "Banking77Classification": row(0.8004, None, 0.8004, None, 0.8574, 0.8695),
        # (0.820325 + 0.800422) / 2 = 0.81037; bge-small (0.85863 + 0.85740) / 2 = 0.85802;
        # bge-base (0.86418 + 0.86951) / 2 = 0.86685; one task per type: both means equal
        "Mean (Task)": row(0.8104, 0.45, 0.8104, None, 0.8580, 0.8668),
        "Mean (TaskType)": row(0.8104, 0.45, 0.8104, None, 0.8580, 0.8668),
    }
    assert frame.loc["Banking77Classification", "note"] == "failed: local/minilm-l3"
    assert frame.loc["Mean (Task)", "note"] == "local/minilm-l3: 1 of 2 tasks"
    # the model's own averages are exactly the single-model table's
    single = G.averages_frame(minilm)["score"]
    assert frame.loc["Mean (Task)", MODEL] == single["Mean (Task)"]
    assert frame.loc["Mean (TaskType)", MODEL] == single["Mean (TaskType)"]
    board = G.leaderboard({MODEL: minilm}, {})
    assert board["averages"][MODEL]["mean_task"] == minilm["mean_task"]
    assert board["averages"][MODEL]["mean_task_type"] == minilm["mean_task_type"]
