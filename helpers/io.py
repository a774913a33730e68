"""Atomic file writes: a temporary file in the same folder, then a rename.

A run killed at any point leaves either the previous file or the complete new one,
never a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path``.

    Args:
        path: the final file; its folder is created if needed.
        write: writes the complete content to the temporary path it is given.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (UTF-8)."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write(path, _write)


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
