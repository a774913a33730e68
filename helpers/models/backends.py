"""The three backends: the helpers' pipeline, sentence-transformers and FlagModel.

All three give the same vectors for the same model: the pooling (CLS or mean), the
maximum sequence length and L2-normalisation are read from the model's
sentence-transformers configuration and passed to ``FlagModel``, whose defaults (CLS
pooling, 512 tokens, fp16) would otherwise silently change the vectors.
"""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from helpers.models.base import EncoderBase, StreamFn, as_float32


def _unit_float32(vectors: Any, dtype: str) -> np.ndarray:
    """float32 vectors; in half precision normalised again in float32, since the libraries
    normalise in the model's dtype (bfloat16 norms are off by up to 4e-3, so inner product
    would not be cosine). float32 vectors are returned as computed."""
    out = np.asarray(vectors, dtype=np.float32)
    if dtype != "float32" and len(out):
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
    return out


class SentenceTransformerEncoder(EncoderBase):
    """sentence-transformers ``SentenceTransformer.encode``, float32 (unit vectors unless
    ``normalize`` is None).

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

    def _pool_option(self, texts: Sequence[str]) -> dict[str, Any]:
        return {"pool": self._multi_device_pool()} if len(self.devices) > 1 and texts else {}

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress,
            convert_to_numpy=True,
            normalize_embeddings=bool(self.normalize),
            **self._pool_option(texts),
        )
        return _unit_float32(vectors, self.dtype) if self.normalize else as_float32(vectors)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.query_instruction + t for t in texts])

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_prompted(
        self, texts: Sequence[str], prompt: str | None, prompt_type: str | None, **options: Any
    ) -> np.ndarray:
        """As :meth:`EncoderBase.encode_prompted`: the call mteb's own sentence-transformers
        wrapper makes (``options``: its keywords, e.g. ``batch_size``)."""
        encode = {"query": self.model.encode_query, "document": self.model.encode_document}
        function = encode.get(prompt_type or "", self.model.encode)
        if self.normalize:
            options = {**options, "normalize_embeddings": True}
        vectors = function(list(texts), prompt=prompt, **options, **self._pool_option(texts))
        return _unit_float32(vectors, self.dtype) if self.normalize else as_float32(vectors)

    def prompt_prefix(self, prompt: str | None, prompt_type: str | None) -> str:
        """The prompt sentence-transformers puts first: ``prompt``, else the model's prompt
        for ``prompt_type``, else its default (:func:`helpers.encoding.st_prompt`)."""
        from helpers.encoding import st_prompt

        return st_prompt(self.model, prompt, prompt_type)


@dataclass
class PipelineEncoder(SentenceTransformerEncoder):
    """The helpers' pipeline (:mod:`helpers.encoding`): tokenisation in worker threads
    overlapped with the forward pass, length-sorted batches, pinned memory; the same
    vectors as sentence-transformers. A model the pipeline cannot reproduce, or several
    devices, go through ``SentenceTransformer.encode`` (logged)."""

    pipeline: Any = None

    @property
    def uses_pipeline(self) -> bool:
        return self.pipeline is not None

    def _default_prompt(self) -> str:
        """The prompt ``SentenceTransformer.encode`` puts first: the model's default, if any."""
        return self.prompt_prefix(None, None)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.pipeline is None:
            return super()._encode(texts)
        prompt = self._default_prompt()
        return self.pipeline.encode([prompt + t for t in texts] if prompt else texts)

    def encode_prompted(
        self, texts: Sequence[str], prompt: str | None, prompt_type: str | None, **options: Any
    ) -> np.ndarray:
        """As :meth:`EncoderBase.encode_prompted`, through the pipeline when it encodes
        (``options`` then do not apply: the pipeline has its own batch size)."""
        if self.pipeline is None:
            return super().encode_prompted(texts, prompt, prompt_type, **options)
        prefix = self.prompt_prefix(prompt, prompt_type)
        return self.pipeline.encode([prefix + text for text in texts])

    def stream_fn(
        self, kind: str, prompt: str | None = None, prompt_type: str | None = None
    ) -> StreamFn | None:
        if self.pipeline is None:
            return None
        if kind == "mteb":
            prefix = self.prompt_prefix(prompt, prompt_type)
        else:
            prefix = self._default_prompt() + (self.query_instruction if kind == "query" else "")

        def stream(parts: Iterable[Sequence[str]]) -> Iterator[np.ndarray]:
            return self.pipeline.encode_stream([prefix + t for t in part] for part in parts)

        return stream


class FlagModelEncoder(EncoderBase):
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
