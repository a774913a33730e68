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
import itertools
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from helpers.io import atomic_write, files_sha256, write_json

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024
GPU_CHUNK_SIZE = 16384  # a GPU encodes 1,024 rows in ~20 ms: bigger chunks keep it busy
MAX_PENDING_WRITES = 2

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
        _WEIGHTS_HASHES[stamp] = files_sha256(folder, files)
    return _WEIGHTS_HASHES[stamp]


def weights_id(path: str, revision: str) -> str:
    """The weights part of a cache key: :func:`weights_fingerprint` of a local model
    folder, else ``"hub@<revision>"``."""
    return weights_fingerprint(path) if path and Path(path).is_dir() else f"hub@{revision}"


def library_versions() -> dict[str, str]:
    """The versions of the libraries that compute the vectors (part of every cache key)."""
    import sentence_transformers
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }


def cache_key(settings: Mapping[str, Any], texts: Sequence[str]) -> str:
    """The cache key: SHA-256 of the encoding settings (sorted JSON) and the texts."""
    return _settings_key(settings, texts_fingerprint(texts))


def _settings_key(settings: Mapping[str, Any], tail: str) -> str:
    """SHA-256 (32 hex digits) of the settings as sorted JSON, then ``tail``."""
    blob = json.dumps(dict(settings), sort_keys=True, default=str)
    return hashlib.sha256((blob + tail).encode()).hexdigest()[:32]


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

    def _manifest(
        self, key: str, index: int, rows: int, texts_sha: str = ""
    ) -> dict[str, Any] | None:
        """A chunk's manifest when the chunk looks complete (read before encoding starts:
        manifest and file present, rows, size and, for a streamed corpus, the texts agree),
        else None. The SHA-256 of the vectors is checked when the chunk is read
        (:meth:`_verified`)."""
        npy, manifest = self._chunk_paths(key, index)
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

    def _verified(self, key: str, index: int, info: dict[str, Any]) -> bool:
        """True when the chunk's bytes still have the SHA-256 of its manifest."""
        npy, _ = self._chunk_paths(key, index)
        try:
            digest = hashlib.sha256(npy.read_bytes()).hexdigest()
        except OSError:
            return False
        if info.get("sha256") != digest:
            logger.warning("cache chunk %s is truncated or corrupt: recomputing it", npy)
            return False
        return True

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
        chunk_size = self._open_entry(key, {"settings": dict(settings), "rows": len(texts)})
        chunks = (
            (i, texts[start : start + chunk_size], "")
            for i, start in enumerate(range(0, len(texts), chunk_size))
        )
        bar = _bar(progress, -(-len(texts) // chunk_size), "chunk")
        for _, vectors in self._serve(key, chunks, encode_fn, stream_fn, None, bar):
            yield vectors

    def encode_records(
        self,
        records: Iterable[tuple[str, str]],
        settings: Mapping[str, Any],
        source: str,
        encode_fn: Callable[[Sequence[str]], np.ndarray],
        stream_fn: StreamFn | None = None,
        window: int = 8,
        progress: bool = False,
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """Embed a streamed corpus: ``(doc id, text)`` records in, ``(ids, vectors)`` chunks out.

        For a corpus too large to hold its texts (the full MS MARCO: 8.8M passages, see
        :func:`helpers.data.stream_corpus`): records are read ``chunk_size`` at a time and
        ``window`` chunks ahead. The entry is keyed on ``settings`` and ``source`` (e.g.
        ``"namespace-Pt/msmarco-corpus:train"``); each chunk's manifest holds the SHA-256
        of its ids and texts, so a chunk is reused only for exactly the same records, and a
        killed run resumes at the first chunk not finished. Each window of chunks goes to
        the encoder as one stream (a streaming encoder restarts at each window: with GPU
        chunks of 16,384 rows and ``window=8``, once per 131,072 texts).

        Yields:
            ``(ids, vectors)`` per chunk, vectors memory-mapped when read from the cache.
        """
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window: expected a positive number of chunks, got {window!r}")
        key = _settings_key(settings, "\0" + source)
        chunk_size = self._open_entry(key, {"settings": dict(settings), "source": source})
        ids_by_chunk: dict[int, list[str]] = {}

        def chunks() -> Iterator[tuple[int, list[str], str]]:
            rows = iter(records)
            for index in itertools.count():
                part = list(itertools.islice(rows, chunk_size))
                if not part:
                    return
                ids_by_chunk[index] = [doc_id for doc_id, _ in part]
                texts = [text for _, text in part]
                sha = texts_fingerprint([*ids_by_chunk[index], *texts])
                yield index, texts, sha

        bar = _bar(progress, None, "chunk")
        for index, vectors in self._serve(key, chunks(), encode_fn, stream_fn, window, bar):
            yield ids_by_chunk.pop(index), vectors

    def _open_entry(self, key: str, meta: dict[str, Any]) -> int:
        """Create the entry's folder and ``meta.json``; clear stale temporary files; return
        the entry's chunk size (the one it was started with)."""
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        meta_file = folder / "meta.json"
        chunk_size = _stored_chunk_size(meta_file)
        if chunk_size is None:
            chunk_size = self.chunk_size
            write_json(meta_file, {**meta, "chunk_size": chunk_size})
        for stale in folder.glob(".*.tmp"):
            stale.unlink()
        return chunk_size

    def _serve(
        self,
        key: str,
        chunks: Iterator[tuple[int, Sequence[str], str]],
        encode_fn: Callable[[Sequence[str]], np.ndarray],
        stream_fn: StreamFn | None,
        window: int | None,
        bar: Any,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Read or compute each chunk ``(index, texts, texts_sha)`` in order.

        ``window`` chunks at a time (None: all), the missing ones of a window go to the
        encoder together, so a streaming encoder works ahead across them.
        """
        writer = ThreadPoolExecutor(1, "cache-writer")
        writes: deque[Future[None]] = deque()
        try:
            while True:
                group = list(itertools.islice(chunks, window))
                if not group:
                    break
                manifests = [self._manifest(key, i, len(t), sha) for i, t, sha in group]
                todo = (t for (_, t, _), m in zip(group, manifests, strict=True) if m is None)
                stream: Iterator[np.ndarray] = (
                    iter(stream_fn(todo)) if stream_fn else (encode_fn(t) for t in todo)
                )
                try:
                    for (index, texts, sha), info in zip(group, manifests, strict=True):
                        npy, _ = self._chunk_paths(key, index)
                        done = info is not None
                        if info is not None and self._verified(key, index, info):
                            self.hits += 1
                            vectors = np.load(npy, mmap_mode="r")
                        else:  # a chunk planned as cached but corrupt is recomputed alone
                            vectors = next(stream) if not done else encode_fn(texts)
                            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                            if vectors.shape[0] != len(texts):
                                raise ValueError(
                                    f"encode_fn returned {vectors.shape[0]} rows "
                                    f"for {len(texts)} texts"
                                )
                            writes.append(
                                writer.submit(self._write_chunk, key, index, vectors, sha)
                            )
                            self.computed_chunks += 1
                            _settle(writes, MAX_PENDING_WRITES)
                            vectors = vectors.view()  # what is being written stays as it is
                            vectors.setflags(write=False)
                        if bar is not None:
                            bar.update(1)
                        yield index, vectors
                finally:
                    close = getattr(stream, "close", None)
                    if close:
                        close()
        finally:
            writer.shutdown(wait=True)
            if bar is not None:
                bar.close()
        _settle(writes, 0)  # a failed write is an error, not a silent miss next time

    def _write_chunk(self, key: str, index: int, vectors: np.ndarray, texts_sha: str = "") -> None:
        """Write one chunk atomically: the ``.npy`` first, then its manifest."""
        npy, manifest = self._chunk_paths(key, index)
        data = _npy_bytes(vectors)  # serialised once: written and hashed from memory
        atomic_write(npy, _bytes_writer(data))
        info = {
            "rows": len(vectors),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if texts_sha:
            info["texts_sha256"] = texts_sha
        write_json(manifest, info)


def chunk_size_for(device: str) -> int:
    """The chunk size for encoding on ``device``: :data:`GPU_CHUNK_SIZE` on a GPU, else
    :data:`DEFAULT_CHUNK_SIZE`."""
    return GPU_CHUNK_SIZE if str(device).startswith("cuda") else DEFAULT_CHUNK_SIZE


def _settle(writes: deque[Future[None]], keep: int) -> None:
    """Raise the first failed write as soon as it is known, and wait while more than
    ``keep`` writes are queued (the encoder must not outrun the disk without bound)."""
    while writes and (writes[0].done() or len(writes) > keep):
        writes.popleft().result()


def _bar(progress: bool, total: int | None, unit: str) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Encoding (cached chunks)", unit=unit)


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
