"""The resumable runner: tasks one by one, finished ones skipped, a failure kept to its task.

Results land in ``<output_dir>/<org>__<model>/<revision>/<Task>.json`` in mteb's
``TaskResult`` format with a ``model_meta.json`` beside them: the layout of mteb's result
cache and of the embeddings-benchmark/results repository, one level up. Each result's
``dataset_revision`` says what it was computed from (:func:`data_fingerprint`): the
official hub revision, or ``local:sha256:<hash>`` for local files; resuming
(:func:`is_finished`) counts a result only when that is the data of the task now.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.data import DataError
from helpers.hub import hub_offline_reason
from helpers.io import atomic_write, files_sha256, remove_stale_temporaries, write_json
from helpers.mteb_glue.errors import MtebGlueError
from helpers.mteb_glue.local_data import local_source

logger = logging.getLogger(__name__)

LOCAL_PREFIX = "local:sha256:"
"""Start of the ``dataset_revision`` of a result computed from local files."""

LEGACY_SOURCE_SUFFIX = ".source"
"""Side file that earlier versions of these helpers wrote beside a result (``<Task>.source``);
they wrote the hub revision even for local data, so a result with one is run again."""

_FINGERPRINTS: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


@dataclass(frozen=True)
class TaskOutcome:
    """What happened to one task in :func:`run_tasks`.

    Attributes:
        task: the task name.
        status: ``"done"`` (ran now), ``"skipped"`` (finished earlier, from the same
            data) or ``"failed"``.
        path: the result JSON (None when failed).
        error: ``"ExceptionType: message"`` when failed.
        seconds: wall time of this attempt.
        traceback: the full traceback when failed (also logged at WARNING).
        model: the model's name, as the caller gave it (``run_tasks``' ``model_name``;
            by default the official name of the model's metadata).
    """

    task: str
    status: str
    path: Path | None
    error: str = ""
    seconds: float = 0.0
    traceback: str = ""
    model: str = ""


def result_folder(output_dir: str | Path, meta: Any) -> Path:
    """``<output_dir>/<org>__<model>/<revision>``.

    Args:
        output_dir: root of the results layout.
        meta: the model's ``ModelMeta`` (``encoder.mteb_model_meta``).
    """
    return Path(output_dir) / meta.model_name_as_path() / str(meta.revision)


def result_path(output_dir: str | Path, meta: Any, task_name: str) -> Path:
    """``<output_dir>/<org>__<model>/<revision>/<Task>.json``.

    Args:
        output_dir: root of the results layout.
        meta: the model's ``ModelMeta``.
        task_name: the task's name.
    """
    return result_folder(output_dir, meta) / f"{task_name}.json"


def data_fingerprint(task: Any) -> str:
    """What a task's result is computed from, as stored in the result's ``dataset_revision``.

    * local data (:func:`helpers.mteb_glue.use_local_data`): ``"local:sha256:<hex>"``, a
      SHA-256 over every file of the folder (relative paths and bytes,
      :func:`helpers.io.files_sha256`), so that such a result is never taken for one on
      the official dataset;
    * hub data: the task's official dataset revision (``task.metadata.revision``), which
      mteb itself writes there (the hub path is fixed by the task).

    :func:`run_tasks` writes it into the result JSON (one atomic write), and
    :func:`is_finished` and :func:`helpers.mteb_glue.summarize` compare it with the data
    of now. Hashes are memoised per folder while no file's size or modification time
    changes.

    Args:
        task: an mteb task object.
    """
    source = local_source(task)
    if source is None:
        return str(task.metadata.revision)
    folder = source.folder
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    stats = []
    for path in files:
        info = path.stat()
        stats.append((str(path.relative_to(folder)), info.st_size, info.st_mtime_ns))
    key = (str(folder.resolve()), tuple(stats))
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = LOCAL_PREFIX + files_sha256(folder, files)
    return _FINGERPRINTS[key]


def stale_reason(result: Any, task: Any) -> str | None:
    """Why ``result`` was not computed from ``task``'s data of now, or None.

    Args:
        result: a ``TaskResult``.
        task: the mteb task, with its local data attached as now.
    """
    expected = data_fingerprint(task)
    got = getattr(result, "dataset_revision", None)
    if got == expected:
        return None
    if not got:
        return f"it records no dataset_revision; the data now is {expected!r}"
    return (
        f"it was computed from other data (dataset_revision {got!r}; the data now is {expected!r})"
    )


def is_finished(path: Path, task: Any) -> bool:
    """True only when ``path`` holds a result that needs no re-run.

    That is: the file is a readable ``TaskResult``; no ``<Task>.source`` of an earlier
    version lies beside it (:data:`LEGACY_SOURCE_SUFFIX`); its ``dataset_revision`` equals
    :func:`data_fingerprint` of the task now (same local files, or the official hub
    revision); it has every evaluation split. In every other case the task runs again,
    with a logged warning saying why (except when there is no file at all).

    Args:
        path: the task's result JSON (:func:`result_path`).
        task: the mteb task, with its local data attached as for the run.
    """
    from mteb.results import TaskResult

    if not path.is_file():
        return False
    if path.with_suffix(LEGACY_SOURCE_SUFFIX).is_file():
        logger.warning(
            "result file %s comes from an earlier version that did not record its data in "
            "the result; the task runs again",
            path,
        )
        return False
    try:
        result = TaskResult.from_disk(path)
    # what mteb raises for a truncated, non-UTF-8 or foreign JSON file: run the task again
    except (OSError, ValueError, LookupError, AttributeError, TypeError):
        logger.warning("result file %s is unreadable; the task runs again", path)
        return False
    reason = stale_reason(result, task)
    if reason is not None:
        logger.warning("result file %s: %s; the task runs again", path, reason)
        return False
    missing = [s for s in task.metadata.eval_splits if s not in result.scores]
    if missing:
        logger.warning("result file %s lacks split(s) %s; the task runs again", path, missing)
        return False
    return True


def save_task_result(task_result: Any, path: Path) -> Path:
    """Write a ``TaskResult`` with mteb's own serialiser, atomically.

    Args:
        task_result: the result.
        path: where to write it.

    Returns:
        ``path``.
    """
    return atomic_write(path, lambda tmp: task_result.to_disk(Path(tmp)))


def _no_local_data_hint(name: str, data_param: str) -> str:
    if data_param == "data_root":
        return f"put its data in a folder named {name!r} under {data_param}"
    return f"give {data_param} a folder with {name}'s data"


def _check_data(task: Any, data_param: str) -> None:
    """Fail fast: a local folder with files missing, or no local data and no hub."""
    name = task.metadata.name
    source = local_source(task)
    if source is not None and source.problem:
        raise MtebGlueError(f"data folder for {name}: {source.problem}")
    if source is None:
        reason = hub_offline_reason()
        if reason is not None:
            raise MtebGlueError(
                f"no local data for {name} and the Hugging Face hub is not reachable "
                f"({reason}); {_no_local_data_hint(name, data_param)}"
            )


def run_tasks(
    model: Any,
    tasks: Sequence[Any],
    output_dir: str | Path,
    batch_size: int = 32,
    show_progress: bool = False,
    overwrite: bool = False,
    data_param: str = "data_root",
    model_name: str | None = None,
) -> list[TaskOutcome]:
    """Run tasks one by one; skip finished ones; keep going when one fails.

    Each result is saved as ``<output_dir>/<org>__<model>/<revision>/<Task>.json`` in one
    atomic write, with :func:`data_fingerprint` as its ``dataset_revision``. Temporary
    files of killed runs are removed (:func:`helpers.io.remove_stale_temporaries`: only
    those whose writer is gone, never another live run's).

    Args:
        model: an mteb encoder from :func:`helpers.mteb_glue.load_mteb_model`.
        tasks: mteb tasks (with :func:`helpers.mteb_glue.use_local_data` applied where
            data is local).
        output_dir: root of the results layout.
        batch_size: encoding batch size.
        show_progress: progress bars.
        overwrite: run tasks again even when a finished result exists.
        data_param: the caller's name of its local-data parameter, for the message of a
            task without local data when the hub is unreachable: ``"data_root"`` (a folder
            of task folders, the default) or the name of one task's folder (``"data_dir"``).
        model_name: the name each outcome's ``model`` carries; None: the official name of
            the model's metadata (``model.mteb_model_meta.name``).

    Returns:
        One outcome per task, in order. A failure is logged at WARNING: the helpers' own
        checks by their message, anything else with its traceback.
    """
    import mteb

    meta = model.mteb_model_meta
    name_given = str(meta.name) if model_name is None else model_name
    folder = result_folder(output_dir, meta)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    write_json(folder / "model_meta.json", json.loads(json.dumps(meta.to_dict(), default=str)))
    outcomes = []
    for task in tasks:
        name = task.metadata.name
        path = result_path(output_dir, meta, name)
        start = time.monotonic()
        if not overwrite and is_finished(path, task):
            outcomes.append(TaskOutcome(name, "skipped", path, model=name_given))
            continue
        try:
            _check_data(task, data_param)
            fingerprint = data_fingerprint(task)
            result = mteb.evaluate(
                model,
                task,
                cache=None,
                encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress},
                show_progress_bar=show_progress,
                raise_error=True,
            )
            task_result = result.task_results[0]
            task_result.dataset_revision = fingerprint
            save_task_result(task_result, path)
            path.with_suffix(LEGACY_SOURCE_SUFFIX).unlink(missing_ok=True)
            outcomes.append(
                TaskOutcome(name, "done", path, seconds=time.monotonic() - start, model=name_given)
            )
        except Exception as err:  # noqa: BLE001 - one task's failure must not stop the others
            trace = traceback.format_exc()
            error = f"{type(err).__name__}: {err}"
            # our own checks: their message says it all; anything else, with its traceback
            if isinstance(err, (MtebGlueError, DataError)):
                logger.warning("task %s failed: %s", name, error)
            else:
                logger.warning("task %s failed: %s\n%s", name, error, trace)
            outcomes.append(
                TaskOutcome(
                    name, "failed", None, error, time.monotonic() - start, trace, name_given
                )
            )
        finally:
            if getattr(task, "data_loaded", False) and hasattr(task, "unload_data"):
                task.unload_data()
    return outcomes
