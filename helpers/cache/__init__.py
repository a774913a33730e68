"""The embedding store: vectors under a key, on disk, never recomputed, never served bad.

A plain key -> chunks store with no model knowledge. Layout: ``<root>/<key>/`` holds
``meta.json`` (what the key was made of) and the vectors in chunks of ``chunk_size``
rows, each with a manifest holding its SHA-256 (:mod:`helpers.cache.chunks`); a killed
encoding resumes from the last finished chunk, and a truncated or corrupt chunk is
recomputed, never used. Several writers may share a cache (:mod:`helpers.cache.locks`).

The key (:mod:`helpers.cache.keys`) is the SHA-256 of the settings it is given (for an
encoder: everything that changes its vectors, :meth:`helpers.models.EncoderBase.fingerprint`)
and of the texts, so a change of any of them is a miss and the same run twice a hit.

Reads are memory-mapped, so a corpus larger than RAM can be streamed into an index chunk
by chunk (:meth:`EmbeddingCache.iter_chunks`, :meth:`EmbeddingCache.encode_records`).
Caching an encoder is a wrapper on the models side: :func:`helpers.models.cached`.
"""

from helpers.cache.keys import cache_key, settings_key, texts_fingerprint
from helpers.cache.store import (
    DEFAULT_CHUNK_SIZE,
    ChunkWork,
    EmbeddingCache,
    EntryPlan,
    StreamFn,
    check_window,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ChunkWork",
    "EmbeddingCache",
    "EntryPlan",
    "StreamFn",
    "cache_key",
    "check_window",
    "settings_key",
    "texts_fingerprint",
]
