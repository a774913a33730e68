"""All-or-nothing run outputs: a run writes into a staging folder that replaces its output
folder at the end, so a run that fails midway leaves the previous results whole.

- :func:`begin_outputs` / :func:`commit_outputs` (or ``with`` :func:`staged_outputs`): a
  fresh staging folder next to ``output_dir``, then two renames put it in place; a crash
  at any step leaves the previous complete folder or the new complete one
  (:func:`recover_outputs`, run by the next :func:`begin_outputs`, finishes or undoes an
  interrupted commit).
- :func:`check_writable_dir`: an output folder that is a file or is not writable is
  reported before the run starts (:class:`OutputDirError`).

Staging, ready and old folders are named ``.<name>.<kind>-<host>-<pid>-<random>`` and
are stale by the staleness rule of :mod:`helpers.io` (their writer gone, or untouched for
:data:`STAGING_MAX_AGE_S`): only stale ones are removed, so runs of several writers into
one parent folder never break each other's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from helpers.io import host_token, is_stale, temporary_path

logger = logging.getLogger(__name__)

STAGING_MAX_AGE_S = 86400.0
"""Age after which another host's staging folder is stale (a run may take hours)."""

_FOLDER_TAG = re.compile(r"^(?P<host>[A-Za-z0-9_-]+)-(?P<pid>[0-9]+)-(?P<nonce>[0-9a-f]{8})$")


class OutputDirError(ValueError):
    """An output folder that cannot be used: a file, or not writable."""


def check_writable_dir(path: str | Path, parameter: str) -> Path:
    """Make sure ``path`` is a folder this process can write in, before a run starts.

    Creates the folder (and its parents) when missing, then creates and removes a probe
    file in it.

    Args:
        path: the folder.
        parameter: the parameter it came from, named in the error.

    Returns:
        ``path`` as a Path.

    Raises:
        OutputDirError: ``path`` is a file, cannot be created (e.g. a parent is a file),
            or is not writable; the message names ``parameter``, ``path`` and the reason.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"{parameter}: {path} is a file; expected a folder to write into")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputDirError(
            f"{parameter}: cannot create the folder {path} ({err.strerror or err})"
        ) from err
    probe = temporary_path(path / "write-probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise OutputDirError(
            f"{parameter}: cannot write in the folder {path} ({err.strerror or err})"
        ) from err
    os.close(fd)
    probe.unlink(missing_ok=True)
    return path


def _tagged(output_dir: Path, kind: str) -> Path:
    """``<parent>/.<name>.<kind>-<host>-<pid>-<random>``."""
    tag = f"{host_token()}-{os.getpid()}-{secrets.token_hex(4)}"
    return output_dir.with_name(f".{output_dir.name}.{kind}-{tag}")


def _siblings(output_dir: Path, kind: str) -> list[tuple[Path, bool]]:
    """The ``kind`` folders of ``output_dir`` (staging, ready, old), each with whether it
    is stale (its writer gone, or untouched for :data:`STAGING_MAX_AGE_S`)."""
    prefix = f".{output_dir.name}.{kind}-"
    found = []
    try:
        entries = sorted(output_dir.parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    for path in entries:
        if not path.name.startswith(prefix):
            continue
        match = _FOLDER_TAG.match(path.name[len(prefix) :])
        try:
            mtime = _newest_mtime(path)
        except FileNotFoundError:
            continue
        host, pid = (match["host"], int(match["pid"])) if match else (None, None)
        found.append((path, is_stale(host, pid, mtime, STAGING_MAX_AGE_S)))
    return found


def _newest_mtime(folder: Path) -> float:
    newest = folder.lstat().st_mtime
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync(target: str | Path) -> None:
    """Flush a file or folder to disk (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(target, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(os.path.join(root, name))
        _fsync(root)


def recover_outputs(output_dir: str | Path) -> list[Path]:
    """Finish or undo a commit of ``output_dir`` interrupted by a crash, and remove stale
    staging folders (runs that died before committing).

    A commit (:func:`commit_outputs`) renames the complete staging folder to
    ``.<name>.ready-*``, the previous ``output_dir`` to ``.<name>.old-*``, the ready one to
    ``output_dir``, then deletes the old one. After a crash, with ``output_dir`` missing,
    a stale ready folder is moved into place (the new results were complete), else a stale
    old folder is moved back; leftovers of dead writers are deleted. Folders of live
    writers are left alone.

    Returns:
        The folders removed or moved.
    """
    output_dir = Path(output_dir)
    touched: list[Path] = []
    if not os.path.lexists(output_dir):
        for kind in ("ready", "old"):
            candidates = [p for p, stale in _siblings(output_dir, kind) if stale]
            if candidates:
                newest = max(candidates, key=_newest_mtime)
                with contextlib.suppress(FileNotFoundError, FileExistsError, OSError):
                    os.rename(newest, output_dir)
                    touched.append(newest)
                    logger.warning("recovered %s from %s", output_dir, newest.name)
                    break
    for kind in ("staging", "ready", "old"):
        for path, stale in _siblings(output_dir, kind):
            if stale and os.path.lexists(path):
                _remove_tree(path)
                touched.append(path)
    return touched


def begin_outputs(output_dir: str | Path) -> Path:
    """Start writing a run's outputs: a fresh, empty staging folder next to ``output_dir``.

    Write every output of the run into the folder returned, then call
    :func:`commit_outputs` to replace ``output_dir`` with it all at once; a run that fails
    before that leaves ``output_dir`` exactly as it was (call :func:`discard_outputs`, or
    leave the staging folder: the next run removes it once its writer is gone). Interrupted
    commits and stale staging folders are recovered first (:func:`recover_outputs`).

    Args:
        output_dir: the run's output folder (it need not exist).

    Returns:
        ``<parent>/.<name>.staging-<host>-<pid>-<random>``, created empty.

    Raises:
        OutputDirError: the parent folder cannot be created or written (see
            :func:`check_writable_dir`), or ``output_dir`` is a file.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputDirError(f"output_dir: {output_dir} is a file; expected a folder")
    check_writable_dir(output_dir.parent, "output_dir (its parent folder)")
    recover_outputs(output_dir)
    staging = _tagged(output_dir, "staging")
    staging.mkdir()
    return staging


def commit_outputs(staging: str | Path, output_dir: str | Path) -> Path:
    """Replace ``output_dir`` with the complete ``staging`` folder of :func:`begin_outputs`.

    Files are flushed to disk, then: staging renamed to ``.<name>.ready-*``, the previous
    ``output_dir`` (if any) to ``.<name>.old-*``, the ready folder to ``output_dir``, and
    the old folder deleted. A crash at any step leaves the previous complete folder or the
    new complete one; if it struck between the two renames, :func:`recover_outputs` (run
    by the next :func:`begin_outputs`) puts the complete folder back in place.

    Returns:
        ``output_dir`` as a Path, now holding exactly the staging folder's files.

    Raises:
        ValueError: ``staging`` is not a staging folder of ``output_dir``.
        OutputDirError: ``output_dir`` is a file.
    """
    staging, output_dir = Path(staging), Path(output_dir)
    prefix = f".{output_dir.name}.staging-"
    if staging.parent != output_dir.parent or not staging.name.startswith(prefix):
        raise ValueError(
            f"staging: {staging} is not a staging folder of {output_dir} "
            f"(expected {output_dir.parent}/{prefix}..., from begin_outputs)"
        )
    if not staging.is_dir():
        raise ValueError(f"staging: {staging} does not exist (already committed or discarded?)")
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputDirError(f"output_dir: {output_dir} is a file; expected a folder")
    _fsync_tree(staging)
    ready = _tagged(output_dir, "ready")
    os.rename(staging, ready)
    old: Path | None = None
    if os.path.lexists(output_dir):
        old = _tagged(output_dir, "old")
        os.rename(output_dir, old)
    os.rename(ready, output_dir)
    _fsync(output_dir.parent)
    if old is not None:
        _remove_tree(old)
    return output_dir


def discard_outputs(staging: str | Path) -> None:
    """Delete a staging folder of :func:`begin_outputs` (the run failed)."""
    _remove_tree(Path(staging))


@contextlib.contextmanager
def staged_outputs(output_dir: str | Path) -> Iterator[Path]:
    """``with staged_outputs(out) as staging:`` write into ``staging``; committed to
    ``out`` when the block ends normally, discarded when it raises."""
    staging = begin_outputs(output_dir)
    try:
        yield staging
    except BaseException:
        discard_outputs(staging)
        raise
    commit_outputs(staging, output_dir)
