"""Load retrieval evaluation data: queries, corpus and graded judgements, with their ids.

Two layouts are read, from a local folder or from a Hugging Face hub id:

* **BEIR** (``corpus.jsonl`` with ``_id, title, text``; ``queries.jsonl`` with
  ``_id, text``; ``qrels/<split>.tsv`` with ``query-id, corpus-id, score``). Grades are
  kept as given.
* **Hub MS MARCO** (the layout of ``namespace-Pt/msmarco`` and
  ``namespace-Pt/msmarco-corpus``: queries ``{"query", "positive": [texts]}`` and a
  corpus ``{"content"}``). The FlagEmbedding tutorial matched retrieved *texts* against
  the positives; here each positive text becomes an id-based judgement (grade 1) on
  every corpus document with exactly that text. Records without ids get their 0-based
  line number as id.

Any file may be gzip-compressed (``name.jsonl.gz``, ``name.tsv.gz``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.hub import require_hub
from helpers.metrics import Qrels

EMBEDDED_DATASET = "data/msmarco-dl19/beir"

QUERY_ID_FIELDS = ("_id", "id", "query_id", "qid")
DOC_ID_FIELDS = ("_id", "id", "docid", "doc_id", "pid")


class DataError(ValueError):
    """Raised when evaluation data is missing or not in an expected layout."""


@dataclass(frozen=True)
class RetrievalData:
    """A retrieval test collection.

    Attributes:
        name: where it came from (folder or hub id).
        layout: ``"beir"`` or ``"hub"``.
        split: the split of the judgements.
        queries: query id -> text, in file order.
        corpus: document id -> text (BEIR: ``title + " " + text``), in file order.
        qrels: query id -> document id -> grade, for the queries in ``queries``.
        notes: counts a user should know (unmatched positives, sub-sampling, ...).
    """

    name: str
    layout: str
    split: str
    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: Qrels
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts for display: queries, documents, judgements by grade."""
        grades: dict[int, int] = {}
        for judgements in self.qrels.values():
            for grade in judgements.values():
                grades[grade] = grades.get(grade, 0) + 1
        return {
            "layout": self.layout,
            "split": self.split,
            "queries": len(self.queries),
            "documents": len(self.corpus),
            "judgements": sum(grades.values()),
            "judgements_by_grade": dict(sorted(grades.items())),
            **self.notes,
        }


# ---------------------------------------------------------------------------
# File reading
# ---------------------------------------------------------------------------


def find_file(folder: Path, stem: str) -> Path | None:
    """Return ``folder/stem`` or ``folder/stem.gz``, whichever exists, else None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file (optionally gzipped), skipping blank lines.

    Raises:
        DataError: naming the file and line of a line that is not a JSON object.
    """
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {line_no}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise DataError(f"{path}, line {line_no}: expected a JSON object")
            yield record


def read_qrels_tsv(path: Path) -> Qrels:
    """Read BEIR judgements: a header line, then ``query-id<TAB>corpus-id<TAB>score``.

    Raises:
        DataError: naming the file and line of a malformed row.
    """
    qrels: Qrels = {}
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for line_no, row in enumerate(reader, start=1):
            if not row or (line_no == 1 and not row[-1].lstrip("-").isdigit()):
                continue  # blank line or header
            if len(row) != 3:
                raise DataError(
                    f"{path}, line {line_no}: expected 3 tab-separated columns "
                    f"(query-id, corpus-id, score), got {len(row)}"
                )
            qid, doc_id, grade = row
            try:
                qrels.setdefault(qid, {})[doc_id] = int(float(grade))
            except ValueError as err:
                raise DataError(f"{path}, line {line_no}: score {grade!r} is not a number") from err
    return qrels


def _record_id(record: dict[str, Any], fields: tuple[str, ...], default: str) -> str:
    for name in fields:
        if name in record and record[name] is not None:
            return str(record[name])
    return default


def _require(record: dict[str, Any], columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in record]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; found {sorted(record)}")


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------


def detect_layout(folder: Path) -> str:
    """Return ``"beir"`` (a ``qrels/`` folder) or ``"hub"`` (queries with positives).

    Raises:
        DataError: when the folder holds neither layout.
    """
    if (folder / "qrels").is_dir():
        return "beir"
    queries = find_file(folder, "queries.jsonl")
    if queries is not None:
        first = next(read_jsonl(queries), {})
        if "query" in first and "positive" in first:
            return "hub"
    raise DataError(
        f"dataset {str(folder)!r}: expected a BEIR folder (corpus.jsonl, queries.jsonl, "
        "qrels/<split>.tsv) or the hub MS MARCO layout (queries.jsonl with "
        '"query" and "positive", corpus.jsonl with "content")'
    )


def read_beir_jsonl(path: Path) -> Iterator[tuple[str, str, str, str]]:
    """``(id, title, text, "<file>, line <n>")`` of each record of a BEIR ``corpus.jsonl``
    or ``queries.jsonl`` (``_id`` and ``text`` required, ``title`` optional), as given.

    Raises:
        DataError: naming the file and line of a record without ``_id`` or ``text``.
    """
    for i, rec in enumerate(read_jsonl(path), start=1):
        where = f"{path}, line {i}"
        _require(rec, ("_id", "text"), where)
        yield str(rec["_id"]), str(rec.get("title") or ""), str(rec["text"]), where


def beir_passage(title: str, text: str) -> str:
    """A BEIR document as one passage: its title, a space, its text (stripped)."""
    return f"{title} {text}".strip()


def _load_beir_folder(folder: Path, split: str) -> tuple[dict[str, str], dict[str, str], Qrels]:
    corpus_path = find_file(folder, "corpus.jsonl")
    queries_path = find_file(folder, "queries.jsonl")
    qrels_path = find_file(folder / "qrels", f"{split}.tsv")
    for label, path, expected in (
        ("corpus", corpus_path, folder / "corpus.jsonl"),
        ("queries", queries_path, folder / "queries.jsonl"),
        ("qrels", qrels_path, folder / "qrels" / f"{split}.tsv"),
    ):
        if path is None:
            raise DataError(f"dataset: missing {label} file {expected} (or {expected}.gz)")
    assert corpus_path and queries_path and qrels_path
    corpus: dict[str, str] = {}
    for doc_id, title, text, where in read_beir_jsonl(corpus_path):
        _add_unique(corpus, doc_id, beir_passage(title, text), where)
    queries: dict[str, str] = {}
    for query_id, _, text, where in read_beir_jsonl(queries_path):
        _add_unique(queries, query_id, text.strip(), where)
    return queries, corpus, read_qrels_tsv(qrels_path)


def _add_unique(target: dict[str, str], key: str, text: str, where: str) -> None:
    """Add an id and its text, refusing duplicate ids and empty texts."""
    if key in target:
        raise DataError(f"{where}: duplicate id {key!r}")
    if not text:
        raise DataError(f"{where}: empty text for id {key!r}")
    target[key] = text


def _hub_corpus(records: Iterator[dict[str, Any]], where: str) -> dict[str, str]:
    corpus: dict[str, str] = {}
    for i, rec in enumerate(records):
        at = f"{where}, record {i}"
        _require(rec, ("content",), at)
        _add_unique(corpus, _record_id(rec, DOC_ID_FIELDS, str(i)), str(rec["content"]).strip(), at)
    return corpus


def _hub_queries(
    records: Iterator[dict[str, Any]], corpus: dict[str, str], where: str
) -> tuple[dict[str, str], Qrels, int]:
    by_text: dict[str, list[str]] = {}
    for doc_id, text in corpus.items():
        by_text.setdefault(text, []).append(doc_id)
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    unmatched = 0
    for i, rec in enumerate(records):
        _require(rec, ("query", "positive"), f"{where}, record {i}")
        qid = _record_id(rec, QUERY_ID_FIELDS, str(i))
        _add_unique(queries, qid, str(rec["query"]).strip(), f"{where}, record {i}")
        for text in rec["positive"] or []:
            doc_ids = by_text.get(text)
            if doc_ids is None:
                unmatched += 1
                continue
            for doc_id in doc_ids:
                qrels.setdefault(qid, {})[doc_id] = 1
    return queries, qrels, unmatched


def _is_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _hub_records(dataset_id: str, split: str) -> Iterator[dict[str, Any]]:
    """Rows of a hub dataset split, through ``datasets`` (fails clearly offline)."""
    try:
        import datasets

        rows = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # noqa: BLE001 - any loader failure is re-raised with advice
        raise DataError(
            f"dataset {dataset_id!r}: could not load split {split!r} from the Hugging Face hub "
            f"({type(err).__name__}: {err}). Without network access, use a local folder such "
            "as the embedded 'data/msmarco-dl19/beir'."
        ) from err
    return iter(rows)


def _hub_snapshot(dataset_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(dataset_id, repo_type="dataset"))
    except Exception as err:  # noqa: BLE001
        raise DataError(
            f"dataset {dataset_id!r}: could not download it from the Hugging Face hub "
            f"({type(err).__name__}: {err}). Without network access, use a local folder such "
            "as the embedded 'data/msmarco-dl19/beir'."
        ) from err


# ---------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------


def load_retrieval_data(
    dataset: str | Path | None,
    corpus: str | Path | None = None,
    split: str = "",
    num_queries: int = 0,
    max_corpus: int = 0,
    seed: int = 0,
    dangling: str = "warn",
) -> RetrievalData:
    """Load queries, corpus and judgements from a local folder or a hub id.

    Args:
        dataset: a local folder (BEIR or hub MS MARCO layout) or a hub dataset id such as
            ``namespace-Pt/msmarco`` (hub layout) or ``mteb/scifact`` (BEIR files).
        corpus: optional separate corpus (hub layout only): a folder or file holding
            ``{"content"}`` records, or a hub id such as ``namespace-Pt/msmarco-corpus``.
            Empty: ``corpus.jsonl`` next to the queries, or ``<dataset>-corpus`` on the hub.
        split: judgement split; empty means ``test`` for BEIR and ``dev`` on the hub.
        num_queries: keep the first n judged queries (file order); 0 keeps all.
        max_corpus: 0 keeps the whole corpus. Otherwise keep every document judged for the
            kept queries plus a seeded random sample of the others, up to this many in all.
            Scores on a reduced corpus are higher than on the full one.
        seed: seed of that sample.
        dangling: judgements on documents missing from the corpus, or judged queries
            missing from the queries: ``"warn"``, ``"error"`` or ``"ignore"``
            (:func:`check_judgements`).

    Returns:
        The collection, with ids kept and judgements restricted to the kept queries.

    Raises:
        DataError: on a missing folder or file, a wrong layout, malformed records,
            duplicate ids, empty texts, or (``dangling="error"``) dangling judgements.
    """
    if dangling not in DANGLING_CHOICES:
        raise DataError(f"dangling: expected one of {list(DANGLING_CHOICES)}, got {dangling!r}")
    if num_queries < 0:
        raise DataError(f"num_queries: expected 0 (all) or a positive count, got {num_queries}")
    if max_corpus < 0:
        raise DataError(f"max_corpus: expected 0 (all) or a positive count, got {max_corpus}")
    if dataset is None or not str(dataset):
        raise DataError(f"dataset: expected a folder or a hub id, e.g. {EMBEDDED_DATASET!r}")
    name = str(dataset)
    folder = Path(dataset).expanduser()
    notes: dict[str, Any] = {}
    if folder.is_dir():
        layout = detect_layout(folder)
    elif _is_hub_id(name) and not folder.exists():
        layout = "hub-id"
    else:
        raise DataError(f"dataset: {name!r} is neither an existing folder nor a hub id (org/name)")

    if layout == "beir":
        split = split or "test"
        queries, docs, qrels = _load_beir_folder(folder, split)
    elif layout == "hub":
        split = split or "test"
        docs = _load_hub_corpus(corpus, default_folder=folder)
        queries_path = find_file(folder, "queries.jsonl")
        assert queries_path is not None
        queries, qrels, unmatched = _hub_queries(read_jsonl(queries_path), docs, str(queries_path))
        notes["positives_not_in_corpus"] = unmatched
    else:  # a hub id: the hub MS MARCO layout through `datasets`, else BEIR files
        try:
            require_hub("dataset", name, EMBEDDED_DATASET)
        except OSError as err:
            raise DataError(str(err)) from err
        hub_split = split or "dev"
        first: dict[str, Any] = {}
        try:
            rows = _hub_records(name, hub_split)
            first = next(rows, {})
        except DataError:
            if corpus is not None:
                raise
        if not ("query" in first and "positive" in first):
            snapshot = _hub_snapshot(name)
            return load_retrieval_data(
                snapshot, None, split, num_queries, max_corpus, seed, dangling
            )
        layout, split = "hub", hub_split
        docs = _load_hub_corpus(corpus if corpus else f"{name}-corpus", default_folder=None)
        queries, qrels, unmatched = _hub_queries(_chain(first, rows), docs, name)
        notes["positives_not_in_corpus"] = unmatched

    data = RetrievalData(name, layout, split, queries, docs, qrels, notes)
    counts = check_judgements(data, dangling)
    notes.update({k: v for k, v in counts.items() if v})
    return _subset(data, num_queries, max_corpus, seed)


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


def _load_hub_corpus(corpus: str | Path | None, default_folder: Path | None) -> dict[str, str]:
    if corpus is None or str(corpus) == "":
        assert default_folder is not None
        path = find_file(default_folder, "corpus.jsonl")
        if path is None:
            raise DataError(
                f"dataset {str(default_folder)!r}: no corpus.jsonl next to queries.jsonl; "
                "pass `corpus` (a folder, a .jsonl file or a hub id)"
            )
        return _hub_corpus(read_jsonl(path), str(path))
    corpus_path = Path(corpus).expanduser()
    if corpus_path.is_dir():
        path = find_file(corpus_path, "corpus.jsonl")
        if path is None:
            raise DataError(f"corpus: no corpus.jsonl(.gz) in {str(corpus_path)!r}")
        return _hub_corpus(read_jsonl(path), str(path))
    if corpus_path.is_file():
        return _hub_corpus(read_jsonl(corpus_path), str(corpus_path))
    if _is_hub_id(str(corpus)):
        try:
            require_hub("corpus", str(corpus), "the corpus.jsonl next to the queries")
        except OSError as err:
            raise DataError(str(err)) from err
        return _hub_corpus(_hub_records(str(corpus), "train"), str(corpus))
    raise DataError(f"corpus: {str(corpus)!r} is neither an existing folder/file nor a hub id")


def _corpus_record(rec: dict[str, Any], number: int, where: str) -> tuple[str, str]:
    """(id, text) of a corpus record in either layout: BEIR (``_id``, ``title``, ``text``)
    or hub (``content``, id optional: the record's 0-based number)."""
    if "content" in rec:
        return _record_id(rec, DOC_ID_FIELDS, str(number)), str(rec["content"]).strip()
    _require(rec, ("_id", "text"), where)
    return str(rec["_id"]), beir_passage(str(rec.get("title") or ""), str(rec["text"]))


def stream_corpus(
    source: str | Path, split: str = "train", limit: int = 0
) -> Iterator[tuple[str, str]]:
    """``(doc id, text)`` records of a corpus, one at a time: the texts are never all in RAM
    (the ids are kept, to refuse a repeated one: about 0.6 GB for 8.8M ids).

    For collections too large to load (the full MS MARCO passage collection,
    ``namespace-Pt/msmarco-corpus``: 8,841,823 passages), feed this to
    :meth:`helpers.cache.EmbeddingCache.encode_records` (or
    :meth:`helpers.models.CachedEncoder.encode_records`), then build the index from the
    cached chunks (:func:`helpers.index.build_index_from_chunks`).

    Args:
        source: a hub dataset id (read with ``datasets``' ``streaming=True``), a
            ``.jsonl(.gz)`` file, or a folder holding ``corpus.jsonl(.gz)``. Records in
            the BEIR layout (``_id``, ``title``, ``text``) or the hub one (``content``).
        split: the hub dataset's split.
        limit: stop after this many records (0: all).

    Raises:
        DataError: for a source that is neither a file, a folder nor a reachable hub id,
            a record without the needed columns, an empty text or a repeated id (checked
            as the records go by).
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
        rows: Iterator[dict[str, Any]] = read_jsonl(path)
        where = str(path)
    elif _is_hub_id(str(source)):
        try:
            require_hub("source", str(source), EMBEDDED_DATASET)
        except OSError as err:
            raise DataError(str(err)) from err
        try:
            import datasets

            rows = iter(datasets.load_dataset(str(source), split=split, streaming=True))
        except Exception as err:  # noqa: BLE001 - any loader failure, re-raised with its name
            raise DataError(
                f"source: could not stream {str(source)!r} split {split!r} from the hub "
                f"({type(err).__name__}: {err})"
            ) from err
        where = f"{source} ({split})"
    else:
        raise DataError(f"source: {str(source)!r} is neither an existing folder/file nor a hub id")
    seen: set[str] = set()
    for number, rec in enumerate(rows):
        if limit and number >= limit:
            return
        at = f"{where}, record {number}"
        doc_id, text = _corpus_record(rec, number, at)
        if doc_id in seen:
            raise DataError(f"{at}: duplicate id {doc_id!r}")
        if not text:
            raise DataError(f"{at}: empty text for id {doc_id!r}")
        seen.add(doc_id)
        yield doc_id, text


DANGLING_CHOICES = ("warn", "error", "ignore")


def check_judgements(data: RetrievalData, dangling: str = "warn") -> dict[str, int]:
    """Count judgements that point outside the collection, and act on them.

    Args:
        data: a loaded collection (before sub-setting).
        dangling: ``"warn"`` (a warning, then go on), ``"error"`` (raise) or ``"ignore"``.

    Returns:
        ``{"judged_queries_not_in_queries": n, "judgements_on_documents_not_in_corpus": m}``
        (for the hub layout the second counts positive texts found nowhere in the corpus).

    Raises:
        DataError: with ``dangling="error"`` when either count is positive, or on an
            unknown ``dangling`` value.
    """
    if dangling not in DANGLING_CHOICES:
        raise DataError(f"dangling: expected one of {list(DANGLING_CHOICES)}, got {dangling!r}")
    unknown_queries = [q for q in data.qrels if q not in data.queries]
    unknown_docs = [
        (q, d) for q, judged in data.qrels.items() for d in judged if d not in data.corpus
    ]
    counts = {
        "judged_queries_not_in_queries": len(unknown_queries),
        "judgements_on_documents_not_in_corpus": len(unknown_docs)
        + int(data.notes.get("positives_not_in_corpus", 0)),
    }
    if any(counts.values()) and dangling != "ignore":
        problems = []
        if unknown_queries:
            problems.append(
                f"{len(unknown_queries)} judged queries are not in the queries file "
                f"(e.g. {unknown_queries[:3]})"
            )
        if counts["judgements_on_documents_not_in_corpus"]:
            example = f" (e.g. {unknown_docs[:3]})" if unknown_docs else ""
            problems.append(
                f"{counts['judgements_on_documents_not_in_corpus']} judgements point at "
                f"documents not in the corpus{example}; they can never be retrieved, so recall "
                "and nDCG cannot reach 1"
            )
        message = (
            f"dataset {data.name!r}: {'; '.join(problems)}. Set dangling='ignore' to accept "
            "this, or 'error' to refuse it."
        )
        if dangling == "error":
            raise DataError(message)
        warnings.warn(message, stacklevel=2)
    return counts


def _subset(data: RetrievalData, num_queries: int, max_corpus: int, seed: int) -> RetrievalData:
    judged = [qid for qid in data.queries if data.qrels.get(qid)]
    keep_queries = judged[:num_queries] if num_queries else judged
    queries = {qid: data.queries[qid] for qid in keep_queries}
    qrels = {qid: dict(data.qrels[qid]) for qid in keep_queries}
    notes = dict(data.notes)
    if len(judged) < len(data.queries):
        notes["queries_without_judgements"] = len(data.queries) - len(judged)
    docs = data.corpus
    if max_corpus and max_corpus < len(docs):
        judged_docs = {doc for j in qrels.values() for doc in j if doc in docs}
        others = [doc for doc in docs if doc not in judged_docs]
        extra = max(max_corpus - len(judged_docs), 0)
        sampled = set(random.Random(seed).sample(others, min(extra, len(others))))
        docs = {doc: text for doc, text in docs.items() if doc in judged_docs or doc in sampled}
        notes["corpus_reduced_from"] = len(data.corpus)
    return RetrievalData(data.name, data.layout, data.split, queries, docs, qrels, notes)
