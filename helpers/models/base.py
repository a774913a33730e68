"""What every encoder is: the :class:`Encoder` interface and the :class:`EncoderBase` it
shares, whatever the backend (:mod:`helpers.models.backends`).

Every encoder says what shapes its vectors (:meth:`EncoderBase.fingerprint`: the embedding
cache keys on it, and a saved index records :meth:`EncoderBase.model_fingerprint`) and
encodes a streamed corpus chunk by chunk (:meth:`EncoderBase.encode_records`);
:func:`helpers.models.cached` puts any encoder through the embedding cache.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from helpers.cache import StreamFn, check_window
from helpers.models.device import chunk_size_for, device_type, weights_dtype
from helpers.models.errors import ModelError
from helpers.models.identity import library_versions, read_model_config, weights_id

KINDS = ("query", "document", "mteb")
CACHE_VERSION = 2  # the dtype in a key is the one the model runs in (in version 1 a
# checkpoint stored in float16 ran in float16 under "float32")


def as_float32(vectors: Any) -> np.ndarray:
    """Vectors as a float32 numpy array (a torch tensor moved to the CPU first)."""
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().cpu().float().numpy()
    return np.asarray(vectors, dtype=np.float32)


class Encoder(Protocol):
    """What the notebooks and the MTEB glue need from a model: every encoder
    (:class:`EncoderBase`'s backends) and the caching wrapper
    (:class:`helpers.models.CachingEncoder`) are one."""

    @property
    def name(self) -> str: ...
    @property
    def revision(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def use_fp16(self) -> bool: ...
    @property
    def dtype(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def show_progress(self) -> bool: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (with the query instruction), float32, one row per text."""
        ...

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents, float32, one row per text."""
        ...

    def encode_prompted(
        self, texts: Sequence[str], prompt: str | None, prompt_type: str | None, **options: Any
    ) -> np.ndarray:
        """Embed texts with a prompt, as mteb asks (:meth:`EncoderBase.encode_prompted`)."""
        ...

    def encode_records(
        self, records: Iterable[tuple[str, str]], source: str = "", window: int = 8
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """A streamed corpus, ``(ids, vectors)`` chunk by chunk."""
        ...

    def stream_fn(
        self, kind: str, prompt: str | None = None, prompt_type: str | None = None
    ) -> StreamFn | None:
        """A function encoding chunks of texts ahead across chunk boundaries, or None."""
        ...

    def fingerprint(
        self, kind: str, prompt: str | None = None, prompt_type: str | None = None
    ) -> dict[str, Any]:
        """Everything besides the texts that shapes the vectors of ``kind``."""
        ...

    def model_fingerprint(self) -> str:
        """A short hash of the model's identity, for a saved index."""
        ...

    def settings(self) -> dict[str, Any]:
        """Everything that shapes the embeddings, for the results file."""
        ...

    def close(self) -> None:
        """Release worker processes, if any."""
        ...


@dataclass
class EncoderBase:
    """What every encoder holds, and what it does the same way whatever its backend.

    Attributes:
        name: the model's name (the MTEB glue: mteb's official name).
        revision: the weights' revision (``"local"``, the packaged copy's, a hub revision).
        backend: ``"pipeline"``, ``"sentence-transformers"`` or ``"flagembedding"``.
        device: the device, or the devices joined by commas.
        use_fp16: the model runs in float16.
        query_instruction: text put before every query.
        batch_size: texts per forward pass.
        show_progress: progress bars while encoding.
        model: the loaded library model (``SentenceTransformer`` or ``FlagModel``).
        dim: the vectors' dimension.
        path: the folder (or hub id) the weights loaded from.
        devices: the devices, one per entry.
        dtype: the dtype the model runs in.
        normalize: True: unit vectors always (notebook 1); None: as the model's own
            modules say (the MTEB glue, as mteb encodes).
        pools_in_float32: the vectors are pooled and normalised in float32 whatever the
            model's dtype (every backend, except sentence-transformers on a model with
            weights after its transformer: see :mod:`helpers.models.backends`).
    """

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
    normalize: bool | None = True
    pools_in_float32: bool = True

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (with the query instruction), float32, one row per text."""
        raise NotImplementedError

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents, float32, one row per text."""
        raise NotImplementedError

    def encode_prompted(
        self, texts: Sequence[str], prompt: str | None, prompt_type: str | None, **options: Any
    ) -> np.ndarray:
        """Embed texts as sentence-transformers' ``encode_query`` (``prompt_type``
        ``"query"``), ``encode_document`` (``"document"``) or ``encode`` (None) would with
        ``prompt`` (None: the model's own prompt for the type): what mteb asks for.

        Raises:
            ModelError: for a backend without sentence-transformers' prompts (FlagModel).
        """
        raise ModelError(
            f"backend: prompted encoding needs 'pipeline' or 'sentence-transformers', "
            f"not {self.backend!r}"
        )

    def prompt_prefix(self, prompt: str | None, prompt_type: str | None) -> str:
        """The text :meth:`encode_prompted` puts before each text.

        Raises:
            ModelError: as :meth:`encode_prompted`.
        """
        raise ModelError(
            f"backend: prompts need 'pipeline' or 'sentence-transformers', not {self.backend!r}"
        )

    def stream_fn(
        self, kind: str, prompt: str | None = None, prompt_type: str | None = None
    ) -> StreamFn | None:
        """A function that encodes chunks of texts of ``kind`` (``"query"``,
        ``"document"``, or ``"mteb"`` with ``prompt`` and ``prompt_type``) ahead across
        chunk boundaries (see :meth:`helpers.cache.EmbeddingCache.encode`), or None."""
        return None

    def close(self) -> None:
        """Release worker processes, if any (also done when the encoder is collected)."""

    def fingerprint(
        self, kind: str, prompt: str | None = None, prompt_type: str | None = None
    ) -> dict[str, Any]:
        """Everything besides the texts that shapes this encoder's vectors of one kind.

        The embedding cache keys on it. ``"query"`` and ``"document"`` (notebook 1): model
        name and weights (a hash of the weight and configuration files of a local folder,
        else the hub revision), backend, pooling, maximum length, normalisation, dtype,
        device type, the instruction (queries only), the versions of the libraries that
        compute the vectors, and the key's version. ``"mteb"`` (what mteb asks for, keyed
        as the MTEB glue always has): model name and weights, what encodes
        (``"helpers-pipeline"`` or ``"mteb-sentence-transformers"``), device type,
        library versions, the dtype the weights are in at the call, ``prompt`` as
        :meth:`prompt_prefix` completes it, and ``prompt_type``. Either kind, when the
        dtype is not float32, also holds ``"pooling_dtype"``, the dtype the vectors are
        pooled in (float32 keys are as they always were).

        Raises:
            ValueError: naming ``kind`` when it is none of :data:`KINDS`.
        """
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {list(KINDS)}, got {kind!r}")
        weights = weights_id(self.path, self.revision)
        if kind == "mteb":
            prefix = self.prompt_prefix(prompt, prompt_type)  # raises for FlagModel
            # the MTEB key's name for what encodes: its values are kept as they were
            encodes = "helpers-pipeline" if self.uses_pipeline else "mteb-sentence-transformers"
            # read at each call: mteb users may cast the model after loading it
            dtype = weights_dtype(self.model)
            return {
                "model": self.name,
                "weights": weights,
                "backend": encodes,
                "device": device_type(self.device),
                "versions": library_versions(),
                "dtype": dtype,
                "prompt": prefix,
                "prompt_type": str(prompt_type),
                **self._pooling_dtype(dtype),
            }
        local = bool(self.path) and Path(self.path).is_dir()
        cfg = read_model_config(self.path) if local else None
        return {
            "model": self.name,
            "weights": weights,
            "backend": self.backend,
            "pooling": cfg.pooling if cfg else "model default",
            "max_length": cfg.max_length if cfg else "model default",
            "normalize": True if self.normalize else "model default",
            "dtype": self.dtype,
            "cache_version": CACHE_VERSION,
            "device": device_type(self.device),
            "kind": kind,
            "instruction": self.query_instruction if kind == "query" else "",
            "versions": library_versions(),
            **self._pooling_dtype(self.dtype),
        }

    def _pooling_dtype(self, dtype: str) -> dict[str, str]:
        """The key's ``pooling_dtype`` for a model running in ``dtype``: nothing in float32
        (so float32 keys stay as they were); else float32 where :attr:`pools_in_float32`,
        otherwise ``dtype`` (half-precision entries pooled before pooling was done in
        float32 hold no such field, and are never read for these)."""
        if dtype == "float32":
            return {}
        return {"pooling_dtype": "float32" if self.pools_in_float32 else dtype}

    @property
    def uses_pipeline(self) -> bool:
        """Whether the helpers' pipeline encodes (else the library's own ``encode``)."""
        return False

    def model_fingerprint(self) -> str:
        """A short hash of what makes this model's document vectors what they are: name,
        weights, pooling, maximum length, normalisation and dtype (not the backend, the
        device or library versions, which change them by rounding only). A saved index
        records it and refuses to be searched with another model's vectors."""
        settings = self.fingerprint("document")
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

    def encode_records(
        self, records: Iterable[tuple[str, str]], source: str = "", window: int = 8
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """A streamed corpus (:func:`helpers.data.stream_corpus`), chunk by chunk, without a
        cache: ``(ids, vectors)`` per chunk of :func:`helpers.models.chunk_size_for` rows;
        the records are read as the encoder asks for them, never all at once. Nothing is
        kept, so a killed run starts again: with the cache
        (:meth:`helpers.models.CachingEncoder.encode_records`) it resumes.

        Args:
            records: ``(doc id, text)`` pairs.
            source: the corpus's name (a cache entry's; unused without a cache).
            window: chunks read ahead (checked; the cache's unit of work).

        Raises:
            ValueError: for a ``window`` that is not a positive integer.
        """
        check_window(window)
        return self._stream_records(records)

    def _stream_records(
        self, records: Iterable[tuple[str, str]]
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        size = chunk_size_for(self.device)
        ids: deque[list[str]] = deque()

        def parts() -> Iterator[list[str]]:
            rows = iter(records)
            while part := list(itertools.islice(rows, size)):
                ids.append([doc_id for doc_id, _ in part])
                yield [text for _, text in part]

        stream = self.stream_fn("document")
        outputs = stream(parts()) if stream else map(self.encode_corpus, parts())
        for vectors in outputs:
            yield ids.popleft(), vectors
