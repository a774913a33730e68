"""Results on disk and on screen: tables, TREC run files, per-query CSV, plots.

Every table a notebook shows goes through :func:`format_table`, so the rounding (4
decimals, no ``-0.0``) is the same everywhere and nbval sees stable output;
:func:`metrics_table` and :func:`comparison_table` build their tables and format them
with it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.io import write_text
from helpers.metrics import SHORT_DEFINITIONS, Run, rank_documents

DECIMALS = 4

COMPARISON_COLUMNS = (
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
)
"""The columns of :func:`comparison_table`, in order."""


def format_table(
    table: pd.DataFrame | pd.Series | Mapping[str, Any],
    decimals: int = DECIMALS,
    name: str = "value",
) -> pd.DataFrame:
    """A table as every notebook shows it: floats rounded, no ``-0.0``.

    Float columns are rounded to ``decimals`` (pandas' rounding); in columns of mixed
    values (``object``), each float is rounded the same way; ``-0.0`` becomes ``0.0``.
    Text, integers, booleans, missing values and the index are left as they are. The
    input is not modified.

    Args:
        table: a DataFrame; a Series (shown as one column, its name); or a mapping of
            row label -> value (one column called ``name``).
        decimals: digits after the decimal point.
        name: the column's name when ``table`` is a mapping.

    Returns:
        A new DataFrame, ready to be the last expression of a cell or ``display``-ed.

    Raises:
        TypeError: when ``table`` is none of the above.
    """
    if isinstance(table, pd.DataFrame):
        frame = table.copy()
    elif isinstance(table, pd.Series):
        frame = table.to_frame()
    elif isinstance(table, Mapping):
        frame = pd.Series(dict(table), name=name, dtype=object if not table else None).to_frame()
    else:
        raise TypeError(
            f"table: expected a DataFrame, a Series or a mapping, got {type(table).__name__}"
        )
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_float_dtype(values.dtype):
            frame[column] = values.round(decimals) + 0.0
        elif values.dtype == object:
            frame[column] = values.map(lambda v: _round_float(v, decimals)).astype(object)
    return frame


def _round_float(value: Any, decimals: int) -> Any:
    """``value`` rounded as pandas rounds (no ``-0.0``) when it is a float, else as it is."""
    if isinstance(value, float):
        return float(np.round(value, decimals)) + 0.0
    return value


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
        decimals: rounding (see :func:`format_table`).
        definitions: add a column with each metric's one-line definition.

    Raises:
        KeyError: naming the metric key missing from ``mean``.
    """
    rows = {m: [float(mean[f"{m}_at_{k}"]) for k in cutoffs] for m in metrics}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[f"@{k}" for k in cutoffs])
    table.index.name = "metric"
    if definitions:
        table["definition"] = [SHORT_DEFINITIONS[m] for m in metrics]
    return format_table(table, decimals)


def comparison_table(rows: Sequence[Mapping[str, Any]], decimals: int = DECIMALS) -> pd.DataFrame:
    """Paired comparisons (``PairedComparison.as_dict()``) as a table by metric.

    Args:
        rows: one comparison per metric, each with ``"metric"`` and every column of
            :data:`COMPARISON_COLUMNS`.
        decimals: rounding (see :func:`format_table`).
    """
    table = pd.DataFrame(list(rows)).set_index("metric")
    numeric = [c for c in COMPARISON_COLUMNS if c not in ("num_queries", "wins", "losses", "ties")]
    table[numeric] = table[numeric].astype(float)
    return format_table(table[list(COMPARISON_COLUMNS)], decimals)


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
