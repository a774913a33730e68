"""Registered mteb tasks read from local folders: attaching a folder to a task, and loading it.

The layouts and checks are in :mod:`helpers.mteb_glue.task_files`; BEIR files are read
with :func:`helpers.data.read_beir_jsonl`, the reader the retrieval notebooks use. Which
folder a task reads is kept here, in :class:`LocalSource` (:func:`local_source`), not on
mteb's task object.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.data import DataError, read_beir_jsonl, read_jsonl, read_qrels_tsv
from helpers.mteb_glue.errors import MtebGlueError
from helpers.mteb_glue.selection import registered_task
from helpers.mteb_glue.task_files import (
    find_required,
    is_retrieval_task,
    local_data_mismatch,
    local_data_problem,
    local_splits,
    required_columns,
    split_files,
    subset_folders,
)
from helpers.notebook import display_path


@dataclass(frozen=True)
class LocalSource:
    """Where a task reads its data from.

    Attributes:
        folder: the task's local folder.
        problem: what :func:`local_data_problem` found missing there before the run
            (None: nothing, or not checked); :func:`helpers.mteb_glue.run_tasks` fails the
            task with it instead of running it.
    """

    folder: Path
    problem: str | None = None


_SOURCES: dict[int, LocalSource] = {}
"""id(task) -> its local source; an entry goes when its task is garbage-collected."""


def local_source(task: Any) -> LocalSource | None:
    """The local folder a task reads (:func:`use_local_data`), or None: the hub.

    Args:
        task: an mteb task object.
    """
    return _SOURCES.get(id(task))


def _set_source(task: Any, source: LocalSource) -> None:
    if id(task) not in _SOURCES:
        weakref.finalize(task, _SOURCES.pop, id(task), None)
    _SOURCES[id(task)] = source


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _load_retrieval_split(task: Any, folder: Path, split: str) -> dict[str, Any]:
    """One split of a BEIR folder in mteb's retrieval format (judged queries only)."""
    from datasets import Dataset

    names = split_files(task, split)
    corpus_path, queries_path, qrels_path = (find_required(folder, name) for name in names)
    if corpus_path is None or queries_path is None or qrels_path is None:
        raise MtebGlueError(
            f"data folder {str(folder)!r}: a retrieval task needs the BEIR layout: "
            f"{', '.join(names[:-1])} and {names[-1]} (optionally .gz)"
        )
    corpus: dict[str, list[str]] = {"id": [], "title": [], "text": []}
    for doc_id, title, text, _ in read_beir_jsonl(corpus_path):
        corpus["id"].append(doc_id)
        corpus["title"].append(title)
        corpus["text"].append(text)
    qrels = read_qrels_tsv(qrels_path)
    queries: dict[str, list[str]] = {"id": [], "text": []}
    for query_id, _, text, _ in read_beir_jsonl(queries_path):
        if query_id in qrels:  # mteb keeps only judged queries
            queries["id"].append(query_id)
            queries["text"].append(text)
    return {
        "corpus": Dataset.from_dict(corpus),
        "queries": Dataset.from_dict(queries),
        "relevant_docs": qrels,
        "top_ranked": None,
    }


def _load_split_file(task: Any, folder: Path, split: str) -> Any:
    """One split's JSONL file as a ``datasets.Dataset`` (every column as stored)."""
    from datasets import Dataset

    (name,) = split_files(task, split)
    path = find_required(folder, name)
    if path is None:
        raise MtebGlueError(
            f"data folder {str(folder)!r}: task {task.metadata.name} ({task.metadata.type}) "
            f"needs {name} (or {name}.gz) with columns {required_columns(task)}"
        )
    records = list(read_jsonl(path))
    if not records:
        raise DataError(f"{path}: no records")
    return Dataset.from_list(records)


def _check_columns(task: Any, folder: Path) -> None:
    """After the task's transform: every split has the columns its evaluator reads."""
    needed = required_columns(task)
    subsets = task.dataset.items() if task.metadata.is_multilingual else [("", task.dataset)]
    for subset, splits in subsets:
        for split, dataset in splits.items():
            columns = set(getattr(dataset, "column_names", []) or [])
            missing = [c for c in needed if c not in columns]
            if missing:
                raise MtebGlueError(
                    f"data folder {str(folder / subset / split)!r}.jsonl: task "
                    f"{task.metadata.name} needs column(s) {missing}; found {sorted(columns)}"
                )


def _load_local_data(task: Any, folder: Path, num_proc: int | None = None, **_: Any) -> None:
    """mteb's ``load_data`` for a task whose data is in ``folder``: the same dataset
    structure, then the task's own ``dataset_transform``, then the column check."""
    from datasets import DatasetDict

    if task.data_loaded:
        return
    retrieval = is_retrieval_task(task)
    data: dict[str, Any] = {}
    for subset in subset_folders(task):
        base = folder / subset
        if retrieval:
            data[subset or "default"] = {
                s: _load_retrieval_split(task, base, s) for s in local_splits(task)
            }
        else:
            data[subset or "default"] = DatasetDict(
                {s: _load_split_file(task, base, s) for s in local_splits(task)}
            )
    task.dataset = data if (task.metadata.is_multilingual or retrieval) else data["default"]
    task.dataset_transform(num_proc=num_proc)
    if not retrieval:
        _check_columns(task, folder)
    task.data_loaded = True


def use_local_data(task: Any, folder: str | Path, param: str = "data_dir") -> Any:
    """Make a registered task read its data from a local folder instead of the hub.

    The task keeps mteb's official metadata (type, splits, main score, evaluator); only
    where its data comes from changes (the module's docstring gives the layouts).
    Unknown columns are ignored; missing ones are a clear error when the data loads.

    The folder must be the task's own data: either it is named for the task
    (``<...>/STSBenchmark`` for STSBenchmark), or its content is what the task expects:
    every split file, the task's columns, and exactly the number of samples per split
    that mteb records for the task (:func:`local_data_mismatch`). Results computed from
    it record ``dataset_revision = "local:sha256:<hash of its files>"``
    (:func:`helpers.mteb_glue.data_fingerprint`).

    Args:
        task: an mteb task object (from :func:`helpers.mteb_glue.select_tasks`).
        folder: the task's data.
        param: the caller's name of the folder parameter, used in error messages.

    Returns:
        The task.

    Raises:
        MtebGlueError: when the folder does not exist, or is not named for the task and
            its content differs from the task's (checked now); at load time, when files or
            columns are missing.
    """
    folder = Path(folder)
    name = task.metadata.name
    if not folder.is_dir():
        raise MtebGlueError(
            f"{param}: data folder {display_path(folder)!r} for task {name} does not exist"
        )
    if folder.name != name:
        differences = local_data_mismatch(task, folder)
        if differences:
            named = (
                f"its folder is named for another task ({folder.name})"
                if registered_task(folder.name) is not None
                else f"its folder is named {folder.name!r}, not {name!r}"
            )
            raise MtebGlueError(
                f"{param}: data folder {display_path(folder)!r} was given for task {name}: "
                f"{named}, and {'; '.join(differences)}. Give {param} the folder of {name}'s "
                f"data (a folder named {name!r} is taken as that)"
            )
    # mteb's public way to point a task elsewhere is its metadata's ``dataset`` (the
    # arguments of ``datasets.load_dataset``). It cannot serve here: a retrieval task loads
    # the hub layout only (no BEIR folder), a multilingual one asks for configs by name (no
    # ``<folder>/<subset>/``), and errors would name no file and line. So the task's
    # ``load_data`` is replaced, in this one place, by the same steps on local files.
    task.load_data = functools.partial(_load_local_data, task, folder)
    _set_source(task, LocalSource(folder))
    return task


def attach_local_data(
    tasks: Sequence[Any], data_root: str | Path | None, param: str = "data_root"
) -> dict[str, str]:
    """Point every task that has a folder ``<data_root>/<TaskName>`` at it.

    Each such folder is checked for its files at once (:func:`local_data_problem`): a
    task whose files are missing fails in :func:`helpers.mteb_glue.run_tasks` with what
    is missing, before any model runs.

    Args:
        tasks: mteb tasks.
        data_root: a folder with one sub-folder per task, named exactly as the task;
            None or ``""``: every task reads the hub.
        param: the caller's name of ``data_root``, used in error messages.

    Returns:
        task name -> ``"local"``, ``"local: <what is missing>"`` or ``"hub"``, the source
        each task will read.

    Raises:
        MtebGlueError: when ``data_root`` is given but is not a folder.
    """
    if data_root and not Path(data_root).is_dir():
        raise MtebGlueError(
            f"{param}: {str(data_root)!r} is not a folder; expected one sub-folder per task, "
            "named exactly as the task (e.g. data/mteb/STSBenchmark)"
        )
    sources: dict[str, str] = {}
    for task in tasks:
        name = task.metadata.name
        folder = Path(data_root) / name if data_root else None
        if folder is not None and folder.is_dir():
            use_local_data(task, folder, param=param)
            problem = local_data_problem(task, folder)
            _set_source(task, LocalSource(folder, problem))
            sources[name] = f"local: {problem}" if problem else "local"
        else:
            sources[name] = "hub"
    return sources
