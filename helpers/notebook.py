"""Notebook plumbing: quiet, reproducible set-up, the helpers' errors shown briefly, and
project-relative paths.

Progress bars are a switch, not a deletion: interactive and papermill runs show them;
the test suite turns them off with ``EMBEVAL_PROGRESS=0`` (set by ``conftest.py``), since
nbval compares stderr too.

A ``ValueError``, ``TypeError`` or ``OSError`` raised inside the helpers (their checks of
bad input: a missing folder, an unknown task, a parameter out of range; but also any such
error a helpers bug raises) is shown in a notebook as its one-line message, the notebook
line that led to it and where in the helpers it was raised
(:func:`show_helpers_errors_briefly`); every other exception keeps IPython's full
traceback, and ``%tb`` shows the full one of any error.
"""

from __future__ import annotations

import linecache
import logging
import os
import random
import sys
import traceback
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HELPERS_DIR = Path(__file__).resolve().parent
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


def setup(seed: int = 0, progress: bool | None = None, brief_errors: bool = True) -> bool:
    """Set library logging to WARNING, hide the warnings of :data:`IGNORED_WARNINGS`, seed
    every generator, decide on progress bars, and show the helpers' errors briefly.

    Call it first in a notebook, before the heavy libraries are imported: tqdm reads
    ``TQDM_DISABLE`` when it is imported.

    Args:
        seed: passed to :func:`seed_everything`.
        progress: show progress bars; None reads ``EMBEVAL_PROGRESS`` (default: yes).
        brief_errors: in IPython (JupyterLab, papermill, nbval), show the helpers' own
            errors as their message and the notebook line that led to them
            (:func:`show_helpers_errors_briefly`); outside IPython nothing changes.

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
    if brief_errors:
        shell = _ipython_shell()
        if shell is not None:
            show_helpers_errors_briefly(shell)
    return show


BRIEF_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, OSError)
"""The exception types :func:`show_helpers_errors_briefly` shows briefly when the helpers
raised them: every error class of the helpers (``DataError``, ``ModelError``,
``MtebGlueError``, ``OutputDirError``, ``SearchIndexError``, ...) is a ``ValueError``, and
their other checks raise ``ValueError``, ``TypeError`` or ``OSError`` (a hub id without
network) with a message that names the parameter. The rule is by type and place only: any
such error whose innermost frame is in the helpers is shown briefly (``%tb`` shows all)."""


def _ipython_shell() -> Any:
    """The running IPython shell, or None outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel requires IPython
        return None
    return get_ipython()


def raised_by_helpers(error: BaseException) -> bool:
    """True when ``error`` is one of :data:`BRIEF_ERRORS` and the helpers raised it: the
    innermost frame of its traceback is a module of the ``helpers`` package.

    A ``ValueError`` a library raises while the helpers call it is not the helpers' own:
    it keeps its full traceback.
    """
    if not isinstance(error, BRIEF_ERRORS) or error.__traceback__ is None:
        return False
    frames = list(traceback.walk_tb(error.__traceback__))
    filename = Path(frames[-1][0].f_code.co_filename)
    return filename.is_absolute() and filename.resolve().is_relative_to(HELPERS_DIR)


def brief_error_lines(shell: Any, error: BaseException, color: bool = False) -> list[str]:
    """The lines :func:`show_helpers_errors_briefly` shows for one of the helpers' errors.

    Args:
        shell: the IPython shell that ran the cell (it names cells ``Cell In[n]``).
        error: the exception, with its traceback.
        color: write the exception's class name in red (ANSI), as IPython does.

    Returns:
        ``"<Class>: <message>"``; then ``"Cell In[n], line l: <that line>"`` for the last
        notebook line on the way to the error (when a cell is on the way); then where in
        the helpers it was raised, and that ``%tb`` shows the full traceback.
    """
    name = type(error).__name__
    lines = [f"\x1b[31m{name}\x1b[39m: {error}" if color else f"{name}: {error}"]
    frames = list(traceback.walk_tb(error.__traceback__))
    compiler = getattr(shell, "compile", None)
    for frame, line_no in reversed(frames):
        filename = frame.f_code.co_filename
        label = compiler.format_code_name(filename) if compiler is not None else None
        if label is not None:
            text = linecache.getline(filename, line_no, frame.f_globals).strip()
            lines.append(f"{label[0]} {label[1]}, line {line_no}: {text}")
            break
    if frames:
        frame, line_no = frames[-1]
        lines.append(f"(raised in {display_path(frame.f_code.co_filename)}, line {line_no}, "
                     f"in {frame.f_code.co_name}; %tb shows the full traceback)")
    return lines


def _brief_error_handler(
    shell: Any,
    etype: type[BaseException],
    value: BaseException,
    tb: TracebackType | None,
    tb_offset: int | None = None,
) -> list[str] | None:
    """IPython's custom exception handler (``set_custom_exc``) for :data:`BRIEF_ERRORS`.

    The helpers' own errors: :func:`brief_error_lines`, shown through the shell's own
    ``_showtraceback`` (so a kernel sends an ``error`` output with the exception's name and
    message: papermill and nbclient still fail on it and report them). Every other
    exception: IPython's ``showtraceback``, unchanged.
    """
    if tb is not None and value.__traceback__ is None:
        value = value.with_traceback(tb)
    if not raised_by_helpers(value):
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # for %tb, %debug
    if sys.version_info >= (3, 12):  # pragma: no cover - the project runs 3.11
        sys.last_exc = value
    color = str(getattr(shell, "colors", "nocolor")).lower() != "nocolor"
    stb = brief_error_lines(shell, value, color=color)
    shell._showtraceback(etype, value, stb)
    if getattr(shell, "call_pdb", False):
        shell.debugger(force=True)
    return stb


def show_helpers_errors_briefly(shell: Any) -> None:
    """Show the helpers' errors in ``shell`` as their message and the notebook line that
    led to them, not as a traceback through the libraries underneath.

    An error the helpers raise on bad input (:func:`raised_by_helpers`) already says what
    is wrong and what to do; the frames of pandas, mteb or the hub client below it only
    hide that message. Such an error is shown as three lines (:func:`brief_error_lines`);
    every other exception, including a ``ValueError`` that a library raises, keeps
    IPython's full traceback, and ``%tb`` shows the full traceback of the last error. The
    cell still fails: a kernel reports the error (name, message) to JupyterLab, papermill
    (``PapermillExecutionError``) and nbval as before.

    Registered with IPython's ``set_custom_exc`` (which replaces a handler set before);
    calling it again changes nothing.

    Args:
        shell: an IPython ``InteractiveShell`` (``get_ipython()``).
    """
    shell.set_custom_exc(BRIEF_ERRORS, _brief_error_handler)


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
