"""Task selection: mteb tasks by benchmark, by name and by type, with close names suggested."""

from __future__ import annotations

import difflib
import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from helpers.mteb_glue.errors import MtebGlueError

logger = logging.getLogger(__name__)

BENCHMARK_ALIASES: dict[str, str] = {"MTEB_MAIN_EN": "MTEB(eng, v1)"}
"""mteb 1.x names (as the FlagEmbedding tutorials use them) -> mteb 2.x benchmark names."""


@contextmanager
def _without_repeated_warnings() -> Iterator[None]:
    """Instantiating a beta or renamed task logs a WARNING and repeats it as a Python
    ``UserWarning``; the repeat (category ``UserWarning`` from mteb's modules, or from
    here: mteb warns with ``stacklevel=2``) is ignored, the log stays."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=UserWarning, module=rf"(mteb|{re.escape(__name__)})(\.|$)"
        )
        yield


def closest(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'A', 'B'?"`` with up to three close names, or ``""``.

    Compared case-insensitively (``"mteb(eng,v1)"`` and ``"mteb eng"`` find
    ``"MTEB(eng, v1)"``), the suggestions spelled as registered.

    Args:
        name: the name that was not found.
        choices: the names that exist.
    """
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(by_lower[m]) for m in matches)}?" if matches else ""


def task_types() -> list[str]:
    """Every task type mteb knows (``Retrieval``, ``STS``, ``Classification``, ...)."""
    import mteb

    return sorted({t.metadata.type for t in mteb.get_tasks()})


def registered_task(name: str) -> Any | None:
    """A new instance of the task registered under exactly this name, or None.

    Args:
        name: a task name, compared case-sensitively (a renamed task's old name is None).
    """
    import mteb

    try:
        with _without_repeated_warnings():
            task = mteb.get_task(name)
    except KeyError:  # mteb: "'<name>' not found"
        return None
    return task if task.metadata.name == name else None


def select_tasks(
    benchmark: str = "MTEB(eng, v1)",
    tasks: Sequence[str] = (),
    types: Sequence[str] = (),
    *,
    benchmark_param: str = "benchmark",
    task_param: str = "tasks",
    types_param: str = "task_types",
) -> list[Any]:
    """Tasks by benchmark, by name, and/or by type.

    Args:
        benchmark: a benchmark name such as ``"MTEB(eng, v1)"`` (the 56 tasks of the
            original English leaderboard) or ``"MTEB(eng, v2)"``; ignored when ``tasks``
            is given. mteb 1.x's ``"MTEB_MAIN_EN"`` is taken as ``"MTEB(eng, v1)"``, with
            a logged warning (:data:`BENCHMARK_ALIASES`).
        tasks: task names; overrides the benchmark.
        types: keep only these task types (e.g. ``["Clustering"]``).
        benchmark_param: the caller's name of ``benchmark``, used in error messages.
        task_param: the caller's name of ``tasks`` (notebook 2 calls its task ``task``).
        types_param: the caller's name of ``types``.

    Returns:
        mteb task objects, in benchmark (or given) order.

    Raises:
        MtebGlueError: naming the parameter and an unknown benchmark, task or type, with
            the closest names (compared case-insensitively).
    """
    import mteb

    if types:
        known_types = task_types()
        unknown = [t for t in types if t not in known_types]
        if unknown:
            hint = closest(unknown[0], known_types)
            raise MtebGlueError(
                f"{types_param}: unknown {unknown}{hint} Known types: {', '.join(known_types)}"
            )
    if tasks:
        selected = []
        for name in dict.fromkeys(tasks):
            task = registered_task(name)
            if task is None:
                with _without_repeated_warnings():
                    registry = mteb.get_tasks(
                        exclude_superseded=False, exclude_private=False, exclude_beta=False
                    )
                all_names = {t.metadata.name for t in registry}
                raise MtebGlueError(
                    f"{task_param}: unknown task {name!r}{closest(name, all_names)}"
                )
            selected.append(task)
    else:
        if benchmark in BENCHMARK_ALIASES:
            logger.warning(
                "%s: %r is mteb 1.x's name; mteb 2.x calls it %r, which is used",
                benchmark_param,
                benchmark,
                BENCHMARK_ALIASES[benchmark],
            )
            benchmark = BENCHMARK_ALIASES[benchmark]
        try:
            selected = list(mteb.get_benchmark(benchmark).tasks)
        except KeyError as err:  # mteb: "'<name>' not found"
            names = list(BENCHMARK_ALIASES)
            for known in mteb.get_benchmarks():
                names += [known.name, *(getattr(known, "aliases", None) or ())]
            raise MtebGlueError(
                f"{benchmark_param}: unknown benchmark {benchmark!r}{closest(benchmark, names)}"
            ) from err
    if types:
        selected = [t for t in selected if t.metadata.type in set(types)]
    return selected
