"""One cache entry on disk: its ``meta.json``, its checksummed chunks and their lock files.

An entry is a folder ``<root>/<key>/`` holding ``meta.json`` (what the key was made of,
and the entry's chunk size) and the vectors in chunks: ``chunk_00000.npy`` with its
manifest ``chunk_00000.json`` (rows, bytes and SHA-256 of the ``.npy``; for a streamed
corpus also the SHA-256 of the chunk's ids and texts). The ``.npy`` is written first, then
the manifest, each to a temporary name and renamed, so a chunk counts only once complete.
``.chunk_00000.lock`` is the lock file of the writer computing that chunk.

Reads are verified and memory-mapped: the bytes hashed and the bytes mapped come from one
open file, so a writer replacing the ``.npy`` meanwhile cannot slip unverified vectors in.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal, cast

import numpy as np

from helpers.io import (
    atomic_create,
    atomic_write,
    is_stale,
    read_lock,
    remove_stale_temporaries,
    text_writer,
    try_lock,
    write_json,
)

logger = logging.getLogger(__name__)


def chunk_paths(folder: Path, index: int) -> tuple[Path, Path]:
    """The ``.npy`` and the manifest of chunk ``index`` of the entry in ``folder``."""
    base = folder / f"chunk_{index:05d}"
    return base.with_suffix(".npy"), base.with_suffix(".json")


def lock_path(folder: Path, index: int) -> Path:
    """The lock file of chunk ``index`` of the entry in ``folder``."""
    return folder / f".chunk_{index:05d}.lock"


def read_manifest(
    folder: Path, index: int, rows: int, texts_sha: str = ""
) -> dict[str, Any] | None:
    """A chunk's manifest when the chunk looks complete (manifest and file present, rows,
    size and, for a streamed corpus, the texts agree), else None. The SHA-256 of the
    vectors is checked when the chunk is read (:func:`read_chunk`).

    Args:
        folder: the entry's folder.
        index: the chunk's number.
        rows: the rows the chunk must have.
        texts_sha: the SHA-256 of the chunk's ids and texts (streamed corpora), else "".
    """
    npy, manifest = chunk_paths(folder, index)
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        size = npy.stat().st_size
    except (OSError, ValueError):
        return None
    complete = (
        isinstance(info, dict)
        and info.get("rows") == rows
        and info.get("bytes", size) == size
        and info.get("texts_sha256", "") == texts_sha
    )
    return info if complete else None


def read_chunk(
    folder: Path, index: int, rows: int, texts_sha: str, warn: bool = True
) -> np.ndarray | None:
    """The chunk, memory-mapped, when it is complete and its bytes have the SHA-256 of its
    manifest; else None.

    Args:
        folder: the entry's folder.
        index: the chunk's number.
        rows: the rows the chunk must have.
        texts_sha: as :func:`read_manifest`.
        warn: log a chunk whose bytes do not match its manifest.
    """
    info = read_manifest(folder, index, rows, texts_sha)
    if info is None:
        return None
    npy, _ = chunk_paths(folder, index)
    try:
        with open(npy, "rb") as handle:
            data = handle.read()
            if hashlib.sha256(data).hexdigest() != info.get("sha256"):
                if warn:
                    logger.warning("cache chunk %s is truncated or corrupt: recomputing it", npy)
                return None
            vectors = map_npy(handle, data)
    except (OSError, ValueError):
        return None
    return vectors if vectors.ndim >= 1 and len(vectors) == rows else None


def write_chunk(folder: Path, index: int, vectors: np.ndarray, texts_sha: str = "") -> None:
    """Write one chunk atomically: the ``.npy`` first, then its manifest.

    A complete, verified chunk already there (another writer's) is kept and these vectors
    dropped; a damaged one loses its manifest first, so that while the new ``.npy`` is
    renamed in, the chunk reads as missing, never as a mismatch.

    Args:
        folder: the entry's folder.
        index: the chunk's number.
        vectors: the chunk's rows.
        texts_sha: as :func:`read_manifest`.
    """
    npy, manifest = chunk_paths(folder, index)
    if read_chunk(folder, index, len(vectors), texts_sha, warn=False) is not None:
        return
    with contextlib.suppress(FileNotFoundError):
        manifest.unlink()
    data = npy_bytes(vectors)  # serialised once: written and hashed from memory
    atomic_write(npy, bytes_writer(data))
    info = {
        "rows": len(vectors),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if texts_sha:
        info["texts_sha256"] = texts_sha
    write_json(manifest, info)


def open_entry(folder: Path, meta: dict[str, Any], chunk_size: int, lock_stale_s: float) -> int:
    """Create an entry's folder and ``meta.json``; clear stale temporary files and chunk
    locks (of writers that are gone, never another writer's in flight).

    Args:
        folder: the entry's folder.
        meta: what the key was made of (written to ``meta.json`` with the chunk size).
        chunk_size: the chunk size of a new entry.
        lock_stale_s: seconds after which another host's unrefreshed lock is stale.

    Returns:
        The entry's chunk size: the one it was started with, by whichever writer came
        first (``meta.json`` is created only if absent, atomically).

    Raises:
        OSError: when ``meta.json`` cannot be read right after it was written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    for path in folder.glob(".chunk_*.lock"):
        owner = read_lock(path)
        if owner is not None and is_stale(owner.host, owner.pid, owner.mtime, lock_stale_s):
            lock = try_lock(path, lock_stale_s)  # takes it over safely
            if lock is not None:
                lock.release()
    meta_file = folder / "meta.json"
    stored = stored_chunk_size(meta_file)
    if stored is None:
        writer = text_writer(
            json.dumps({**meta, "chunk_size": chunk_size}, indent=2, ensure_ascii=False) + "\n"
        )
        if meta_file.exists():  # unreadable (damaged): replaced
            atomic_write(meta_file, writer)
        else:  # absent: created unless another writer just did
            atomic_create(meta_file, writer)
        stored = stored_chunk_size(meta_file)
        if stored is None:
            raise OSError(f"{meta_file}: unreadable right after it was written")
    return stored


def stored_chunk_size(meta_file: Path) -> int | None:
    """The chunk size recorded in an entry's ``meta.json``, or None (absent, damaged)."""
    try:
        size = json.loads(meta_file.read_text(encoding="utf-8"))["chunk_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) and size > 0 else None


def map_npy(handle: IO[bytes], data: bytes) -> np.ndarray:
    """The array in ``data`` (the whole content of the open file ``handle``), mapped from
    that file read-only (in memory for an empty array or an unusual format version).

    Raises:
        ValueError: for an object array (never cached) or a malformed header.
    """
    buffer = io.BytesIO(data)
    version = np.lib.format.read_magic(buffer)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(buffer)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(buffer)
    else:
        return np.load(io.BytesIO(data), allow_pickle=False)
    if dtype.hasobject:
        raise ValueError("object arrays are never cached")
    if not shape or 0 in shape or dtype.itemsize == 0:
        return np.load(io.BytesIO(data), allow_pickle=False)
    order: Literal["C", "F"] = "F" if fortran else "C"
    file = cast(Any, handle)  # numpy's stubs ask for a writable file; "r" only reads it
    return np.memmap(file, dtype=dtype, mode="r", shape=shape, order=order, offset=buffer.tell())


def npy_bytes(vectors: np.ndarray) -> bytes:
    """``vectors`` in the ``.npy`` format, in memory."""
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    return buffer.getvalue()


def bytes_writer(data: bytes) -> Callable[[str], None]:
    """A writer for :func:`helpers.io.atomic_write` that writes ``data``."""

    def write(path: str) -> None:
        with open(path, "wb") as handle:
            handle.write(data)

    return write
