"""The notebooks' tables as DataFrames with fixed columns (also when empty), numbers
rounded to 4 decimals without ``-0.0``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from helpers.mteb_glue.results import compare_with_published
from helpers.mteb_glue.runner import TaskOutcome

if TYPE_CHECKING:
    import pandas as pd


PER_TASK_COLUMNS = ("type", "metric", "split", "main_score")
COMPARISON_COLUMNS = ("split", "metric", "ours", "published", "difference", "reproduced")
OUTCOME_COLUMNS = ("status", "seconds", "error")


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
