"""Caching is a wrapper: :func:`cached` puts any encoder's vectors through the embedding store.

The store (:class:`helpers.cache.EmbeddingCache`) knows nothing of models; this wrapper
gives it, for each call, the encoder's :meth:`~helpers.models.EncoderBase.fingerprint` (the
key's settings), the function that computes missing chunks and, where the encoder has one,
a streaming function that works ahead across chunk boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from helpers.cache import EmbeddingCache, check_window
from helpers.models.base import Encoder, StreamFn
from helpers.models.device import chunk_size_for


class CachingEncoder:
    """An encoder whose vectors go through an :class:`~helpers.cache.EmbeddingCache`: a
    re-run reads them back, an interrupted encoding resumes from its last finished chunk.

    It is an :class:`~helpers.models.Encoder` itself, with the wrapped encoder's identity.

    Args:
        encoder: the encoder computing what the cache misses.
        cache: the store.

    Attributes:
        encoder: the wrapped encoder.
        cache: the store (its counters say what was read and what computed).
    """

    def __init__(self, encoder: Encoder, cache: EmbeddingCache) -> None:
        self.encoder = encoder
        self.cache = cache

    @property
    def name(self) -> str:
        """The wrapped encoder's model name."""
        return self.encoder.name

    @property
    def revision(self) -> str:
        """The wrapped encoder's weights revision."""
        return self.encoder.revision

    @property
    def backend(self) -> str:
        """The wrapped encoder's backend."""
        return self.encoder.backend

    @property
    def device(self) -> str:
        """The wrapped encoder's device(s)."""
        return self.encoder.device

    @property
    def use_fp16(self) -> bool:
        """Whether the wrapped encoder runs in float16."""
        return self.encoder.use_fp16

    @property
    def dtype(self) -> str:
        """The dtype the wrapped encoder runs in."""
        return self.encoder.dtype

    @property
    def dim(self) -> int:
        """The vectors' dimension."""
        return self.encoder.dim

    @property
    def show_progress(self) -> bool:
        """Progress bars while encoding (the cache's, over chunks)."""
        return self.encoder.show_progress

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Queries, from the cache when the same queries were encoded the same way."""
        return self.cache.encode(
            texts,
            self.encoder.fingerprint("query"),
            self.encoder.encode_queries,
            stream_fn=self.encoder.stream_fn("query"),
        )

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray:
        """Documents, from the cache chunk by chunk; a killed run resumes."""
        return self.cache.encode(
            texts,
            self.encoder.fingerprint("document"),
            self.encoder.encode_corpus,
            progress=self.encoder.show_progress,
            stream_fn=self.encoder.stream_fn("document"),
        )

    def encode_prompted(
        self, texts: Sequence[str], prompt: str | None, prompt_type: str | None, **options: Any
    ) -> np.ndarray:
        """Texts with a prompt, as mteb asks (:meth:`helpers.models.EncoderBase.encode_prompted`),
        keyed on the ``"mteb"`` fingerprint."""

        def encode(part: Sequence[str]) -> np.ndarray:
            return self.encoder.encode_prompted(part, prompt, prompt_type, **options)

        return self.cache.encode(
            texts,
            self.encoder.fingerprint("mteb", prompt, prompt_type),
            encode,
            progress=self.encoder.show_progress,
            stream_fn=self.encoder.stream_fn("mteb", prompt, prompt_type),
        )

    def encode_records(
        self, records: Iterable[tuple[str, str]], source: str = "", window: int = 8
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """A streamed corpus (:func:`helpers.data.stream_corpus`) through the cache, chunk
        by chunk: ``(ids, vectors)``, vectors memory-mapped when read back; a killed run
        resumes at the first chunk not finished. See
        :meth:`helpers.cache.EmbeddingCache.encode_records`.

        Args:
            records: ``(doc id, text)`` pairs.
            source: the corpus's name, part of the entry's key (e.g.
                ``"namespace-Pt/msmarco-corpus:train"``).
            window: chunks read ahead and given to the encoder as one stream.

        Raises:
            ValueError: for a ``window`` that is not a positive integer.
        """
        return self.cache.encode_records(
            records,
            self.encoder.fingerprint("document"),
            source,
            self.encoder.encode_corpus,
            stream_fn=self.encoder.stream_fn("document"),
            window=check_window(window),
            progress=self.encoder.show_progress,
        )

    def stream_fn(
        self, kind: str, prompt: str | None = None, prompt_type: str | None = None
    ) -> StreamFn | None:
        """The wrapped encoder's (uncached)."""
        return self.encoder.stream_fn(kind, prompt, prompt_type)

    def fingerprint(
        self, kind: str, prompt: str | None = None, prompt_type: str | None = None
    ) -> dict[str, Any]:
        """The wrapped encoder's: what the cache keys on."""
        return self.encoder.fingerprint(kind, prompt, prompt_type)

    def model_fingerprint(self) -> str:
        """The wrapped encoder's."""
        return self.encoder.model_fingerprint()

    def settings(self) -> dict[str, Any]:
        """The wrapped encoder's."""
        return self.encoder.settings()

    def close(self) -> None:
        """Close the wrapped encoder."""
        self.encoder.close()


def cached(encoder: Encoder, cache: str | Path | EmbeddingCache) -> CachingEncoder:
    """``encoder`` with its vectors going through an embedding cache.

    Args:
        encoder: any encoder (:func:`helpers.models.load_encoder`'s, or one of its own).
        cache: the cache's folder (chunks of :func:`helpers.models.chunk_size_for` the
            encoder's device), or an :class:`~helpers.cache.EmbeddingCache`.

    Returns:
        The caching wrapper, itself an :class:`~helpers.models.Encoder`.
    """
    if not isinstance(cache, EmbeddingCache):
        cache = EmbeddingCache(cache, chunk_size_for(encoder.device))
    return CachingEncoder(encoder, cache)
