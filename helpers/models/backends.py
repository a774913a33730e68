"""The three backends: the helpers' pipeline, sentence-transformers and FlagModel.

All three give the same vectors for the same model: the pooling (CLS or mean), the
maximum sequence length and L2-normalisation are read from the model's
sentence-transformers configuration and passed to ``FlagModel``, whose defaults (CLS
pooling, 512 tokens, fp16) would otherwise silently change the vectors.

Whatever dtype the transformer runs in, all three pool and normalise in float32: the
pipeline upcasts the hidden states itself (:mod:`helpers.encoding`); sentence-transformers
gets its token embeddings upcast before its ``Pooling`` and ``Normalize`` modules
(:func:`pool_in_float32`; by itself it rounds the pooled vector to the model's dtype and
normalises in it); ``FlagModel``'s mean pooling multiplies by a float32 mask, so it sums
in float32, its CLS pooling selects a row (exact), and in half precision it leaves the
normalisation to :func:`_unit_float32` (its own normalises in the model's dtype).
Measured on all-MiniLM-L6-v2 in bfloat16 on the CPU (1,000 MS MARCO passages):
sentence-transformers' own pooling puts its vectors up to 7e-4 (largest component) from
pooling the same hidden states in float32, with norms off by up to 4e-3; renormalised, the
directions agree to a cosine above 0.999999.
"""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from helpers.models.base import EncoderBase, StreamFn, as_float32


def pool_in_float32(st_model: Any) -> bool:
    """Make a sentence-transformers model pool and normalise in float32 whatever dtype its
    transformer runs in: a forward hook on its first module upcasts the token embeddings
    it hands on (a no-op in float32, so float32 vectors are unchanged, bit for bit).

    Only where every module after the first has no weights (``Pooling``, ``Normalize``):
    a ``Dense`` module in half precision could not take float32 input, so such a model
    keeps sentence-transformers' own pooling, in the model's dtype. Registered once; the
    hook is a module-level function, so the model still pickles (the multi-process pool).

    Args:
        st_model: a loaded ``SentenceTransformer``.

    Returns:
        Whether the model now pools in float32.
    """
    modules = list(st_model)
    if len(modules) < 2 or any(any(True for _ in m.parameters()) for m in modules[1:]):
        return False
    first = modules[0]
    if _float32_token_embeddings not in first._forward_hooks.values():
        first.register_forward_hook(_float32_token_embeddings)
    return True


def _float32_token_embeddings(module: Any, inputs: Any, features: Any) -> None:
    """Forward hook of :func:`pool_in_float32`: the token embeddings (and CLS embeddings,
    where a module hands them on) in float32, in the features mapping itself (a dict, or
    transformers' ``BatchEncoding``)."""
    import torch

    if not isinstance(features, MutableMapping):
        return
    for key in ("token_embeddings", "cls_token_embeddings"):
        tensor = features.get(key)
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            if tensor.dtype != torch.float32:
                features[key] = tensor.float()


def _unit_float32(vectors: Any, dtype: str) -> np.ndarray:
    """float32 vectors; in half precision normalised (again) in float32, where the library
    normalised in the model's dtype or not at all (bfloat16 norms are off by up to 4e-3,
    so inner product would not be cosine). float32 vectors are returned as computed."""
    out = np.asarray(vectors, dtype=np.float32)
    if dtype != "float32" and len(out):
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
    return out


class SentenceTransformerEncoder(EncoderBase):
    """sentence-transformers ``SentenceTransformer.encode``, float32 (unit vectors unless
    ``normalize`` is None), pooled in float32 where :func:`pool_in_float32` applies
    (``pools_in_float32``), else in the model's dtype.

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
    """The helpers' pipeline (:mod:`helpers.encoding`): length-sorted batches (by token
    count on the CPU, where it tokenises in line), tokenisation in worker threads
    overlapped with the forward pass on a GPU, pinned memory; the same
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
    """FlagEmbedding ``FlagModel`` (the tutorial's path), with the model's own pooling.

    Pooled in float32 in every dtype: mean pooling multiplies the hidden states by a
    float32 mask (so the sum is float32), CLS pooling selects a row; in half precision
    ``FlagModel`` is built without its own normalisation, done here in float32. In
    bfloat16 on the CPU it is given the device ``"cpu:0"``, since on ``"cpu"`` it casts
    its model back to float32 at every call (and could not hand bfloat16 vectors to numpy).
    """

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
