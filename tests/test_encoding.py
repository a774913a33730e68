"""The helpers' encoding pipeline against sentence-transformers, the reference it must match."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.encoding import EncodingPipeline, TokenIds, st_prompt, unsupported_reason
from helpers.models import DEFAULT_MODEL, load_encoder, resolve_model

TEXTS = [
    "The Manhattan Project produced the first nuclear weapons during World War II.",
    "what is the daily life of thai people",
    "Short.",
    "A much longer passage " * 100,  # over the 256-token limit: truncation must agree
    "Ünïcödé, accents and emoji 🙂 — and [brackets].",
    "",
    "x",
    "Another ordinary sentence about retrieval evaluation and embeddings.",
]


@pytest.fixture(scope="module")
def st():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model(DEFAULT_MODEL)[0], device="cpu")


@pytest.fixture(scope="module")
def corpus_texts():
    from helpers.data import load_retrieval_data
    from helpers.notebook import project_path

    data = load_retrieval_data(project_path("data/msmarco-dl19/beir"))
    return list(data.corpus.values())[:300]


def test_tokens_equal_the_transformers_tokenizer(st, corpus_texts):
    pipeline = EncodingPipeline(st, workers=0)
    texts = TEXTS + corpus_texts[:100]
    ids, mask = pipeline.tokenize(texts)
    ref = st.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
    np.testing.assert_array_equal(ids.numpy(), ref["input_ids"])
    np.testing.assert_array_equal(mask.numpy(), ref["attention_mask"])
    assert ids.shape[1] == 256  # the long text is truncated to the model's limit


@pytest.mark.parametrize("workers", [0, 2])
def test_vectors_equal_sentence_transformers_in_input_order(st, corpus_texts, workers):
    texts = TEXTS + corpus_texts[:120]
    ours = EncodingPipeline(st, batch_size=16, workers=workers).encode(texts)
    ref = st.encode(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=True)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-6)


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_across_parts_equals_one_call(st, corpus_texts, workers):
    pipeline = EncodingPipeline(st, batch_size=32, workers=workers, prefetch=3)
    parts = [corpus_texts[:50], [], corpus_texts[50:51], corpus_texts[51:200]]
    outputs = list(pipeline.encode_stream(parts))
    assert [o.shape for o in outputs] == [(50, 384), (0, 384), (1, 384), (149, 384)]
    np.testing.assert_allclose(
        np.concatenate(outputs), pipeline.encode(corpus_texts[:200]), atol=1e-6
    )
    assert pipeline.encode([]).shape == (0, 384)
    assert list(pipeline.encode_stream([])) == []


def test_batches_in_line_are_sorted_by_tokens_with_threads_by_characters(st, corpus_texts):
    """Tokenising in line (the CPU), a part is tokenised once and batched by token count,
    which pads less than batching by characters; with threads, by characters."""
    texts = TEXTS + corpus_texts[:200]
    lengths = np.array([len(ids) for ids in st.tokenizer(texts, truncation=True)["input_ids"]])
    inline = EncodingPipeline(st, batch_size=16, workers=0)
    batches = list(inline._batches([texts]))
    rows = np.concatenate([r for _, r, _ in batches])
    assert sorted(rows) == list(range(len(texts)))  # every text once
    np.testing.assert_array_equal(lengths[rows], np.sort(lengths)[::-1])  # by tokens
    for _, batch_rows, ids in batches:  # the ids, padded, are what tokenize gives
        ref_ids, ref_mask = inline.tokenize([texts[i] for i in batch_rows])
        got_ids, got_mask = inline._pad(ids)
        np.testing.assert_array_equal(got_ids.numpy(), ref_ids.numpy())
        np.testing.assert_array_equal(got_mask.numpy(), ref_mask.numpy())

    threaded = list(EncodingPipeline(st, batch_size=16, workers=2)._batches([texts]))
    assert not any(isinstance(batch, TokenIds) for *_, batch in threaded)  # threads tokenise
    by_chars = np.concatenate([r for _, r, _ in threaded])
    np.testing.assert_array_equal(by_chars, np.argsort([-len(t) for t in texts], kind="stable"))

    def padded(order: np.ndarray) -> int:
        return sum(
            int(lengths[order[s : s + 16]].max()) * len(order[s : s + 16])
            for s in range(0, len(order), 16)
        )

    assert padded(rows) < 0.9 * padded(by_chars)  # measured: about 0.8 on these passages


def test_a_long_part_is_sorted_window_by_window(st, corpus_texts, monkeypatch):
    import helpers.encoding as E

    monkeypatch.setattr(E, "SORT_WINDOW", 50)  # 130 texts: windows of 50, 50 and 30
    texts = corpus_texts[:130]
    pipeline = EncodingPipeline(st, batch_size=16, workers=0)
    batches = list(pipeline._batches([texts]))
    rows = np.concatenate([r for _, r, _ in batches])
    assert sorted(rows) == list(range(130))
    for begin in (0, 50, 100):  # each window's rows come together, longest first
        window = rows[begin : begin + 50]
        assert sorted(window) == list(range(begin, min(begin + 50, 130)))
        lengths = [len(st.tokenizer(texts[i], truncation=True)["input_ids"]) for i in window]
        assert lengths == sorted(lengths, reverse=True)
    ref = st.encode(texts, batch_size=16, normalize_embeddings=True)
    np.testing.assert_allclose(pipeline.encode(texts), ref, atol=2e-6)


@pytest.mark.parametrize("mode", ["cls", "max"])
def test_other_pooling_modes_equal_sentence_transformers(st, mode):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    other = SentenceTransformer(modules=[st[0], Pooling(384, pooling_mode=mode)], device="cpu")
    ours = EncodingPipeline(other, batch_size=4).encode(TEXTS)
    np.testing.assert_allclose(ours, other.encode(TEXTS, batch_size=4), atol=2e-5)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0)  # no Normalize module: raw


def test_unsupported_models_are_named_and_fall_back(st):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    weighted = SentenceTransformer(
        modules=[st[0], Pooling(384, pooling_mode="weightedmean")], device="cpu"
    )
    assert "pooling 'weightedmean'" in unsupported_reason(weighted)
    assert unsupported_reason(st) is None
    with pytest.raises(ValueError, match="encoding pipeline: pooling"):
        EncodingPipeline(weighted)
    with pytest.raises(ValueError, match="workers"):
        EncodingPipeline(st, workers=-1)


def test_prompts_resolve_like_sentence_transformers(st):
    saved = dict(st.prompts), st.default_prompt_name
    try:
        st.prompts = {"query": "query: ", "document": "passage: ", "other": "other: "}
        pipeline = EncodingPipeline(st, workers=0)
        for kind, method in (("query", st.encode_query), ("document", st.encode_document)):
            prompt = st_prompt(st, None, kind)
            np.testing.assert_allclose(
                pipeline.encode([prompt + t for t in TEXTS[:3]]), method(TEXTS[:3]), atol=2e-6
            )
        assert st_prompt(st, "explicit: ", "query") == "explicit: "
        assert st_prompt(st, None, None) == ""
        st.default_prompt_name = "other"
        assert st_prompt(st, None, None) == "other: "
    finally:
        st.prompts, st.default_prompt_name = saved


def test_pipeline_backend_matches_the_other_backends_and_uses_the_cache(tmp_path):
    pipeline = load_encoder(DEFAULT_MODEL, backend="pipeline", query_instruction="query: ")
    plain = load_encoder(
        DEFAULT_MODEL, backend="sentence-transformers", query_instruction="query: "
    )
    assert pipeline.pipeline is not None and pipeline.pipeline.workers == 0  # CPU: in line
    for method in ("encode_corpus", "encode_queries"):
        np.testing.assert_allclose(
            getattr(pipeline, method)(TEXTS), getattr(plain, method)(TEXTS), atol=2e-6
        )
    cached = load_encoder(DEFAULT_MODEL, backend="pipeline", cache_dir=tmp_path)
    cached.cache.chunk_size = 3
    first = cached.encode_corpus(TEXTS)
    assert cached.cache.computed_chunks == 3
    np.testing.assert_array_equal(cached.encode_corpus(TEXTS), first)
    assert cached.cache.hits == 3 and cached.cache.computed_chunks == 3
    np.testing.assert_allclose(first, plain.encode_corpus(TEXTS), atol=2e-6)


def test_several_devices_use_the_libraries_pool():
    """Two CPU processes through sentence-transformers' multi-process pool (spawn)."""
    single = load_encoder(DEFAULT_MODEL, backend="sentence-transformers", device="cpu")
    several = load_encoder(DEFAULT_MODEL, backend="pipeline", device="cpu,cpu")
    try:
        assert several.devices == ["cpu", "cpu"] and several.pipeline is None
        np.testing.assert_allclose(
            several.encode_corpus(TEXTS), single.encode_corpus(TEXTS), atol=2e-6
        )
        assert len(several._pool["processes"]) == 2
    finally:
        several.close()
    assert several._pool is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"device": []}, "device: expected"), ({"workers": -2}, "workers: expected")],
)
def test_bad_device_or_workers_are_named(kwargs, message):
    from helpers.models import ModelError

    with pytest.raises(ModelError, match=message):
        load_encoder(**kwargs)


def test_the_caller_does_not_run_in_inference_mode(st):
    import torch

    stream = EncodingPipeline(st, batch_size=8).encode_stream([TEXTS[:3], TEXTS[3:]])
    next(stream)
    assert not torch.is_inference_mode_enabled()  # between parts: the caller's code
    next(stream)
    assert not torch.is_inference_mode_enabled()


def test_long_parts_leave_the_device_in_pieces(st, corpus_texts, monkeypatch):
    import helpers.encoding as E

    monkeypatch.setattr(E, "SPILL", 2)  # copy to the host every 2 batches
    ours = EncodingPipeline(st, batch_size=8).encode(corpus_texts[:90])
    ref = st.encode(corpus_texts[:90], batch_size=8, normalize_embeddings=True)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_prompt_names_for_documents_follow_sentence_transformers(st):
    saved = dict(st.prompts), st.default_prompt_name
    try:
        st.prompts = {"query": "q: ", "passage": "p: "}
        assert st_prompt(st, None, "document") == "p: "
        pipeline = EncodingPipeline(st, workers=0)
        np.testing.assert_allclose(
            pipeline.encode(["p: " + t for t in TEXTS[:3]]),
            st.encode_document(TEXTS[:3]),
            atol=2e-6,
        )
        st.prompts = {"corpus": "c: "}
        assert st_prompt(st, None, "document") == "c: "
    finally:
        st.prompts, st.default_prompt_name = saved


def test_pipeline_backend_applies_the_default_prompt_like_encode():
    encoders = {
        b: load_encoder(DEFAULT_MODEL, backend=b, query_instruction="query: ")
        for b in ("pipeline", "sentence-transformers")
    }
    for encoder in encoders.values():
        encoder.model.prompts = {"query": "", "document": "", "clustering": "Cluster: "}
        encoder.model.default_prompt_name = "clustering"
    pipe, plain = encoders["pipeline"], encoders["sentence-transformers"]
    for method in ("encode_corpus", "encode_queries"):
        np.testing.assert_allclose(
            getattr(pipe, method)(TEXTS), getattr(plain, method)(TEXTS), atol=2e-6
        )
    streamed = list(pipe.stream_fn("query")([TEXTS[:2], TEXTS[2:]]))
    np.testing.assert_allclose(np.concatenate(streamed), plain.encode_queries(TEXTS), atol=2e-6)


def test_pipeline_backend_normalises_a_model_without_normalize(st, tmp_path):
    from sentence_transformers import SentenceTransformer

    raw = SentenceTransformer(modules=[st[0], st[1]], device="cpu")
    raw.save(str(tmp_path / "no-normalize"))
    pipe = load_encoder(str(tmp_path / "no-normalize"), backend="pipeline")
    plain = load_encoder(str(tmp_path / "no-normalize"), backend="sentence-transformers")
    ours = pipe.encode_corpus(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, plain.encode_corpus(TEXTS), atol=2e-6)


def test_bad_prefetch_is_named(st):
    with pytest.raises(ValueError, match="prefetch"):
        EncodingPipeline(st, prefetch=0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_models_match_sentence_transformers(st, corpus_texts, dtype):
    """The pipeline runs in the model's dtype, as the GPU run does (half precision works
    on the CPU too, slowly, which is enough to check it here). It pools and normalises in
    float32, so it is at least as close to the float32 model as sentence-transformers'
    own half-precision output (whose norms are off by up to 4e-3 in bfloat16)."""
    from sentence_transformers import SentenceTransformer

    from helpers.models import set_dtype

    half = SentenceTransformer(resolve_model(DEFAULT_MODEL)[0], device="cpu")
    set_dtype(half, dtype)
    texts = TEXTS + corpus_texts[:40]
    ours = EncodingPipeline(half, batch_size=16).encode(texts)
    ref = np.asarray(half.encode(texts, batch_size=16, normalize_embeddings=True), np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    full = st.encode(texts, batch_size=16, normalize_embeddings=True)
    assert ours.dtype == np.float32 and np.isfinite(ours).all()
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    assert float(np.min(np.sum(ours * ref, axis=1))) > 0.9999
    ours_vs_full = np.sum(ours * full, axis=1)
    assert float(ours_vs_full.mean()) >= float(np.sum(ref * full, axis=1).mean()) - 1e-6
    assert 0.9999 < float(ours_vs_full.mean()) < 1.0 - 1e-7  # it did run in half precision
