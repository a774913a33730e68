"""The embedding store: vectors under a key, in checksummed chunks, resumable, shared.

:class:`EmbeddingCache` maps a key (:mod:`helpers.cache.keys`: the SHA-256 of the
settings and the texts) to chunks of vectors (:mod:`helpers.cache.chunks`), computing the
missing chunks with the function it is given. It knows nothing of models: the settings
are an opaque mapping, and caching an encoder is the models side's job
(:func:`helpers.models.cached`).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers.cache.chunks import lock_path, open_entry, read_chunk, read_manifest, write_chunk
from helpers.cache.keys import cache_key, record_chunks, settings_key
from helpers.cache.locks import (
    CACHED,
    LOCK_STALE_S,
    LOCK_WAIT_S,
    MAX_PENDING_WRITES,
    OURS,
    POLL_MAX_S,
    POLL_MIN_S,
    THEIRS,
    Claim,
    HeldLocks,
    Plan,
    settle,
)
from helpers.io import FileLock, remove_stale_temporaries

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024

StreamFn = Callable[[Iterable[Sequence[str]]], Iterable[np.ndarray]]
"""Given an iterable of chunks of texts, yields their embeddings in turn."""


@dataclass(frozen=True)
class EntryPlan:
    """An entry of an in-memory list of texts, opened, and which of its chunks are done.

    Attributes:
        key: the entry's key (:func:`~helpers.cache.cache_key` of the settings and texts).
        rows: the texts (rows) in the entry.
        chunk_size: rows per chunk (the entry's own: the one it began with).
        found: the chunks already complete and verified (their SHA-256 checked), in order.
        missing: the chunks still to compute (absent, unfinished or damaged), in order.
    """

    key: str
    rows: int
    chunk_size: int
    found: tuple[int, ...]
    missing: tuple[int, ...]

    @property
    def chunks(self) -> int:
        """The number of chunks in the entry."""
        return -(-self.rows // self.chunk_size)

    def span(self, index: int) -> tuple[int, int]:
        """The rows ``[start, stop)`` of chunk ``index``.

        Raises:
            ValueError: naming ``index`` when the entry has no such chunk.
        """
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.chunks:
            raise ValueError(f"index: expected a chunk number in [0, {self.chunks}), got {index!r}")
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.rows)


@dataclass(frozen=True)
class ChunkWork:
    """What :meth:`EmbeddingCache.compute_chunks` did with the chunks it was given.

    Attributes:
        computed: chunks encoded and written here.
        found: chunks read instead (complete already, or written meanwhile by another
            writer, including those waited for).
        waited: of ``found``, the chunks waited for while another writer computed them.
    """

    computed: int
    found: int
    waited: int


def check_window(window: int) -> int:
    """``window`` (chunks of a streamed corpus read ahead) once checked.

    Raises:
        ValueError: naming ``window`` when it is not a positive integer.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window: expected a positive number of chunks, got {window!r}")
    return window


class EmbeddingCache:
    """Chunked, checksummed, resumable embedding storage under one folder.

    Several writers may share one cache (two runs, Ray workers, hosts over a shared
    filesystem): a chunk is computed by the writer holding its lock file
    (``.chunk_00000.lock``, :func:`helpers.io.try_lock`) while the others wait for it and
    read it; a lock whose holder died (this host: at once; another host: once it has not
    been refreshed for ``lock_stale_s``) is taken over. Correctness never rests on the
    locks alone: every chunk is read only when its bytes have the SHA-256 of its manifest.
    The work of one entry can also be split between writers on purpose: :meth:`plan_entry`
    says which chunks are missing, and each writer computes its share with
    :meth:`compute_chunks` (:func:`helpers.distributed.encode_corpus_on_ray` gives the
    shares to Ray workers), after which :meth:`encode` reads them all.

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
        meta = {"settings": dict(settings), "rows": len(texts)}
        chunk_size = open_entry(self.folder(key), meta, self.chunk_size, self.lock_stale_s)
        chunks = (
            (i, texts[start : start + chunk_size], "")
            for i, start in enumerate(range(0, len(texts), chunk_size))
        )
        bar = _bar(progress, -(-len(texts) // chunk_size), "chunk")
        for _, vectors in self._serve(key, chunks, encode_fn, stream_fn, None, bar):
            yield vectors

    def plan_entry(
        self, texts: Sequence[str], settings: Mapping[str, Any], key: str | None = None
    ) -> EntryPlan:
        """Open the entry of ``texts`` encoded with ``settings`` (its folder and
        ``meta.json``, exactly as :meth:`encode` does) and say which of its chunks are
        done: for handing the missing ones to other writers (:meth:`compute_chunks`, e.g.
        one per Ray worker) that :meth:`encode` will then read.

        Every complete chunk is read and its SHA-256 checked; a damaged one is missing.
        The counters (``hits``, ...) are left as they are.

        Args:
            texts: the texts, in order.
            settings: everything besides the texts that changes the vectors.
            key: the entry's key when already computed (:func:`~helpers.cache.cache_key`
                of ``settings`` and ``texts``).

        Returns:
            The entry's key, size, chunk size, and its found and missing chunks.
        """
        key = key or cache_key(settings, texts)
        meta = {"settings": dict(settings), "rows": len(texts)}
        chunk_size = open_entry(self.folder(key), meta, self.chunk_size, self.lock_stale_s)
        found: list[int] = []
        missing: list[int] = []
        for index, start in enumerate(range(0, len(texts), chunk_size)):
            rows = min(chunk_size, len(texts) - start)
            done = read_chunk(self.folder(key), index, rows, "", warn=False) is not None
            (found if done else missing).append(index)
        return EntryPlan(key, len(texts), chunk_size, tuple(found), tuple(missing))

    def compute_chunks(
        self,
        key: str,
        settings: Mapping[str, Any],
        rows: int,
        chunks: Mapping[int, Sequence[str]],
        encode_fn: Callable[[Sequence[str]], np.ndarray],
        stream_fn: StreamFn | None = None,
    ) -> ChunkWork:
        """Make sure the given chunks of an entry are in the cache, computing only those
        missing: the part of :meth:`encode` one of several writers does (a Ray worker
        given a shard of the chunks of :meth:`plan_entry`).

        Each chunk is claimed by its lock, exactly as in :meth:`encode`: a chunk complete
        already (or written meanwhile) is read, never computed again; one another writer
        holds is waited for and read; so no two writers write one chunk, and the vectors
        written are those :meth:`encode` would write (a chunk's texts go to the encoder
        alone or, with ``stream_fn``, in one stream with this call's other missing chunks,
        in index order, as :meth:`encode` gives them).

        Args:
            key: the entry's key (:attr:`EntryPlan.key`).
            settings: what the key was made of (written to ``meta.json`` if absent).
            rows: the entry's number of texts.
            chunks: chunk number -> that chunk's texts (rows ``[i * chunk_size, ...)`` of
                the entry's texts, with the entry's chunk size).
            encode_fn: computes the embeddings of a list of texts (float32, one row each).
            stream_fn: optional; as in :meth:`encode`.

        Returns:
            How many chunks were computed here, and how many found.

        Raises:
            ValueError: naming ``rows`` or ``chunks`` when a chunk number is outside the
                entry or a chunk does not hold the entry's number of rows for it.
        """
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ValueError(f"rows: expected the entry's number of texts (>= 0), got {rows!r}")
        meta = {"settings": dict(settings), "rows": rows}
        chunk_size = open_entry(self.folder(key), meta, self.chunk_size, self.lock_stale_s)
        entry = EntryPlan(key, rows, chunk_size, (), ())
        where = f"an entry of {rows} rows in chunks of {chunk_size}"
        for index, texts in chunks.items():
            if isinstance(index, bool) or not isinstance(index, int):
                raise ValueError(f"chunks: expected integer chunk numbers, got {index!r}")
            if not 0 <= index < entry.chunks:
                raise ValueError(
                    f"chunks: {where} has chunks 0 to {entry.chunks - 1}, got chunk {index}"
                )
            start, stop = entry.span(index)
            if len(texts) != stop - start:
                raise ValueError(
                    f"chunks: chunk {index} of {where} holds {stop - start} texts, got {len(texts)}"
                )
        before = (self.computed_chunks, self.hits, self.waited_chunks)
        given = ((index, chunks[index], "") for index in sorted(chunks))
        for _ in self._serve(key, given, encode_fn, stream_fn, None, None):
            pass
        return ChunkWork(
            computed=self.computed_chunks - before[0],
            found=self.hits - before[1],
            waited=self.waited_chunks - before[2],
        )

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
        check_window(window)
        key = settings_key(settings, "\0" + source)
        meta = {"settings": dict(settings), "source": source}
        chunk_size = open_entry(self.folder(key), meta, self.chunk_size, self.lock_stale_s)
        ids_by_chunk: dict[int, list[str]] = {}
        chunks = record_chunks(records, chunk_size, ids_by_chunk)
        bar = _bar(progress, None, "chunk")
        for index, vectors in self._serve(key, chunks, encode_fn, stream_fn, window, bar):
            yield ids_by_chunk.pop(index), vectors

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
        :data:`~helpers.cache.locks.MAX_AHEAD` of its own chunks ahead, so two writers
        share the work.
        """
        writer = ThreadPoolExecutor(1, "cache-writer")
        writes: deque[Future[None]] = deque()
        locks = HeldLocks(self.lock_stale_s)
        try:
            while True:
                group = list(itertools.islice(chunks, window))
                if not group:
                    break
                manifests = [read_manifest(self.folder(key), i, len(t), sha) for i, t, sha in group]
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

                plan = Plan(store)

                def todo(
                    group: list[tuple[int, Sequence[str], str]] = group,
                    manifests: list[dict[str, Any] | None] = manifests,
                    plan: Plan = plan,
                ) -> Iterator[Sequence[str]]:
                    for (index, texts, sha), info in zip(group, manifests, strict=True):
                        if info is None:
                            claim = self._claim(key, index, texts, sha, locks)
                            plan.decide(index, claim)
                            if claim.kind == OURS:
                                yield texts

                stream: Iterator[np.ndarray] = (
                    iter(stream_fn(todo())) if stream_fn else (encode_fn(t) for t in todo())
                )
                plan.stream = stream
                try:
                    for (index, texts, sha), info in zip(group, manifests, strict=True):
                        vectors: np.ndarray | None = None
                        if info is not None:  # planned as cached
                            vectors = read_chunk(self.folder(key), index, len(texts), sha)
                            if vectors is not None:
                                self.hits += 1
                        else:
                            claim = plan.claim(index)
                            if claim.kind == OURS:
                                vectors = plan.output(index)
                            elif claim.kind == CACHED:
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
        settle(writes, 0)  # a failed write is an error, not a silent miss next time
        remove_stale_temporaries(self.folder(key))  # of writers that died meanwhile

    def _claim(
        self, key: str, index: int, texts: Sequence[str], sha: str, locks: HeldLocks
    ) -> Claim:
        """Decide who computes a chunk planned as missing: this writer (lock taken), nobody
        (another writer finished it meanwhile) or another writer (it holds the lock)."""
        lock = locks.acquire(lock_path(self.folder(key), index))
        if lock is None:
            return Claim(THEIRS)
        vectors = read_chunk(self.folder(key), index, len(texts), sha)
        if vectors is not None:
            locks.release(lock)
            return Claim(CACHED, vectors=vectors)
        return Claim(OURS, lock=lock)

    def _obtain(
        self,
        key: str,
        index: int,
        texts: Sequence[str],
        sha: str,
        encode_fn: Callable[[Sequence[str]], np.ndarray],
        locks: HeldLocks,
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
            lock = locks.acquire(lock_path(self.folder(key), index))
            if lock is not None:
                vectors = read_chunk(self.folder(key), index, len(texts), sha, warn=not warned)
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
        locks: HeldLocks,
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
        settle(writes, MAX_PENDING_WRITES)
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
        locks: HeldLocks,
    ) -> None:
        try:
            self._write_chunk(key, index, vectors, texts_sha)
        finally:
            if lock is not None:
                locks.release(lock)

    def _write_chunk(self, key: str, index: int, vectors: np.ndarray, texts_sha: str = "") -> None:
        """Write one chunk atomically (:func:`~helpers.cache.chunks.write_chunk`)."""
        write_chunk(self.folder(key), index, vectors, texts_sha)


def _bar(progress: bool, total: int | None, unit: str) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Encoding (cached chunks)", unit=unit)
