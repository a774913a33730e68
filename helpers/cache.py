"""An on-disk embedding cache that never recomputes, never serves a bad chunk, and resumes.

Layout: ``<root>/<key>/`` holds ``meta.json`` (what the key was made of) and the
embeddings in chunks of ``chunk_size`` rows: ``chunk_00000.npy`` with its manifest
``chunk_00000.json`` (rows and SHA-256 of the ``.npy`` bytes). Each file is written to a
temporary name and renamed, the manifest last, so a chunk counts only once it is
complete; an encoding killed in the middle resumes from the last finished chunk.

The key is the SHA-256 of everything that changes the vectors: the model's name and
weights (revision, or a hash of the weight files for a local folder), backend, pooling,
normalisation, maximum length, dtype, the instruction or prompt, and the texts
themselves. A change of any of them is a miss; the same run twice is a hit.

Reads are memory-mapped: chunks are opened with ``np.load(mmap_mode="r")``, so a corpus
larger than RAM can be streamed into an index chunk by chunk (:meth:`EmbeddingCache.chunks`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from helpers.io import atomic_write, write_json

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024


def texts_fingerprint(texts: Sequence[str]) -> str:
    """SHA-256 of the texts in order (length-prefixed, so boundaries count)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


_WEIGHTS_HASHES: dict[tuple[str, float, int], str] = {}


def weights_fingerprint(folder: str | Path) -> str:
    """SHA-256 over a local model folder's weight and config files (memoised by mtime).

    Covers ``*.safetensors``, ``*.bin``, ``*.json`` and ``*.txt`` files, so new weights,
    a new tokenizer or a new pooling configuration all change the key.
    """
    folder = Path(folder)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in {".safetensors", ".bin", ".json", ".txt", ".model"}
    )
    stamp = (
        str(folder.resolve()),
        max((p.stat().st_mtime for p in files), default=0.0),
        len(files),
    )
    if stamp not in _WEIGHTS_HASHES:
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(folder)).encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _WEIGHTS_HASHES[stamp] = digest.hexdigest()
    return _WEIGHTS_HASHES[stamp]


def cache_key(settings: Mapping[str, Any], texts: Sequence[str]) -> str:
    """The cache key: SHA-256 of the encoding settings (sorted JSON) and the texts."""
    blob = json.dumps(dict(settings), sort_keys=True, default=str)
    return hashlib.sha256((blob + texts_fingerprint(texts)).encode()).hexdigest()[:32]


class EmbeddingCache:
    """Chunked, checksummed, resumable embedding storage under one folder."""

    def __init__(self, root: str | Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size}")
        self.root = Path(root)
        self.chunk_size = chunk_size
        self.hits = 0
        self.computed_chunks = 0

    def folder(self, key: str) -> Path:
        """Where the entry of ``key`` lives."""
        return self.root / key

    def _chunk_paths(self, key: str, index: int) -> tuple[Path, Path]:
        base = self.folder(key) / f"chunk_{index:05d}"
        return base.with_suffix(".npy"), base.with_suffix(".json")

    def _valid_chunk(self, key: str, index: int, rows: int) -> bool:
        npy, manifest = self._chunk_paths(key, index)
        if not (npy.is_file() and manifest.is_file()):
            return False
        try:
            info = json.loads(manifest.read_text(encoding="utf-8"))
            digest = hashlib.sha256(npy.read_bytes()).hexdigest()
        except (OSError, ValueError):
            return False
        if info.get("rows") != rows or info.get("sha256") != digest:
            logger.warning("cache chunk %s is truncated or corrupt: recomputing it", npy)
            return False
        return True

    def encode(
        self,
        texts: Sequence[str],
        settings: Mapping[str, Any],
        encode_fn: Callable[[Sequence[str]], np.ndarray],
        progress: bool = False,
    ) -> np.ndarray:
        """Embeddings of ``texts``: cached chunks are read, missing or bad ones computed.

        Args:
            texts: the texts, in order.
            settings: everything besides the texts that changes the vectors.
            encode_fn: computes the embeddings of a list of texts (float32, one row each).
            progress: a progress bar over the chunks.

        Returns:
            A float32 array (len(texts), dim) in RAM (concatenated from memory-mapped chunks).
        """
        key = cache_key(settings, texts)
        chunks = list(self.iter_chunks(texts, settings, encode_fn, progress, key=key))
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)

    def iter_chunks(
        self,
        texts: Sequence[str],
        settings: Mapping[str, Any],
        encode_fn: Callable[[Sequence[str]], np.ndarray],
        progress: bool = False,
        key: str | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield the embeddings chunk by chunk (memory-mapped when read from disk).

        Use it to add a corpus larger than RAM to an index without holding all vectors.
        """
        key = key or cache_key(settings, texts)
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "meta.json").is_file():
            write_json(
                folder / "meta.json",
                {"settings": dict(settings), "rows": len(texts), "chunk_size": self.chunk_size},
            )
        for stale in folder.glob(".*.tmp"):
            stale.unlink()
        starts: Any = range(0, len(texts), self.chunk_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(list(starts), desc="Encoding (cached chunks)", unit="chunk")
        for start in starts:
            part = texts[start : start + self.chunk_size]
            npy, manifest = self._chunk_paths(key, start // self.chunk_size)
            if self._valid_chunk(key, start // self.chunk_size, len(part)):
                self.hits += 1
                yield np.load(npy, mmap_mode="r")
                continue
            vectors = np.ascontiguousarray(encode_fn(part), dtype=np.float32)
            if vectors.shape[0] != len(part):
                raise ValueError(
                    f"encode_fn returned {vectors.shape[0]} rows for {len(part)} texts"
                )
            data = _npy_bytes(vectors)  # serialised once: written and hashed from memory
            atomic_write(npy, _bytes_writer(data))
            write_json(manifest, {"rows": len(part), "sha256": hashlib.sha256(data).hexdigest()})
            self.computed_chunks += 1
            yield vectors


def _npy_bytes(vectors: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    return buffer.getvalue()


def _bytes_writer(data: bytes) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "wb") as handle:
            handle.write(data)

    return write
