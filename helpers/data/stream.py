"""A corpus streamed record by record, for collections too large to load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from helpers.data.files import DataError, find_file
from helpers.data.layouts import EMBEDDED_DATASET, is_hub_id
from helpers.data.records import Located, corpus_record, file_records, row_records
from helpers.hub import require_hub


def stream_corpus(
    source: str | Path, split: str = "train", limit: int = 0
) -> Iterator[tuple[str, str]]:
    """``(doc id, text)`` records of a corpus, one at a time: the texts are never all in RAM
    (the ids are kept, to refuse a repeated one: about 0.6 GB for 8.8M ids).

    For collections too large to load (the full MS MARCO passage collection,
    ``namespace-Pt/msmarco-corpus``: 8,841,823 passages), feed this to an encoder's
    ``encode_records`` (encoded through the embedding cache, chunk by chunk), then build
    the index from the chunks it yields (:func:`helpers.index.build_index_from_stream`).

    Args:
        source: a hub dataset id (read with ``datasets``' ``streaming=True``), a
            ``.jsonl(.gz)`` file, or a folder holding ``corpus.jsonl(.gz)``. Records in
            the BEIR layout (``_id``, ``title``, ``text``) or the hub one (``content``).
        split: the hub dataset's split.
        limit: stop after this many records (0: all).

    Raises:
        DataError: for a source that is neither a file, a folder nor a reachable hub id,
            an empty corpus, a record without the needed columns, a null or float id, a
            text that is not a string, an empty text or a repeated id, or a file that
            cannot be read (checked as the records go by; file, line and record named).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise DataError(f"limit: expected 0 (all) or a positive number of records, got {limit!r}")
    path = Path(source).expanduser()
    if path.is_dir():
        found = find_file(path, "corpus.jsonl")
        if found is None:
            raise DataError(f"source: no corpus.jsonl(.gz) in {str(path)!r}")
        path = found
    if path.is_file():
        rows: Iterator[Located] = file_records(path)
        where = str(path)
    elif is_hub_id(str(source)):
        try:
            require_hub("source", str(source), EMBEDDED_DATASET)
        except OSError as err:
            raise DataError(str(err)) from err
        try:
            import datasets

            hub_rows = iter(datasets.load_dataset(str(source), split=split, streaming=True))
        except Exception as err:  # noqa: BLE001 - any loader failure, re-raised with its name
            raise DataError(
                f"source: could not stream {str(source)!r} split {split!r} from the hub "
                f"({type(err).__name__}: {err})"
            ) from err
        where = f"{source} ({split})"
        rows = row_records(hub_rows, where)
    else:
        raise DataError(f"source: {str(source)!r} is neither an existing folder/file nor a hub id")
    seen: set[str] = set()
    for number, at, rec in rows:
        if limit and number >= limit:
            return
        doc_id, text = corpus_record(rec, number, at)
        if doc_id in seen:
            raise DataError(f"{at}: duplicate id {doc_id!r}")
        if not text:
            raise DataError(f"{at}: empty text for id {doc_id!r}")
        seen.add(doc_id)
        yield doc_id, text
    if not seen:
        raise DataError(f"{where}: no documents (the corpus is empty)")
