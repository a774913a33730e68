"""Cache keys: SHA-256 of the encoding settings and of the texts (or of a corpus's name),
and of each chunk of a streamed corpus.

The store knows nothing of models: ``settings`` is any JSON-serialisable mapping of what
changes the vectors (the models side builds it: :meth:`helpers.models.EncoderBase.fingerprint`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any


def texts_fingerprint(texts: Sequence[str]) -> str:
    """SHA-256 of the texts in order (length-prefixed, so boundaries count).

    Args:
        texts: the texts, in order.

    Returns:
        The hex digest (64 characters).
    """
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def cache_key(settings: Mapping[str, Any], texts: Sequence[str]) -> str:
    """The key of an in-memory list of texts: :func:`settings_key` of the settings and
    :func:`texts_fingerprint` of the texts.

    Args:
        settings: everything besides the texts that changes the vectors.
        texts: the texts, in order.

    Returns:
        32 hex digits.
    """
    return settings_key(settings, texts_fingerprint(texts))


def settings_key(settings: Mapping[str, Any], tail: str) -> str:
    """SHA-256 (32 hex digits) of the settings as sorted JSON, then ``tail`` (the texts'
    fingerprint, or ``"\\0"`` and a streamed corpus's source name).

    Args:
        settings: everything besides the texts that changes the vectors.
        tail: what follows the settings in the hashed string.

    Returns:
        32 hex digits.
    """
    blob = json.dumps(dict(settings), sort_keys=True, default=str)
    return hashlib.sha256((blob + tail).encode()).hexdigest()[:32]


def record_chunks(
    records: Iterable[tuple[str, str]], chunk_size: int, ids_by_chunk: dict[int, list[str]]
) -> Iterator[tuple[int, list[str], str]]:
    """A streamed corpus's chunks: ``(index, texts, SHA-256 of its ids and texts)``, the
    records read ``chunk_size`` at a time as the chunks are asked for.

    Args:
        records: ``(doc id, text)`` pairs.
        chunk_size: rows per chunk.
        ids_by_chunk: filled with each chunk's ids, by index, as it is read.
    """
    rows = iter(records)
    for index in itertools.count():
        part = list(itertools.islice(rows, chunk_size))
        if not part:
            return
        ids_by_chunk[index] = [doc_id for doc_id, _ in part]
        texts = [text for _, text in part]
        yield index, texts, texts_fingerprint([*ids_by_chunk[index], *texts])
