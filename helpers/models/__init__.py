"""Embedding models: one way to load a model, one dtype and device policy, one fingerprint.

- :mod:`~helpers.models.identity`: where a model loads from (the embedded default offline),
  what shapes its vectors (pooling, maximum length, normalisation), its weights' hash.
- :mod:`~helpers.models.device`: devices, dtypes (bfloat16 on a GPU or a CPU with AMX or
  AVX512-BF16, :func:`cpu_bf16_support`) and chunk sizes, for every caller.
- :mod:`~helpers.models.base`: the :class:`Encoder` interface and what every encoder
  shares: :meth:`~EncoderBase.fingerprint` (what the embedding cache keys on),
  :meth:`~EncoderBase.model_fingerprint` (what a saved index records),
  :meth:`~EncoderBase.encode_records` (a streamed corpus, chunk by chunk).
- :mod:`~helpers.models.backends`: the helpers' pipeline, sentence-transformers and
  ``FlagModel``, the same vectors from all three.
- :mod:`~helpers.models.loading`: :func:`load_encoder` (notebook 1) and
  :func:`build_encoder` (also behind :func:`helpers.mteb_glue.load_mteb_model`).
- :mod:`~helpers.models.caching`: :func:`cached`, the embedding cache as a wrapper any
  encoder can take.
"""

from helpers.models.backends import (
    FlagModelEncoder,
    PipelineEncoder,
    SentenceTransformerEncoder,
    pool_in_float32,
)
from helpers.models.base import CACHE_VERSION, KINDS, Encoder, EncoderBase, StreamFn
from helpers.models.caching import CachingEncoder, cached
from helpers.models.device import (
    CPU_BF16_FLAGS,
    DTYPES,
    GPU_CHUNK_SIZE,
    DeviceSpec,
    check_bf16,
    check_cpu_bf16,
    check_dtype,
    chunk_size_for,
    cpu_bf16_support,
    device_type,
    load_dtype,
    model_dtype,
    parse_devices,
    pick_device,
    resolve_dtype,
    set_dtype,
    weights_dtype,
)
from helpers.models.errors import ModelError
from helpers.models.identity import (
    DEFAULT_MODEL,
    EMBEDDED_ALIASES,
    ModelConfig,
    embedded_revision,
    library_versions,
    read_model_config,
    resolve_model,
    weights_fingerprint,
    weights_id,
)
from helpers.models.loading import (
    BACKENDS,
    EncoderSpec,
    build_encoder,
    check_encoder_settings,
    check_workers,
    load_encoder,
)

__all__ = [
    "BACKENDS",
    "CACHE_VERSION",
    "CPU_BF16_FLAGS",
    "DEFAULT_MODEL",
    "DTYPES",
    "EMBEDDED_ALIASES",
    "GPU_CHUNK_SIZE",
    "KINDS",
    "CachingEncoder",
    "DeviceSpec",
    "Encoder",
    "EncoderBase",
    "EncoderSpec",
    "FlagModelEncoder",
    "ModelConfig",
    "ModelError",
    "PipelineEncoder",
    "SentenceTransformerEncoder",
    "StreamFn",
    "build_encoder",
    "cached",
    "check_bf16",
    "check_cpu_bf16",
    "check_dtype",
    "check_encoder_settings",
    "check_workers",
    "chunk_size_for",
    "cpu_bf16_support",
    "device_type",
    "embedded_revision",
    "library_versions",
    "load_dtype",
    "load_encoder",
    "model_dtype",
    "parse_devices",
    "pick_device",
    "pool_in_float32",
    "read_model_config",
    "resolve_dtype",
    "resolve_model",
    "set_dtype",
    "weights_dtype",
    "weights_fingerprint",
    "weights_id",
]
