"""The notebooks' tables as DataFrames with fixed columns (also when empty), numbers
rounded to 4 decimals without ``-0.0``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from helpers.mteb_glue.results import MISSING_REASONS, compare_with_published, leaderboard
from helpers.mteb_glue.runner import TaskOutcome

if TYPE_CHECKING:
    import pandas as pd


PER_TASK_COLUMNS = ("type", "metric", "split", "main_score")
COMPARISON_COLUMNS = ("split", "metric", "ours", "published", "difference", "reproduced")
OUTCOME_COLUMNS = ("status", "seconds", "error")
MEAN_ROWS = ("Mean (Task)", "Mean (TaskType)")


def _round4(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Round to 4 decimals without ``-0.0``."""
    for column in columns:
        frame[column] = frame[column].astype(float).round(4) + 0.0
    return frame


def per_task_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """:func:`helpers.mteb_glue.summarize`'s per-task rows as a DataFrame.

    Args:
        summary: from :func:`helpers.mteb_glue.summarize`.

    Returns:
        index ``task``; columns ``type``, ``metric``, ``split``, ``main_score`` (float,
        4 decimals), in task order; the same columns when no task has a result.
    """
    import pandas as pd

    rows = [{"task": name, **row} for name, row in summary["per_task"].items()]
    frame = pd.DataFrame(rows, columns=["task", *PER_TASK_COLUMNS]).set_index("task")
    return _round4(frame, ["main_score"])


def averages_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """The leaderboard averages as a DataFrame.

    Args:
        summary: from :func:`helpers.mteb_glue.summarize`.

    Returns:
        index: ``"<type> (mean of <n>)"`` per task type, then ``"Mean (Task)"`` and
        ``"Mean (TaskType)"`` (NaN when no task has a result); one column ``score``
        (float, 4 decimals).
    """
    import pandas as pd

    counts: dict[str, int] = {}
    for row in summary["per_task"].values():
        counts[row["type"]] = counts.get(row["type"], 0) + 1
    averages = {f"{t} (mean of {counts.get(t, 0)})": v for t, v in summary["per_type"].items()}
    averages["Mean (Task)"] = summary["mean_task"]
    averages["Mean (TaskType)"] = summary["mean_task_type"]
    frame = pd.Series(averages, name="score", dtype=float).to_frame()
    return _round4(frame, ["score"])


def outcomes_frame(outcomes: Sequence[TaskOutcome]) -> pd.DataFrame:
    """:func:`helpers.mteb_glue.run_tasks`' outcomes as a DataFrame.

    Args:
        outcomes: from :func:`helpers.mteb_glue.run_tasks`.

    Returns:
        index ``task``; columns ``status``, ``seconds`` (float), ``error`` (``""`` unless
        failed); the same columns when there are no outcomes.
    """
    import pandas as pd

    rows = [
        {"task": o.task, "status": o.status, "seconds": float(o.seconds), "error": o.error}
        for o in outcomes
    ]
    return pd.DataFrame(rows, columns=["task", *OUTCOME_COLUMNS]).set_index("task")


def comparison_frame(
    summary: dict[str, Any],
    model: str,
    published: dict[tuple[str, str, str], float],
    references: Sequence[str] = (),
    tolerance: float = 0.002,
) -> pd.DataFrame:
    """Our main scores next to the published ones, as a DataFrame.

    Args:
        summary: from :func:`helpers.mteb_glue.summarize`.
        model: the model's official name (``org/name``).
        published: from :func:`helpers.mteb_glue.published_scores`.
        references: other models whose published scores get a column each, named by the
            part after ``/`` (``"BAAI/bge-small-en-v1.5"`` -> ``bge-small-en-v1.5``).
        tolerance: the largest absolute difference that counts as reproduced.

    Returns:
        index ``task``; columns ``split``, ``metric``, ``ours``, ``published``,
        ``difference``, ``reproduced`` (True/False/None), then one per reference; numbers
        rounded to 4 decimals with no ``-0.0`` (NaN where unknown). Only tasks with a
        counted score (failed and stale tasks have no row); the same columns when empty.
    """
    import pandas as pd

    names = [r.split("/")[-1] for r in references]
    rows = []
    for row in compare_with_published(summary, model, published, tolerance):
        for reference, column in zip(references, names, strict=True):
            row[column] = published.get((reference, row["task"], row["split"]))
        rows.append(row)
    columns = ["task", *COMPARISON_COLUMNS, *names]
    frame = pd.DataFrame(rows, columns=columns).set_index("task")
    frame["reproduced"] = frame["reproduced"].astype(object)
    return _round4(frame, ["ours", "published", "difference", *names])


def _partial_note(board: dict[str, Any], names: Sequence[str]) -> str:
    """``"<column>: n of m tasks; ..."`` for the columns with a score for some but not
    every task among ``names`` ("" when none; a column without any is plainly empty)."""
    parts = []
    for column in board["columns"]:
        have = sum(1 for name in names if name in board["scores"][column])
        if 0 < have < len(names):
            parts.append(f"{column}: {have} of {len(names)} tasks")
    return "; ".join(parts)


def _missing_note(missing: Mapping[str, str]) -> str:
    """``"failed: m1, m2; no result: m3"`` (models grouped by reason, in
    :data:`helpers.mteb_glue.results.MISSING_REASONS` order)."""
    return "; ".join(
        f"{reason}: {', '.join(m for m, r in missing.items() if r == reason)}"
        for reason in MISSING_REASONS
        if reason in missing.values()
    )


def leaderboard_frame(
    summaries: Mapping[str, dict[str, Any]],
    published: Mapping[tuple[str, str, str], float],
    references: Sequence[str] = (),
) -> pd.DataFrame:
    """Several models on the same tasks, as the leaderboard shows them, with published
    scores beside them (:func:`helpers.mteb_glue.leaderboard`).

    Args:
        summaries: model name -> :func:`helpers.mteb_glue.summarize`'s summary, in column
            order; the name is the one published scores are filed under
            (``mteb_model_meta.name``).
        published: from :func:`helpers.mteb_glue.published_scores`.
        references: other models whose published scores get a column each (e.g.
            ``"BAAI/bge-small-en-v1.5"``).

    Returns:
        index ``task``: one row per task, then ``"Mean (Task)"`` and ``"Mean (TaskType)"``
        (the averages of :func:`helpers.mteb_glue.task_averages`, over the tasks each
        column has); columns ``type`` (``""`` on the mean rows), one per model (its main
        scores), ``"<model> (published)"`` per model, ``"<reference> (published)"`` per
        reference not evaluated, and ``note``: on a task row, the models without a counted
        score and why (``"failed: <model>"``, ``"stale: ..."`` for a result from other
        data, ``"no result: ..."``), their cells missing (NaN); on the mean rows, the
        columns averaged over some but not every task (``"<column>: 1 of 2 tasks"``).
        Scores rounded to 4 decimals without ``-0.0``; the same columns when there are no
        tasks.
    """
    import pandas as pd

    board = leaderboard(summaries, published, references)
    columns = board["columns"]
    rows = []
    for task in board["tasks"]:
        row: dict[str, Any] = {"task": task, "type": board["types"][task]}
        row.update({c: board["scores"][c].get(task) for c in columns})
        row["note"] = _missing_note(board["missing"].get(task, {}))
        rows.append(row)
    partial = _partial_note(board, board["tasks"])
    for label, key in zip(MEAN_ROWS, ("mean_task", "mean_task_type"), strict=True):
        means = {c: board["averages"][c][key] for c in columns}
        rows.append({"task": label, "type": "", **means, "note": partial})
    frame = pd.DataFrame(rows, columns=["task", "type", *columns, "note"]).set_index("task")
    return _round4(frame, columns)


def type_leaderboard_frame(
    summaries: Mapping[str, dict[str, Any]],
    published: Mapping[tuple[str, str, str], float],
    references: Sequence[str] = (),
) -> pd.DataFrame:
    """The per-type means of several models, with published scores beside them.

    Args:
        summaries: as for :func:`leaderboard_frame`.
        published: from :func:`helpers.mteb_glue.published_scores`.
        references: as for :func:`leaderboard_frame`.

    Returns:
        index ``type`` (types sorted; tasks of unknown type left out); columns ``tasks``
        (how many of the tasks are of the type), then the score columns of
        :func:`leaderboard_frame` (each the mean over the type's tasks it has a score
        for, :func:`helpers.mteb_glue.task_averages`; NaN when none) and ``note`` (the
        columns averaged over some but not every task of the type). 4 decimals, no
        ``-0.0``; the same columns when there are no tasks.
    """
    import pandas as pd

    board = leaderboard(summaries, published, references)
    columns = board["columns"]
    rows = []
    for kind in sorted({t for t in board["types"].values() if t}):
        names = [task for task, t in board["types"].items() if t == kind]
        row: dict[str, Any] = {"type": kind, "tasks": len(names)}
        row.update({c: board["averages"][c]["per_type"].get(kind) for c in columns})
        row["note"] = _partial_note(board, names)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["type", "tasks", *columns, "note"]).set_index("type")
    frame["tasks"] = frame["tasks"].astype(int)
    return _round4(frame, columns)
