"""bfloat16 on the CPU: the dtype policy, float32 pooling in every backend, the cache, MTEB.

bfloat16 runs on a CPU that computes it natively (AMX or AVX512-BF16); the tests that run
the real model in bfloat16 are skipped elsewhere, with the reason. The policy's errors
are checked everywhere, with the CPU's detection replaced where needed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.models import (
    DEFAULT_MODEL,
    ModelError,
    PipelineEncoder,
    check_encoder_settings,
    cpu_bf16_support,
    load_dtype,
    load_encoder,
    resolve_dtype,
)
from helpers.models import device as device_module

BF16_MISSING = cpu_bf16_support()
needs_native_bf16 = pytest.mark.skipif(
    BF16_MISSING is not None,
    reason=f"this CPU has no native bfloat16 (AMX or AVX512-BF16): {BF16_MISSING}",
)
BACKENDS = ("pipeline", "sentence-transformers", "flagembedding")
FLOAT32_KEY_FIELDS = {
    "model", "weights", "backend", "pooling", "max_length", "normalize", "dtype",
    "cache_version", "device", "kind", "instruction", "versions",
}  # fmt: skip
TEXTS = [
    "The Manhattan Project produced the first nuclear weapons during World War II.",
    "what is the daily life of thai people",
    "Short.",
    "A much longer passage " * 100,  # over the 256-token limit
    "",
]


@pytest.fixture
def cpu_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU whose flags have AVX-512 but neither AMX nor AVX512-BF16."""
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))


@pytest.fixture
def cpu_with_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))


# ---------------------------------------------------------------------------------------
# The policy (no model)
# ---------------------------------------------------------------------------------------


def test_detection_agrees_with_torch():
    """/proc/cpuinfo's flags against torch's own detection (cpuid, through cpuinfo)."""
    import torch

    names = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    checks = [getattr(torch.cpu, name, None) for name in names]
    if device_module._cpu_flags() is None or None in checks:
        pytest.skip("no /proc/cpuinfo flags, or a torch without its CPU detection")
    assert (BF16_MISSING is None) == any(check() for check in checks)


def test_detection_reads_the_flags(monkeypatch, cpu_with_amx):
    import torch

    assert cpu_bf16_support() is None
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert cpu_bf16_support() is None
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: frozenset({"avx512f", "amx_tile"}))
    assert "neither amx_bf16 nor avx512_bf16" in str(cpu_bf16_support())
    # no flags to read (not Linux, not x86): torch's detection decides
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: None)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert cpu_bf16_support() is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert "torch detects neither AMX nor AVX512-BF16" in str(cpu_bf16_support())


def test_bf16_on_a_cpu_with_it_runs_in_bf16(cpu_with_amx):
    assert resolve_dtype("bfloat16", False, ["cpu"]) == "bfloat16"
    assert load_dtype("bfloat16", False, ["cpu"], checkpoint_on_gpu=True) == "bfloat16"
    check_encoder_settings("flagembedding", 8, "bfloat16", device="cpu")


def test_nothing_asked_stays_float32_on_the_cpu(cpu_with_amx):
    """None keeps the behaviour of before: float32 on the CPU, for both callers."""
    assert resolve_dtype(None, False, ["cpu"]) == "float32"
    assert load_dtype(None, False, ["cpu"]) == "float32"
    assert load_dtype("", False, ["cpu"], checkpoint_on_gpu=True) == "float32"


def test_bf16_on_a_cpu_without_it_is_an_error_naming_dtype(cpu_without_bf16):
    from helpers.mteb_glue import load_mteb_model

    expected = (
        r"dtype: 'bfloat16' on the CPU needs native bfloat16 arithmetic \(AMX or "
        r"AVX512-BF16\), which this CPU lacks \(its flags .* neither amx_bf16 nor "
        r"avx512_bf16\).*float32 is used by default"
    )
    with pytest.raises(ModelError, match=expected):
        resolve_dtype("bfloat16", False, ["cpu"])
    with pytest.raises(ModelError, match=expected):
        check_encoder_settings("pipeline", 8, "bfloat16", device="cpu")
    # before any model loads (a unit test: loading one here would fail the test)
    with pytest.raises(ModelError, match=expected):
        load_encoder(DEFAULT_MODEL, device="cpu", dtype="bfloat16")
    with pytest.raises(ModelError, match=expected):
        load_mteb_model(device="cpu", dtype="bfloat16")
    assert resolve_dtype(None, False, ["cpu"]) == "float32"  # the default still runs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "float16"}, r"dtype: float16 runs on a GPU only, and cpu is asked"),
        ({"use_fp16": True}, r"use_fp16: float16 runs on a GPU only"),
        ({"dtype": "float16", "use_fp16": True}, r"dtype: float16 runs on a GPU only"),
    ],
)
def test_float16_on_the_cpu_is_an_error_naming_the_parameter(kwargs, message):
    from helpers.mteb_glue import load_mteb_model

    with pytest.raises(ModelError, match=message + ".*float32 is used by default"):
        resolve_dtype(kwargs.get("dtype"), kwargs.get("use_fp16", False), ["cpu"])
    with pytest.raises(ModelError, match=message):
        check_encoder_settings("pipeline", 8, device="cpu", **kwargs)
    with pytest.raises(ModelError, match=message):
        load_encoder(DEFAULT_MODEL, device="cpu", **kwargs)
    if "dtype" in kwargs:
        with pytest.raises(ModelError, match=message):
            load_mteb_model(device="cpu", dtype=kwargs["dtype"])
    with pytest.raises(ModelError, match=r"dtype: float16 runs on a GPU only, and cuda:0,cpu"):
        resolve_dtype("float16", False, ["cuda:0", "cpu"])


@pytest.mark.parametrize("dtype", ["fp8", "half", "torch.bfloat16", "Float32"])
def test_an_unknown_dtype_lists_the_supported_ones(dtype):
    from helpers.mteb_glue import load_mteb_model

    expected = (
        r"dtype: expected one of \['float32', 'float16', 'bfloat16'\]: 'float32' \(the "
        r"default\), 'bfloat16' \(a GPU with it, or a CPU with AMX or AVX512-BF16\) or "
        rf"'float16' \(a GPU only\); got '{dtype}'"
    )
    for check in (
        lambda: resolve_dtype(dtype, False, ["cpu"]),
        lambda: check_encoder_settings("pipeline", 8, dtype),
        lambda: load_encoder(DEFAULT_MODEL, device="cpu", dtype=dtype),
        lambda: load_mteb_model(device="cpu", dtype=dtype),
    ):
        with pytest.raises(ModelError, match=expected):
            check()


def _encoder(dtype: str, pools_in_float32: bool = True) -> PipelineEncoder:
    """An encoder without a model loaded (a tiny torch module in ``dtype`` stands in)."""
    import torch

    module = torch.nn.Linear(2, 2).to(getattr(torch, dtype))
    return PipelineEncoder(
        name="m", revision="r", backend="pipeline", device="cpu", use_fp16=False,
        query_instruction="", batch_size=8, show_progress=False, model=module, dtype=dtype,
        pools_in_float32=pools_in_float32,
    )  # fmt: skip


def test_cache_keys_of_float32_keep_their_fields_and_half_precision_says_its_pooling():
    from helpers.cache.keys import cache_key

    f32, bf16 = _encoder("float32"), _encoder("bfloat16")
    for kind in ("query", "document"):
        assert set(f32.fingerprint(kind)) == FLOAT32_KEY_FIELDS  # as before bfloat16 on CPUs
        settings = bf16.fingerprint(kind)
        assert set(settings) == FLOAT32_KEY_FIELDS | {"pooling_dtype"}
        assert (settings["dtype"], settings["pooling_dtype"]) == ("bfloat16", "float32")
        assert cache_key(settings, TEXTS) != cache_key(f32.fingerprint(kind), TEXTS)
    assert "pooling_dtype" not in f32.fingerprint("mteb")
    assert bf16.fingerprint("mteb")["pooling_dtype"] == "float32"
    own = _encoder("bfloat16", pools_in_float32=False)  # a model the hook cannot apply to
    assert own.fingerprint("document")["pooling_dtype"] == "bfloat16"


# ---------------------------------------------------------------------------------------
# The real model in bfloat16
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_texts() -> list[str]:
    from helpers.data import load_retrieval_data
    from helpers.notebook import project_path

    data = load_retrieval_data(project_path("data/msmarco-dl19/beir"))
    return TEXTS + list(data.corpus.values())[:40]


def _weights_dtype(encoder):
    model = encoder.model.model if encoder.backend == "flagembedding" else encoder.model
    return {str(p.dtype) for p in model.parameters()}


@needs_native_bf16
@pytest.mark.parametrize("backend", BACKENDS)
def test_real_model_bf16_vectors_match_float32(backend, corpus_texts):
    f32 = load_encoder(DEFAULT_MODEL, backend=backend, device="cpu", query_instruction="q: ")
    bf16 = load_encoder(
        DEFAULT_MODEL, backend=backend, device="cpu", query_instruction="q: ", dtype="bfloat16"
    )
    assert (bf16.dtype, bf16.settings()["dtype"], bf16.use_fp16) == ("bfloat16", "bfloat16", False)
    for method, texts in (("encode_corpus", corpus_texts), ("encode_queries", TEXTS)):
        a, b = getattr(f32, method)(texts), getattr(bf16, method)(texts)
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (len(texts), 384)
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-6)
        cosines = np.sum(a * b, axis=1)
        assert float(cosines.min()) >= 0.999, (method, float(cosines.min()))
        assert float(cosines.mean()) < 1.0 - 1e-6  # it did run in bfloat16
    # still in bfloat16 after encoding (FlagModel on "cpu" would cast itself to float32)
    assert _weights_dtype(bf16) == {"torch.bfloat16"} and _weights_dtype(f32) == {"torch.float32"}


def _float32_pooled_reference(st, texts):
    """Mean pooling of the model's bfloat16 hidden states upcast to float32, normalised in
    float32: what every backend must give. Also the hidden states and mask."""
    import torch

    tokens = st.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        hidden = st[0].auto_model(**tokens).last_hidden_state
    assert hidden.dtype == torch.bfloat16
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1)
    unit = pooled / pooled.norm(dim=1, keepdim=True)
    return unit.numpy(), pooled, hidden, tokens["attention_mask"]


@needs_native_bf16
def test_real_model_every_backend_pools_in_float32():
    """One batch (so every backend pads alike): each backend's bfloat16 vectors equal mean
    pooling of the bfloat16 hidden states upcast to float32, normalised in float32;
    sentence-transformers' own Pooling (without the helpers' upcast) rounds to bfloat16
    and is measurably further off, so the check tells them apart."""
    import torch

    encoders = {
        backend: load_encoder(DEFAULT_MODEL, backend=backend, device="cpu", dtype="bfloat16")
        for backend in BACKENDS
    }
    st = encoders["pipeline"].model
    reference, pooled, hidden, mask = _float32_pooled_reference(st, TEXTS)
    for backend, encoder in encoders.items():
        vectors = encoder.encode_corpus(TEXTS)
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(vectors, reference, atol=2e-6, err_msg=backend)
        assert encoder.pools_in_float32 and encoder.fingerprint("document")["pooling_dtype"] == (
            "float32"
        )
    # the libraries' own pooling functions, on the same hidden states
    flag = encoders["flagembedding"].model
    flag_pooled = flag.pooling(hidden, mask)
    assert flag_pooled.dtype == torch.float32
    np.testing.assert_allclose(flag_pooled.numpy(), pooled.numpy(), rtol=1e-6, atol=1e-7)
    own = st[1]({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]
    assert own.dtype == torch.bfloat16  # sentence-transformers alone pools into bfloat16
    own_unit = own.float() / own.float().norm(dim=1, keepdim=True)
    assert float((own_unit.numpy() - reference).__abs__().max()) > 1e-4


@needs_native_bf16
def test_real_model_bf16_cache_entries_never_mix_with_float32(tmp_path, corpus_texts):
    texts = corpus_texts[:40]
    f32 = load_encoder(DEFAULT_MODEL, device="cpu", cache_dir=tmp_path)
    first = f32.encode_corpus(texts)
    bf16 = load_encoder(DEFAULT_MODEL, device="cpu", cache_dir=tmp_path, dtype="bfloat16")
    half = bf16.encode_corpus(texts)
    assert not np.array_equal(first, half)  # never served the float32 entry
    settings = sorted(
        (json.loads(p.read_text())["settings"] for p in tmp_path.glob("*/meta.json")),
        key=lambda s: s["dtype"],
    )
    assert [s["dtype"] for s in settings] == ["bfloat16", "float32"]
    assert settings[0]["pooling_dtype"] == "float32" and "pooling_dtype" not in settings[1]
    # each read back as written, from its own entry
    again = load_encoder(DEFAULT_MODEL, device="cpu", cache_dir=tmp_path, dtype="bfloat16")
    np.testing.assert_array_equal(again.encode_corpus(texts), half)
    np.testing.assert_array_equal(f32.encode_corpus(texts), first)
    assert len(list(tmp_path.glob("*/meta.json"))) == 2


FLOAT32_STS_SCORE = 0.820325
"""STSBenchmark's main score in float32 on the CPU, on the shipped data: the score of
before, pinned to the last stored digit by tests/test_mteb_results.py
(``test_shipped_defaults_keep_their_scores_and_say_their_data_is_local``)."""


@needs_native_bf16
def test_real_model_mteb_score_in_bf16_is_float32s(tmp_path):
    """STSBenchmark (shipped) through the MTEB glue in bfloat16: its main score within
    0.002 of float32's (run here too when ``EMBEVAL_BF16_RERUN_FLOAT32=1``; else the
    float32 score pinned by the slow reproduction test)."""
    import os

    import torch

    from helpers import mteb_glue as G
    from helpers.notebook import PROJECT_ROOT

    dtypes = ["bfloat16"] + ([None] if os.environ.get("EMBEVAL_BF16_RERUN_FLOAT32") == "1" else [])
    scores = {None: FLOAT32_STS_SCORE}
    for dtype in dtypes:
        model = G.load_mteb_model(device="cpu", dtype=dtype)
        expected = torch.bfloat16 if dtype else torch.float32
        assert {p.dtype for p in model.model.parameters()} == {expected}
        tasks = G.select_tasks(tasks=["STSBenchmark"])
        G.attach_local_data(tasks, PROJECT_ROOT / "data" / "mteb")
        (outcome,) = G.run_tasks(model, tasks, tmp_path / str(dtype))
        assert outcome.status == "done", outcome.traceback
        scores[dtype] = json.loads(outcome.path.read_text())["scores"]["test"][0]["main_score"]
        assert {p.dtype for p in model.model.parameters()} == {expected}  # still, after mteb
    assert scores[None] == pytest.approx(FLOAT32_STS_SCORE, abs=1e-6)
    assert abs(scores["bfloat16"] - scores[None]) <= 0.002, scores
    assert scores["bfloat16"] != scores[None]  # it did run in bfloat16
