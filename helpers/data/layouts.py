"""The two layouts of a collection on disk or on the hub, read into ids and texts.

* **BEIR** (``corpus.jsonl`` with ``_id, title, text``; ``queries.jsonl`` with
  ``_id, text``; ``qrels/<split>.tsv`` with ``query-id, corpus-id, score``).
* **Hub MS MARCO** (``namespace-Pt/msmarco`` and ``namespace-Pt/msmarco-corpus``: queries
  ``{"query", "positive": [texts]}`` and a corpus ``{"content"}``): each positive text
  becomes an id-based judgement (grade 1) on every corpus document with exactly that
  text; records without ids get their 0-based record number as id.

Hub ids are read through ``datasets`` and ``huggingface_hub`` (and fail at once, naming the
embedded default, without network).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.data.files import DataError, find_file, read_jsonl_lines, read_qrels_tsv, show_value
from helpers.data.records import (
    DOC_ID_FIELDS,
    Located,
    add_unique,
    beir_passage,
    file_records,
    hub_query,
    ids_by_text,
    read_beir_jsonl,
    record_id,
    require_columns,
    row_records,
    text_field,
)
from helpers.hub import require_hub
from helpers.metrics import Qrels

#: The embedded collection, suggested where a hub id cannot be reached.
EMBEDDED_DATASET = "data/msmarco-dl19/beir"


def detect_layout(folder: Path) -> str:
    """Return ``"beir"`` (a ``qrels/`` folder) or ``"hub"`` (queries with positives).

    Raises:
        DataError: when the folder holds neither layout, or its queries file is empty.
    """
    if (folder / "qrels").is_dir():
        return "beir"
    queries = find_file(folder, "queries.jsonl")
    if queries is not None:
        records = read_jsonl_lines(queries)
        first = next(records, (0, None))[1]
        records.close()
        if first is None:
            raise DataError(f"{queries}: no queries (the file is empty)")
        if "query" in first and "positive" in first:
            return "hub"
    raise DataError(
        f"dataset {str(folder)!r}: expected a BEIR folder (corpus.jsonl, queries.jsonl, "
        "qrels/<split>.tsv) or the hub MS MARCO layout (queries.jsonl with "
        '"query" and "positive", corpus.jsonl with "content")'
    )


def beir_splits(folder: Path) -> list[str]:
    """The splits of a BEIR folder: the names of its ``qrels/<split>.tsv(.gz)`` files."""
    qrels = folder / "qrels"
    names = set()
    for suffix in (".tsv", ".tsv.gz"):
        names |= {p.name[: -len(suffix)] for p in qrels.glob(f"*{suffix}") if p.is_file()}
    return sorted(names)


def load_beir_folder(folder: Path, split: str) -> tuple[dict[str, str], dict[str, str], Qrels]:
    """``(queries, corpus, qrels)`` of a BEIR folder: stripped query texts, passages
    (:func:`~helpers.data.records.beir_passage`) and the judgements of ``split``.

    Raises:
        DataError: for an unknown split (with the splits in the folder), a missing file,
            an empty corpus or queries file, a duplicate id or an empty text, or a record
            or judgement that cannot be read (file and line named).
    """
    corpus_path = find_file(folder, "corpus.jsonl")
    queries_path = find_file(folder, "queries.jsonl")
    qrels_path = find_file(folder / "qrels", f"{split}.tsv")
    if qrels_path is None:
        available = beir_splits(folder)
        raise DataError(
            f"split: {split!r} not found: missing qrels file {folder / 'qrels' / split}.tsv "
            f"(or .tsv.gz); splits in {folder / 'qrels'}: "
            + (", ".join(repr(s) for s in available) if available else "none")
        )
    for label, path, expected in (
        ("corpus", corpus_path, folder / "corpus.jsonl"),
        ("queries", queries_path, folder / "queries.jsonl"),
    ):
        if path is None:
            raise DataError(f"dataset: missing {label} file {expected} (or {expected}.gz)")
    assert corpus_path and queries_path
    corpus: dict[str, str] = {}
    for doc_id, title, text, where in read_beir_jsonl(corpus_path):
        add_unique(corpus, doc_id, beir_passage(title, text), where)
    if not corpus:
        raise DataError(f"{corpus_path}: no documents (the corpus is empty)")
    queries: dict[str, str] = {}
    for query_id, _, text, where in read_beir_jsonl(queries_path):
        add_unique(queries, query_id, text.strip(), where)
    if not queries:
        raise DataError(f"{queries_path}: no queries (the file is empty)")
    return queries, corpus, read_qrels_tsv(qrels_path)


def hub_corpus(records: Iterator[Located], source: str) -> dict[str, str]:
    """Document id -> stripped ``content`` of hub-layout corpus records.

    Raises:
        DataError: naming the record: a missing or non-string ``content``, a null or float
            id, a duplicate id or an empty text; naming ``source`` when it has no records.
    """
    corpus: dict[str, str] = {}
    for number, where, rec in records:
        require_columns(rec, ("content",), where)
        doc_id = record_id(rec, DOC_ID_FIELDS, str(number), where)
        add_unique(corpus, doc_id, text_field(rec, "content", where).strip(), where)
    if not corpus:
        raise DataError(f"{source}: no documents (the corpus is empty)")
    return corpus


def hub_queries(
    records: Iterator[Located], corpus: dict[str, str], source: str, corpus_source: str
) -> tuple[dict[str, str], Qrels, int]:
    """Queries and id-based judgements of hub-layout query records.

    Each positive text judges (grade 1) every corpus document with exactly that text.

    Returns:
        ``(queries, qrels, number of positive texts found nowhere in the corpus)``.

    Raises:
        DataError: for a bad record (:func:`hub_query`), a duplicate query id or empty
            query, no query at all, or when none of the positives is a text of the corpus.
    """
    by_text = ids_by_text(corpus)
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    unmatched: list[str] = []
    for number, where, rec in records:
        qid, text, positives = hub_query(rec, number, where)
        add_unique(queries, qid, text, where)
        for positive in positives:
            doc_ids = by_text.get(positive)
            if doc_ids is None:
                unmatched.append(positive)
                continue
            for doc_id in doc_ids:
                qrels.setdefault(qid, {})[doc_id] = 1
    if not queries:
        raise DataError(f"{source}: no queries (the file is empty)")
    if unmatched and not qrels:
        raise DataError(
            f"{source}: none of the {len(unmatched)} positive passages is a text of the "
            f"corpus {corpus_source} (matched by exact text); e.g. positive "
            f"{show_value(unmatched[0])} vs corpus text {show_value(next(iter(corpus.values())))}"
        )
    return queries, qrels, len(unmatched)


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the form of a hub id (``org/name``, not a relative path)."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def hub_records(dataset_id: str, split: str) -> Iterator[dict[str, Any]]:
    """Rows of a hub dataset split, through ``datasets``.

    Raises:
        DataError: naming the dataset, the split and the embedded alternative when it
            cannot be loaded (no network, unknown dataset or split, ...).
    """
    try:
        import datasets

        rows = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # noqa: BLE001 - any loader failure is re-raised with advice
        raise DataError(
            f"dataset {dataset_id!r}: could not load split {split!r} from the Hugging Face hub "
            f"({type(err).__name__}: {err}). Without network access, use a local folder such "
            f"as the embedded {EMBEDDED_DATASET!r}."
        ) from err
    return iter(rows)


def hub_snapshot(dataset_id: str) -> Path:
    """The local folder of a hub dataset's files (downloaded with ``snapshot_download``).

    Raises:
        DataError: naming the dataset and the embedded alternative when it cannot be
            downloaded.
    """
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(dataset_id, repo_type="dataset"))
    except Exception as err:  # noqa: BLE001
        raise DataError(
            f"dataset {dataset_id!r}: could not download it from the Hugging Face hub "
            f"({type(err).__name__}: {err}). Without network access, use a local folder such "
            f"as the embedded {EMBEDDED_DATASET!r}."
        ) from err


def load_hub_corpus(
    corpus: str | Path | None, default_folder: Path | None
) -> tuple[dict[str, str], str]:
    """A hub-layout corpus (``{"content"}`` records) and where it was read from.

    Args:
        corpus: a folder holding ``corpus.jsonl(.gz)``, such a file, or a hub id; None or
            ``""``: ``corpus.jsonl`` in ``default_folder``.
        default_folder: the folder of the queries (None where there is none).

    Returns:
        ``(document id -> text, the file or hub id read)``.

    Raises:
        DataError: for a corpus that is neither a folder, a file nor a reachable hub id, a
            folder without ``corpus.jsonl``, or a bad record (:func:`hub_corpus`).
    """
    if corpus is None or str(corpus) == "":
        assert default_folder is not None
        path = find_file(default_folder, "corpus.jsonl")
        if path is None:
            raise DataError(
                f"dataset {str(default_folder)!r}: no corpus.jsonl next to queries.jsonl; "
                "pass `corpus` (a folder, a .jsonl file or a hub id)"
            )
        return hub_corpus(file_records(path), str(path)), str(path)
    corpus_path = Path(corpus).expanduser()
    if corpus_path.is_dir():
        path = find_file(corpus_path, "corpus.jsonl")
        if path is None:
            raise DataError(f"corpus: no corpus.jsonl(.gz) in {str(corpus_path)!r}")
        return hub_corpus(file_records(path), str(path)), str(path)
    if corpus_path.is_file():
        return hub_corpus(file_records(corpus_path), str(corpus_path)), str(corpus_path)
    if is_hub_id(str(corpus)):
        try:
            require_hub("corpus", str(corpus), "the corpus.jsonl next to the queries")
        except OSError as err:
            raise DataError(str(err)) from err
        rows = row_records(hub_records(str(corpus), "train"), str(corpus))
        return hub_corpus(rows, str(corpus)), str(corpus)
    raise DataError(f"corpus: {str(corpus)!r} is neither an existing folder/file nor a hub id")
