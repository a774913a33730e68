"""A corpus too large to load: streamed records -> cached chunks -> index, resumable."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_cache import MockModel

from conftest import DATA, CountingEncoder, write_jsonl
from helpers.cache import EmbeddingCache
from helpers.data import DataError, load_retrieval_data, stream_corpus
from helpers.hub import hub_offline_reason
from helpers.index import build_index, build_index_from_stream

SETTINGS = {"model": "mock", "dim": 8}


def mock_encode(texts):
    """Seeded vectors per text (the mock encoder's, without the counting)."""
    return CountingEncoder()(texts)


def records(n: int, changed: int | None = None):
    for i in range(n):
        yield f"d{i}", f"passage {i}" + (" (edited)" if i == changed else "")


def test_stream_corpus_reads_the_shipped_corpus_in_order():
    streamed = list(stream_corpus(DATA / "msmarco-dl19" / "beir"))
    loaded = load_retrieval_data(DATA / "msmarco-dl19" / "beir").corpus
    assert streamed == list(loaded.items())
    assert len(streamed) == 10852
    assert list(stream_corpus(DATA / "msmarco-dl19" / "beir", limit=3)) == streamed[:3]


def test_stream_corpus_hub_layout_gets_record_numbers_as_ids(hub_folder):
    assert list(stream_corpus(hub_folder / "corpus.jsonl"))[:2] == [
        ("0", "Cats purr."),
        ("1", "Dogs bark."),
    ]


@pytest.mark.parametrize(
    ("records_", "message"),
    [
        ([{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}], "record 1: duplicate id 'a'"),
        ([{"_id": "a", "text": "  "}], "record 0: empty text"),
        ([{"_id": "a", "body": "x"}], r"record 0: missing column\(s\) \['text'\]"),
    ],
)
def test_stream_corpus_errors_name_the_record(tmp_path, records_, message):
    path = write_jsonl(tmp_path / "corpus.jsonl", records_)
    with pytest.raises(DataError, match=message):
        list(stream_corpus(path))


def test_stream_corpus_bad_source(tmp_path):
    with pytest.raises(DataError, match="neither an existing folder/file nor a hub id"):
        list(stream_corpus(tmp_path / "missing" / "corpus.jsonl"))
    with pytest.raises(DataError, match=r"no corpus\.jsonl"):
        list(stream_corpus(tmp_path))


@pytest.mark.skipif(hub_offline_reason() is None, reason="the hub is reachable here")
def test_stream_from_the_hub_fails_fast_offline():
    start = time.monotonic()
    with pytest.raises(DataError, match=r"msmarco-corpus.*not reachable"):
        next(stream_corpus("namespace-Pt/msmarco-corpus"))
    assert time.monotonic() - start < 5


def test_streamed_encoding_is_cached_resumes_and_checks_each_chunk(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_size=10)
    dying = CountingEncoder(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        list(cache.encode_records(records(45), SETTINGS, "toy", dying, window=2))
    assert dying.encoded == 30

    resumed = CountingEncoder()
    chunks = list(cache.encode_records(records(45), SETTINGS, "toy", resumed, window=2))
    assert resumed.encoded == 15  # only the chunks not finished
    ids = [i for chunk_ids, _ in chunks for i in chunk_ids]
    assert ids == [f"d{i}" for i in range(45)]
    vectors = np.concatenate([v for _, v in chunks])
    np.testing.assert_array_equal(vectors, mock_encode([t for _, t in records(45)]))

    again = CountingEncoder()
    list(cache.encode_records(records(45), SETTINGS, "toy", again))
    assert again.encoded == 0

    edited = CountingEncoder()  # one record changed: only its chunk is encoded again
    out = list(cache.encode_records(records(45, changed=23), SETTINGS, "toy", edited))
    assert edited.encoded == 10
    np.testing.assert_array_equal(out[2][1][3], mock_encode(["passage 23 (edited)"])[0])


def test_index_from_streamed_chunks_equals_index_from_all_vectors(tmp_path):
    cache = EmbeddingCache(tmp_path, chunk_size=64)
    docs = [(f"d{i}", f"passage {i}") for i in range(500)]
    queries = mock_encode([f"query {i}" for i in range(20)])
    streamed = build_index_from_stream(cache.encode_records(docs, SETTINGS, "toy", mock_encode))
    whole = build_index(mock_encode([t for _, t in docs]), [i for i, _ in docs])
    assert streamed.doc_ids == whole.doc_ids
    for a, b in zip(streamed.search(queries, 10), whole.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_real_model_streamed_equals_in_memory(tmp_path):
    from helpers.models import load_encoder

    encoder = load_encoder(cache_dir=tmp_path)
    encoder.cache.chunk_size = 40
    docs = list(stream_corpus(DATA / "msmarco-dl19" / "beir", limit=100))
    chunks = list(encoder.encode_records(iter(docs), "dl19-first-100", window=2))
    assert [len(ids) for ids, _ in chunks] == [40, 40, 20]
    streamed = np.concatenate([v for _, v in chunks])
    np.testing.assert_allclose(
        streamed, encoder.encoder.encode_corpus([t for _, t in docs]), atol=1e-6
    )
    # the same encoder without the cache streams too (nothing kept, nothing to resume)
    ((ids, vectors),) = list(encoder.encoder.encode_records(iter(docs), "dl19-first-100"))
    assert ids == [d for d, _ in docs]
    np.testing.assert_allclose(vectors, streamed, atol=1e-6)


def test_every_encoder_streams_records_without_a_cache():
    model = MockModel()
    docs = list(records(2500))
    chunks = list(model.encode_records(iter(docs), "toy"))
    assert [len(ids) for ids, _ in chunks] == [1024, 1024, 452]  # the CPU chunk size
    assert [i for ids, _ in chunks for i in ids] == [d for d, _ in docs]
    np.testing.assert_array_equal(
        np.concatenate([v for _, v in chunks]), mock_encode([t for _, t in docs])
    )
    with pytest.raises(ValueError, match="window: expected a positive number"):
        model.encode_records(iter(docs), "toy", window=0)  # at the call, not at iteration


def test_hub_branch_streams_through_datasets(tmp_path, monkeypatch):
    """The hub path, with the hub replaced by a local folder of the same layout: `datasets`
    really streams it (an IterableDataset), record by record."""
    import shutil
    import sys

    import datasets

    D = sys.modules[stream_corpus.__module__]  # where stream_corpus looks the hub up

    folder = tmp_path / "msmarco-corpus"
    folder.mkdir()
    shutil.copy(DATA / "msmarco-dl19" / "corpus.jsonl.gz", folder / "corpus.jsonl.gz")
    real_load = datasets.load_dataset
    calls = []

    def local_hub(name, split, streaming):
        calls.append((name, split, streaming))
        return real_load(str(folder), split=split, streaming=streaming)

    monkeypatch.setattr(D, "require_hub", lambda *args: None)
    monkeypatch.setattr(datasets, "load_dataset", local_hub)
    streamed = list(stream_corpus("namespace-Pt/msmarco-corpus", limit=50))
    assert calls == [("namespace-Pt/msmarco-corpus", "train", True)]
    assert streamed == list(stream_corpus(folder / "corpus.jsonl.gz", limit=50))
    assert streamed[0][0] == "0" and streamed[0][1].startswith("Fields of Anthropology")


def test_bad_window_and_limit_are_named(tmp_path):
    with pytest.raises(ValueError, match="window"):
        list(
            EmbeddingCache(tmp_path).encode_records(
                records(3), SETTINGS, "toy", mock_encode, window=0
            )
        )
    with pytest.raises(DataError, match="limit"):
        next(stream_corpus(DATA / "msmarco-dl19" / "beir", limit=-1))
