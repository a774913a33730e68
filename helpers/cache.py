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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from helpers.io import atomic_write, write_json

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024

StreamFn = Callable[[Iterable[Sequence[str]]], Iterable[np.ndarray]]


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

    def _looks_complete(self, key: str, index: int, rows: int) -> bool:
        """Cheap check before encoding starts: manifest and file present, sizes agree.
        The SHA-256 is checked when the chunk is read (:meth:`_valid_chunk`)."""
        npy, manifest = self._chunk_paths(key, index)
        try:
            info = json.loads(manifest.read_text(encoding="utf-8"))
            size = npy.stat().st_size
            return bool(info.get("rows") == rows and info.get("bytes", size) == size)
        except (OSError, ValueError):
            return False

    def encode(
        self,
        texts: Sequence[str],
        settings: Mapping[str, Any],
        encode_fn: Callable[[Sequence[str]], np.ndarray],
        progress: bool = False,
        stream_fn: StreamFn | None = None,
    ) -> np.ndarray:
        """Embeddings of ``texts``: cached chunks are read, missing or bad ones computed.

        Args:
            texts: the texts, in order.
            settings: everything besides the texts that changes the vectors.
            encode_fn: computes the embeddings of a list of texts (float32, one row each).
            progress: a progress bar over the chunks.
            stream_fn: optional; given an iterable of chunks of texts, yields their
                embeddings in turn (e.g. :meth:`helpers.encoding.EncodingPipeline.encode_stream`),
                so the encoder can work ahead across chunk boundaries.

        Returns:
            A float32 array (len(texts), dim) in RAM (concatenated from memory-mapped chunks).
        """
        key = cache_key(settings, texts)
        chunks = list(
            self.iter_chunks(texts, settings, encode_fn, progress, key=key, stream_fn=stream_fn)
        )
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
        stream_fn: StreamFn | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield the embeddings chunk by chunk (memory-mapped when read from disk).

        Use it to add a corpus larger than RAM to an index without holding all vectors.
        Computed chunks are written by a background thread while the encoder goes on; all
        writes are finished (or have failed loudly) before this generator ends.
        """
        key = key or cache_key(settings, texts)
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        meta_file = folder / "meta.json"
        chunk_size = _stored_chunk_size(meta_file)  # an entry keeps the size it started with
        if chunk_size is None:
            chunk_size = self.chunk_size
            write_json(
                meta_file,
                {"settings": dict(settings), "rows": len(texts), "chunk_size": chunk_size},
            )
        for stale in folder.glob(".*.tmp"):
            stale.unlink()
        starts = list(range(0, len(texts), chunk_size))
        cached = [
            self._looks_complete(key, i, len(texts[s : s + chunk_size]))
            for i, s in enumerate(starts)
        ]
        missing = (
            texts[s : s + chunk_size] for s, done in zip(starts, cached, strict=True) if not done
        )
        stream: Iterator[np.ndarray] = (
            iter(stream_fn(missing)) if stream_fn else (encode_fn(part) for part in missing)
        )
        bar: Any = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(starts), desc="Encoding (cached chunks)", unit="chunk")
        writer = ThreadPoolExecutor(1, "cache-writer")
        writes: list[Future[None]] = []
        try:
            for index, (start, done) in enumerate(zip(starts, cached, strict=True)):
                part = texts[start : start + chunk_size]
                npy, _ = self._chunk_paths(key, index)
                if done and self._valid_chunk(key, index, len(part)):
                    self.hits += 1
                    vectors = np.load(npy, mmap_mode="r")
                else:
                    # a chunk planned as cached but corrupt is recomputed on its own
                    vectors = next(stream) if not done else encode_fn(part)
                    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                    if vectors.shape[0] != len(part):
                        raise ValueError(
                            f"encode_fn returned {vectors.shape[0]} rows for {len(part)} texts"
                        )
                    writes.append(writer.submit(self._write_chunk, key, index, vectors))
                    self.computed_chunks += 1
                if bar is not None:
                    bar.update(1)
                yield vectors
        finally:
            writer.shutdown(wait=True)
            if bar is not None:
                bar.close()
            close = getattr(stream, "close", None)
            if close:
                close()
        for write in writes:
            write.result()  # a failed write is an error, not a silent miss next time

    def _write_chunk(self, key: str, index: int, vectors: np.ndarray) -> None:
        """Write one chunk atomically: the ``.npy`` first, then its manifest."""
        npy, manifest = self._chunk_paths(key, index)
        data = _npy_bytes(vectors)  # serialised once: written and hashed from memory
        atomic_write(npy, _bytes_writer(data))
        write_json(
            manifest,
            {"rows": len(vectors), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        )


def _stored_chunk_size(meta_file: Path) -> int | None:
    try:
        size = json.loads(meta_file.read_text(encoding="utf-8"))["chunk_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) and size > 0 else None


def _npy_bytes(vectors: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    return buffer.getvalue()


def _bytes_writer(data: bytes) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "wb") as handle:
            handle.write(data)

    return write
