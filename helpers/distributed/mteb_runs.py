"""Several models on MTEB tasks, here or on Ray: one Ray task per (model, task) pair.

:func:`run_mteb` runs every (model, task) pair through :func:`helpers.mteb_glue.run_tasks`,
so the results are the same files either way: ``<output_dir>/<org>__<model>/<revision>/
<Task>.json``, written atomically, with the data fingerprint as ``dataset_revision``, and
finished pairs skipped.

* ``executor="local"``: in this process, one model after another, as notebook 3 runs one
  (:func:`helpers.mteb_glue.load_mteb_model`, then :func:`helpers.mteb_glue.run_tasks`).
  Ray is not imported.
* ``executor="ray"``: the driver checks which pairs are finished
  (:func:`helpers.mteb_glue.is_finished`) and launches one Ray task for each other pair.
  A worker process loads each model once (and keeps it for the next pair of the same
  model), rebuilds the task from a plain description (its name, the subsets and splits
  the driver's task object evaluates, its local data folder) and runs it. Ray re-runs a
  pair whose worker process died (``max_retries``); a pair that fails for its own reason
  (data, model, memory error raised in Python) is recorded once as ``"failed"``, never
  retried.

On the same data both executors write the same scores (the tests compare every score of
every result file). Ray gives each task ``OMP_NUM_THREADS=1`` (its ``num_cpus``), so a
worker's torch runs on one thread where the driver uses every core; on the CPUs tested the
vectors are bit-identical either way.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from helpers.distributed.session import (
    check_executor,
    check_shared_storage,
    connect,
    for_workers,
    shutdown,
)
from helpers.models import resolve_model
from helpers.mteb_glue import (
    TaskOutcome,
    attach_local_data,
    is_finished,
    load_mteb_model,
    local_source,
    model_meta,
    result_path,
    run_tasks,
    select_tasks,
    use_local_data,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSpec:
    """A task as a worker rebuilds it: plain values, no mteb object.

    Attributes:
        name: the task's name (:func:`helpers.mteb_glue.select_tasks` finds it).
        hf_subsets: the subsets the driver's task evaluates (a benchmark may keep fewer
            than the task has, e.g. only English).
        eval_splits: the splits the driver's task evaluates.
        folder: its local data folder, absolute (None: the hub).
        checked: True when the folder is attached as a task folder of ``data_root``
            (:func:`helpers.mteb_glue.attach_local_data`: named for the task, its files
            checked); the worker attaches it the same way and checks them again. False:
            a folder given with :func:`helpers.mteb_glue.use_local_data`.
    """

    name: str
    hf_subsets: tuple[str, ...]
    eval_splits: tuple[str, ...]
    folder: str | None
    checked: bool


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads a model (what :func:`helpers.mteb_glue.load_mteb_model` takes)."""

    model: str
    device: str
    dtype: str | None
    cache_dir: str | None


def task_spec(task: Any) -> TaskSpec:
    """The plain description of a task object (with its local data as attached now).

    Args:
        task: an mteb task object.
    """
    source = local_source(task)
    folder = None if source is None else os.path.abspath(source.folder)
    # attach_local_data records what it checked (None: nothing missing); use_local_data
    # does not check. A task folder named for the task is what attach_local_data uses.
    checked = source is not None and (
        source.problem is not None or Path(source.folder).name == task.metadata.name
    )
    return TaskSpec(
        name=task.metadata.name,
        hf_subsets=tuple(task.hf_subsets),
        eval_splits=tuple(task.eval_splits),
        folder=folder,
        checked=checked,
    )


def build_task(spec: TaskSpec) -> Any:
    """The task object a :class:`TaskSpec` describes, with its local data attached.

    Args:
        spec: from :func:`task_spec`.

    Raises:
        helpers.mteb_glue.MtebGlueError: for an unknown task, or a local folder that does
            not exist or is not the task's (as :func:`helpers.mteb_glue.use_local_data`).
    """
    (task,) = select_tasks(tasks=[spec.name])
    task.hf_subsets = list(spec.hf_subsets)
    if tuple(task.eval_splits) != spec.eval_splits:
        task.filter_eval_splits(list(spec.eval_splits))
    if spec.folder is not None:
        folder = Path(spec.folder)
        if spec.checked and folder.name == spec.name:
            attach_local_data([task], folder.parent)
        else:
            use_local_data(task, folder, param="data_root")
    return task


_MODELS: dict[ModelSpec, Any] = {}
"""The model loaded in this (worker) process, by how it was loaded: one at a time."""


def _loaded(spec: ModelSpec) -> Any:
    """The model of ``spec``, loaded once per process while its pairs come; a worker given
    another model's pair lets the previous one go first (as the local executor does)."""
    if spec not in _MODELS:
        _MODELS.clear()
        _MODELS[spec] = load_mteb_model(
            spec.model, device=spec.device, cache_dir=spec.cache_dir, dtype=spec.dtype
        )
    return _MODELS[spec]


def run_pair(
    model: str, spec: ModelSpec, task: TaskSpec, output_dir: str, batch_size: int
) -> TaskOutcome:
    """One (model, task) pair, in a Ray worker: the same :func:`helpers.mteb_glue.run_tasks`
    call as the local executor's, on a task rebuilt from its description.

    Args:
        model: the model's name as the caller gave it (the outcome's ``model``).
        spec: how to load it.
        task: the task's description.
        output_dir: root of the results layout (absolute).
        batch_size: encoding batch size.

    Returns:
        The pair's outcome (``"failed"`` with the error when the task, or loading the
        model, fails).
    """
    start = time.monotonic()
    try:
        encoder = _loaded(spec)
        mteb_task = build_task(task)
    except Exception as err:  # noqa: BLE001 - recorded as this pair's failure
        return TaskOutcome(
            task.name,
            "failed",
            None,
            f"{type(err).__name__}: {err}",
            time.monotonic() - start,
            traceback.format_exc(),
            model=model,
        )
    (outcome,) = run_tasks(
        encoder, [mteb_task], output_dir, batch_size=batch_size, model_name=model
    )
    return outcome


def _check_arguments(
    models: Sequence[str],
    tasks: Sequence[Any],
    batch_size: int,
    num_gpus_per_task: float | None,
    max_retries: int,
) -> None:
    if isinstance(models, str) or not all(isinstance(m, str) and m for m in models):
        raise ValueError(
            f"models: expected a list of model names (hub ids or local folders), got {models!r}"
        )
    if not models:
        raise ValueError("models: expected at least one model name, got none")
    repeated = sorted({m for m in models if list(models).count(m) > 1})
    if repeated:
        raise ValueError(f"models: each model once, got {repeated} more than once")
    if isinstance(tasks, str) or not tasks:
        raise ValueError(
            f"tasks: expected a list of mteb tasks (helpers.mteb_glue.select_tasks), got {tasks!r}"
        )
    if any(isinstance(t, str) or not hasattr(t, "metadata") for t in tasks):
        raise ValueError(
            "tasks: expected mteb task objects (helpers.mteb_glue.select_tasks), got "
            f"{[t for t in tasks if isinstance(t, str) or not hasattr(t, 'metadata')][:3]}"
        )
    names = [t.metadata.name for t in tasks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"tasks: each task once, got {repeated} more than once")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if num_gpus_per_task is not None and (
        isinstance(num_gpus_per_task, bool)
        or not isinstance(num_gpus_per_task, (int, float))
        or not 0 <= num_gpus_per_task
    ):
        raise ValueError(
            f"num_gpus_per_task: expected None or a number >= 0, got {num_gpus_per_task!r}"
        )
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries: expected an integer >= 0, got {max_retries!r}")


def _check_result_folders(models: Sequence[str]) -> None:
    """Two models whose results would share one folder (``<org>__<model>/<revision>``:
    e.g. two checkpoints in folders of the same name, both ``local/<folder>``) would
    overwrite each other's results: an error naming them."""
    folders: dict[str, list[str]] = {}
    for model in models:
        meta = model_meta(model)
        folders.setdefault(f"{meta.model_name_as_path()}/{meta.revision}", []).append(model)
    shared = {folder: names for folder, names in folders.items() if len(names) > 1}
    if shared:
        folder, names = next(iter(shared.items()))
        raise ValueError(
            f"models: {names} would write their results into the same folder {folder!r} "
            "(a local folder is filed under its last name, 'local/<folder>'): give each "
            "model a folder of its own name, e.g. checkpoint-1000 and checkpoint-2000"
        )


def run_mteb(
    models: Sequence[str],
    tasks: Sequence[Any],
    output_dir: str | Path,
    *,
    executor: str = "local",
    ray_address: str = "",
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    device: str = "auto",
    dtype: str | None = None,
    show_progress: bool = False,
    num_gpus_per_task: float | None = None,
    max_retries: int = 2,
) -> list[TaskOutcome]:
    """Run every model on every task, here or on Ray; finished pairs are skipped.

    Each pair's result is ``<output_dir>/<org>__<model>/<revision>/<Task>.json``
    (:func:`helpers.mteb_glue.run_tasks`: written atomically, its data fingerprint as
    ``dataset_revision``, skipped when finished from the same data). On Ray, every node
    must see ``output_dir`` and ``cache_dir`` at the same path (checked first,
    :func:`helpers.distributed.check_shared_storage`), and have the project installed in
    the same virtual environment.

    Args:
        models: model names (hub ids, local folders, or the embedded default's name), each
            once; each outcome carries its model's name as given here.
        tasks: mteb task objects (:func:`helpers.mteb_glue.select_tasks`), each once, with
            their local data attached where local
            (:func:`helpers.mteb_glue.attach_local_data`).
        output_dir: root of the results layout.
        executor: ``"local"`` (this process, one model after another) or ``"ray"`` (one
            Ray task per pair not finished).
        ray_address: with ``executor="ray"``: ``""`` starts Ray on this machine (and stops
            it at the end), ``"auto"``, ``"host:port"`` or ``"ray://host:port"`` joins a
            cluster. A Ray already initialised in this process is used as it is.
        data_root: a folder of task folders (``<data_root>/<TaskName>``): tasks without
            local data attached read theirs from there when they have a folder
            (:func:`helpers.mteb_glue.attach_local_data`); None: as the tasks are.
        cache_dir: the embedding cache (None: none); on Ray, shared by every worker.
        batch_size: encoding batch size (mteb's; as in :func:`helpers.mteb_glue.run_tasks`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; on Ray, as a worker sees
            its devices (Ray gives a task its GPUs as ``cuda:0``...).
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` or None
            (:func:`helpers.mteb_glue.load_mteb_model`).
        show_progress: progress bars (local: mteb's and the encoder's; Ray: one bar over
            the pairs, moved as each finishes); otherwise log lines (INFO).
        num_gpus_per_task: GPUs each Ray task asks for; None: 1 when the cluster has
            GPUs, else 0.
        max_retries: how many times Ray re-runs a pair whose worker process died (killed,
            out of memory, node lost); a pair failing with a Python error is not retried.

    Returns:
        One outcome per (model, task) pair, models in the given order and, within a
        model, tasks in the given order; each with ``model`` set.

    Raises:
        ValueError: for a bad argument, naming it (:func:`check_executor` for
            ``executor`` and ``ray_address``).
        helpers.models.ModelError: for a model that cannot be resolved (a local folder
            that does not exist, a hub id while the hub is unreachable), before any runs.
        helpers.distributed.StorageError: when a node does not see ``output_dir`` or
            ``cache_dir`` as the driver does.
    """
    check_executor(executor, ray_address)
    _check_arguments(models, tasks, batch_size, num_gpus_per_task, max_retries)
    models = list(models)
    tasks = list(tasks)
    for model in models:  # an unknown model, or a hub id offline: before anything runs
        resolve_model(model)
    _check_result_folders(models)
    if data_root:
        unattached = [t for t in tasks if local_source(t) is None]
        attach_local_data(unattached, data_root)
    settings = (cache_dir, batch_size, device, dtype, show_progress)
    if executor == "local":
        return _run_local(models, tasks, output_dir, *settings)
    return _run_ray(
        models, tasks, output_dir, ray_address, *settings, num_gpus_per_task, max_retries
    )


def _run_local(
    models: list[str],
    tasks: list[Any],
    output_dir: str | Path,
    cache_dir: str | Path | None,
    batch_size: int,
    device: str,
    dtype: str | None,
    show_progress: bool,
) -> list[TaskOutcome]:
    outcomes: list[TaskOutcome] = []
    for model in models:
        encoder = load_mteb_model(
            model, device=device, cache_dir=cache_dir, dtype=dtype, show_progress=show_progress
        )
        done = run_tasks(
            encoder,
            tasks,
            output_dir,
            batch_size=batch_size,
            show_progress=show_progress,
            model_name=model,
        )
        for outcome in done:
            logger.info("%s / %s: %s", model, outcome.task, outcome.status)
        outcomes += done
        del encoder
    return outcomes


def _progress(total: int, show: bool) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="MTEB on Ray (model, task)", unit="pair")


def _run_ray(
    models: list[str],
    tasks: list[Any],
    output_dir: str | Path,
    ray_address: str,
    cache_dir: str | Path | None,
    batch_size: int,
    device: str,
    dtype: str | None,
    show_progress: bool,
    num_gpus_per_task: float | None,
    max_retries: int,
) -> list[TaskOutcome]:
    import ray

    out = os.path.abspath(Path(output_dir).expanduser())
    cache = os.path.abspath(Path(cache_dir).expanduser()) if cache_dir else None
    cluster = connect(ray_address)
    try:
        folders = {"output_dir": out, **({"cache_dir": cache} if cache else {})}
        check_shared_storage(cluster, folders)
        gpus: float = 1 if cluster.num_gpus > 0 else 0
        if num_gpus_per_task is not None:
            gpus = num_gpus_per_task
        specs = [task_spec(t) for t in tasks]
        remote = ray.remote(run_pair).options(
            num_cpus=1, num_gpus=gpus, max_retries=max_retries, retry_exceptions=False
        )
        results: dict[tuple[int, int], TaskOutcome] = {}
        pending: dict[Any, tuple[int, int]] = {}
        for i, model in enumerate(models):
            meta = model_meta(model)
            model_spec = ModelSpec(for_workers(model), device, dtype, cache)
            for j, (task, spec) in enumerate(zip(tasks, specs, strict=True)):
                path = result_path(out, meta, spec.name)
                if is_finished(path, task):
                    results[i, j] = TaskOutcome(spec.name, "skipped", path, model=model)
                    continue
                ref = remote.remote(model, model_spec, spec, out, batch_size)
                pending[ref] = (i, j)
        logger.info(
            "%d (model, task) pair(s): %d finished earlier, %d launched on Ray",
            len(models) * len(tasks), len(results), len(pending),
        )  # fmt: skip
        bar = _progress(len(models) * len(tasks), show_progress)
        if bar is not None:
            bar.update(len(results))
        for ref, outcome in _as_completed(pending, models, specs):
            results[pending[ref]] = outcome
            if bar is not None:
                bar.update(1)
            logger.info(
                "%s / %s: %s (%d of %d pairs)", outcome.model, outcome.task, outcome.status,
                len(results), len(models) * len(tasks),
            )  # fmt: skip
        if bar is not None:
            bar.close()
    finally:
        shutdown(cluster)
    return [results[i, j] for i in range(len(models)) for j in range(len(tasks))]


def _as_completed(
    pending: dict[Any, tuple[int, int]], models: list[str], specs: list[TaskSpec]
) -> Iterator[tuple[Any, TaskOutcome]]:
    """Each launched pair's outcome as it finishes; what escaped the worker (a Ray error,
    a worker that died more often than ``max_retries``) as a ``"failed"`` outcome."""
    import ray

    start = time.monotonic()
    waiting = list(pending)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        for ref in ready:
            i, j = pending[ref]
            try:
                outcome = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - kept as this pair's failure
                error = _escaped_error(err)
                logger.warning("%s / %s failed on Ray: %s", models[i], specs[j].name, error)
                outcome = TaskOutcome(
                    specs[j].name, "failed", None, error, time.monotonic() - start,
                    f"{err}\n{traceback.format_exc()}", model=models[i],
                )  # fmt: skip
            yield ref, replace(outcome, model=models[i])


def _escaped_error(err: Exception) -> str:
    """``"ExceptionType: message"`` of what escaped a Ray task: the worker's own exception
    (not Ray's wrapper with its traceback), or Ray's error (a worker that kept dying)."""
    from ray.exceptions import RayTaskError

    cause = getattr(err, "cause", None) if isinstance(err, RayTaskError) else None
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    lines = str(err).strip().splitlines()  # Ray's errors: the first line says it
    return f"{type(err).__name__}: {lines[0] if lines else ''}"
