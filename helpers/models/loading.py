"""Loading a model: one loader for notebook 1 (:func:`load_encoder`) and the MTEB glue
(:func:`build_encoder`, which :func:`helpers.mteb_glue.load_mteb_model` calls)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.models.backends import (
    FlagModelEncoder,
    PipelineEncoder,
    SentenceTransformerEncoder,
    pool_in_float32,
)
from helpers.models.base import Encoder, EncoderBase
from helpers.models.caching import cached
from helpers.models.device import (
    DeviceSpec,
    check_dtype,
    model_dtype,
    parse_devices,
    resolve_dtype,
    set_dtype,
    weights_dtype,
)
from helpers.models.errors import ModelError
from helpers.models.identity import DEFAULT_MODEL, read_model_config, resolve_model

logger = logging.getLogger(__name__)

BACKENDS = ("pipeline", "sentence-transformers", "flagembedding")


@dataclass(frozen=True)
class EncoderSpec:
    """What to load, once resolved and checked (see :func:`load_encoder` for each setting).

    Attributes:
        model: the model as it was named (for messages).
        path: the folder (or hub id) to load from (:func:`helpers.models.resolve_model`).
        name: the name the encoder reports and keys its vectors under.
        revision: the weights' revision.
        backend: one of :data:`BACKENDS`.
        devices: the devices (:func:`helpers.models.parse_devices`).
        dtype: the dtype to run in; None: the checkpoint's own
            (:func:`helpers.models.load_dtype`).
        query_instruction: text put before every query.
        batch_size: texts per forward pass.
        show_progress: progress bars while encoding.
        workers: the pipeline's tokenising threads (None: by device).
        normalize: True: unit vectors always; None: as the model's own modules say.
    """

    model: str
    path: str
    name: str
    revision: str
    backend: str
    devices: tuple[str, ...]
    dtype: str | None
    query_instruction: str = ""
    batch_size: int = 64
    show_progress: bool = False
    workers: int | None = None
    normalize: bool | None = True


def check_encoder_settings(
    backend: str,
    batch_size: int,
    dtype: str | None = None,
    use_fp16: bool = False,
    device: DeviceSpec | None = None,
) -> None:
    """Check the backend, batch size, dtype and (when given) device before anything is
    loaded; with a device, also that the dtype runs there
    (:func:`helpers.models.resolve_dtype`).

    Raises:
        ModelError: naming the parameter.
    """
    check_dtype(dtype, use_fp16)
    if device is not None:
        resolve_dtype(dtype, use_fp16, parse_devices(device))
    if backend not in BACKENDS:
        raise ModelError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ModelError(f"batch_size: expected a positive integer, got {batch_size!r}")


def check_workers(workers: int | None) -> None:
    """Check the pipeline's tokenising threads: None (by device) or an integer >= 0.

    Raises:
        ModelError: naming ``workers``.
    """
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
    ):
        raise ModelError(f"workers: expected None or an integer >= 0, got {workers!r}")


def load_encoder(
    model: str = DEFAULT_MODEL,
    backend: str = "pipeline",
    query_instruction: str = "",
    batch_size: int = 64,
    use_fp16: bool = False,
    device: DeviceSpec = "auto",
    show_progress: bool = False,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    dtype: str | None = None,
) -> Encoder:
    """Load a model for encoding queries and documents.

    Args:
        model: hub id, local folder, or the embedded default's name.
        backend: ``"pipeline"`` (the helpers' overlapped pipeline on the sentence-transformers
            model, :mod:`helpers.encoding`), ``"sentence-transformers"``
            (``SentenceTransformer.encode``) or ``"flagembedding"`` (``FlagModel``). All
            three give the same vectors.
        query_instruction: text put before every query (e.g. BGE's
            ``"Represent this sentence for searching relevant passages: "``); documents get none.
        batch_size: texts per forward pass.
        use_fp16: float16 (``dtype="float16"``, FlagEmbedding's name for it): a GPU only.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or several devices
            (``["cuda:0", "cuda:1"]`` or ``"cuda:0,cuda:1"``), which the libraries' own
            multi-process support encodes on (sentence-transformers' pool, FlagModel's
            ``devices``).
        show_progress: progress bars while encoding.
        cache_dir: when given, embeddings are cached there (:func:`helpers.models.cached`):
            a re-run reads them back and an interrupted encoding resumes.
        workers: the pipeline's tokenising threads; None: all cores but one on a GPU,
            none (tokenise in line) on a CPU.
        dtype: what the model runs in, whatever dtype its checkpoint is stored in:
            ``"float32"`` (None: float32, or float16 with ``use_fp16``), ``"bfloat16"``
            on a GPU that has it or a CPU with AMX or AVX512-BF16 (faster than float32
            there; cosines to the float32 vectors above 0.9999), or ``"float16"`` on a
            GPU only. The vectors are pooled and
            normalised in float32 in every dtype.

    Returns:
        An :class:`~helpers.models.Encoder`: ``encode_queries`` / ``encode_corpus``
        returning float32 arrays, ``encode_records`` for a streamed corpus.

    Raises:
        ModelError: on an unknown backend, a bad batch size, dtype or device, a dtype
            that does not run on the device (float16 on a CPU, bfloat16 on a CPU or GPU
            without it: never replaced by float32 silently), or a model that does not load.
    """
    check_encoder_settings(backend, batch_size, dtype, use_fp16, device)
    check_workers(workers)
    devices = parse_devices(device)
    run_dtype = resolve_dtype(dtype, use_fp16, devices)
    path, revision = resolve_model(model)
    spec = EncoderSpec(
        model=model,
        path=path,
        name=model,
        revision=revision,
        backend=backend,
        devices=tuple(devices),
        dtype=run_dtype,
        query_instruction=query_instruction,
        batch_size=batch_size,
        show_progress=show_progress,
        workers=workers,
    )
    encoder = build_encoder(spec)
    return cached(encoder, cache_dir) if cache_dir else encoder


def build_encoder(spec: EncoderSpec) -> EncoderBase:
    """Load the model ``spec`` describes with its backend.

    Returns:
        A :class:`~helpers.models.PipelineEncoder`,
        :class:`~helpers.models.SentenceTransformerEncoder` or
        :class:`~helpers.models.FlagModelEncoder`.

    Raises:
        ModelError: naming ``model`` when it does not load, or ``backend`` when FlagModel
            cannot reproduce the model's pooling.
    """
    try:
        if spec.backend in {"pipeline", "sentence-transformers"}:
            return _sentence_transformers(spec)
        return _flag_model(spec)
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - re-raised with the parameter named
        raise ModelError(
            f"model: could not load {spec.model!r} with backend {spec.backend!r} "
            f"({type(err).__name__}: {err})"
        ) from err


def _common(spec: EncoderSpec, dtype: str) -> dict[str, Any]:
    """The fields every encoder has, from ``spec`` and the dtype it runs in."""
    return dict(
        name=spec.name,
        revision=spec.revision,
        backend=spec.backend,
        device=",".join(spec.devices),
        use_fp16=dtype == "float16",
        dtype=dtype,
        query_instruction=spec.query_instruction,
        batch_size=spec.batch_size,
        show_progress=spec.show_progress,
        path=spec.path,
        devices=list(spec.devices),
        normalize=spec.normalize,
    )


def _sentence_transformers(spec: EncoderSpec) -> EncoderBase:
    from sentence_transformers import SentenceTransformer

    from helpers.encoding import pipeline_or_none

    # transformers 5 loads a checkpoint in its stored dtype unless told otherwise;
    # set_dtype also casts any module outside the transformer
    kwargs = model_dtype(spec.dtype) if spec.dtype else None
    st = SentenceTransformer(spec.path, device=spec.devices[0], model_kwargs=kwargs)
    if spec.dtype:
        set_dtype(st, spec.dtype)
    float32_pooling = pool_in_float32(st)  # a no-op in float32
    common = _common(spec, spec.dtype or weights_dtype(st))
    dim = int(st.get_embedding_dimension() or 0)
    if spec.backend == "sentence-transformers":
        return SentenceTransformerEncoder(
            model=st, dim=dim, pools_in_float32=float32_pooling, **common
        )
    pipeline = None
    if len(spec.devices) > 1:
        logger.info("several devices: sentence-transformers' multi-process pool encodes")
    else:
        pipeline = pipeline_or_none(
            st,
            spec.model,
            batch_size=spec.batch_size,
            workers=spec.workers,
            progress=spec.show_progress,
            normalize=spec.normalize,
        )
    return PipelineEncoder(
        model=st,
        dim=dim,
        pipeline=pipeline,
        pools_in_float32=pipeline is not None or float32_pooling,
        **common,
    )


def _flag_model(spec: EncoderSpec) -> EncoderBase:
    from FlagEmbedding import FlagModel

    cfg = read_model_config(spec.path)
    if cfg.pooling not in {"cls", "mean"}:
        raise ModelError(
            f"backend: FlagModel supports CLS or mean pooling; {spec.model!r} uses "
            f"{cfg.pooling!r}; use backend='sentence-transformers'"
        )
    if spec.dtype is None or spec.normalize is not True:
        raise ModelError("backend: FlagModel runs in a dtype asked, and normalises always")
    half = spec.dtype != "float32"
    device = spec.devices[0]
    if half and device == "cpu":
        # FlagModel casts its model to float32 at every call on "cpu"; "cpu:0" is the
        # same device without that cast (and bfloat16 vectors reach numpy as float32)
        device = "cpu:0"
    flag = FlagModel(
        spec.path,
        pooling_method=cfg.pooling,
        # in half precision it would normalise in the model's dtype: done in float32 instead
        normalize_embeddings=not half,
        use_fp16=spec.dtype == "float16",
        use_bf16=spec.dtype == "bfloat16",
        query_instruction_for_retrieval=spec.query_instruction or None,
        query_instruction_format="{}{}",
        devices=list(spec.devices) if len(spec.devices) > 1 else device,
        batch_size=spec.batch_size,
        query_max_length=cfg.max_length,
        passage_max_length=cfg.max_length,
    )
    dim = int(flag.model.config.hidden_size)
    return FlagModelEncoder(model=flag, dim=dim, **_common(spec, spec.dtype))
