"""Several writers on one entry: chunk locks kept alive, and who computes which chunk.

A chunk is computed by the writer holding its lock file (:func:`helpers.io.try_lock`);
:class:`HeldLocks` refreshes the locks one encoding holds (a heartbeat thread) and releases
them all at the end. :class:`Plan` matches a window's claims with the encoder's outputs.
Correctness never rests on the locks alone: every chunk is read only when its bytes have
the SHA-256 of its manifest (:func:`helpers.cache.chunks.read_chunk`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.io import FileLock, try_lock

MAX_PENDING_WRITES = 2
LOCK_STALE_S = 120.0  # another host's chunk lock not refreshed for this long: its holder died
LOCK_REFRESH_S = 10.0  # how often a holder refreshes its locks (at most)
LOCK_WAIT_S = 1800.0  # longest wait for another writer's chunk before computing it here
POLL_MIN_S, POLL_MAX_S = 0.005, 0.25  # waiting for another writer's chunk: back-off
MAX_AHEAD = 2  # own chunks computed ahead while waiting for another writer's

OURS, CACHED, THEIRS = "ours", "cached", "theirs"


@dataclass
class Claim:
    """Who computes a chunk planned as missing: this writer (``OURS``, with its lock),
    nobody (``CACHED``: another writer finished it meanwhile, with its vectors read and
    verified) or another writer (``THEIRS``: it holds the lock)."""

    kind: str
    lock: FileLock | None = None
    vectors: np.ndarray | None = None


class Plan:
    """One window's claims and the encoder's outputs, matched to chunk indexes.

    The encoder is given the texts of the chunks claimed by this writer only, in order,
    claimed as it asks for them; its n-th output belongs to the n-th chunk it was given.
    Each output is stored (``store(index, vectors, lock)``: written to the cache, lock
    released once written) as soon as it comes, and kept until the chunk is served.

    Args:
        store: stores one computed chunk and returns it as served.
    """

    def __init__(self, store: Callable[[int, np.ndarray, FileLock | None], np.ndarray]) -> None:
        self.stream: Iterator[np.ndarray] | None = None
        self._store = store
        self._claims: dict[int, Claim] = {}
        self._given: deque[int] = deque()
        self._outputs: dict[int, np.ndarray] = {}
        self._ended = False
        self._mutex = threading.Lock()  # the encoder may read its input on another thread

    def decide(self, index: int, claim: Claim) -> None:
        """Record the claim of chunk ``index`` (given to the encoder when ``OURS``)."""
        with self._mutex:
            self._claims[index] = claim
            if claim.kind == OURS:
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

    def claim(self, index: int) -> Claim:
        """The claim of chunk ``index``, running the encoder until it has asked for it.

        Raises:
            RuntimeError: when the encoder ended before it read the chunk's texts.
        """
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
        """The stored output for chunk ``index`` (claimed by this writer).

        Raises:
            RuntimeError: when the encoder ended with fewer outputs than chunks it read.
        """
        while index not in self._outputs:
            if not self._advance():
                raise RuntimeError(
                    f"stream_fn ended before it returned chunk {index}: "
                    "fewer outputs than chunks of texts read"
                )
        return self._outputs.pop(index)


class HeldLocks:
    """The chunk locks one encoding holds, kept alive by a heartbeat thread (each lock's
    modification time refreshed every ``min(LOCK_REFRESH_S, stale_after_s / 4)`` s) and
    all released by :meth:`close`.

    Args:
        stale_after_s: seconds after which another host's unrefreshed lock is stale.
    """

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
        """Release ``lock`` if this encoding still holds it."""
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


def settle(writes: deque[Future[None]], keep: int) -> None:
    """Raise the first failed write as soon as it is known, and wait while more than
    ``keep`` writes are queued (the encoder must not outrun the disk without bound)."""
    while writes and (writes[0].done() or len(writes) > keep):
        writes.popleft().result()
