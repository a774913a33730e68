"""Safe file output: atomic writes, writers that share a folder, lock files.

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
- :func:`files_sha256`: one hash of a folder's files (paths and bytes).

A run's output folder, written all or nothing, is :mod:`helpers.outputs`.

**The staleness rule.** A temporary file, lock or staging folder (:mod:`helpers.outputs`)
is stale when it is older than ``max_age_s`` (modification time, whoever wrote it), or
when it was written by a process on this host (same host name and, on Linux, same pid
namespace) that no longer exists (``os.kill(pid, 0)``; a process we may not signal counts
as alive). Files from another host are therefore removed only by age.
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

_TEMPORARY = re.compile(
    r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>[0-9]+)\.(?P<nonce>[0-9a-f]{8})\.tmp$"
)
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


@contextlib.contextmanager
def _written_temporary(path: Path, write: Callable[[str], None]) -> Iterator[Path]:
    """A complete temporary file for ``path`` (its folder created, ``write`` called);
    the body moves it into place. Any OSError is re-raised naming ``path``, and the
    temporary is always removed."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temporary(path)
        write(str(tmp))
        yield tmp
    except OSError as err:
        raise _as_path_error(err, path) from err
    finally:
        if tmp is not None:
            _unlink_quietly(tmp)


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
    with _written_temporary(path, write) as tmp:
        os.replace(tmp, path)
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
    with _written_temporary(path, write) as tmp:
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
