"""FAISS index: exact search against NumPy, save/load round trip, approximate indexes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.index import DocIndex, SearchIndexError, build_index


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Seeded random unit vectors (a mock encoder's output)."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


DOCS = _vectors(500, 32, seed=0)
QUERIES = _vectors(40, 32, seed=1)
DOC_IDS = [f"doc{i:03d}" for i in range(len(DOCS))]


def test_flat_search_equals_numpy():
    index = build_index(DOCS, DOC_IDS)
    scores, positions = index.search(QUERIES, k=10, batch_size=7)
    expected = np.argsort(-(QUERIES @ DOCS.T), axis=1)[:, :10]
    np.testing.assert_array_equal(positions, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(QUERIES @ DOCS.T, expected, 1), atol=1e-5)


def test_search_run_uses_document_ids():
    index = build_index(DOCS, DOC_IDS)
    run = index.search_run([f"q{i}" for i in range(len(QUERIES))], QUERIES, k=5)
    best = int(np.argmax(QUERIES[0] @ DOCS.T))
    assert max(run["q0"], key=run["q0"].get) == DOC_IDS[best]
    assert all(len(hits) == 5 for hits in run.values())


def test_k_larger_than_index():
    index = build_index(DOCS[:3], DOC_IDS[:3])
    run = index.search_run(["q"], QUERIES[:1], k=100)
    assert sorted(run["q"]) == DOC_IDS[:3]


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF8,Flat"])
def test_save_load_round_trip_identical(tmp_path, factory):
    index = build_index(DOCS, DOC_IDS, factory=factory)
    before = index.search(QUERIES, k=10)
    index.save(tmp_path / "idx")
    loaded = DocIndex.load(tmp_path / "idx")
    after = loaded.search(QUERIES, k=10)
    assert loaded.doc_ids == DOC_IDS and loaded.factory == factory and loaded.metric == "ip"
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])
    assert not list((tmp_path / "idx").glob("*.tmp"))


def test_approximate_index_finds_most_exact_neighbours():
    exact = build_index(DOCS, DOC_IDS).search(QUERIES, k=10)[1]
    approx = build_index(DOCS, DOC_IDS, factory="HNSW32").search(QUERIES, k=10)[1]
    overlap = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert overlap > 0.9


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(SearchIndexError, match="index_factory"):
        build_index(DOCS, DOC_IDS, factory="NoSuchIndex")
    with pytest.raises(SearchIndexError, match="metric"):
        build_index(DOCS, DOC_IDS, metric="cosine")
    with pytest.raises(SearchIndexError, match="one row per document id"):
        build_index(DOCS, DOC_IDS[:-1])
    with pytest.raises(SearchIndexError, match="unique"):
        build_index(DOCS[:2], ["a", "a"])
    index = build_index(DOCS, DOC_IDS)
    with pytest.raises(SearchIndexError, match=r"shape \(n, 32\)"):
        index.search(_vectors(2, 16, seed=3), k=1)
    with pytest.raises(SearchIndexError, match="missing index.faiss"):
        DocIndex.load(tmp_path)
    index.save(tmp_path / "x")
    (tmp_path / "x" / "doc_ids.json").write_text('["only-one"]')
    with pytest.raises(SearchIndexError, match="500 vectors"):
        DocIndex.load(tmp_path / "x")


def test_load_refuses_an_index_of_another_model(tmp_path):
    build_index(DOCS, DOC_IDS).save(tmp_path / "idx")
    with pytest.raises(SearchIndexError, match="dimension 32, the model's have 384"):
        DocIndex.load(tmp_path / "idx", expected_dim=384)
    with pytest.raises(SearchIndexError, match="metric 'ip', expected 'l2'"):
        DocIndex.load(tmp_path / "idx", expected_dim=32, expected_metric="l2")
    assert DocIndex.load(tmp_path / "idx", expected_dim=32, expected_metric="ip").size == 500


def test_load_refuses_a_truncated_index(tmp_path):
    build_index(DOCS, DOC_IDS).save(tmp_path / "idx")
    data = (tmp_path / "idx" / "index.faiss").read_bytes()
    (tmp_path / "idx" / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(SearchIndexError, match="unreadable or truncated"):
        DocIndex.load(tmp_path / "idx")


def test_check_factory_before_any_encoding():
    from helpers.index import check_factory

    for factory in ("Flat", "HNSW32", "IVF256,Flat", "IVF64,PQ16", "SQ8"):
        check_factory(factory, dim=384)
    with pytest.raises(SearchIndexError, match="index_factory: FAISS rejected 'HNSWx'.*examples"):
        check_factory("HNSWx", dim=384)
    with pytest.raises(SearchIndexError, match="index_factory"):
        check_factory("PQ7", dim=384)  # 7 does not divide 384
    with pytest.raises(SearchIndexError, match="metric"):
        check_factory("Flat", metric="dot")


def test_top_k_overlap_of_approximate_index():
    from helpers.index import top_k_overlap

    qids = [f"q{i}" for i in range(len(QUERIES))]
    exact = build_index(DOCS, DOC_IDS).search_run(qids, QUERIES, k=10)
    assert top_k_overlap(exact, exact, 10) == 1.0
    coarse = build_index(DOCS, DOC_IDS, factory="IVF16,PQ4").search_run(qids, QUERIES, k=10)
    overlap = top_k_overlap(coarse, exact, 10)
    assert 0.0 < overlap < 1.0
    # by hand: one of two exact documents kept
    assert top_k_overlap({"q": {"a": 1.0, "z": 0.5}}, {"q": {"a": 1.0, "b": 0.9}}, 2) == 0.5


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "SQ8"])
def test_index_from_chunks_equals_index_from_all_vectors(factory):
    from helpers.index import build_index_from_chunks

    chunks = [DOCS[i : i + 64] for i in range(0, len(DOCS), 64)]
    streamed = build_index_from_chunks(iter(chunks), DOC_IDS, factory=factory, train_size=200)
    whole = build_index(DOCS, DOC_IDS, factory=factory)
    assert streamed.size == whole.size == len(DOCS)
    if factory.startswith("IVF"):  # probe every list: search is then exact
        import faiss

        for idx in (streamed, whole):
            faiss.extract_index_ivf(idx.index).nprobe = 8
    s_pos = streamed.search(QUERIES, k=10)[1]
    w_pos = whole.search(QUERIES, k=10)[1]
    if factory == "Flat":
        np.testing.assert_array_equal(s_pos, w_pos)
    else:  # trained on a sample: close, not identical
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(s_pos, w_pos, strict=True)])
        assert overlap > 0.95
    with pytest.raises(SearchIndexError, match="vectors for"):
        build_index_from_chunks(iter(chunks), DOC_IDS[:-1])


def test_estimate_resources_full_msmarco():
    from helpers.index import estimate_resources

    flat = estimate_resources(8_841_823, 384, passages_per_s=50, factory="Flat")
    assert flat["vectors_gb"] == pytest.approx(8_841_823 * 384 * 4 / 1e9)
    assert flat["index_gb"] == pytest.approx(flat["vectors_gb"])
    assert flat["encode_hours"] == pytest.approx(8_841_823 / 50 / 3600)
    pq = estimate_resources(8_841_823, 384, passages_per_s=50, factory="IVF4096,PQ48")
    assert pq["index_gb"] == pytest.approx(8_841_823 * (48 + 8) / 1e9)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_torch_exact_search_equals_faiss_flat(metric):
    rng = np.random.default_rng(7)
    docs = rng.standard_normal((3000, 32)).astype(np.float32)
    queries = rng.standard_normal((50, 32)).astype(np.float32)
    ids = [f"d{i}" for i in range(len(docs))]
    faiss_scores, faiss_pos = build_index(docs, ids, metric=metric).search(queries, 10)
    index = build_index(docs, ids, metric=metric).to_device("cpu", engine="torch")
    assert index.engine == "torch"
    index.torch_block = 700  # several document blocks, merged
    scores, pos = index.search(queries, 10, batch_size=16)
    np.testing.assert_array_equal(pos, faiss_pos)
    np.testing.assert_allclose(scores, faiss_scores, rtol=1e-4, atol=1e-3)


def test_device_choices_are_checked():
    docs = np.eye(8, dtype=np.float32)
    ids = [str(i) for i in range(8)]
    with pytest.raises(SearchIndexError, match="needs a Flat index"):
        build_index(docs, ids, factory="HNSW8").to_device("cpu", engine="torch")
    with pytest.raises(SearchIndexError, match="engine: expected"):
        build_index(docs, ids).to_device("cpu", engine="gpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(SearchIndexError, match="no GPU is visible"):
            build_index(docs, ids).to_device("cuda")
    assert build_index(docs, ids).to_device("auto").engine in {"faiss", "torch", "faiss-gpu"}


class _GpuCopy:
    """Stands in for a FAISS GPU index (faiss-cpu has none): searches through its CPU twin."""

    def __init__(self, cpu_index, where):
        self.cpu, self.where = cpu_index, where
        self.d, self.ntotal = cpu_index.d, cpu_index.ntotal

    def search(self, queries, k):
        return self.cpu.search(queries, k)


def test_gpu_faiss_moves_never_stack_and_save_writes_the_cpu_index(tmp_path, monkeypatch):
    """The plumbing around FAISS's GPU calls, with the GPU calls replaced."""
    import types

    import faiss
    import torch

    import helpers.index as I

    fake = types.SimpleNamespace(
        get_num_gpus=lambda: 2,
        StandardGpuResources=lambda: "resources",
        index_cpu_to_gpu=lambda res, n, index: _GpuCopy(index, f"gpu {n}"),
        index_cpu_to_all_gpus=lambda index: _GpuCopy(index, "all gpus"),
        write_index=faiss.write_index,
        read_index=faiss.read_index,
    )
    index = build_index(DOCS, DOC_IDS, factory="HNSW8")  # approximate: GPU FAISS, not torch
    cpu_index = index.index
    expected = index.search(QUERIES, 5)
    monkeypatch.setattr(I, "_faiss", lambda: fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    index.to_device("cuda:1")
    assert (index.engine, index.index.where, index.index.cpu) == ("faiss-gpu", "gpu 1", cpu_index)
    index.to_device("cuda")
    assert index.index.where == "all gpus" and index.index.cpu is cpu_index  # not a copy of a copy
    for a, b in zip(index.search(QUERIES, 5), expected, strict=True):
        np.testing.assert_array_equal(a, b)
    index.save(tmp_path / "idx")  # writes the CPU index
    assert DocIndex.load(tmp_path / "idx").size == len(DOCS)
    index.to_device("cpu")
    assert index.engine == "faiss" and index.index is cpu_index
