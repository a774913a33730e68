"""Notebook plumbing: quiet, reproducible set-up and project-relative paths.

Progress bars are a switch, not a deletion: interactive and papermill runs show them;
the test suite turns them off with ``EMBEVAL_PROGRESS=0`` (set by ``conftest.py``), since
nbval compares stderr too.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROGRESS_ENV = "EMBEVAL_PROGRESS"


def progress_enabled() -> bool:
    """True unless ``EMBEVAL_PROGRESS`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get(PROGRESS_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


LIBRARY_LOGGERS: tuple[str, ...] = (
    "sentence_transformers",
    "transformers",
    "FlagEmbedding",
    "faiss",
    "mteb",
    "datasets",
    "huggingface_hub",
    "httpx",
    "urllib3",
)
"""The libraries' loggers :func:`setup` sets to WARNING: their INFO chatter is hidden, every
warning and error they log is shown (except :data:`QUIETER_LOGGERS`)."""

QUIETER_LOGGERS: dict[str, int] = {"mteb.abstasks.abstask": logging.ERROR}
"""Loggers of one library module set above WARNING, each for a stated reason.

``mteb.abstasks.abstask`` logs, at every run of a task, that the task is superseded or in
beta: every task of ``MTEB(eng, v1)`` (notebook 3's benchmark, the leaderboard's original
English one) is superseded by a ``.v2``, by design, and the versions run are the ones the
published scores were computed on. Its only other warnings: a task type without a
default prompt (logged once) and unloading a dataset that is not loaded."""

IGNORED_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (FutureWarning, ""),
    (DeprecationWarning, ""),
    (UserWarning, r"mteb(\.|$)"),
)
"""Python warnings :func:`setup` hides, as ``(category, module)``: the module is a regular
expression for the module a warning is attributed to (``""``: any). Filtered by category
and module, never by message:

- ``FutureWarning``, ``DeprecationWarning``, from any library: the libraries' notices of
  their own coming changes, which a notebook's user cannot act on (``requirements.txt``
  pins the versions);
- ``UserWarning`` from mteb: mteb logs each warning it raises, then raises it with the same
  text (``logger.warning(msg); warnings.warn(msg)``); the log record is shown, its repeat
  is not."""


def setup(seed: int = 0, progress: bool | None = None) -> bool:
    """Set library logging to WARNING, hide the warnings of :data:`IGNORED_WARNINGS`, seed
    every generator, and decide on progress bars.

    Call it first in a notebook, before the heavy libraries are imported: tqdm reads
    ``TQDM_DISABLE`` when it is imported.

    Args:
        seed: passed to :func:`seed_everything`.
        progress: show progress bars; None reads ``EMBEVAL_PROGRESS`` (default: yes).

    Returns:
        Whether progress bars are shown.
    """
    show = progress_enabled() if progress is None else progress
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if not show:
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    for category, module in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", category=category, module=module)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, level in QUIETER_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        import transformers

        transformers.utils.logging.set_verbosity_warning()
        if not show:
            transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a requirement
        pass
    seed_everything(seed)
    return show


def seed_everything(seed: int) -> None:
    """Seed ``random``, NumPy and torch, and make cuDNN deterministic."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    except ImportError:  # pragma: no cover
        pass


def project_path(path: str | Path) -> Path:
    """Resolve a path parameter: absolute stays; relative is taken from the project root.

    Notebooks run from ``notebooks/`` (JupyterLab, nbval) or from anywhere (papermill),
    so relative parameters such as ``data/msmarco-dl19/beir`` always mean the project's.
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def display_path(path: str | Path) -> str:
    """A path for display: relative to the project root when inside it (no absolute paths)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def resolve_source(value: str | Path) -> str | Path | None:
    """A data or model parameter: ``""`` -> None; a path that exists under the project root
    (or absolute) -> that Path; anything else (a hub id) unchanged."""
    if not str(value):
        return None
    candidate = project_path(value)
    return candidate if candidate.exists() else value


def as_list(value: object, parameter: str, item_type: type = str) -> list:
    """A list parameter as given by any caller: a list, or a string (papermill's ``-p``
    passes strings) holding a JSON/YAML list (``'["STSBenchmark"]'``, ``"[1, 10]"``) or
    comma-separated items (``"STSBenchmark,SciFact"``, ``"1,10"``); ``""`` is ``[]``.

    Args:
        value: the parameter's value.
        parameter: its name, for the error message.
        item_type: ``str`` or ``int``: what each item must be (``"10"`` becomes 10).

    Raises:
        ValueError: naming the parameter, for anything else (a dict, a nested list, an
            item that is not of ``item_type``).
    """
    items: object = value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith(("[", "{")):
            import yaml

            try:
                items = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise ValueError(f"{parameter}: {value!r} is not a valid list ({err})") from err
        else:
            items = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(items, (list, tuple)):
        raise ValueError(
            f"{parameter}: expected a list such as [\"a\", \"b\"] or a comma-separated string, "
            f"got {value!r}"
        )
    result = []
    for item in items:
        if item_type is int:
            if isinstance(item, str) and item.strip().lstrip("-").isdigit():
                item = int(item)
            if isinstance(item, bool) or not isinstance(item, int):
                raise ValueError(f"{parameter}: expected whole numbers, got {item!r} in {value!r}")
        elif not isinstance(item, str) or isinstance(item, (list, dict)):
            raise ValueError(f"{parameter}: expected names (strings), got {item!r} in {value!r}")
        result.append(item)
    return result
