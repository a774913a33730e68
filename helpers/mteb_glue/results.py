"""Results read back: main scores, leaderboard-style summaries, the comparison with
published scores, and reports of what failed and why (the notebooks' tables of them are
in :mod:`helpers.mteb_glue.tables`).

A summary counts only results that stand for the task's data now
(:func:`helpers.mteb_glue.data_fingerprint`) and tasks that did not fail in this run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.hub import hub_offline_reason
from helpers.mteb_glue.runner import TaskOutcome, stale_reason
from helpers.notebook import display_path

if TYPE_CHECKING:
    import pandas as pd


def load_task_results(folder: str | Path) -> list[Any]:
    """Every ``<Task>.json`` in a model/revision folder, read with ``TaskResult.from_disk``.

    Args:
        folder: ``<output_dir>/<org>__<model>/<revision>``
            (:func:`helpers.mteb_glue.result_folder`).
    """
    from mteb.results import TaskResult

    return [
        TaskResult.from_disk(p)
        for p in sorted(Path(folder).glob("*.json"))
        if p.name != "model_meta.json"
    ]


def main_scores(task_result: Any, task: Any | None = None) -> dict[str, float]:
    """Main score per evaluation split, averaged over the task's subsets (languages).

    Args:
        task_result: a ``TaskResult``.
        task: its task (its evaluation splits and languages); None: every split of the
            result, every subset.
    """
    splits = list(task.metadata.eval_splits) if task is not None else list(task_result.scores)
    languages = None
    if task is not None and task.metadata.is_multilingual:
        languages = sorted({lang.split("-")[0] for lang in task.metadata.languages})
    return {
        split: float(task_result.get_score(splits=[split], languages=languages))
        for split in splits
        if split in task_result.scores
    }


def scores_at_cutoffs(
    task_result: Any,
    split: str,
    prefixes: Sequence[str] = ("ndcg_at_", "recall_at_", "map_at_", "mrr_at_", "precision_at_"),
) -> dict[str, dict[int, float]]:
    """Retrieval metrics of one split (first subset) as ``{metric: {k: value}}``.

    Args:
        task_result: a ``TaskResult``.
        split: the split, e.g. ``"test"``.
        prefixes: the metrics, as the prefixes of mteb's keys (``ndcg_at_10`` -> ``ndcg``).
    """
    scores = task_result.scores[split][0]
    table: dict[str, dict[int, float]] = {}
    for key, value in scores.items():
        for prefix in prefixes:
            if key.startswith(prefix) and key[len(prefix) :].isdigit():
                table.setdefault(prefix[:-4], {})[int(key[len(prefix) :])] = float(value)
    return {m: dict(sorted(v.items())) for m, v in table.items()}


def summarize(
    results: Sequence[Any],
    tasks: Sequence[Any],
    outcomes: Sequence[TaskOutcome] | None = None,
) -> dict[str, Any]:
    """Leaderboard-style summary: per task, per type, and the averages.

    Follows the MTEB leaderboard: each task contributes its main score on its evaluation
    split (the mean over splits when it has several, over subsets/languages when
    multilingual); CQADupstack counts as one task (mteb's aggregate task averages its 12
    forums first); ``mean_task`` is the mean over tasks, ``mean_task_type`` the mean of
    the per-type means.

    Only results that stand for the task's data now count: a task that failed in this
    run (``outcomes`` from :func:`helpers.mteb_glue.run_tasks`) does not count even when
    an older result file exists, and neither does a result whose ``dataset_revision`` is
    not :func:`helpers.mteb_glue.data_fingerprint` of the task now (computed from other
    local files, from the hub while the task now reads local files, or the reverse).

    Args:
        results: ``TaskResult`` objects (e.g. :func:`load_task_results`).
        tasks: the selected tasks, with their local data attached as in the run.
        outcomes: this run's outcomes; None: no run (nothing counts as failed).

    Returns:
        ``{"tasks": [selected task names], "per_task": {task: {"type", "metric", "split",
        "main_score"}}, "per_type": {type: mean}, "mean_task", "mean_task_type" (NaN
        without tasks), "missing": [every selected task without a counted score],
        "failed": [tasks failed in this run], "stale": [tasks whose result comes from other
        data], "reasons": {task: why it is missing}, "task_info": {task: {"type", "metric",
        "split"}} for every selected task}``; the averages as :func:`task_averages`.
    """
    by_name = {r.task_name: r for r in results}
    failed_now = {o.task: o.error for o in outcomes or () if o.status == "failed"}
    per_task: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    stale: list[str] = []
    reasons: dict[str, str] = {}
    for task in tasks:
        name = task.metadata.name
        if name in failed_now:
            failed.append(name)
            reasons[name] = f"failed in this run ({failed_now[name]})"
            continue
        if name not in by_name:
            reasons[name] = "no result"
            continue
        why = stale_reason(by_name[name], task)
        if why is not None:
            stale.append(name)
            reasons[name] = f"result not counted: {why}"
            continue
        splits = main_scores(by_name[name], task)
        if not splits:
            reasons[name] = f"no score on its evaluation split(s) {task.metadata.eval_splits}"
            continue
        per_task[name] = {
            "type": task.metadata.type,
            "metric": task.metadata.main_score,
            "split": ",".join(splits),
            "main_score": sum(splits.values()) / len(splits),
        }
    return {
        "tasks": [t.metadata.name for t in tasks],
        "per_task": per_task,
        **task_averages(per_task),
        "missing": [t.metadata.name for t in tasks if t.metadata.name not in per_task],
        "failed": failed,
        "stale": stale,
        "reasons": reasons,
        "task_info": {
            t.metadata.name: {
                "type": t.metadata.type,
                "metric": t.metadata.main_score,
                "split": ",".join(t.metadata.eval_splits),
            }
            for t in tasks
        },
    }


def task_averages(per_task: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The leaderboard's averages of main scores, defined here once.

    ``per_type``: the mean over the tasks of each type; ``mean_task`` (Mean (Task)): the
    mean over tasks; ``mean_task_type`` (Mean (TaskType)): the mean of the per-type means,
    so that many tasks of one type do not outweigh a type with few. NaN without tasks.

    Args:
        per_task: task -> ``{"type": str, "main_score": float, ...}`` (the tasks with a
            score; others are simply absent).

    Returns:
        ``{"per_type": {type: mean} (types sorted), "mean_task": float,
        "mean_task_type": float}``.
    """
    per_type: dict[str, list[float]] = {}
    for row in per_task.values():
        per_type.setdefault(row["type"], []).append(row["main_score"])
    type_means = {t: sum(v) / len(v) for t, v in sorted(per_type.items())}
    return {
        "per_type": type_means,
        "mean_task": sum(r["main_score"] for r in per_task.values()) / len(per_task)
        if per_task
        else float("nan"),
        "mean_task_type": sum(type_means.values()) / len(type_means)
        if type_means
        else float("nan"),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """One line of counts, then one line per task without a counted score and why.

    E.g. ``"2 of 2 tasks have results; missing: none"`` or ``"1 of 2 tasks have results;
    missing: ['Banking77Classification']\n - Banking77Classification: failed in this run
    (...)"``.

    Args:
        summary: from :func:`summarize`.
    """
    names = summary.get("tasks", [*summary["per_task"], *summary["missing"]])
    missing = summary["missing"]
    lines = [
        f"{len(summary['per_task'])} of {len(names)} tasks have results; "
        f"missing: {missing or 'none'}"
    ]
    reasons = summary.get("reasons", {})
    lines += [f" - {name}: {reasons.get(name, 'no result')}" for name in missing]
    return "\n".join(lines)


def reproduction_summary(
    comparison: pd.DataFrame, summary: dict[str, Any], tolerance: float = 0.002
) -> str:
    """What :func:`helpers.mteb_glue.comparison_frame` shows, in words, never claiming more.

    ``"Every task with a published score reproduces it within 0.002."`` only when every
    task with a published score reproduces it and no selected task failed or has a
    result from other data; otherwise it names those tasks, and when a score does not
    reproduce lists :data:`REPRODUCTION_CAUSES`.

    Args:
        comparison: from :func:`helpers.mteb_glue.comparison_frame`.
        summary: from :func:`summarize`.
        tolerance: the tolerance the comparison used.
    """
    lines = []
    reproduced = comparison["reproduced"]
    if reproduced.eq(False).any():
        lines.append("Some scores do not reproduce. Known causes to check:")
        lines += [f" - {cause}" for cause in REPRODUCTION_CAUSES]
    elif reproduced.eq(True).any():
        lines.append(f"Every task with a published score reproduces it within {tolerance}.")
    else:
        lines.append("No task with a score here has a published score to compare with.")
    failed, stale = summary.get("failed", []), summary.get("stale", [])
    if failed or stale:
        lines.append(
            f"Not checked, {len(failed) + len(stale)} task(s) without a valid score now "
            "(why: the summary above): "
            + "; ".join(
                part
                for part in (
                    f"failed in this run: {', '.join(failed)}" if failed else "",
                    f"results from other data: {', '.join(stale)}" if stale else "",
                )
                if part
            )
        )
    return "\n".join(lines)


def failure_report(
    outcomes: Sequence[TaskOutcome],
    tasks: Sequence[Any],
    data_root: str | Path | None,
    param: str = "data_root",
) -> str:
    """Each failed task with its cause, then what to do.

    When the Hugging Face hub is unreachable (:func:`helpers.hub.hub_offline_reason`) it
    says which selected tasks can run from ``data_root`` (those with a folder named for
    them there) and which need the network, and which task folders ``data_root`` holds.

    Args:
        outcomes: from :func:`helpers.mteb_glue.run_tasks`.
        tasks: the selected tasks.
        data_root: the folder of task folders (None or ``""``: none).
        param: the caller's name of ``data_root``.

    Returns:
        ``"No task failed."``, or several lines of text.
    """
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return "No task failed."
    lines = [f"{len(failed)} of {len(outcomes)} task(s) failed:"]
    lines += [f" - {o.task}: {o.error}" for o in failed]
    lines.append("(the full tracebacks are in the outcomes' traceback field and the log)")
    root = Path(data_root) if data_root else None
    names = [t.metadata.name for t in tasks]
    local = [n for n in names if root is not None and (root / n).is_dir()]
    reason = hub_offline_reason()
    if reason is not None:
        remote = [n for n in names if n not in local]
        shown = display_path(root) if root is not None else "(none)"
        lines.append(f"The Hugging Face hub is not reachable ({reason}).")
        lines.append(
            f"Of the {len(names)} selected task(s), {len(local)} can run from {param} "
            f"{shown}: {', '.join(local) or 'none'}."
        )
        lines.append(
            f"{len(remote)} need the network (or a folder named for the task under "
            f"{param}): {', '.join(remote) or 'none'}."
        )
        if root is not None and root.is_dir():
            available = sorted(p.name for p in root.iterdir() if p.is_dir())
            lines.append(
                f"{param} has data for: {', '.join(available) or 'no task'} "
                f"(select them with tasks=[...])."
            )
    else:
        lines.append(
            "Fix the cause named above (a data folder's files or columns, the model, "
            "memory) and run again: finished tasks are skipped."
        )
    return "\n".join(lines)


def score_table(task_result: Any, split: str) -> dict[str, Any]:
    """The numeric scores of one split (first subset), for display.

    Args:
        task_result: a ``TaskResult``.
        split: the split, e.g. ``"test"``.

    Returns:
        ``{"main_score": float, "metrics": {name: value}}`` with every numeric entry of
        mteb's score dictionary except bookkeeping fields.
    """
    scores = task_result.scores[split][0]
    metrics = {
        key: float(value)
        for key, value in scores.items()
        if isinstance(value, (int, float))
        and not isinstance(value, bool)
        and key not in {"main_score", "evaluation_time"}
    }
    return {"main_score": float(scores["main_score"]), "metrics": metrics}


REPRODUCTION_CAUSES = (
    "query prompt or instruction (e.g. BGE's retrieval instruction, model prompts)",
    "dataset revision (the task's pinned revision vs the data you loaded)",
    "split (test vs dev; MSMARCO is scored on dev)",
    "exclusion of identical query/document ids (ArguAna and other tasks ignore them)",
    (
        "the dtype the model ran in (the dtype parameter; settings.dtype in the cache entry): "
        "bfloat16 or float16 instead of float32 moves a score by 1e-4 to 5e-4 "
        "(all-MiniLM-L6-v2 on the CPU: STSBenchmark 0.820444 in bfloat16, 0.820325 in "
        "float32; SciFact 0.64550 and 0.64508)"
    ),
    "maximum sequence length (truncation)",
)
"""Known causes to check when a score does not reproduce its published value."""


def compare_with_published(
    summary: dict[str, Any],
    model: str,
    published: dict[tuple[str, str, str], float],
    tolerance: float = 0.002,
) -> list[dict[str, Any]]:
    """Our main scores next to the published ones of the same model.

    Args:
        summary: from :func:`summarize`.
        model: the model's official name (``org/name``).
        published: from :func:`helpers.mteb_glue.published_scores`.
        tolerance: the largest absolute difference that counts as reproduced.

    Returns:
        One row per task with a counted score (never one listed as ``failed`` or
        ``stale`` in the summary): task, split, metric, ours, published (None when
        unknown), difference, reproduced (True/False/None).
    """
    excluded = {*summary.get("failed", ()), *summary.get("stale", ())}
    rows = []
    for task, row in summary["per_task"].items():
        if task in excluded:
            continue
        split = row["split"]
        ref = published.get((model, task, split))
        diff = None if ref is None else row["main_score"] - ref
        rows.append(
            {
                "task": task,
                "split": split,
                "metric": row["metric"],
                "ours": row["main_score"],
                "published": ref,
                "difference": diff,
                "reproduced": None if diff is None else abs(diff) <= tolerance,
            }
        )
    return rows


PUBLISHED_SUFFIX = " (published)"
"""What a published-score column's name ends with in :func:`leaderboard`."""

MISSING_REASONS = ("failed", "stale", "no result")
"""Why a model has no score for a task in :func:`leaderboard`, in the order shown: failed
in this run, its result comes from other data, or no counted score (no result file, or
none on the evaluation split(s))."""


def _task_order(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every task of the summaries, in the order of the first that lists it."""
    order: dict[str, None] = {}
    for summary in summaries.values():
        names = summary.get("tasks") or [*summary["per_task"], *summary.get("missing", ())]
        order.update(dict.fromkeys(names))
    return list(order)


def _task_field(summaries: Mapping[str, Mapping[str, Any]], task: str, field: str) -> str:
    """A task's ``type`` or ``split`` from whichever summary knows it (``""``: none)."""
    for summary in summaries.values():
        info = summary.get("task_info", {}).get(task) or summary["per_task"].get(task)
        if info and info.get(field):
            return str(info[field])
    return ""


def _missing_reason(summary: Mapping[str, Any], task: str) -> str:
    if task in summary.get("failed", ()):
        return "failed"
    if task in summary.get("stale", ()):
        return "stale"
    return "no result"


def leaderboard(
    summaries: Mapping[str, Mapping[str, Any]],
    published: Mapping[tuple[str, str, str], float],
    references: Sequence[str] = (),
) -> dict[str, Any]:
    """Several models' summaries side by side, with published scores beside them.

    One column per evaluated model (its counted main scores, :func:`summarize`), then for
    each evaluated model its published scores (``"<model> (published)"``, missing where
    none is published), then each reference model's published scores
    (``"<reference> (published)"``; a reference that is also evaluated is not repeated).
    Every column's averages are :func:`task_averages` of the tasks it has a score for:
    for an evaluated model, the values of its own summary.

    Args:
        summaries: model name -> :func:`summarize`'s summary of its results; the name is
            the one published scores are filed under (``org/name``, the model's
            ``mteb_model_meta.name``), in the order the columns take.
        published: from :func:`helpers.mteb_glue.published_scores`.
        references: other models whose published scores get a column each.

    Returns:
        ``{"tasks": [every task, in the order of the first summary listing it], "types":
        {task: type ("" when no summary knows it)}, "columns": [column names, in order],
        "models": {column: model}, "scores": {column: {task: score}} (only tasks with a
        score), "averages": {column: task_averages(...)}, "missing": {task: {model:
        "failed" | "stale" | "no result"}} for the evaluated models without a counted
        score}``.
    """
    tasks = _task_order(summaries)
    types = {t: _task_field(summaries, t, "type") for t in tasks}
    splits = {t: _task_field(summaries, t, "split") for t in tasks}
    models: dict[str, str] = {}
    scores: dict[str, dict[str, float]] = {}
    missing: dict[str, dict[str, str]] = {}
    for model, summary in summaries.items():
        models[model] = model
        scores[model] = {
            t: float(summary["per_task"][t]["main_score"])
            for t in tasks
            if t in summary["per_task"]
        }
        for task in tasks:
            if task not in scores[model]:
                missing.setdefault(task, {})[model] = _missing_reason(summary, task)
    shown = [*summaries, *(r for r in references if r not in summaries)]
    for model in shown:
        column = model + PUBLISHED_SUFFIX
        models[column] = model
        scores[column] = {
            t: float(published[model, t, splits[t]])
            for t in tasks
            if (model, t, splits[t]) in published
        }
    averages = {  # an evaluated model's: from its summary's rows, in its own order
        column: task_averages(
            summaries[column]["per_task"]
            if column in summaries
            else {t: {"type": types[t], "main_score": value} for t, value in values.items()}
        )
        for column, values in scores.items()
    }
    return {
        "tasks": tasks,
        "types": types,
        "columns": list(scores),
        "models": models,
        "scores": scores,
        "averages": averages,
        "missing": missing,
    }
