"""What a registered mteb task needs in a local folder, and whether a folder has it.

One list of files per task (:func:`required_files`, from :func:`split_files` of each of
:func:`local_splits`) drives the loader (:mod:`helpers.mteb_glue.local_data`), the quick
check before a run (:func:`local_data_problem`) and the content check against mteb's
record of the task (:func:`local_data_mismatch`). Layouts, per (subset) folder, each file
optionally gzipped (``.gz``):

* retrieval: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``);
* every other type: one JSONL file per split (``test.jsonl``; ``train.jsonl`` too where
  the task trains, e.g. classification) with the columns of the task's hub dataset;
* multilingual tasks: one such folder per subset, ``<folder>/<subset>/``.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from helpers.data import find_file, read_jsonl, read_qrels_tsv

# ---------------------------------------------------------------------------
# The files and columns
# ---------------------------------------------------------------------------


def required_columns(task: Any) -> list[str]:
    """The columns a task's evaluator reads, from the attributes of its task class.

    Args:
        task: an mteb task object (not retrieval: its files have fixed BEIR fields).
    """
    columns: list[str] = []
    for attr in (
        "column_names",
        "input_column_name",
        "input1_column_name",
        "input2_column_name",
        "label_column_name",
    ):
        value = getattr(task, attr, None)
        if isinstance(value, str):
            columns.append(value)
        elif isinstance(value, (tuple, list)):
            columns.extend(v for v in value if isinstance(v, str))
    if task.metadata.type == "STS":
        columns.append("score")
    return list(dict.fromkeys(columns))


def is_retrieval_task(task: Any) -> bool:
    """True for mteb's retrieval tasks (BEIR layout on disk)."""
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    return isinstance(task, AbsTaskRetrieval)


def local_splits(task: Any) -> list[str]:
    """The splits a task reads from its folder: its evaluation splits, plus the training
    split of classification-style tasks (not of retrieval tasks)."""
    splits = list(task.metadata.eval_splits)
    train_split = getattr(task, "train_split", None)
    if not is_retrieval_task(task) and isinstance(train_split, str) and train_split not in splits:
        splits.append(train_split)
    return splits


def split_files(task: Any, split: str) -> list[str]:
    """The files one split of a task needs, relative to its (subset) folder, without
    ``.gz``: ``["test.jsonl"]``, or for retrieval ``["corpus.jsonl", "queries.jsonl",
    "qrels/test.tsv"]``."""
    if is_retrieval_task(task):
        return ["corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"]
    return [f"{split}.jsonl"]


def required_files(task: Any) -> list[str]:
    """Every file a task needs in its (subset) folder, in order, each once: the
    :func:`split_files` of each of :func:`local_splits`."""
    return list(dict.fromkeys(f for s in local_splits(task) for f in split_files(task, s)))


def find_required(base: Path, name: str) -> Path | None:
    """``base/name`` or ``base/name.gz``, whichever exists (None: neither).

    Args:
        base: the task's (subset) folder.
        name: one of :func:`required_files`, e.g. ``"qrels/test.tsv"``.
    """
    relative = Path(name)
    return find_file(base / relative.parent, relative.name)


def subset_folders(task: Any) -> list[str]:
    """The task's subset folders, relative to its folder: its subsets when multilingual,
    else ``[""]`` (the folder itself)."""
    return list(task.hf_subsets) if task.metadata.is_multilingual else [""]


def local_data_problem(task: Any, folder: Path) -> str | None:
    """A quick check, before anything runs, that a task's local folder has its files.

    Args:
        task: an mteb task object.
        folder: its local folder.

    Returns:
        What is missing (e.g. ``"missing test.jsonl (or .gz) in <folder>"``), or None.
        (Columns are checked when the data loads, after the task's own transform.)
    """
    missing = []
    for subset in subset_folders(task):
        for name in required_files(task):
            if find_required(folder / subset, name) is None:
                missing.append(f"{subset}/{name}" if subset else name)
    if missing:
        return f"missing {', '.join(missing)} (or .gz) in {folder}"
    return None


# ---------------------------------------------------------------------------
# Is the folder the task's data?
# ---------------------------------------------------------------------------


def expected_sizes(task: Any) -> dict[str, dict[str, int]] | None:
    """The sizes mteb records for a task's dataset, per split and subset.

    Read from ``task.metadata.descriptive_stats`` (the statistics JSON shipped inside
    mteb, ``mteb/descriptive_stats/<type>/<Task>.json``): ``num_samples`` per split (for
    retrieval also ``num_documents`` and ``num_queries``), per subset where the statistics
    have ``hf_subset_descriptive_stats``. E.g. STSBenchmark ``{"test": {"num_samples":
    1379}}``, Banking77Classification test 3,080 and train 10,003, SciFact test 5,183
    documents and 300 queries.

    Args:
        task: an mteb task object.

    Returns:
        ``{"<split>" or "<split>/<subset>": {"num_samples": n, ...}}``, or None when mteb
        has no statistics for the task.
    """
    stats = task.metadata.descriptive_stats
    if not stats:
        return None
    keys = ("num_samples", "num_documents", "num_queries")
    sizes: dict[str, dict[str, int]] = {}
    for split, split_stats in stats.items():
        if not isinstance(split_stats, dict):
            continue
        sizes[split] = {k: int(split_stats[k]) for k in keys if split_stats.get(k) is not None}
        for subset, sub in (split_stats.get("hf_subset_descriptive_stats") or {}).items():
            sizes[f"{split}/{subset}"] = {k: int(sub[k]) for k in keys if sub.get(k) is not None}
    return sizes


def _count_lines(path: Path) -> int:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def _first_record_keys(path: Path) -> set[str]:
    for record in read_jsonl(path):
        return set(record)
    return set()


def local_data_mismatch(task: Any, folder: str | Path) -> list[str]:
    """How a folder's content differs from what a task expects; empty when it fits.

    Checked, for each of the task's :func:`required_files`, per subset for multilingual
    tasks (``<folder>/<subset>/``):

    * the split's files are there;
    * the first record of each JSONL file has the columns of :func:`required_columns`
      (as stored, before the task's own ``dataset_transform``);
    * its size is the one mteb records (:func:`expected_sizes`): rows per split file;
      for retrieval the documents of ``corpus.jsonl`` and the judged queries of
      ``qrels/<split>.tsv``.

    Args:
        task: an mteb task object.
        folder: the folder to check.

    Returns:
        One phrase per difference, e.g. ``"test has 1,379 rows where STS12 has 3,108"``;
        ``["mteb records no sizes for <task> to check them against"]`` when the task has
        no statistics.
    """
    folder = Path(folder)
    name = task.metadata.name
    sizes = expected_sizes(task)
    problems: list[str] = []
    if sizes is None:
        problems.append(f"mteb records no sizes for {name} to check them against")
    for subset in subset_folders(task):
        for split in local_splits(task):
            where = f"{subset}/{split}" if subset else split
            want = (sizes or {}).get(f"{split}/{subset}" if subset else split, {})
            files = {n: find_required(folder / subset, n) for n in split_files(task, split)}
            found = [path for path in files.values() if path is not None]
            if is_retrieval_task(task):
                absent = [n for n, path in files.items() if path is None]
                if absent:
                    problems.append(f"{', '.join(absent)} missing for {where}")
                else:
                    corpus, _, qrels = found
                    problems += _retrieval_sizes(name, corpus, qrels, where=where, want=want)
                continue
            path = found[0] if found else None
            if path is None:
                problems.append(f"{where}.jsonl is missing")
                continue
            missing = [c for c in required_columns(task) if c not in _first_record_keys(path)]
            if missing:
                problems.append(f"{where}.jsonl has no column(s) {missing}")
            rows = _count_lines(path)
            if "num_samples" in want and rows != want["num_samples"]:
                problems.append(
                    f"{where} has {rows:,} rows where {name} has {want['num_samples']:,}"
                )
    return problems


def _retrieval_sizes(
    name: str, corpus: Path, qrels: Path, *, where: str, want: dict[str, int]
) -> list[str]:
    """A BEIR split's documents and judged queries against mteb's record of them."""
    documents = _count_lines(corpus)
    judged = len(read_qrels_tsv(qrels))
    if "num_documents" in want and "num_queries" in want:
        if (documents, judged) != (want["num_documents"], want["num_queries"]):
            return [
                f"{where} has {documents:,} documents and {judged:,} judged queries where "
                f"{name} has {want['num_documents']:,} and {want['num_queries']:,}"
            ]
    elif "num_samples" in want and documents + judged != want["num_samples"]:
        return [
            f"{where} has {documents + judged:,} documents and judged queries where {name} "
            f"has {want['num_samples']:,}"
        ]
    return []
