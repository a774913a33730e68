"""Several writers on one embedding cache: two real processes, dead and slow lock holders.

Two processes encode the same texts into one cache, the second started 0.3 s after the
first (both started after their imports, on a shared signal, so they really overlap),
with a deterministic, slow fake encoder. Both must finish with the fake encoder's vectors,
each chunk computed exactly once between them, and the entry must hold each chunk once,
verified, with no temporary file or lock left.

Each writer runs :func:`_worker` in a fresh ``python -c`` (numpy and the helpers only:
no pytest to import, so the writers start fast).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

DIM = 8
CHUNK = 50
TEXTS = [f"text number {i}" for i in range(2000)]  # 40 chunks of 50
CHUNKS = len(TEXTS) // CHUNK
SETTINGS = {"model": "fake", "dim": DIM}
SOURCE = "fake-corpus"
DELAY_S = 0.02  # per chunk: 40 chunks take 0.8 s, the second writer starts at 0.3 s


def fake_encode(texts) -> np.ndarray:
    """Deterministic in every process: seeded by the CRC-32 of each text."""
    rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(DIM) for t in texts]
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), DIM)


def _worker(root: str, out: str, signal: str, delay_s: float, mode: str, chunk: int) -> None:
    """One writer: waits for ``signal`` to exist, then ``delay_s``, then encodes ``TEXTS``
    (``mode``: ``encode``; ``records`` through a streaming encoder reading 2 chunks
    ahead; ``chunks``: every chunk given to ``compute_chunks``, as a Ray worker does,
    then read back with ``encode``); saves the vectors to ``out`` and prints its counters
    as JSON."""
    from helpers.cache import EmbeddingCache, cache_key

    calls = 0

    def encode(texts):
        nonlocal calls
        calls += 1
        time.sleep(DELAY_S)
        return fake_encode(texts)

    def stream(parts):
        ahead: list = []
        for part in parts:
            ahead.append(list(part))
            if len(ahead) > 2:
                yield encode(ahead.pop(0))
        while ahead:
            yield encode(ahead.pop(0))

    cache = EmbeddingCache(root, chunk_size=chunk)
    Path(out + ".ready").touch()
    while not os.path.exists(signal):
        time.sleep(0.002)
    time.sleep(delay_s)
    began = time.monotonic()
    ids: list = []
    if mode == "encode":
        vectors = cache.encode(TEXTS, SETTINGS, encode)
    elif mode == "chunks":
        shard = {i: TEXTS[i * chunk : (i + 1) * chunk] for i in range(-(-len(TEXTS) // chunk))}
        work = cache.compute_chunks(cache_key(SETTINGS, TEXTS), SETTINGS, len(TEXTS), shard, encode)
        assert (work.computed, work.found) == (cache.computed_chunks, cache.hits)
        vectors = cache.encode(TEXTS, SETTINGS, encode)  # every chunk there: all read
    else:
        records = ((f"d{i}", text) for i, text in enumerate(TEXTS))
        parts = list(cache.encode_records(records, SETTINGS, SOURCE, encode, stream, window=4))
        ids = [doc_id for part_ids, _ in parts for doc_id in part_ids]
        vectors = np.concatenate([np.asarray(v) for _, v in parts])
    np.save(out, vectors)
    counters = {
        "computed": cache.computed_chunks,
        "hits": cache.hits,
        "waited": cache.waited_chunks,
        "calls": calls,
        "ids_in_order": ids == [f"d{i}" for i in range(len(TEXTS))],
        "seconds": round(time.monotonic() - began, 3),
    }
    print(json.dumps(counters))


def _worker_source() -> str:
    """The source of a writer process: imports, this module's constants, the fake encoder
    and :func:`_worker`."""
    constants = "\n".join(
        f"{name} = {globals()[name]!r}"
        for name in ("DIM", "SETTINGS", "SOURCE", "DELAY_S", "TEXTS")
    )
    return "\n".join(
        [
            "import json, os, sys, time, zlib",
            "from pathlib import Path",
            "import numpy as np",
            constants,
            inspect.getsource(fake_encode),
            inspect.getsource(_worker),
            "_worker(*sys.argv[1:4], float(sys.argv[4]), sys.argv[5], int(sys.argv[6]))",
        ]
    )


def _run_pair(
    tmp: Path,
    mode: str,
    offset_s: float = 0.3,
    chunks: tuple[int, int] = (CHUNK, CHUNK),
    kill_first_at: float | None = None,
) -> list[tuple[dict, np.ndarray] | None]:
    """Two writer processes on one cache under ``tmp``; the second starts ``offset_s``
    after the first (both after their imports, on one signal); the first is killed
    (SIGKILL) ``kill_first_at`` seconds after the signal if given. Returns each one's
    counters and vectors (None for a killed writer)."""
    root, signal = tmp / "cache", tmp / "go"
    outs = [tmp / "a.npy", tmp / "b.npy"]
    source = _worker_source()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                source,
                str(root),
                str(out),
                str(signal),
                str(delay),
                mode,
                str(size),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for out, delay, size in zip(outs, (0.0, offset_s), chunks, strict=True)
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{out}.ready").exists() for out in outs):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "the writers did not start"
        time.sleep(0.01)
    signal.touch()
    results: list[tuple[dict, np.ndarray] | None] = []
    if kill_first_at is not None:
        time.sleep(kill_first_at)
        assert procs[0].poll() is None, "the first writer finished before it could be killed"
        procs[0].kill()
        procs[0].communicate(timeout=60)
        results.append(None)
        procs, outs = procs[1:], outs[1:]
    for proc, out in zip(procs, outs, strict=True):
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"writer {out.stem} failed:\n{stderr}"
        results.append((json.loads(stdout.strip().splitlines()[-1]), np.load(out)))
    return results


def _pair(tmp: Path, mode: str, **kwargs) -> list[tuple[dict, np.ndarray]]:
    """:func:`_run_pair` with both writers finishing."""
    results = _run_pair(tmp, mode, **kwargs)
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def _check_entry(root: Path, chunk: int = CHUNK) -> None:
    """One entry: meta.json and each chunk exactly once, each verified, nothing else."""
    (folder,) = root.iterdir()
    names = sorted(p.name for p in folder.iterdir())
    chunks = -(-len(TEXTS) // chunk)
    expected = sorted(
        ["meta.json"]
        + [f"chunk_{i:05d}.npy" for i in range(chunks)]
        + [f"chunk_{i:05d}.json" for i in range(chunks)]
    )
    assert names == expected  # no temporary file, no lock, no stray chunk
    assert json.loads((folder / "meta.json").read_text())["chunk_size"] == chunk
    import hashlib

    for i in range(chunks):
        manifest = json.loads((folder / f"chunk_{i:05d}.json").read_text())
        data = (folder / f"chunk_{i:05d}.npy").read_bytes()
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["rows"] == min(chunk, len(TEXTS) - i * chunk)


def _each_chunk_computed_once(tmp_path, mode: str, reads: int) -> tuple[dict, dict]:
    """Run two processes in ``mode``; both get the right vectors, each chunk is computed
    exactly once between them and read from the cache otherwise (``reads`` chunks
    computed or found per process), one encoder call per computed chunk."""
    expected = fake_encode(TEXTS)
    (first, a), (second, b) = _pair(tmp_path, mode)
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(b, expected)
    assert first["computed"] + second["computed"] == CHUNKS
    assert first["computed"] + first["hits"] == reads
    assert second["computed"] + second["hits"] == reads
    assert first["calls"] == first["computed"] and second["calls"] == second["computed"]
    _check_entry(tmp_path / "cache")
    return first, second


@pytest.mark.parametrize("trial", range(5))
def test_two_processes_encoding_into_one_cache_both_finish_right(tmp_path, trial):
    first, second = _each_chunk_computed_once(tmp_path, "encode", CHUNKS)
    assert first["computed"] >= 1 and second["hits"] >= 1


@pytest.mark.parametrize("trial", range(2))
def test_two_processes_computing_the_same_chunks_compute_each_once(tmp_path, trial):
    """What two Ray workers given overlapping shards do (``compute_chunks``)."""
    # compute_chunks read the rest, then encode read all: 2 * CHUNKS reads in all
    first, second = _each_chunk_computed_once(tmp_path, "chunks", 2 * CHUNKS)
    assert first["computed"] >= 1 and second["hits"] > CHUNKS  # it found some of them


@pytest.mark.parametrize("trial", range(2))
def test_two_processes_streaming_records_into_one_cache(tmp_path, trial):
    expected = fake_encode(TEXTS)
    (first, a), (second, b) = _pair(tmp_path, "records")
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(b, expected)
    assert first["ids_in_order"] and second["ids_in_order"]
    assert first["computed"] + second["computed"] == CHUNKS
    _check_entry(tmp_path / "cache")


def test_a_writer_killed_midway_does_not_stop_the_other(tmp_path):
    """SIGKILL leaves the first writer's chunk lock (and maybe a temporary) behind; the
    second, already waiting on it, takes it over and leaves a clean, complete entry."""
    results = _run_pair(tmp_path, "encode", offset_s=0.1, kill_first_at=0.4)
    assert results[0] is None and results[1] is not None
    second, b = results[1]
    np.testing.assert_array_equal(b, fake_encode(TEXTS))
    assert 1 <= second["hits"] and second["computed"] + second["hits"] == CHUNKS
    _check_entry(tmp_path / "cache")


def test_two_processes_starting_together_agree_on_one_chunk_size(tmp_path):
    """meta.json is created once: the writer that loses the race uses the winner's size."""
    expected = fake_encode(TEXTS)
    (first, a), (second, b) = _pair(tmp_path, "encode", offset_s=0.0, chunks=(CHUNK, 64))
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(b, expected)
    folder = next((tmp_path / "cache").iterdir())
    size = json.loads((folder / "meta.json").read_text())["chunk_size"]
    assert size in (CHUNK, 64)
    chunks = -(-len(TEXTS) // size)
    assert first["computed"] + second["computed"] == chunks
    _check_entry(tmp_path / "cache", size)


# -- in one process: planted locks of dead, slow and other writers --------------------


SMALL = TEXTS[:25]


def _entry(cache, texts=SMALL) -> Path:
    from helpers.cache import cache_key

    folder = cache.folder(cache_key(SETTINGS, texts))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def _plant_lock(path: Path, host: str, pid: int, age_s: float = 0.0) -> None:
    path.write_text(json.dumps({"host": host, "pid": pid, "token": "planted"}))
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))


def test_a_dead_writers_lock_and_temporaries_do_not_block(tmp_path):
    from helpers.cache import EmbeddingCache
    from helpers.io import host_token

    cache = EmbeddingCache(tmp_path, chunk_size=10)
    folder = _entry(cache)
    dead = _dead_pid()
    _plant_lock(folder / ".chunk_00001.lock", host_token(), dead)
    dead_tmp = folder / f".chunk_00001.npy.{host_token()}.{dead}.0badc0de.tmp"
    live_tmp = folder / f".chunk_00002.npy.{host_token()}.{os.getpid()}.0000beef.tmp"
    dead_tmp.write_bytes(b"half a chunk")
    live_tmp.write_bytes(b"a write in flight")
    start = time.monotonic()
    result = cache.encode(SMALL, SETTINGS, fake_encode)
    assert time.monotonic() - start < 5
    np.testing.assert_array_equal(result, fake_encode(SMALL))
    assert cache.computed_chunks == 3
    assert not dead_tmp.exists() and not (folder / ".chunk_00001.lock").exists()
    assert live_tmp.read_bytes() == b"a write in flight"  # another writer's: untouched


def test_another_hosts_lock_is_waited_for_until_it_goes_stale(tmp_path):
    from helpers.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path, chunk_size=10, lock_stale_s=0.6)
    folder = _entry(cache)
    _plant_lock(folder / ".chunk_00001.lock", "some-other-host", 1)  # fresh: alive
    start = time.monotonic()
    result = cache.encode(SMALL, SETTINGS, fake_encode)
    elapsed = time.monotonic() - start
    np.testing.assert_array_equal(result, fake_encode(SMALL))
    assert 0.5 <= elapsed < 5  # waited for the holder, then took over once stale
    assert cache.computed_chunks == 3
    assert not (folder / ".chunk_00001.lock").exists()


def test_a_chunk_another_writer_holds_is_waited_for_and_read_not_computed(tmp_path):
    """A live writer (a thread here: its own lock token) holds chunk 1 and writes its own
    vectors for it; this writer waits and serves exactly those."""
    from helpers.cache import EmbeddingCache
    from helpers.io import try_lock

    cache = EmbeddingCache(tmp_path, chunk_size=10)
    folder = _entry(cache)
    lock = try_lock(folder / ".chunk_00001.lock")
    assert lock is not None
    theirs = np.full((10, DIM), 7.0, dtype=np.float32)

    def other_writer() -> None:
        time.sleep(0.4)
        EmbeddingCache(tmp_path, chunk_size=10)._write_chunk(folder.name, 1, theirs)
        lock.release()

    thread = threading.Thread(target=other_writer)
    thread.start()
    encoded: list[str] = []

    def encode(texts):
        encoded.extend(texts)
        return fake_encode(texts)

    result = cache.encode(SMALL, SETTINGS, encode)
    thread.join()
    np.testing.assert_array_equal(result[10:20], theirs)
    np.testing.assert_array_equal(result[:10], fake_encode(SMALL[:10]))
    np.testing.assert_array_equal(result[20:], fake_encode(SMALL[20:]))
    assert encoded == SMALL[:10] + SMALL[20:]
    assert (cache.computed_chunks, cache.hits, cache.waited_chunks) == (2, 1, 1)


def test_a_complete_chunk_written_meanwhile_is_kept(tmp_path):
    from helpers.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path, chunk_size=10)
    first = cache.encode(SMALL, SETTINGS, fake_encode)
    folder = _entry(cache)
    before = (folder / "chunk_00001.npy").read_bytes()
    cache._write_chunk(folder.name, 1, np.zeros((10, DIM), dtype=np.float32))  # lost the race
    assert (folder / "chunk_00001.npy").read_bytes() == before
    np.testing.assert_array_equal(cache.encode(SMALL, SETTINGS, fake_encode), first)


def test_locks_are_released_when_the_encoder_fails(tmp_path):
    from helpers.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path, chunk_size=10)
    calls = 0

    def failing(texts):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt("killed")
        return fake_encode(texts)

    with pytest.raises(KeyboardInterrupt):
        cache.encode(SMALL, SETTINGS, failing)
    folder = _entry(cache)
    assert sorted(p.name for p in folder.iterdir()) == [
        "chunk_00000.json",
        "chunk_00000.npy",
        "meta.json",
    ]
