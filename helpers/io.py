"""Safe file output: atomic writes, writers that share a folder, all-or-nothing run outputs.

- :func:`atomic_write` (and :func:`write_text`, :func:`write_json`): a temporary file in
  the same folder, then a rename. A run killed at any point leaves either the previous
  file or the complete new one, never a half-written file. The final file gets the mode
  a plain ``open(path, "w")`` gives (``0o666`` less the umask), and a failed write
  (a full disk, ...) raises an :class:`OSError` naming the final path, with no temporary
  left behind.
- Several writers may share a folder (two runs on one cache, Ray workers on several
  hosts over a shared filesystem): each temporary file carries its writer's identity in
  its name (``.<name>.<host>.<pid>.<random>.tmp``), and
  :func:`remove_stale_temporaries` removes only temporaries that are provably stale,
  never another writer's write in flight. :func:`atomic_create` writes a file only if
  it does not exist yet; :func:`try_lock` is a lock file with the same staleness rule.
- :func:`begin_outputs` / :func:`commit_outputs`: a run writes its outputs into a
  staging folder and replaces its output folder with it at the end, so a run that fails
  midway leaves the previous results untouched.
- :func:`check_writable_dir`: an output folder that is a file or is not writable is
  reported before the run starts (:class:`OutputDirError`).

**The staleness rule.** A temporary file, lock or staging folder is stale when it is
older than ``max_age_s`` (modification time, whoever wrote it), or when it was written
by a process on this host (same host name and, on Linux, same pid namespace) that no
longer exists (``os.kill(pid, 0)``; a process we may not signal counts as alive). Files
from another host are therefore removed only by age.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 3600.0
"""Age (seconds since the last modification) after which a temporary file is stale
whoever wrote it."""

STAGING_MAX_AGE_S = 86400.0
"""Age after which another host's staging folder is stale (a run may take hours)."""

_TEMPORARY = re.compile(
    r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>[0-9]+)\.(?P<nonce>[0-9a-f]{8})\.tmp$"
)
_FOLDER_TAG = re.compile(r"^(?P<host>[A-Za-z0-9_-]+)-(?P<pid>[0-9]+)-(?P<nonce>[0-9a-f]{8})$")
_MAX_NAME_IN_TEMPORARY = 120  # keeps a temporary's name under the usual 255-byte limit
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}
_HOST: str | None = None


# -- writer identity and the staleness rule ---------------------------------------------


def host_token() -> str:
    """This host's identity in temporary names: the host name (characters other than
    letters, digits and ``-`` replaced by ``_``, at most 63), followed on Linux by
    ``-<pid namespace id>``, so that containers sharing a host name (host networking)
    never judge each other's process ids."""
    global _HOST
    if _HOST is None:
        host = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname() or "host")[:63] or "host"
        try:
            namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
        except OSError:
            namespace = ""
        digits = re.sub(r"[^0-9]", "", namespace)
        _HOST = f"{host}-{digits}" if digits else host
    return _HOST


def _pid_alive(pid: int) -> bool:
    """False only when ``pid`` provably does not run on this host: no such process, or
    (Linux) a zombie, killed and not yet reaped by its parent."""
    if pid <= 0 or os.name == "nt":  # on Windows, os.kill(pid, 0) would terminate it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def is_stale(host: str | None, pid: int | None, mtime: float, max_age_s: float) -> bool:
    """The staleness rule (module docstring): older than ``max_age_s``, or written by a
    process of this host (:func:`host_token`) that no longer exists. ``host``/``pid``
    None (unknown writer): by age only."""
    if time.time() - mtime > max_age_s:
        return True
    return host is not None and pid is not None and host == host_token() and not _pid_alive(pid)


def _check_age(max_age_s: float, parameter: str = "max_age_s") -> float:
    if (
        isinstance(max_age_s, bool)
        or not isinstance(max_age_s, int | float)
        or not math.isfinite(max_age_s)
        or max_age_s < 0
    ):
        raise ValueError(
            f"{parameter}: expected a non-negative number of seconds, got {max_age_s!r}"
        )
    return float(max_age_s)


def _nonce() -> str:
    return secrets.token_hex(4)


def temporary_path(path: str | Path) -> Path:
    """A fresh temporary name next to ``path``: ``.<name>.<host>.<pid>.<random>.tmp``
    (the name cut to 120 characters). Nothing is created."""
    path = Path(path)
    name = path.name[:_MAX_NAME_IN_TEMPORARY]
    return path.with_name(f".{name}.{host_token()}.{os.getpid()}.{_nonce()}.tmp")


def parse_temporary(name: str) -> tuple[str, str, int] | None:
    """``(final name, host, pid)`` of a temporary file name made by :func:`temporary_path`;
    None for any other name (e.g. the old ``tempfile.mkstemp`` format)."""
    match = _TEMPORARY.match(name)
    if match is None:
        return None
    return match["name"], match["host"], int(match["pid"])


def remove_stale_temporaries(
    folder: str | Path, max_age_s: float = DEFAULT_MAX_AGE_S
) -> list[Path]:
    """Remove the stale temporary files (``.*.tmp``) directly inside ``folder``.

    A temporary named by :func:`temporary_path` is removed when its writer is provably
    gone (same host, process no longer running) or when it was last modified more than
    ``max_age_s`` seconds ago; any other ``.*.tmp`` file (an older name format, without
    host and pid) only by age. A temporary of a live writer, on this host or another one,
    is never touched, so any number of writers may share the folder.

    Args:
        folder: the folder; missing: nothing to do.
        max_age_s: age in seconds after which any temporary is stale.

    Returns:
        The files removed, sorted.

    Raises:
        ValueError: ``max_age_s`` is not a non-negative number.
    """
    max_age_s = _check_age(max_age_s)
    folder = Path(folder)
    try:
        entries = sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for path in entries:
        if not (path.name.startswith(".") and path.name.endswith(".tmp")):
            continue
        try:
            info = path.lstat()
        except FileNotFoundError:  # renamed into place meanwhile
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        parsed = parse_temporary(path.name)
        host, pid = (parsed[1], parsed[2]) if parsed else (None, None)
        if not is_stale(host, pid, info.st_mtime, max_age_s):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            logger.warning("could not remove the stale temporary file %s: %s", path, err)
            continue
        removed.append(path)
    return removed


# -- atomic writes ----------------------------------------------------------------------


def _as_path_error(err: OSError, path: Path) -> OSError:
    """``err`` with the final path in its message; same type and errno."""
    message = (
        f"{path}: could not write ({err.strerror})"
        if err.errno is not None and err.strerror
        else f"{path}: could not write ({err})"
    )
    try:
        new = type(err)(err.errno, message) if err.errno is not None else type(err)(message)
    except TypeError:  # a subclass with another constructor
        new = OSError(err.errno, message)
    return new


def _create_temporary(path: Path) -> Path:
    """Create an empty temporary for ``path`` (mode 0o666 less the umask, like ``open``)."""
    for _ in range(100):
        tmp = temporary_path(path)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask, as for open()
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, f"{path}: no free temporary name")


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path``.

    The temporary (:func:`temporary_path`: named after its writer's host and pid, so
    other writers in the folder leave it alone) is created before ``write`` is called,
    with the mode ``open(path, "w")`` would give: ``0o666`` less the umask. Two writers
    of the same path both succeed; the last rename wins.

    Args:
        path: the final file; its folder is created if needed.
        write: writes the complete content to the temporary path it is given.

    Returns:
        ``path`` as a Path.

    Raises:
        OSError: creating, writing or renaming failed (disk full, permission, ...): same
            type and errno, the message names ``path``. The temporary is removed.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temporary(path)
        write(str(tmp))
        os.replace(tmp, path)
    except OSError as err:
        raise _as_path_error(err, path) from err
    finally:
        if tmp is not None:
            _unlink_quietly(tmp)
    return path


def atomic_create(path: str | Path, write: Callable[[str], None]) -> bool:
    """Like :func:`atomic_write`, but only when ``path`` does not exist yet.

    The complete temporary is hard-linked to ``path`` (``os.link`` fails when the target
    exists, atomically, also over NFS), so of several writers exactly one creates the
    file and the others see its complete content. On a filesystem without hard links
    the check and the rename are two steps (two writers at the same instant: the last
    one wins).

    Returns:
        True when this call created ``path``; False when it existed (nothing written).

    Raises:
        OSError: as :func:`atomic_write`.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temporary(path)
        write(str(tmp))
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno not in _NO_HARD_LINKS:
                raise
            if os.path.lexists(path):
                return False
            os.replace(tmp, path)
        return True
    except OSError as err:
        raise _as_path_error(err, path) from err
    finally:
        if tmp is not None:
            _unlink_quietly(tmp)


def text_writer(text: str) -> Callable[[str], None]:
    """A ``write`` callback for :func:`atomic_write` / :func:`atomic_create`: ``text`` as
    UTF-8, flushed to disk (``fsync``) before the rename."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    return _write


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (UTF-8), flushed to disk (``fsync``) before the rename."""
    return atomic_write(path, text_writer(text))


def files_sha256(folder: str | Path, files: Iterable[Path]) -> str:
    """SHA-256 over ``files`` (inside ``folder``) in sorted order: each one's path
    relative to ``folder``, then its bytes (read in 1 MiB blocks)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically, indented, keys in insertion order."""
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# -- lock files -------------------------------------------------------------------------


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock file (None where the file is unreadable) and its last refresh."""

    host: str | None
    pid: int | None
    token: str | None
    mtime: float


@dataclass(frozen=True)
class FileLock:
    """A lock file held by this process (:func:`try_lock`)."""

    path: Path
    token: str

    def refresh(self) -> None:
        """Mark the lock as alive (its modification time is the heartbeat other hosts
        judge it by). Call it more often than the ``stale_after_s`` the others use."""
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def release(self) -> None:
        """Remove the lock file, if it is still this lock (not taken over as stale)."""
        owner = read_lock(self.path)
        if owner is not None and owner.token == self.token:
            _unlink_quietly(self.path)


def read_lock(path: str | Path) -> LockOwner | None:
    """The holder of lock file ``path``; None when there is no such file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            raw = handle.read(4096)
    except FileNotFoundError:
        return None
    try:
        info = json.loads(raw)
        host, pid, token = str(info["host"]), int(info["pid"]), str(info["token"])
    except (ValueError, KeyError, TypeError):
        return LockOwner(None, None, None, mtime)
    return LockOwner(host, pid, token, mtime)


def try_lock(path: str | Path, stale_after_s: float = DEFAULT_MAX_AGE_S) -> FileLock | None:
    """Take lock file ``path`` if it is free or its holder is stale, else return None.

    The lock file holds its owner's host, pid and a random token, and is created
    atomically (:func:`atomic_create`). A holder is stale by the module's staleness rule
    with ``max_age_s=stale_after_s``: a dead process on this host at once, another host's
    holder once it has not refreshed the lock (:meth:`FileLock.refresh`) for
    ``stale_after_s`` seconds, so a killed holder never blocks the others for good. A stale
    lock is moved aside and checked before it is removed, so a fresh lock taken meanwhile
    by a third writer is put back, not broken.
    """
    stale_after_s = _check_age(stale_after_s, "stale_after_s")
    path = Path(path)
    token = secrets.token_hex(8)
    content = json.dumps({"host": host_token(), "pid": os.getpid(), "token": token}).encode()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(content)

    for _ in range(5):
        if atomic_create(path, write):
            return FileLock(path, token)
        owner = read_lock(path)
        if owner is None:  # released meanwhile: try again
            continue
        if not is_stale(owner.host, owner.pid, owner.mtime, stale_after_s):
            return None
        _break_lock(path, owner)
    return None


def _break_lock(path: Path, owner: LockOwner) -> None:
    """Remove the stale lock ``owner`` held at ``path`` (unless it changed hands)."""
    aside = temporary_path(path)
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # someone else broke or released it
        return
    taken = read_lock(aside)
    if taken is not None and taken.token != owner.token:  # a fresh lock: put it back
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    else:
        logger.warning(
            "took over the stale lock %s (holder: host %s, pid %s)", path, owner.host, owner.pid
        )
    _unlink_quietly(aside)


# -- output folders: all or nothing ---------------------------------------------------


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
    _unlink_quietly(probe)
    return path


def _tagged(output_dir: Path, kind: str) -> Path:
    """``<parent>/.<name>.<kind>-<host>-<pid>-<random>``."""
    tag = f"{host_token()}-{os.getpid()}-{_nonce()}"
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
        _unlink_quietly(path)


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
