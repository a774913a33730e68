"""FAISS index: exact search against NumPy, save/load round trip, approximate indexes, errors."""

from __future__ import annotations

import sys
import types

import faiss
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
    coarse = build_index(DOCS, DOC_IDS, factory="IVF16,PQ4np").search_run(qids, QUERIES, k=10)
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
    index = build_index(docs, ids, metric=metric).to_device("cpu", searcher="torch")
    assert index.searcher == "torch"
    index.torch_block = 700  # several document blocks, merged
    scores, pos = index.search(queries, 10, batch_size=16)
    np.testing.assert_array_equal(pos, faiss_pos)
    np.testing.assert_allclose(scores, faiss_scores, rtol=1e-4, atol=1e-3)


def test_device_choices_are_checked():
    docs = np.eye(8, dtype=np.float32)
    ids = [str(i) for i in range(8)]
    with pytest.raises(SearchIndexError, match="needs a Flat index"):
        build_index(docs, ids, factory="HNSW8").to_device("cpu", searcher="torch")
    with pytest.raises(SearchIndexError, match="searcher: expected"):
        build_index(docs, ids).to_device("cpu", searcher="gpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(SearchIndexError, match="no GPU is visible"):
            build_index(docs, ids).to_device("cuda")


def test_auto_device_picks_the_searcher_this_machine_has():
    """``to_device("auto")`` on what torch and FAISS report here: FAISS's GPU index when
    FAISS sees a GPU, torch on a GPU without GPU FAISS (Flat), FAISS on the CPU without a
    GPU (this project's default machine)."""
    import torch

    gpu = torch.cuda.is_available()
    gpu_faiss = gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    expected = "faiss-gpu" if gpu_faiss else "torch" if gpu else "faiss"
    index = build_index(DOCS, DOC_IDS).to_device("auto")
    assert index.searcher == expected
    if not gpu:
        assert (index.searcher, index._vectors, index._cpu_index) == ("faiss", None, None)


@pytest.mark.parametrize(
    ("gpus_faiss_sees", "factory", "expected"),
    [(1, "Flat", "faiss-gpu"), (0, "Flat", "torch"), (0, "HNSW8", "faiss")],
)
def test_auto_device_on_a_gpu_machine(monkeypatch, gpus_faiss_sees, factory, expected):
    """A GPU visible to torch (patched): GPU FAISS when it sees a GPU, else exact torch
    search for Flat, else FAISS on the CPU; the hits are those of the CPU index."""
    import torch

    index = build_index(DOCS, DOC_IDS, factory=factory)
    before = index.search(QUERIES, 10)
    fake = _fake_gpu_faiss() if gpus_faiss_sees else types.SimpleNamespace(get_num_gpus=lambda: 0)
    monkeypatch.setitem(sys.modules, "faiss", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # no CUDA in this torch build: tensors "moved" to the GPU stay where they are
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *args, **kwargs: self)
    assert index.to_device("auto").searcher == expected
    after = index.search(QUERIES, 10)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5, atol=1e-5)


class _GpuCopy:
    """Stands in for a FAISS GPU index (faiss-cpu has none): searches through its CPU twin."""

    def __init__(self, cpu_index, where):
        self.cpu, self.where = cpu_index, where
        self.d, self.ntotal = cpu_index.d, cpu_index.ntotal

    def search(self, queries, k):
        return self.cpu.search(queries, k)


def test_gpu_faiss_moves_never_stack_and_save_writes_the_cpu_index(tmp_path, monkeypatch):
    """The plumbing around FAISS's GPU calls, with the GPU calls replaced."""
    import torch

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
    monkeypatch.setitem(sys.modules, "faiss", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    index.to_device("cuda:1")
    assert (index.searcher, index.index.where, index.index.cpu) == ("faiss-gpu", "gpu 1", cpu_index)
    index.to_device("cuda")
    assert index.index.where == "all gpus" and index.index.cpu is cpu_index  # not a copy of a copy
    for a, b in zip(index.search(QUERIES, 5), expected, strict=True):
        np.testing.assert_array_equal(a, b)
    index.save(tmp_path / "idx")  # writes the CPU index
    assert DocIndex.load(tmp_path / "idx").size == len(DOCS)
    index.to_device("cpu")
    assert index.searcher == "faiss" and index.index is cpu_index


# --- search parameters -------------------------------------------------------------------

EXACT_TOP10 = np.argsort(-(QUERIES @ DOCS.T), axis=1)[:, :10]


def faiss_ivf(index):
    return faiss.extract_index_ivf(index)


def faiss_hnsw(index):
    return faiss.downcast_index(index).hnsw


def _overlap_with_exact(positions: np.ndarray) -> float:
    return float(
        np.mean([len(set(a) & set(e)) / 10 for a, e in zip(positions, EXACT_TOP10, strict=True)])
    )


@pytest.mark.parametrize(
    ("factory", "params", "read_back"),
    [
        ("IVF8,Flat", "nprobe=8", lambda i: faiss_ivf(i).nprobe),  # every list: exact
        ("HNSW8", "efSearch=200", lambda i: faiss_hnsw(i).efSearch),
    ],
)
def test_search_params_turn_approximate_search_exact(factory, params, read_back):
    default = build_index(DOCS, DOC_IDS, factory=factory)
    tuned = build_index(DOCS, DOC_IDS, factory=factory, search_params=params)
    # the defaults (nprobe=1, efSearch=16) miss neighbours; the tuned index finds numpy's
    assert _overlap_with_exact(default.search(QUERIES, k=10)[1]) < 0.9
    np.testing.assert_array_equal(tuned.search(QUERIES, k=10)[1], EXACT_TOP10)
    assert tuned.search_params == params and default.search_params == ""
    assert read_back(tuned.index) == int(params.split("=")[1])


def test_set_search_params_applies_merges_and_keeps_unnamed_ones():
    index = build_index(DOCS, DOC_IDS, factory="IVF8,Flat")
    assert faiss_ivf(index.index).nprobe == 1
    assert index.set_search_params("nprobe=2") is index
    assert faiss_ivf(index.index).nprobe == 2
    two_lists = index.search(QUERIES, k=10)[1]
    assert 0.5 < _overlap_with_exact(two_lists) < 1.0
    index.set_search_params("nprobe=8")
    np.testing.assert_array_equal(index.search(QUERIES, k=10)[1], EXACT_TOP10)
    # IVF with an HNSW quantizer: two parameters, set one call at a time
    nested = build_index(DOCS, DOC_IDS, factory="IVF8_HNSW4,Flat")
    nested.set_search_params("nprobe=4").set_search_params(" quantizer_efSearch=64 ,")
    assert nested.search_params == "nprobe=4,quantizer_efSearch=64"

    ivf = faiss_ivf(nested.index)
    assert ivf.nprobe == 4 and faiss.downcast_index(ivf.quantizer).hnsw.efSearch == 64
    nested.set_search_params("")  # nothing named, nothing changed
    assert nested.search_params == "nprobe=4,quantizer_efSearch=64" and ivf.nprobe == 4


@pytest.mark.parametrize(
    ("factory", "params", "message"),
    [
        ("IVF64,Flat", "efSearch=64", r"search_params: .*'efSearch=64'.*'IVF64,Flat'.*: nprobe$"),
        ("HNSW32", "nprobe=32", r"search_params: .*'nprobe=32'.*'HNSW32'.*accepts: efSearch$"),
        ("Flat", "nprobe=1", r"search_params: .*'nprobe=1'.*'Flat'.*takes no search parameters"),
        ("IVF64,Flat", "nprobe=4,efSearch=16", r"cannot set 'efSearch=16'.*accepts: nprobe"),
        (
            "IVF64_HNSW32,Flat",
            "nprobe=4,efsearch=16",  # names are case-sensitive
            r"'efsearch=16'.*accepts: nprobe, quantizer_efSearch$",
        ),
        ("IVF64,Flat", "nprobe=x", r"search_params: cannot read 'nprobe=x'.*name=number"),
        ("IVF64,Flat", "nprobe", r"search_params: cannot read 'nprobe'"),
        ("IVF64,Flat", "nprobe = 4", r"search_params: cannot read 'nprobe = 4'"),
        ("IVF64,Flat", "nprobe=0", r"search_params: 'nprobe=0': nprobe must be a positive integer"),
        ("IVF64,Flat", "nprobe=-1", r"nprobe must be a positive integer"),  # FAISS: 2**64-1
        ("HNSW32", "efSearch=2.5", r"efSearch must be a positive integer"),
        ("IVF64,Flat", "nprobe=4,nprobe=8", r"search_params: nprobe is given twice"),
    ],
)
def test_check_search_params_names_the_bad_part_and_what_is_accepted(factory, params, message):
    from helpers.index import check_search_params

    with pytest.raises(SearchIndexError, match=message):
        check_search_params(factory, params, dim=384)


def test_check_search_params_accepts_faiss_syntax_before_any_encoding():
    from helpers.index import check_search_params

    for factory, params in [
        ("Flat", ""),
        ("IVF4096,PQ48", "nprobe=64"),
        ("HNSW32", "efSearch=128"),
        ("IVF64_HNSW32,Flat", "nprobe=16,quantizer_efSearch=64"),
        ("OPQ16,IVF64,PQ16", "nprobe=8,ht=12"),
    ]:
        check_search_params(factory, params, dim=384)
    with pytest.raises(SearchIndexError, match="index_factory: FAISS rejected 'NoSuch'"):
        check_search_params("NoSuch", "nprobe=1")


def test_bad_search_params_fail_before_training_and_before_the_first_chunk():
    from helpers.index import build_index_from_chunks

    # 10 vectors cannot train IVF64: the parameter error comes first, so nothing was trained
    with pytest.raises(SearchIndexError, match="search_params: .*'efSearch=8'"):
        build_index(DOCS[:10], DOC_IDS[:10], factory="IVF64,Flat", search_params="efSearch=8")
    read = []

    def chunks():
        read.append(1)
        yield DOCS

    with pytest.raises(SearchIndexError, match="search_params: cannot read 'nprobe'"):
        build_index_from_chunks(chunks(), DOC_IDS, factory="IVF8,Flat", search_params="nprobe")
    with pytest.raises(SearchIndexError, match="search_params: .*'efSearch=8'.*accepts: nprobe"):
        build_index_from_chunks(chunks(), DOC_IDS, factory="IVF8,Flat", search_params="efSearch=8")
    assert read == [1]  # the form was refused before the first chunk, the name at the first


def test_chunked_and_streamed_indexes_take_search_params():
    from helpers.index import build_index_from_chunks, build_index_from_stream

    chunks = [DOCS[i : i + 64] for i in range(0, len(DOCS), 64)]
    from_chunks = build_index_from_chunks(
        iter(chunks), DOC_IDS, factory="IVF8,Flat", train_size=300, search_params="nprobe=8"
    )
    streamed = build_index_from_stream(
        ((DOC_IDS[i : i + 64], DOCS[i : i + 64]) for i in range(0, len(DOCS), 64)),
        factory="IVF8,Flat",
        train_size=300,
        search_params="nprobe=8",
    )
    for index in (from_chunks, streamed):
        assert index.search_params == "nprobe=8" and faiss_ivf(index.index).nprobe == 8
        np.testing.assert_array_equal(index.search(QUERIES, k=10)[1], EXACT_TOP10)


def test_search_params_are_saved_and_reapplied_by_load(tmp_path):
    import json

    index = build_index(DOCS, DOC_IDS, factory="IVF8,Flat", search_params="nprobe=8")
    faiss_ivf(index.index).nprobe = 1  # the FAISS file now says 1, the metadata says 8
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "index_meta.json").read_text())
    assert meta["search_params"] == "nprobe=8"
    loaded = DocIndex.load(tmp_path / "idx")
    assert loaded.search_params == "nprobe=8" and faiss_ivf(loaded.index).nprobe == 8
    np.testing.assert_array_equal(loaded.search(QUERIES, k=10)[1], EXACT_TOP10)
    overridden = DocIndex.load(tmp_path / "idx", search_params="nprobe=2")
    assert overridden.search_params == "nprobe=2" and faiss_ivf(overridden.index).nprobe == 2
    with pytest.raises(SearchIndexError, match="search_params: .*'efSearch=4'.*accepts: nprobe"):
        DocIndex.load(tmp_path / "idx", search_params="efSearch=4")


def test_defaults_leave_the_index_and_its_metadata_as_before(tmp_path):
    """At the defaults nothing changes but two new keys in index_meta.json."""
    import json

    index = build_index(DOCS, DOC_IDS, factory="IVF8,Flat")
    assert faiss_ivf(index.index).nprobe == 1 and index.model_fingerprint == ""
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "index_meta.json").read_text())
    assert meta == {
        "factory": "IVF8,Flat",
        "metric": "ip",
        "dim": 32,
        "size": 500,
        "search_params": "",
        "model_fingerprint": "",
    }
    # an index saved before these keys existed still loads
    for key in ("search_params", "model_fingerprint"):
        del meta[key]
    (tmp_path / "idx" / "index_meta.json").write_text(json.dumps(meta))
    old = DocIndex.load(tmp_path / "idx", expected_dim=32)
    assert (old.search_params, old.model_fingerprint, faiss_ivf(old.index).nprobe) == ("", "", 1)


# --- the model that made the vectors -----------------------------------------------------


def test_load_refuses_an_index_saved_by_another_model_of_the_same_dimension(tmp_path):
    import json

    fingerprint = "all-MiniLM-L6-v2|mean|max_len=256|float32"
    index = build_index(DOCS, DOC_IDS)
    index.save(tmp_path / "idx", model_fingerprint=fingerprint)
    assert index.model_fingerprint == fingerprint
    meta = json.loads((tmp_path / "idx" / "index_meta.json").read_text())
    assert meta["model_fingerprint"] == fingerprint
    same = DocIndex.load(tmp_path / "idx", expected_dim=32, expected_model=fingerprint)
    assert same.model_fingerprint == fingerprint and same.size == 500
    assert DocIndex.load(tmp_path / "idx").model_fingerprint == fingerprint  # not checked
    other = "bge-small-en-v1.5|cls|max_len=512|float32"  # also 32 here: dimension alone passes
    with pytest.raises(
        SearchIndexError,
        match=r"another model or with other settings \(model fingerprint "
        r"'all-MiniLM-L6-v2\|mean\|max_len=256\|float32', expected 'bge-small-en-v1.5\|cls",
    ):
        DocIndex.load(tmp_path / "idx", expected_dim=32, expected_model=other)
    with pytest.raises(SearchIndexError, match="dimension 32, the model's have 384"):
        DocIndex.load(tmp_path / "idx", expected_dim=384, expected_model=fingerprint)
    # saved again without an argument: the fingerprint it has is kept
    same.save(tmp_path / "again")
    assert DocIndex.load(tmp_path / "again", expected_model=fingerprint).size == 500


def test_load_refuses_an_index_that_records_no_model_when_one_is_expected(tmp_path):
    build_index(DOCS, DOC_IDS).save(tmp_path / "idx")
    with pytest.raises(SearchIndexError, match=r"records no model.*expected 'm1'.*rebuild"):
        DocIndex.load(tmp_path / "idx", expected_model="m1")
    assert DocIndex.load(tmp_path / "idx", expected_dim=32).model_fingerprint == ""
    with pytest.raises(SearchIndexError, match="model_fingerprint: expected a string"):
        build_index(DOCS, DOC_IDS).save(tmp_path / "x", model_fingerprint=42)


# --- too few vectors, said before encoding -----------------------------------------------


@pytest.mark.parametrize(
    ("factory", "needed"),
    [
        ("IVF16,Flat", 16),
        ("IVF8_HNSW4,Flat", 8),
        ("PQ4np", 256),
        ("PQ4x4", 16),
        ("IVF4,PQ4np", 256),
    ],
)
def test_check_factory_minimum_vectors_is_faiss_own(factory, needed):
    """The boundary check_factory draws is where FAISS itself fails to train."""
    from helpers.index import check_factory

    def faiss_trains(n: int) -> bool:
        index = faiss.index_factory(32, factory, faiss.METRIC_INNER_PRODUCT)
        try:
            index.train(_vectors(n, 32, seed=5))
        except RuntimeError:
            return False
        return True

    assert faiss_trains(needed) and not faiss_trains(needed - 1)
    with pytest.warns(UserWarning, match="39"):  # enough to train, too few to train well
        check_factory(factory, dim=32, num_vectors=needed)
    with pytest.raises(SearchIndexError, match=f"only {needed - 1} vectors"):
        check_factory(factory, dim=32, num_vectors=needed - 1)


def test_check_factory_says_what_to_do_with_too_many_lists():
    import warnings

    from helpers.index import check_factory

    with pytest.raises(
        SearchIndexError,
        match=r"index_factory: 'IVF64,Flat' has 64 lists \(IVF64\), but there are only 50 "
        r"vectors.*fewer lists, about sqrt\(N\) to 4\*sqrt\(N\) \(IVF7 to IVF28 for N=50",
    ):
        check_factory("IVF64,Flat", dim=384, num_vectors=50)
    with pytest.warns(
        UserWarning, match=r"'IVF64,Flat' has 64 lists .*500.*39 per centroid \(2496"
    ):
        check_factory("IVF64,Flat", dim=384, num_vectors=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 39 * 64 = 2496 vectors: no warning
        check_factory("IVF64,Flat", dim=384, num_vectors=2496)
        check_factory("HNSW32", dim=384, num_vectors=1)  # nothing to train
        check_factory("IVF4096,PQ48", dim=384, num_vectors=8_841_823)
    with pytest.raises(SearchIndexError, match=r"'IVF16,PQ48' trains PQ48 with 256 .*only 200.*x4"):
        check_factory("IVF16,PQ48", dim=384, num_vectors=200)
    with pytest.raises(SearchIndexError, match=r"'OPQ16,IVF4,SQ8' trains OPQ16 with 256"):
        check_factory("OPQ16,IVF4,SQ8", dim=384, num_vectors=100)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(SearchIndexError, match="num_vectors: expected the number"):
            check_factory("Flat", dim=384, num_vectors=bad)
    check_factory("Flat", dim=384, num_vectors=np.int64(1))


def test_build_index_refuses_too_few_vectors_with_a_clear_error():
    from helpers.index import build_index_from_chunks

    with pytest.raises(SearchIndexError, match=r"'IVF64,Flat' has 64 lists \(IVF64\).* 50 vec"):
        build_index(DOCS[:50], DOC_IDS[:50], factory="IVF64,Flat")
    with pytest.raises(SearchIndexError, match=r"trains PQ4 with 256 .* only 100 vectors"):
        build_index(DOCS[:100], DOC_IDS[:100], factory="IVF4,PQ4")
    for empty in (np.zeros((0, 32), np.float32), []):
        with pytest.raises(SearchIndexError, match="embeddings: no vectors to index"):
            build_index(empty, [])
    read = []

    def chunks():
        read.append(1)
        yield DOCS

    # train_size below the lists: refused before the first chunk is read
    with pytest.raises(SearchIndexError, match=r"IVF64.*only 40 vectors.*\(train_size=40\)"):
        build_index_from_chunks(chunks(), DOC_IDS, factory="IVF64,Flat", train_size=40)
    assert read == []
    # a corpus smaller than the lists: refused when it ends, with the same words
    with pytest.raises(SearchIndexError, match=r"IVF64.*only 50 vectors to train on;"):
        build_index_from_chunks(iter([DOCS[:50]]), DOC_IDS[:50], factory="IVF64,Flat")
    with pytest.raises(SearchIndexError, match="train_size: expected a positive integer"):
        build_index_from_chunks(iter([DOCS]), DOC_IDS, train_size=0)


# --- the GPU path ------------------------------------------------------------------------


class _Ranges:
    def __init__(self, names):
        self.names = names

    def size(self):
        return len(self.names)

    def at(self, i):
        return types.SimpleNamespace(name=self.names[i])


class _FakeGpuParameterSpace:
    """Stands in for faiss.GpuParameterSpace: it sets nprobe only, as on GPU IVF indexes."""

    calls: list = []

    def initialize(self, index):
        self.parameter_ranges = _Ranges(["nprobe"])

    def set_index_parameters(self, index, params):
        if params.split("=")[0] != "nprobe":
            raise RuntimeError(f"Error in set_index_parameter: could not set parameter {params}")
        _FakeGpuParameterSpace.calls.append((index.where, params))


def _fake_gpu_faiss(fail_move: bool = False):
    def to_gpu(res, n, index):
        if fail_move:
            raise RuntimeError("Error in clone_Index: This index type is not implemented on GPU.")
        return _GpuCopy(index, f"gpu {n}")

    return types.SimpleNamespace(
        get_num_gpus=lambda: 1,
        StandardGpuResources=lambda: "resources",
        index_cpu_to_gpu=to_gpu,
        index_cpu_to_all_gpus=lambda index: _GpuCopy(index, "all gpus"),
        GpuParameterSpace=_FakeGpuParameterSpace,
        ParameterSpace=faiss.ParameterSpace,
        index_factory=faiss.index_factory,
        METRIC_INNER_PRODUCT=faiss.METRIC_INNER_PRODUCT,
        METRIC_L2=faiss.METRIC_L2,
    )


def test_gpu_copy_gets_the_search_params_through_gpu_parameter_space(monkeypatch):
    """GPU FAISS calls replaced: the parameters reach the GPU copy, and one it refuses
    leaves the index searching on the CPU with a clear error."""
    import torch

    index = build_index(DOCS, DOC_IDS, factory="IVF8_HNSW4,Flat", search_params="nprobe=4")
    cpu_index = index.index
    monkeypatch.setitem(sys.modules, "faiss", _fake_gpu_faiss())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _FakeGpuParameterSpace.calls = []
    index.to_device("cuda:0")
    assert index.searcher == "faiss-gpu" and _FakeGpuParameterSpace.calls == [("gpu 0", "nprobe=4")]
    index.set_search_params("nprobe=8")  # on the GPU copy and on the CPU index kept for save
    assert _FakeGpuParameterSpace.calls[-1] == ("gpu 0", "nprobe=8")
    assert faiss_ivf(cpu_index).nprobe == 8 and index.search_params == "nprobe=8"
    with pytest.raises(SearchIndexError, match=r"'quantizer_efSearch=32' on the GPU copy.*nprobe"):
        index.set_search_params("quantizer_efSearch=32")
    assert index.search_params == "nprobe=8"
    index.to_device("cpu")
    index.set_search_params("quantizer_efSearch=32")  # fine on the CPU
    with pytest.raises(SearchIndexError, match=r"GPU copy of a 'IVF8_HNSW4,Flat'"):
        index.to_device("cuda")
    assert (index.searcher, index.index, index._cpu_index) == ("faiss", cpu_index, None)


def test_index_types_gpu_faiss_lacks_fail_with_a_clear_error(monkeypatch):
    import torch

    index = build_index(DOCS, DOC_IDS, factory="HNSW8")
    cpu_index = index.index
    monkeypatch.setitem(sys.modules, "faiss", _fake_gpu_faiss(fail_move=True))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(SearchIndexError, match=r"device: FAISS cannot search a 'HNSW8' index on"):
        index.to_device("cuda:0")
    assert (index.searcher, index.index) == ("faiss", cpu_index)
