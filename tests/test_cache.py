"""Embedding cache: hits, misses on every key change, resume after a kill, corrupt chunks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import CountingEncoder
from helpers.cache import EmbeddingCache, cache_key, texts_fingerprint
from helpers.models import EncoderBase, cached

TEXTS = [f"passage number {i}" for i in range(25)]
SETTINGS = {
    "model": "m",
    "revision": "r1",
    "pooling": "mean",
    "max_length": 256,
    "normalize": True,
    "dtype": "float32",
    "instruction": "",
}


def test_same_run_twice_is_a_hit(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    enc = CountingEncoder()
    first = cache.encode(TEXTS, SETTINGS, enc)
    second = cache.encode(TEXTS, SETTINGS, enc)
    assert enc.encoded == 25 and cache.hits == 3 and cache.computed_chunks == 3
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32 and first.shape == (25, 8)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "other"},
        {"revision": "r2"},
        {"pooling": "cls"},
        {"max_length": 128},
        {"normalize": False},
        {"dtype": "float16"},
        {"instruction": "query: "},
    ],
)
def test_any_setting_change_is_a_miss(tmp_path, change):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    enc = CountingEncoder()
    cache.encode(TEXTS, SETTINGS, enc)
    cache.encode(TEXTS, {**SETTINGS, **change}, enc)
    assert enc.encoded == 50


def test_text_change_is_a_miss():
    assert cache_key(SETTINGS, TEXTS) != cache_key(SETTINGS, [*TEXTS[:-1], "changed"])
    assert texts_fingerprint(["ab", "c"]) != texts_fingerprint(["a", "bc"])


def test_killed_encoding_resumes_from_the_last_finished_chunk(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    dying = CountingEncoder(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        cache.encode(TEXTS, SETTINGS, dying)
    assert dying.encoded == 20
    resumed = CountingEncoder()
    result = cache.encode(TEXTS, SETTINGS, resumed)
    assert resumed.encoded == 5  # only the unfinished chunk
    np.testing.assert_array_equal(
        result, EmbeddingCache(tmp_path / "fresh", 10).encode(TEXTS, SETTINGS, CountingEncoder())
    )


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_corrupt_chunk_is_recomputed_never_used(tmp_path, damage):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    good = cache.encode(TEXTS, SETTINGS, CountingEncoder())
    folder = cache.folder(cache_key(SETTINGS, TEXTS))
    npy = folder / "chunk_00001.npy"
    data = bytearray(npy.read_bytes())
    if damage == "truncate":
        npy.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":
        data[-3] ^= 0xFF
        npy.write_bytes(bytes(data))
    else:
        (folder / "chunk_00001.json").write_text("{")
    enc = CountingEncoder()
    again = cache.encode(TEXTS, SETTINGS, enc)
    assert enc.encoded == 10
    np.testing.assert_array_equal(again, good)


def test_chunks_are_memory_mapped_when_read(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    cache.encode(TEXTS, SETTINGS, CountingEncoder())
    chunks = list(cache.iter_chunks(TEXTS, SETTINGS, CountingEncoder()))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert all(isinstance(c, np.memmap) for c in chunks)
    meta = json.loads((cache.folder(cache_key(SETTINGS, TEXTS)) / "meta.json").read_text())
    assert meta["rows"] == 25 and meta["settings"]["revision"] == "r1"


class CountingStream:
    """A mock streaming encoder: reads parts ahead (like the pipeline) and counts them."""

    def __init__(self, ahead: int = 2):
        self.encoder = CountingEncoder()
        self.parts_read = 0
        self.ahead = ahead

    def __call__(self, parts):
        parts = iter(parts)
        window = []
        for part in parts:
            self.parts_read += 1
            window.append(list(part))
            if len(window) > self.ahead:
                yield self.encoder(window.pop(0))
        while window:
            yield self.encoder(window.pop(0))


def test_streaming_encoder_gets_only_the_missing_chunks(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    expected = EmbeddingCache(tmp_path / "plain", 10).encode(TEXTS, SETTINGS, CountingEncoder())
    dying = CountingEncoder(fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        cache.encode(TEXTS, SETTINGS, dying)  # chunk 0 finished, then killed
    stream = CountingStream()
    result = cache.encode(TEXTS, SETTINGS, CountingEncoder(), stream_fn=stream)
    assert stream.parts_read == 2 and stream.encoder.encoded == 15
    np.testing.assert_array_equal(result, expected)
    again = CountingStream()
    np.testing.assert_array_equal(
        cache.encode(TEXTS, SETTINGS, CountingEncoder(), stream_fn=again), expected
    )
    assert again.parts_read == 0


def test_an_entry_keeps_the_chunk_size_it_started_with(tmp_path):
    EmbeddingCache(tmp_path, chunk_size=10).encode(TEXTS, SETTINGS, CountingEncoder())
    other = EmbeddingCache(tmp_path, chunk_size=4)
    enc = CountingEncoder()
    chunks = list(other.iter_chunks(TEXTS, SETTINGS, enc))
    assert [len(c) for c in chunks] == [10, 10, 5] and enc.encoded == 0


def test_a_failed_chunk_write_is_an_error(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path, chunk_size=10)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cache, "_write_chunk", broken)
    with pytest.raises(OSError, match="disk full"):
        cache.encode(TEXTS, SETTINGS, CountingEncoder())


def test_computed_chunks_are_read_only_for_the_consumer(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    for chunk in cache.iter_chunks(TEXTS, SETTINGS, CountingEncoder()):
        with pytest.raises(ValueError, match="read-only"):
            chunk[0, 0] = 0.0
    again = cache.encode(TEXTS, SETTINGS, CountingEncoder())
    np.testing.assert_array_equal(again, CountingEncoder()(TEXTS))


def test_a_failed_write_stops_the_encoding_early(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    monkeypatch.setattr(cache, "_write_chunk", lambda *a: (_ for _ in ()).throw(OSError("full")))
    enc = CountingEncoder()
    texts = [f"text {i}" for i in range(100)]
    with pytest.raises(OSError, match="full"):
        cache.encode(texts, SETTINGS, enc)
    assert enc.encoded <= 30  # known by the third chunk at the latest, not after all ten


def test_a_damaged_meta_json_is_replaced(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    first = cache.encode(TEXTS, SETTINGS, CountingEncoder())
    meta = cache.folder(cache_key(SETTINGS, TEXTS)) / "meta.json"
    meta.write_text("{")
    enc = CountingEncoder()
    np.testing.assert_array_equal(cache.encode(TEXTS, SETTINGS, enc), first)
    assert enc.encoded == 0 and json.loads(meta.read_text())["chunk_size"] == 10


def test_the_vectors_served_are_the_bytes_verified(tmp_path, monkeypatch):
    """Another writer replaces a chunk's .npy right after this one hashed it: the vectors
    served must still be the ones hashed, never the unverified replacement."""
    import hashlib
    import types

    cache = EmbeddingCache(tmp_path, chunk_size=10)
    good = cache.encode(TEXTS, SETTINGS, CountingEncoder())
    folder = cache.folder(cache_key(SETTINGS, TEXTS))
    np.save(folder / "other.npy", np.zeros((10, 8), dtype=np.float32))
    swapped = []

    def sha256(data=b""):
        digest = hashlib.sha256(data)
        if not swapped and data[:6] == b"\x93NUMPY":  # chunk 0's bytes, just hashed
            (folder / "other.npy").replace(folder / "chunk_00000.npy")
            swapped.append(True)
        return digest

    monkeypatch.setattr("helpers.cache.chunks.hashlib", types.SimpleNamespace(sha256=sha256))
    served = np.array(next(iter(cache.iter_chunks(TEXTS, SETTINGS, CountingEncoder()))))
    assert swapped
    np.testing.assert_array_equal(served, good[:10])


def test_no_lock_or_temporary_is_left_after_encoding(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    cache.encode(TEXTS, SETTINGS, CountingEncoder())
    folder = cache.folder(cache_key(SETTINGS, TEXTS))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["meta.json"] + [f"chunk_0000{i}.{ext}" for i in range(3) for ext in ("npy", "json")]
    )


class MockModel(EncoderBase):
    """An encoder of the project's kind without a model: :class:`CountingEncoder` vectors."""

    def __init__(self, **kwargs):
        settings = dict(
            name="mock", revision="r1", backend="mock", device="cpu", use_fp16=False,
            query_instruction="q: ", batch_size=8, show_progress=False, model=None, dim=8,
        )  # fmt: skip
        super().__init__(**{**settings, **kwargs})
        self.counter = CountingEncoder()

    def encode_queries(self, texts):
        return self.counter([self.query_instruction + t for t in texts])

    def encode_corpus(self, texts):
        return self.counter(texts)


def test_any_encoder_can_be_cached_and_stays_itself(tmp_path):
    model = MockModel()
    encoder = cached(model, tmp_path)
    assert encoder.cache.chunk_size == 1024 and encoder.encoder is model
    first = encoder.encode_corpus(TEXTS)
    np.testing.assert_array_equal(first, CountingEncoder()(TEXTS))
    np.testing.assert_array_equal(encoder.encode_corpus(TEXTS), first)
    assert model.counter.encoded == 25 and encoder.cache.hits == 1
    queries = encoder.encode_queries(TEXTS[:3])  # another kind: another key
    np.testing.assert_array_equal(queries, CountingEncoder()(["q: " + t for t in TEXTS[:3]]))
    assert model.counter.encoded == 28
    identity = (encoder.name, encoder.dim, encoder.device, encoder.dtype)
    assert identity == ("mock", 8, "cpu", "float32")
    assert encoder.settings() == model.settings()
    assert encoder.model_fingerprint() == model.model_fingerprint()
    assert encoder.fingerprint("query") == model.fingerprint("query")
    keys = {p.parent.name for p in tmp_path.glob("*/meta.json")}
    assert keys == {
        cache_key(model.fingerprint("document"), TEXTS),
        cache_key(model.fingerprint("query"), TEXTS[:3]),
    }
    given = cached(MockModel(), EmbeddingCache(tmp_path / "given", chunk_size=4))
    assert given.cache.chunk_size == 4 and len(given.encode_corpus(TEXTS)) == 25


def test_fingerprint_kind_is_checked():
    with pytest.raises(ValueError, match=r"kind: expected one of \['query', 'document', 'mteb'\]"):
        MockModel().fingerprint("passage")


# -- an entry planned here, its chunks computed by other writers (e.g. Ray workers) ----


def _chunks(indices, size=10, texts=TEXTS):
    return {i: texts[i * size : (i + 1) * size] for i in indices}


def test_chunks_computed_by_shard_are_what_encode_reads(tmp_path):
    """Two shards of an entry computed separately (one overlapping the other): each chunk
    is computed once, the finished one is read, and ``encode`` then reads every chunk and
    gives exactly the vectors of a plain encoding."""
    expected = EmbeddingCache(tmp_path / "plain", 10).encode(TEXTS, SETTINGS, CountingEncoder())
    cache = EmbeddingCache(tmp_path / "shared", chunk_size=10)
    plan = cache.plan_entry(TEXTS, SETTINGS)
    assert plan.key == cache_key(SETTINGS, TEXTS)
    assert (plan.rows, plan.chunk_size, plan.chunks) == (25, 10, 3)
    assert (plan.found, plan.missing) == ((), (0, 1, 2))
    assert [plan.span(i) for i in range(3)] == [(0, 10), (10, 20), (20, 25)]
    first = CountingEncoder()
    work = EmbeddingCache(tmp_path / "shared", 10).compute_chunks(
        plan.key, SETTINGS, 25, _chunks([2, 0]), first
    )
    assert (work.computed, work.found, work.waited) == (2, 0, 0)
    assert first.encoded == 15  # chunks 0 (10 texts) and 2 (5 texts)
    replan = cache.plan_entry(TEXTS, SETTINGS)
    assert (replan.found, replan.missing) == ((0, 2), (1,))
    second = CountingEncoder()
    work = EmbeddingCache(tmp_path / "shared", 10).compute_chunks(
        plan.key, SETTINGS, 25, _chunks([1, 2]), second
    )
    assert (work.computed, work.found) == (1, 1) and second.encoded == 10
    reader = CountingEncoder()
    np.testing.assert_array_equal(cache.encode(TEXTS, SETTINGS, reader), expected)
    assert reader.calls == 0 and (cache.hits, cache.computed_chunks) == (3, 0)


def test_compute_chunks_streams_its_chunks_as_encode_does(tmp_path):
    expected = EmbeddingCache(tmp_path / "plain", 10).encode(TEXTS, SETTINGS, CountingEncoder())
    cache = EmbeddingCache(tmp_path / "shared", chunk_size=10)
    plan = cache.plan_entry(TEXTS, SETTINGS)
    stream = CountingStream()
    work = cache.compute_chunks(plan.key, SETTINGS, 25, _chunks([0, 2]), CountingEncoder(), stream)
    assert work.computed == 2 and stream.parts_read == 2 and stream.encoder.encoded == 15
    reader = CountingEncoder()
    np.testing.assert_array_equal(cache.encode(TEXTS, SETTINGS, reader), expected)
    assert reader.encoded == 10  # chunk 1 only


def test_a_damaged_chunk_is_planned_missing_and_recomputed(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    first = cache.encode(TEXTS, SETTINGS, CountingEncoder())
    npy = cache.folder(cache_key(SETTINGS, TEXTS)) / "chunk_00001.npy"
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF
    npy.write_bytes(bytes(data))
    plan = cache.plan_entry(TEXTS, SETTINGS)
    assert (plan.found, plan.missing) == ((0, 2), (1,))
    enc = CountingEncoder()
    work = cache.compute_chunks(plan.key, SETTINGS, 25, _chunks(plan.missing), enc)
    assert (work.computed, work.found, enc.encoded) == (1, 0, 10)
    np.testing.assert_array_equal(cache.encode(TEXTS, SETTINGS, CountingEncoder()), first)


def test_an_entry_planned_with_an_older_chunk_size_keeps_it(tmp_path):
    EmbeddingCache(tmp_path, chunk_size=10).plan_entry(TEXTS, SETTINGS)
    plan = EmbeddingCache(tmp_path, chunk_size=4).plan_entry(TEXTS, SETTINGS)
    assert (plan.chunk_size, plan.missing) == (10, (0, 1, 2))


@pytest.mark.parametrize(
    ("rows", "chunks", "message"),
    [
        (25, {3: TEXTS[:5]}, "chunks: an entry of 25 rows in chunks of 10 has chunks 0 to 2"),
        (25, {-1: TEXTS[:5]}, "got chunk -1"),
        (25, {"0": TEXTS[:10]}, "chunks: expected integer chunk numbers, got '0'"),
        (25, {2: TEXTS[:10]}, "chunks: chunk 2 of an entry of 25 rows in chunks of 10 holds 5"),
        (-1, {}, "rows: expected the entry's number of texts"),
    ],
)
def test_compute_chunks_checks_its_chunks(tmp_path, rows, chunks, message):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    enc = CountingEncoder()
    with pytest.raises(ValueError, match=message):
        cache.compute_chunks(cache_key(SETTINGS, TEXTS), SETTINGS, rows, chunks, enc)
    assert enc.calls == 0


def test_span_names_a_chunk_outside_the_entry(tmp_path):
    plan = EmbeddingCache(tmp_path, chunk_size=10).plan_entry(TEXTS, SETTINGS)
    with pytest.raises(ValueError, match=r"index: expected a chunk number in \[0, 3\), got 3"):
        plan.span(3)
