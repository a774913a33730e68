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

import contextlib
import hashlib
import io
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

import numpy as np

from helpers.io import (
    FileLock,
    atomic_create,
    atomic_write,
    files_sha256,
    is_stale,
    read_lock,
    remove_stale_temporaries,
    text_writer,
    try_lock,
    write_json,
)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024
GPU_CHUNK_SIZE = 16384  # a GPU encodes 1,024 rows in ~20 ms: bigger chunks keep it busy
MAX_PENDING_WRITES = 2
LOCK_STALE_S = 120.0  # another host's chunk lock not refreshed for this long: its holder died
LOCK_REFRESH_S = 10.0  # how often a holder refreshes its locks (at most)
LOCK_WAIT_S = 1800.0  # longest wait for another writer's chunk before computing it here
POLL_MIN_S, POLL_MAX_S = 0.005, 0.25  # waiting for another writer's chunk: back-off
MAX_AHEAD = 2  # own chunks computed ahead while waiting for another writer's

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
    """Chunked, checksummed, resumable embedding storage under one folder.

    Several writers may share one cache (two runs, Ray workers, hosts over a shared
    filesystem): a chunk is computed by the writer holding its lock file
    (``.chunk_00000.lock``, :func:`helpers.io.try_lock`) while the others wait for it and
    read it; a lock whose holder died (this host: at once; another host: once it has not
    been refreshed for ``lock_stale_s``) is taken over. Correctness never rests on the
    locks alone: every chunk is read only when its bytes have the SHA-256 of its manifest.

    Args:
        root: the cache folder.
        chunk_size: rows per chunk for new entries (an entry keeps the one it began with).
        lock_stale_s: seconds after which another host's unrefreshed chunk lock is stale
            (holders refresh theirs every ``min(10, lock_stale_s / 4)`` seconds).
        lock_wait_s: longest wait for another writer's chunk; then it is computed here.

    Attributes:
        hits: chunks read from the cache (including ones another writer just wrote).
        computed_chunks: chunks this instance encoded.
        waited_chunks: chunks this instance waited for while another writer computed them.
    """

    def __init__(
        self,
        root: str | Path,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        lock_stale_s: float = LOCK_STALE_S,
        lock_wait_s: float = LOCK_WAIT_S,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size}")
        for name, value in (("lock_stale_s", lock_stale_s), ("lock_wait_s", lock_wait_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        self.root = Path(root)
        self.chunk_size = chunk_size
        self.lock_stale_s = float(lock_stale_s)
        self.lock_wait_s = float(lock_wait_s)
        self.hits = 0
        self.computed_chunks = 0
        self.waited_chunks = 0

    def folder(self, key: str) -> Path:
        """Where the entry of ``key`` lives."""
        return self.root / key

    def _chunk_paths(self, key: str, index: int) -> tuple[Path, Path]:
        base = self.folder(key) / f"chunk_{index:05d}"
        return base.with_suffix(".npy"), base.with_suffix(".json")

    def _lock_path(self, key: str, index: int) -> Path:
        return self.folder(key) / f".chunk_{index:05d}.lock"

    def _manifest(
        self, key: str, index: int, rows: int, texts_sha: str = ""
    ) -> dict[str, Any] | None:
        """A chunk's manifest when the chunk looks complete (manifest and file present,
        rows, size and, for a streamed corpus, the texts agree), else None. The SHA-256 of
        the vectors is checked when the chunk is read (:meth:`_read`)."""
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

    def _read(
        self, key: str, index: int, rows: int, texts_sha: str, warn: bool = True
    ) -> np.ndarray | None:
        """The chunk, memory-mapped, when it is complete and its bytes have the SHA-256 of
        its manifest; else None (``warn``: a chunk whose bytes do not match is logged).

        The bytes hashed and the bytes mapped come from one open file, so a writer
        replacing the ``.npy`` meanwhile cannot slip unverified vectors in."""
        info = self._manifest(key, index, rows, texts_sha)
        if info is None:
            return None
        npy, _ = self._chunk_paths(key, index)
        try:
            with open(npy, "rb") as handle:
                data = handle.read()
                if hashlib.sha256(data).hexdigest() != info.get("sha256"):
                    if warn:
                        logger.warning(
                            "cache chunk %s is truncated or corrupt: recomputing it", npy
                        )
                    return None
                vectors = _map_npy(handle, data)
        except (OSError, ValueError):
            return None
        return vectors if vectors.ndim >= 1 and len(vectors) == rows else None

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
        """Create the entry's folder and ``meta.json``; clear stale temporary files and
        chunk locks (of writers that are gone, never another writer's in flight); return
        the entry's chunk size: the one it was started with, by whichever writer came
        first (``meta.json`` is created only if absent, atomically)."""
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
        for path in folder.glob(".chunk_*.lock"):
            owner = read_lock(path)
            if owner is not None and is_stale(
                owner.host, owner.pid, owner.mtime, self.lock_stale_s
            ):
                lock = try_lock(path, self.lock_stale_s)  # takes it over safely
                if lock is not None:
                    lock.release()
        meta_file = folder / "meta.json"
        chunk_size = _stored_chunk_size(meta_file)
        if chunk_size is None:
            writer = text_writer(
                json.dumps({**meta, "chunk_size": self.chunk_size}, indent=2, ensure_ascii=False)
                + "\n"
            )
            if meta_file.exists():  # unreadable (damaged): replaced
                atomic_write(meta_file, writer)
            else:  # absent: created unless another writer just did
                atomic_create(meta_file, writer)
            chunk_size = _stored_chunk_size(meta_file)
            if chunk_size is None:
                raise OSError(f"{meta_file}: unreadable right after it was written")
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
        encoder together, so a streaming encoder works ahead across them. With other
        writers on the entry, a missing chunk is claimed (its lock taken) only when the
        encoder asks for its texts: a chunk another writer holds is skipped by the encoder
        and read once written; while waiting for it, this writer computes up to
        :data:`MAX_AHEAD` of its own chunks ahead, so two writers share the work.
        """
        writer = ThreadPoolExecutor(1, "cache-writer")
        writes: deque[Future[None]] = deque()
        locks = _HeldLocks(self.lock_stale_s)
        try:
            while True:
                group = list(itertools.islice(chunks, window))
                if not group:
                    break
                manifests = [self._manifest(key, i, len(t), sha) for i, t, sha in group]
                members = {index: (texts, sha) for index, texts, sha in group}

                def store(
                    index: int,
                    computed: np.ndarray,
                    lock: FileLock | None,
                    members: dict[int, tuple[Sequence[str], str]] = members,
                ) -> np.ndarray:
                    texts, sha = members[index]
                    return self._store(
                        key, index, texts, sha, computed, lock, locks, writer, writes
                    )

                plan = _Plan(store)

                def todo(
                    group: list[tuple[int, Sequence[str], str]] = group,
                    manifests: list[dict[str, Any] | None] = manifests,
                    plan: _Plan = plan,
                ) -> Iterator[Sequence[str]]:
                    for (index, texts, sha), info in zip(group, manifests, strict=True):
                        if info is None:
                            claim = self._claim(key, index, texts, sha, locks)
                            plan.decide(index, claim)
                            if claim.kind == _OURS:
                                yield texts

                stream: Iterator[np.ndarray] = (
                    iter(stream_fn(todo())) if stream_fn else (encode_fn(t) for t in todo())
                )
                plan.stream = stream
                try:
                    for (index, texts, sha), info in zip(group, manifests, strict=True):
                        vectors: np.ndarray | None = None
                        if info is not None:  # planned as cached
                            vectors = self._read(key, index, len(texts), sha)
                            if vectors is not None:
                                self.hits += 1
                        else:
                            claim = plan.claim(index)
                            if claim.kind == _OURS:
                                vectors = plan.output(index)
                            elif claim.kind == _CACHED:
                                self.hits += 1
                                vectors = claim.vectors
                        if vectors is None:  # damaged, or another writer's: waited for
                            vectors = self._obtain(
                                key, index, texts, sha, encode_fn, locks, writer, writes,
                                warned=info is not None, idle=plan.work_ahead,
                            )  # fmt: skip
                        if bar is not None:
                            bar.update(1)
                        yield index, vectors
                finally:
                    close = getattr(stream, "close", None)
                    if close:
                        close()
        finally:
            writer.shutdown(wait=True)
            locks.close()
            if bar is not None:
                bar.close()
        _settle(writes, 0)  # a failed write is an error, not a silent miss next time
        remove_stale_temporaries(self.folder(key))  # of writers that died meanwhile

    def _claim(
        self, key: str, index: int, texts: Sequence[str], sha: str, locks: _HeldLocks
    ) -> _Claim:
        """Decide who computes a chunk planned as missing: this writer (lock taken), nobody
        (another writer finished it meanwhile) or another writer (it holds the lock)."""
        lock = locks.acquire(self._lock_path(key, index))
        if lock is None:
            return _Claim(_THEIRS)
        vectors = self._read(key, index, len(texts), sha)
        if vectors is not None:
            locks.release(lock)
            return _Claim(_CACHED, vectors=vectors)
        return _Claim(_OURS, lock=lock)

    def _obtain(
        self,
        key: str,
        index: int,
        texts: Sequence[str],
        sha: str,
        encode_fn: Callable[[Sequence[str]], np.ndarray],
        locks: _HeldLocks,
        writer: ThreadPoolExecutor,
        writes: deque[Future[None]],
        warned: bool,
        idle: Callable[[], bool],
    ) -> np.ndarray:
        """A chunk the encoder stream does not serve: waits while another writer holds its
        lock (calling ``idle()`` to do other work, sleeping when it has none), then reads
        it, or computes it alone (``encode_fn``) when it is still missing or damaged (its
        writer failed or died), or when ``lock_wait_s`` has passed."""
        start = time.monotonic()
        delay = POLL_MIN_S
        waited = False
        while True:
            lock = locks.acquire(self._lock_path(key, index))
            if lock is not None:
                vectors = self._read(key, index, len(texts), sha, warn=not warned)
                if vectors is None:
                    computed = encode_fn(texts)
                    return self._store(
                        key, index, texts, sha, computed, lock, locks, writer, writes
                    )
                locks.release(lock)
                self.hits += 1
                self.waited_chunks += waited
                return vectors
            if time.monotonic() - start > self.lock_wait_s:
                logger.warning(
                    "cache chunk %d of %s: another writer has held it for over %.0f s; "
                    "computing it here",
                    index,
                    self.folder(key),
                    self.lock_wait_s,
                )
                computed = encode_fn(texts)
                return self._store(key, index, texts, sha, computed, None, locks, writer, writes)
            waited = True
            if not idle():
                time.sleep(delay)
                delay = min(2 * delay, POLL_MAX_S)

    def _store(
        self,
        key: str,
        index: int,
        texts: Sequence[str],
        sha: str,
        computed: np.ndarray,
        lock: FileLock | None,
        locks: _HeldLocks,
        writer: ThreadPoolExecutor,
        writes: deque[Future[None]],
    ) -> np.ndarray:
        """Check a computed chunk, queue its write (the lock is released once written) and
        return it read-only."""
        vectors = np.ascontiguousarray(computed, dtype=np.float32)
        if vectors.shape[0] != len(texts):
            raise ValueError(f"encode_fn returned {vectors.shape[0]} rows for {len(texts)} texts")
        writes.append(writer.submit(self._write_and_release, key, index, vectors, sha, lock, locks))
        self.computed_chunks += 1
        _settle(writes, MAX_PENDING_WRITES)
        vectors = vectors.view()  # what is being written stays as it is
        vectors.setflags(write=False)
        return vectors

    def _write_and_release(
        self,
        key: str,
        index: int,
        vectors: np.ndarray,
        texts_sha: str,
        lock: FileLock | None,
        locks: _HeldLocks,
    ) -> None:
        try:
            self._write_chunk(key, index, vectors, texts_sha)
        finally:
            if lock is not None:
                locks.release(lock)

    def _write_chunk(self, key: str, index: int, vectors: np.ndarray, texts_sha: str = "") -> None:
        """Write one chunk atomically: the ``.npy`` first, then its manifest.

        A complete, verified chunk already there (another writer's) is kept and these
        vectors dropped; a damaged one loses its manifest first, so that while the new
        ``.npy`` is renamed in, the chunk reads as missing, never as a mismatch."""
        npy, manifest = self._chunk_paths(key, index)
        if self._read(key, index, len(vectors), texts_sha, warn=False) is not None:
            return
        with contextlib.suppress(FileNotFoundError):
            manifest.unlink()
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


_OURS, _CACHED, _THEIRS = "ours", "cached", "theirs"


@dataclass
class _Claim:
    """Who computes a chunk planned as missing (:meth:`EmbeddingCache._claim`)."""

    kind: str
    lock: FileLock | None = None
    vectors: np.ndarray | None = None  # _CACHED: read and verified


class _Plan:
    """One window's claims and the encoder's outputs, matched to chunk indexes.

    The encoder is given the texts of the chunks claimed by this writer only, in order,
    claimed as it asks for them; its n-th output belongs to the n-th chunk it was given.
    Each output is stored (``store(index, vectors, lock)``: written to the cache, lock
    released once written) as soon as it comes, and kept until the chunk is served.
    """

    def __init__(self, store: Callable[[int, np.ndarray, FileLock | None], np.ndarray]) -> None:
        self.stream: Iterator[np.ndarray] | None = None
        self._store = store
        self._claims: dict[int, _Claim] = {}
        self._given: deque[int] = deque()
        self._outputs: dict[int, np.ndarray] = {}
        self._ended = False
        self._mutex = threading.Lock()  # the encoder may read its input on another thread

    def decide(self, index: int, claim: _Claim) -> None:
        with self._mutex:
            self._claims[index] = claim
            if claim.kind == _OURS:
                self._given.append(index)

    def _advance(self) -> bool:
        """Run the encoder to its next output and store it; False once it has ended."""
        assert self.stream is not None
        if self._ended:
            return False
        output = next(self.stream, None)
        if output is None:
            self._ended = True
            return False
        with self._mutex:
            index = self._given.popleft()
            lock = self._claims[index].lock
        self._outputs[index] = self._store(index, output, lock)
        return True

    def work_ahead(self) -> bool:
        """Compute one more of this writer's chunks ahead, unless :data:`MAX_AHEAD` are
        already waiting to be served or the encoder has nothing left; True if it did."""
        return len(self._outputs) < MAX_AHEAD and self._advance()

    def claim(self, index: int) -> _Claim:
        """The claim of chunk ``index``, running the encoder until it has asked for it."""
        while True:
            with self._mutex:
                if index in self._claims:
                    return self._claims[index]
            if not self._advance():
                with self._mutex:
                    if index in self._claims:
                        return self._claims[index]
                raise RuntimeError(f"stream_fn ended before it read chunk {index}'s texts")

    def output(self, index: int) -> np.ndarray:
        """The stored output for chunk ``index`` (claimed by this writer)."""
        while index not in self._outputs:
            if not self._advance():
                raise RuntimeError(
                    f"stream_fn ended before it returned chunk {index}: "
                    "fewer outputs than chunks of texts read"
                )
        return self._outputs.pop(index)


class _HeldLocks:
    """The chunk locks one encoding holds, kept alive by a heartbeat thread (each lock's
    modification time refreshed every ``min(LOCK_REFRESH_S, stale_after_s / 4)`` s) and
    all released by :meth:`close`."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.refresh_s = min(LOCK_REFRESH_S, stale_after_s / 4)
        self._held: dict[Path, FileLock] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, path: Path) -> FileLock | None:
        """Take the lock at ``path`` (:func:`helpers.io.try_lock`), or None."""
        lock = try_lock(path, self.stale_after_s)
        if lock is not None:
            with self._mutex:
                self._held[path] = lock
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._beat, name="cache-lock-heartbeat", daemon=True
                    )
                    self._thread.start()
        return lock

    def release(self, lock: FileLock) -> None:
        with self._mutex:
            mine = self._held.get(lock.path) is lock
            if mine:
                del self._held[lock.path]
        if mine:
            lock.release()

    def close(self) -> None:
        """Stop the heartbeat and release every lock still held."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._mutex:
            held, self._held = list(self._held.values()), {}
        for lock in held:
            lock.release()

    def _beat(self) -> None:
        while not self._stop.wait(self.refresh_s):
            with self._mutex:
                held = list(self._held.values())
            for lock in held:
                lock.refresh()


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


def _map_npy(handle: IO[bytes], data: bytes) -> np.ndarray:
    """The array in ``data`` (the whole content of the open file ``handle``), mapped from
    that file read-only (in memory for an empty array or an unusual format version)."""
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


def _npy_bytes(vectors: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    return buffer.getvalue()


def _bytes_writer(data: bytes) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "wb") as handle:
            handle.write(data)

    return write
