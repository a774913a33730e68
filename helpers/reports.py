"""Results on disk and on screen: metrics tables, JSON, TREC run files, plots.

Every table shown in a notebook goes through :func:`metrics_table`, so the key order
and the rounding (4 decimals) are the same everywhere and nbval sees stable output.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.io import write_text
from helpers.metrics import METRIC_DEFINITIONS, SHORT_DEFINITIONS, Run, rank_documents

DECIMALS = 4


def metrics_table(
    mean: Mapping[str, float],
    metrics: Sequence[str],
    cutoffs: Sequence[int],
    decimals: int = DECIMALS,
    definitions: bool = True,
) -> pd.DataFrame:
    """Mean metrics as a table: one row per metric, one column per cut-off ``@k``.

    Args:
        mean: metric key (``"ndcg_at_10"``) -> value.
        metrics: row order (names from :data:`helpers.metrics.METRICS`).
        cutoffs: column order.
        decimals: rounding.
        definitions: add a column with each metric's one-line definition.
    """
    rows = {m: [round(mean[f"{m}_at_{k}"], decimals) for k in cutoffs] for m in metrics}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[f"@{k}" for k in cutoffs])
    table.index.name = "metric"
    if definitions:
        table["definition"] = [SHORT_DEFINITIONS[m] for m in metrics]
    return table


def definitions_table(metrics: Sequence[str]) -> pd.DataFrame:
    """The definition of each metric, for display next to its numbers."""
    return pd.DataFrame(
        {"definition": [METRIC_DEFINITIONS[m] for m in metrics]},
        index=pd.Index(list(metrics), name="metric"),
    )


def rounded(values: Mapping[str, float], decimals: int = DECIMALS) -> dict[str, float]:
    """A copy with every value rounded (for JSON files and display)."""
    return {key: round(float(value), decimals) for key, value in values.items()}


def trec_run_lines(run: Run, tag: str) -> list[str]:
    """A run as TREC lines ``qid Q0 docid rank score tag``, ranked as trec_eval ranks.

    Scores are written in full (shortest round-trip repr), so the file re-ranks and
    re-scores exactly as the run in memory; rounding could create ties.

    Raises:
        ValueError: when the tag or an id contains whitespace (the format has none).
    """
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"tag: expected a non-empty word without spaces, got {tag!r}")
    lines = []
    for qid, scores in run.items():
        for rank, doc_id in enumerate(rank_documents(scores), start=1):
            if any(c.isspace() for c in qid + doc_id):
                raise ValueError(f"run: ids must not contain whitespace ({qid!r}, {doc_id!r})")
            lines.append(f"{qid} Q0 {doc_id} {rank} {float(scores[doc_id])!r} {tag}")
    return lines


def write_trec_run(path: str | Path, run: Run, tag: str) -> Path:
    """Write a TREC run file atomically (see :func:`trec_run_lines`)."""
    return write_text(path, "\n".join(trec_run_lines(run, tag)) + "\n")


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag``) into a run."""
    run: Run = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise ValueError(f"{path}, line {line_no}: expected 6 columns, got {len(parts)}")
            run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
    return run


def write_per_query_csv(
    path: str | Path, per_query: Mapping[str, Mapping[str, float]], keys: Sequence[str]
) -> Path:
    """Per-query metrics as CSV: a ``query_id`` column, then one column per metric key."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["query_id", *keys])
    for qid, values in per_query.items():
        writer.writerow([qid, *(repr(float(values[k])) for k in keys)])
    return write_text(path, buffer.getvalue())


def plot_metrics_by_cutoff(
    mean: Mapping[str, float],
    metrics: Sequence[str],
    cutoffs: Sequence[int],
    title: str = "",
    ax: Any = None,
) -> Any:
    """Line plot of each metric against the cut-off k (log scale). Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for m in metrics:
        ax.plot(list(cutoffs), [mean[f"{m}_at_{k}"] for k in cutoffs], marker="o", label=m)
    ax.set_xscale("log")
    ax.set_xticks(list(cutoffs))
    ax.set_xticklabels([str(k) for k in cutoffs])
    ax.set_xlabel("cut-off k")
    ax.set_ylabel("mean over queries")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", ncols=2)
    if title:
        ax.set_title(title)
    return ax


def comparison_table(rows: Sequence[Mapping[str, Any]], decimals: int = DECIMALS) -> pd.DataFrame:
    """Paired comparisons (``PairedComparison.as_dict()``) as a rounded table by metric."""
    table = pd.DataFrame(list(rows)).set_index("metric")
    numeric = [
        "mean_a",
        "mean_b",
        "mean_difference",
        "ci_low",
        "ci_high",
        "t_statistic",
        "t_test_p",
        "randomization_p",
    ]
    table[numeric] = table[numeric].astype(float).round(decimals) + 0.0
    return table[
        [
            "num_queries",
            "mean_a",
            "mean_b",
            "mean_difference",
            "ci_low",
            "ci_high",
            "t_test_p",
            "randomization_p",
            "wins",
            "losses",
            "ties",
        ]
    ]
