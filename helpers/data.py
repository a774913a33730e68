"""Load retrieval evaluation data: queries, corpus and graded judgements, with their ids.

Two layouts are read, from a local folder or from a Hugging Face hub id:

* **BEIR** (``corpus.jsonl`` with ``_id, title, text``; ``queries.jsonl`` with
  ``_id, text``; ``qrels/<split>.tsv`` with ``query-id, corpus-id, score``, the header
  line optional). Grades are kept as given; they must be integers (``2`` or ``2.0``).
* **Hub MS MARCO** (the layout of ``namespace-Pt/msmarco`` and
  ``namespace-Pt/msmarco-corpus``: queries ``{"query", "positive": [texts]}`` and a
  corpus ``{"content"}``). The FlagEmbedding tutorial matched retrieved *texts* against
  the positives; here each positive text becomes an id-based judgement (grade 1) on
  every corpus document with exactly that text. Records without ids get their 0-based
  record number as id. A local folder in this layout holds one split, named ``test``.

Ids are JSON strings or integers (``1722`` and ``"1722"`` are the same id); texts are JSON
strings. Anything else (``null``, a float such as ``1722.0``, a list) is refused with the
file, line and value, as are non-integer or non-finite grades, empty files, truncated or
mislabelled gzip files and text that is not UTF-8.

Any file may be gzip-compressed (``name.jsonl.gz``, ``name.tsv.gz``).

A quick mode (``load_retrieval_data(..., positives_corpus=n)``, the FlagEmbedding tutorial's
setting) makes the corpus of the positive passages of the first n judged queries only.
"""

from __future__ import annotations

import gzip
import json
import math
import numbers
import random
import re
import warnings
import zlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.hub import require_hub
from helpers.metrics import Qrels

EMBEDDED_DATASET = "data/msmarco-dl19/beir"

QUERY_ID_FIELDS = ("_id", "id", "query_id", "qid")
DOC_ID_FIELDS = ("_id", "id", "docid", "doc_id", "pid")

#: The one split a local hub-layout folder holds (recorded as ``RetrievalData.split``).
HUB_FOLDER_SPLIT = "test"

#: Column names accepted in a qrels header line (compared lower-cased, ``_`` read as ``-``).
QRELS_HEADER_NAMES = (
    frozenset({"query-id", "queryid", "qid", "query", "topic", "topic-id"}),
    frozenset(
        {
            "corpus-id",
            "corpusid",
            "doc-id",
            "docid",
            "docno",
            "document-id",
            "pid",
            "passage-id",
            "did",
        }
    ),
    frozenset({"score", "relevance", "rel", "grade", "label", "judgement", "judgment"}),
)


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


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` of a UTF-8 text file, gunzipped when named ``.gz``.

    Line numbers are 1-based; lines keep their line ending; a UTF-8 byte-order mark at the
    start is dropped. Every failure of reading names the file (and the line, where known).

    Args:
        path: the file.

    Raises:
        DataError: when the file cannot be opened, a ``.gz`` file is not gzip data, is
            truncated or corrupt, or a line is not UTF-8 text.
    """
    path = Path(path)
    line_no = 0
    try:
        handle = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from err
    with handle:
        try:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    advice = "save it as UTF-8"
                    if line_no == 1 and raw.startswith(b"\x1f\x8b"):
                        advice = f"it looks gzip-compressed: name it {path.name}.gz"
                    raise DataError(
                        f"{path}, line {line_no}: not UTF-8 text (byte 0x{raw[err.start]:02x} "
                        f"at byte {err.start + 1} of the line); {advice}"
                    ) from err
                yield line_no, line
        except (gzip.BadGzipFile, zlib.error) as err:
            if line_no == 0 and str(err).startswith("Not a gzipped file"):
                raise DataError(
                    f"{path}: not a gzip file, although its name ends in .gz ({err}); "
                    "decompress it properly or remove the .gz from its name"
                ) from err
            raise DataError(
                f"{path}, line {line_no + 1}: corrupt gzip data ({err}); copy or download it again"
            ) from err
        except EOFError as err:
            raise DataError(
                f"{path}, line {line_no + 1}: truncated gzip file (the data ends after "
                f"{line_no} complete lines); copy or download it again"
            ) from err
        except OSError as err:
            raise DataError(
                f"{path}, line {line_no + 1}: cannot be read ({err.strerror or err})"
            ) from err


def read_jsonl_lines(path: Path) -> Generator[tuple[int, dict[str, Any]], None, None]:
    """Yield ``(line number, JSON object)`` of a JSONL file (optionally gzipped), skipping
    blank lines.

    Raises:
        DataError: naming the file and line of a line that is not a JSON object, or of a
            reading failure (:func:`read_lines`).
    """
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {line_no}: not valid JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {line_no}: expected a JSON object, got {_show(record)}")
        yield line_no, record


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file (optionally gzipped), skipping blank lines.

    Raises:
        DataError: naming the file and line of a line that is not a JSON object, or of a
            reading failure (:func:`read_lines`).
    """
    for _, record in read_jsonl_lines(path):
        yield record


_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE = frozenset({"inf", "infinity", "nan"})


def parse_grade(text: str, where: str) -> int:
    """The integer grade written in a qrels score field.

    Integers (``2``, ``-1``) and integral decimals (``2.0``, ``1e0``) are accepted.

    Args:
        text: the field as written.
        where: ``"<file>, line <n>"``, for the error message.

    Raises:
        DataError: naming ``where`` and the value, for a score that is not a number, not
            finite (``inf``, ``nan``) or not an integer (``1.5``).
    """
    value = text.strip()
    if _INTEGER.fullmatch(value):
        return int(value)
    if _DECIMAL.fullmatch(value):
        number = float(value)
        if not math.isfinite(number):
            raise DataError(f"{where}: score {text!r} is not a finite number")
        if not number.is_integer():
            raise DataError(
                f"{where}: score {text!r} is not an integer; grades are integers (0, 1, 2, ...)"
            )
        return int(number)
    if value.lower().lstrip("+-") in _NON_FINITE:
        raise DataError(f"{where}: score {text!r} is not a finite number")
    raise DataError(f"{where}: score {text!r} is not a number")


def _is_qrels_header(row: list[str]) -> bool:
    """Whether a row is a qrels header: three known column names (``query-id``, ...)."""
    if len(row) != 3:
        return False
    names = [cell.strip().lower().replace("_", "-") for cell in row]
    return all(name in known for name, known in zip(names, QRELS_HEADER_NAMES, strict=True))


def read_qrels_tsv(path: Path) -> Qrels:
    """Read BEIR judgements: ``query-id<TAB>corpus-id<TAB>score`` rows, integer scores.

    The first line is a header when its three fields are known column names
    (:data:`QRELS_HEADER_NAMES`: ``query-id corpus-id score``, ``query_id doc_id
    relevance``, ``qid pid label``, ...); otherwise it must be a judgement like the others.
    Blank lines are skipped.

    Raises:
        DataError: naming the file and line of a row without 3 columns, with an empty id,
            a score that is not an integer (``1.5``, ``inf``, ``x``), a judgement repeated
            with another score, or a first line that is neither a header nor a judgement;
            naming the file when it holds no judgement or cannot be read
            (:func:`read_lines`).
    """
    qrels: Qrels = {}
    first = True
    for line_no, line in read_lines(path):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        row = text.split("\t")
        where = f"{path}, line {line_no}"
        if first:
            first = False
            if _is_qrels_header(row):
                continue
            if len(row) == 3 and not _DECIMAL.fullmatch(row[2].strip()):
                if row[2].strip().lower().lstrip("+-") not in _NON_FINITE:
                    raise DataError(
                        f"{where}: neither a header nor a judgement: {text!r} (a header "
                        "names the columns query-id, corpus-id, score; a judgement has an "
                        f"integer score, not {row[2]!r})"
                    )
        if len(row) != 3:
            raise DataError(
                f"{where}: expected 3 tab-separated columns "
                f"(query-id, corpus-id, score), got {len(row)}: {text!r}"
            )
        qid, doc_id, grade = row
        for column, cell in (("query-id", qid), ("corpus-id", doc_id)):
            if not cell.strip():
                raise DataError(f"{where}: empty {column} in {text!r}")
        judged = qrels.setdefault(qid, {})
        value = parse_grade(grade, where)
        if judged.get(doc_id, value) != value:
            raise DataError(
                f"{where}: query {qid!r}, document {doc_id!r} judged again with score "
                f"{value} (an earlier line gave {judged[doc_id]})"
            )
        judged[doc_id] = value
    if not qrels:
        raise DataError(f"{path}: no judgements (the file is empty or holds a header only)")
    return qrels


# ---------------------------------------------------------------------------
# Fields of a record
# ---------------------------------------------------------------------------


def _show(value: Any, limit: int = 60) -> str:
    """A JSON value as written in the file (``null``, ``1722.0``, ``"abc"``), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    """The JSON type of a value, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a float number"
    if isinstance(value, numbers.Number):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _id_value(value: Any, name: str, where: str) -> str:
    """An id field's value as a string: a JSON string as is, an integer in decimal.

    Raises:
        DataError: naming ``where``, the field and the value, for null, a float (``1722.0``
            would never match the id ``1722``), a boolean, a list, an object or "".
    """
    if isinstance(value, str):
        if not value:
            raise DataError(f"{where}: field {name!r} is an empty id")
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    raise DataError(
        f"{where}: field {name!r} is {_show(value)} ({_kind(value)}); ids must be JSON "
        "strings (or integers)"
    )


def _record_id(record: dict[str, Any], fields: tuple[str, ...], default: str, where: str) -> str:
    """The id of a record: the first of ``fields`` present, else ``default``.

    Raises:
        DataError: when that field is present but null or not a string or an integer.
    """
    for name in fields:
        if name in record:
            return _id_value(record[name], name, where)
    return default


def _text_field(record: dict[str, Any], name: str, where: str) -> str:
    """A text field that must be a JSON string.

    Raises:
        DataError: naming ``where``, the field and the value when it is not a string.
    """
    value = record[name]
    if not isinstance(value, str):
        raise DataError(
            f"{where}: field {name!r} is {_show(value)} ({_kind(value)}); expected a string"
        )
    return value


def _require(record: dict[str, Any], columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in record]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; found {sorted(record)}")


def _beir_record(record: dict[str, Any], where: str) -> tuple[str, str, str]:
    """``(id, title, text)`` of a BEIR record: ``_id`` and ``text`` required, ``title``
    optional (absent or null: ``""``).

    Raises:
        DataError: naming ``where``: a missing column, an id that is not a string or an
            integer, a text or title that is not a string.
    """
    _require(record, ("_id", "text"), where)
    record_id = _id_value(record["_id"], "_id", where)
    title = "" if record.get("title") is None else _text_field(record, "title", where)
    return record_id, title, _text_field(record, "text", where)


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------


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


def read_beir_jsonl(path: Path) -> Iterator[tuple[str, str, str, str]]:
    """``(id, title, text, "<file>, line <n>")`` of each record of a BEIR ``corpus.jsonl``
    or ``queries.jsonl`` (``_id`` and ``text`` required, ``title`` optional), as given.

    Ids may be JSON strings or integers (given as their decimal string); texts and titles
    must be JSON strings (a null or absent title is ``""``).

    Raises:
        DataError: naming the file and line of a record without ``_id`` or ``text``, with
            a null or float id, or a text that is not a string.
    """
    for line_no, rec in read_jsonl_lines(path):
        where = f"{path}, line {line_no}"
        yield (*_beir_record(rec, where), where)


def beir_passage(title: str, text: str) -> str:
    """A BEIR document as one passage: its title, a space, its text (stripped)."""
    return f"{title} {text}".strip()


def beir_splits(folder: Path) -> list[str]:
    """The splits of a BEIR folder: the names of its ``qrels/<split>.tsv(.gz)`` files."""
    qrels = folder / "qrels"
    names = set()
    for suffix in (".tsv", ".tsv.gz"):
        names |= {p.name[: -len(suffix)] for p in qrels.glob(f"*{suffix}") if p.is_file()}
    return sorted(names)


def _load_beir_folder(folder: Path, split: str) -> tuple[dict[str, str], dict[str, str], Qrels]:
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
        _add_unique(corpus, doc_id, beir_passage(title, text), where)
    if not corpus:
        raise DataError(f"{corpus_path}: no documents (the corpus is empty)")
    queries: dict[str, str] = {}
    for query_id, _, text, where in read_beir_jsonl(queries_path):
        _add_unique(queries, query_id, text.strip(), where)
    if not queries:
        raise DataError(f"{queries_path}: no queries (the file is empty)")
    return queries, corpus, read_qrels_tsv(qrels_path)


def _add_unique(target: dict[str, str], key: str, text: str, where: str) -> None:
    """Add an id and its text, refusing duplicate ids and empty texts."""
    if key in target:
        raise DataError(f"{where}: duplicate id {key!r}")
    if not text:
        raise DataError(f"{where}: empty text for id {key!r}")
    target[key] = text


#: A record with its 0-based number and its place (``"<file>, line <n>, record <i>"``).
Located = tuple[int, str, dict[str, Any]]


def _file_records(path: Path) -> Iterator[Located]:
    """The records of a JSONL file, numbered from 0, each with file, line and number."""
    for number, (line_no, record) in enumerate(read_jsonl_lines(path)):
        yield number, f"{path}, line {line_no}, record {number}", record


def _row_records(rows: Iterable[Any], source: str) -> Iterator[Located]:
    """The rows of a hub dataset, numbered from 0, each with the dataset and number."""
    for number, row in enumerate(rows):
        where = f"{source}, record {number}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a record (a mapping), got {type(row).__name__}")
        yield number, where, row


def _hub_corpus(records: Iterator[Located], source: str) -> dict[str, str]:
    """Document id -> stripped ``content`` of hub-layout corpus records.

    Raises:
        DataError: naming the record: a missing or non-string ``content``, a null or float
            id, a duplicate id or an empty text; naming ``source`` when it has no records.
    """
    corpus: dict[str, str] = {}
    for number, where, rec in records:
        _require(rec, ("content",), where)
        doc_id = _record_id(rec, DOC_ID_FIELDS, str(number), where)
        _add_unique(corpus, doc_id, _text_field(rec, "content", where).strip(), where)
    if not corpus:
        raise DataError(f"{source}: no documents (the corpus is empty)")
    return corpus


def _hub_query(rec: dict[str, Any], number: int, where: str) -> tuple[str, str, list[str]]:
    """``(id, stripped query, positive texts)`` of a hub-layout query record.

    Raises:
        DataError: naming ``where``: a missing ``query`` or ``positive``, a null or float
            id, a query that is not a string, positives that are not a list of strings.
    """
    _require(rec, ("query", "positive"), where)
    qid = _record_id(rec, QUERY_ID_FIELDS, str(number), where)
    text = _text_field(rec, "query", where).strip()
    positives = rec["positive"]
    if not isinstance(positives, list) or not all(isinstance(p, str) for p in positives):
        bad = (
            positives
            if not isinstance(positives, list)
            else next(p for p in positives if not isinstance(p, str))
        )
        raise DataError(
            f"{where}: field 'positive' must be a list of passage texts (strings); found "
            f"{_show(bad)} ({_kind(bad)})"
        )
    return qid, text, positives


def _ids_by_text(corpus: dict[str, str]) -> dict[str, list[str]]:
    by_text: dict[str, list[str]] = {}
    for doc_id, text in corpus.items():
        by_text.setdefault(text, []).append(doc_id)
    return by_text


def _hub_queries(
    records: Iterator[Located], corpus: dict[str, str], source: str, corpus_source: str
) -> tuple[dict[str, str], Qrels, int]:
    """Queries and id-based judgements of hub-layout query records.

    Each positive text judges (grade 1) every corpus document with exactly that text.

    Returns:
        ``(queries, qrels, number of positive texts found nowhere in the corpus)``.

    Raises:
        DataError: for a bad record (:func:`_hub_query`), a duplicate query id or empty
            query, no query at all, or when none of the positives is a text of the corpus.
    """
    by_text = _ids_by_text(corpus)
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    unmatched: list[str] = []
    for number, where, rec in records:
        qid, text, positives = _hub_query(rec, number, where)
        _add_unique(queries, qid, text, where)
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
            f"{_show(unmatched[0])} vs corpus text {_show(next(iter(corpus.values())))}"
        )
    return queries, qrels, len(unmatched)


def _hub_positives(
    records: Iterator[Located], count: int, corpus: dict[str, str] | None, source: str
) -> tuple[dict[str, str], Qrels, dict[str, str], int, int]:
    """The quick-mode collection of hub-layout query records: the positives of the first
    ``count`` judged queries (queries with at least one positive) make the corpus.

    The passages are the distinct positive texts in order of first appearance. Their ids
    come from ``corpus`` when given (every document with exactly that text, as in the
    normal mode); a text absent from it (or every text, without ``corpus``) gets the id
    ``pos-<k>``, k its 0-based order of first appearance. Records after the ``count``-th
    judged query are not read.

    Returns:
        ``(queries, qrels, passages, judged queries read, texts given a pos-<k> id)``.

    Raises:
        DataError: for a bad record (:func:`_hub_query`), a duplicate query id, an empty
            query or positive, or no judged query at all.
    """
    by_text = _ids_by_text(corpus) if corpus is not None else {}
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    passages: dict[str, str] = {}
    ids_of: dict[str, list[str]] = {}
    judged = without_id = 0
    for number, where, rec in records:
        qid, text, positives = _hub_query(rec, number, where)
        _add_unique(queries, qid, text, where)
        for positive in positives:
            if positive not in ids_of:
                ids = by_text.get(positive)
                if ids is None:
                    ids = [f"pos-{len(ids_of)}"]
                    without_id += 1
                for doc_id in ids:
                    _add_unique(passages, doc_id, positive.strip(), f"{where}, positive")
                ids_of[positive] = ids
            for doc_id in ids_of[positive]:
                qrels.setdefault(qid, {})[doc_id] = 1
        if positives:
            judged += 1
            if judged == count:
                break
    if not queries:
        raise DataError(f"{source}: no queries (the file is empty)")
    if not judged:
        raise DataError(f"{source}: no query has a positive passage")
    return queries, qrels, passages, judged, without_id


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


def _count(name: str, value: Any, zero: str, unit: str) -> int:
    """A non-negative integer parameter.

    Raises:
        DataError: naming the parameter, for a negative number or a non-integer.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise DataError(f"{name}: expected 0 ({zero}) or a positive {unit}, got {value!r}")
    return int(value)


def load_retrieval_data(
    dataset: str | Path | None,
    corpus: str | Path | None = None,
    split: str = "",
    num_queries: int = 0,
    max_corpus: int = 0,
    seed: int = 0,
    dangling: str = "warn",
    *,
    positives_corpus: int = 0,
) -> RetrievalData:
    """Load queries, corpus and judgements from a local folder or a hub id.

    Args:
        dataset: a local folder (BEIR or hub MS MARCO layout) or a hub dataset id such as
            ``namespace-Pt/msmarco`` (hub layout) or ``mteb/scifact`` (BEIR files).
        corpus: optional separate corpus (hub layout only): a folder or file holding
            ``{"content"}`` records, or a hub id such as ``namespace-Pt/msmarco-corpus``.
            Empty: ``corpus.jsonl`` next to the queries, or ``<dataset>-corpus`` on the hub.
        split: judgement split. BEIR folder: a ``qrels/<split>.tsv`` file, ``""`` means
            ``test``. Hub-layout folder: it holds one split, ``""`` or ``"test"`` (recorded
            as ``test``). Hub id: a split of the dataset, ``""`` means ``dev``.
        num_queries: keep the first n judged queries (file order); 0 keeps all.
        max_corpus: 0 keeps the whole corpus. Otherwise keep every document judged for the
            kept queries plus a seeded random sample of the others, up to this many in all
            (when the judged documents alone are more, all of them are kept, with a
            warning and ``notes["corpus_kept_judged"]``). Scores on a reduced corpus are
            higher than on the full one.
        seed: seed of that sample.
        dangling: judgements on documents missing from the corpus, or judged queries
            missing from the queries: ``"warn"``, ``"error"`` or ``"ignore"``
            (:func:`check_judgements`). When *no* judgement matches, it is an error anyway.
        positives_corpus: 0: the normal corpus. n > 0: the FlagEmbedding tutorial's quick
            setting: the corpus is only the positive passages of the first n judged
            queries, and the queries are those n (``num_queries`` keeps fewer); the
            tutorial used ``num_queries=100, positives_corpus=5000`` on
            ``namespace-Pt/msmarco``. Hub layout: the distinct positive texts in order of
            first appearance, the big corpus is not read (for a hub id it is not
            downloaded); their ids come from a local corpus when there is one (``corpus``
            if given, else ``corpus.jsonl`` next to a local queries file; matched by exact
            text, every document with that text), otherwise (and for a text the local
            corpus lacks) ``pos-<k>``, k the text's 0-based order of first appearance.
            BEIR: the documents judged relevant (grade >= 1) for those queries, with their
            corpus ids, in order of first judgement; the judgements are kept as given.
            Recorded in ``notes["corpus"]``. Not combinable with ``max_corpus``.

    Returns:
        The collection, with ids kept and judgements restricted to the kept queries.

    Raises:
        DataError: on a missing folder or file, a wrong layout, an unknown split (with the
            splits available), malformed records (file and line), null or float ids,
            non-string texts, non-integer grades, empty files, duplicate ids, empty texts,
            judgements none of which matches the corpus, (``dangling="error"``) dangling
            judgements, or a bad parameter (named).
    """
    if dangling not in DANGLING_CHOICES:
        raise DataError(f"dangling: expected one of {list(DANGLING_CHOICES)}, got {dangling!r}")
    num_queries = _count("num_queries", num_queries, "all", "count")
    max_corpus = _count("max_corpus", max_corpus, "all", "count")
    positives_corpus = _count(
        "positives_corpus", positives_corpus, "the normal corpus", "number of queries"
    )
    if positives_corpus and max_corpus:
        raise DataError(
            f"positives_corpus={positives_corpus} and max_corpus={max_corpus}: two different "
            "corpus modes (the positives of the first queries, or a sample of the corpus); "
            "set one of them to 0"
        )
    split = "" if split is None else split
    if not isinstance(split, str):
        raise DataError(f"split: expected a split name (a string), got {split!r}")
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
        if corpus is not None and str(corpus):
            raise DataError(
                f"corpus: {str(corpus)!r} given, but {name!r} is a BEIR folder, which has its "
                "own corpus.jsonl; `corpus` is for the hub layout only"
            )
        split = split or "test"
        queries, docs, qrels = _load_beir_folder(folder, split)
    elif layout == "hub":
        if split not in ("", HUB_FOLDER_SPLIT):
            raise DataError(
                f"split: {split!r} is not a split of {name!r}: a hub-layout folder holds one "
                f"split, {HUB_FOLDER_SPLIT!r} (its queries.jsonl); use split='' or "
                f"{HUB_FOLDER_SPLIT!r}"
            )
        split = HUB_FOLDER_SPLIT
        queries_path = find_file(folder, "queries.jsonl")
        assert queries_path is not None
        records = _file_records(queries_path)
        if positives_corpus:
            local = _local_corpus_for_ids(corpus, folder)
            queries, qrels, docs = _positives_collection(
                records, positives_corpus, local, str(queries_path), notes
            )
        else:
            docs, corpus_source = _load_hub_corpus(corpus, default_folder=folder)
            queries, qrels, unmatched = _hub_queries(
                records, docs, str(queries_path), corpus_source
            )
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
                snapshot,
                None,
                split,
                num_queries,
                max_corpus,
                seed,
                dangling,
                positives_corpus=positives_corpus,
            )
        layout, split = "hub", hub_split
        records = _row_records(_chain(first, rows), name)
        if positives_corpus:  # the big corpus is neither downloaded nor read
            given = _load_hub_corpus(corpus, None) if corpus else None
            queries, qrels, docs = _positives_collection(
                records, positives_corpus, (given[1], given[0]) if given else None, name, notes
            )
        else:
            docs, corpus_source = _load_hub_corpus(
                corpus if corpus else f"{name}-corpus", default_folder=None
            )
            queries, qrels, unmatched = _hub_queries(records, docs, name, corpus_source)
            notes["positives_not_in_corpus"] = unmatched

    data = RetrievalData(name, layout, split, queries, docs, qrels, notes)
    counts = check_judgements(data, dangling)
    notes.update({k: v for k, v in counts.items() if v})
    if not any(qrels.get(qid) for qid in queries):
        raise DataError(f"dataset {name!r}: no query has a judgement (nothing to evaluate)")
    if positives_corpus and layout == "beir":
        data = _beir_positives(data, positives_corpus)
    return _subset(data, num_queries, max_corpus, seed)


def _local_corpus_for_ids(
    corpus: str | Path | None, folder: Path
) -> tuple[str, dict[str, str]] | None:
    """The local corpus that gives the positives their ids in the quick mode of a
    hub-layout folder: ``corpus`` when given, else ``corpus.jsonl`` next to the queries,
    else None (the positives get ``pos-<k>`` ids)."""
    if corpus is not None and str(corpus):
        docs, source = _load_hub_corpus(corpus, None)
        return source, docs
    path = find_file(folder, "corpus.jsonl")
    if path is None:
        return None
    return str(path), _hub_corpus(_file_records(path), str(path))


def _positives_collection(
    records: Iterator[Located],
    count: int,
    local: tuple[str, dict[str, str]] | None,
    source: str,
    notes: dict[str, Any],
) -> tuple[dict[str, str], Qrels, dict[str, str]]:
    """Queries, judgements and corpus of the hub layout's quick mode
    (:func:`_hub_positives`), with what was done written in ``notes``."""
    queries, qrels, docs, judged, without_id = _hub_positives(
        records, count, local[1] if local else None, source
    )
    notes["corpus"] = _positives_note(count, judged)
    if local is None:
        notes["corpus_ids"] = "pos-<k>, k = order of first appearance of the positive text"
    else:
        notes["corpus_ids"] = f"from {local[0]} (matched by exact text)"
        if without_id:
            notes["corpus_ids"] += "; positives not in it: pos-<k>"
            notes["positives_without_corpus_id"] = without_id
    return queries, qrels, docs


def _positives_note(count: int, judged: int) -> str:
    first = "the first judged query" if judged == 1 else f"the first {judged} judged queries"
    note = f"positives of {first}"
    if judged < count:
        note += f" (positives_corpus={count}; only {judged} judged queries)"
    return note


def _beir_positives(data: RetrievalData, count: int) -> RetrievalData:
    """The BEIR quick mode: the first ``count`` judged queries, and as corpus the documents
    judged relevant (grade >= 1) for them, in order of first judgement, with their ids.

    Raises:
        DataError: when none of those documents is in the corpus.
    """
    judged = [qid for qid in data.queries if data.qrels.get(qid)][:count]
    passages: dict[str, str] = {}
    for qid in judged:
        for doc_id, grade in data.qrels[qid].items():
            if grade >= 1 and doc_id in data.corpus and doc_id not in passages:
                passages[doc_id] = data.corpus[doc_id]
    if not passages:
        raise DataError(
            f"dataset {data.name!r}: positives_corpus={count}: none of the first "
            f"{len(judged)} judged queries has a document judged relevant (grade >= 1) in "
            "the corpus"
        )
    queries: dict[str, str] = {}
    for qid, text in data.queries.items():
        queries[qid] = text
        if qid == judged[-1]:
            break
    qrels = {qid: judgements for qid, judgements in data.qrels.items() if qid in queries}
    notes = {**data.notes, "corpus": _positives_note(count, len(judged))}
    return RetrievalData(data.name, data.layout, data.split, queries, passages, qrels, notes)


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


def _load_hub_corpus(
    corpus: str | Path | None, default_folder: Path | None
) -> tuple[dict[str, str], str]:
    """A hub-layout corpus (``{"content"}`` records) and where it was read from."""
    if corpus is None or str(corpus) == "":
        assert default_folder is not None
        path = find_file(default_folder, "corpus.jsonl")
        if path is None:
            raise DataError(
                f"dataset {str(default_folder)!r}: no corpus.jsonl next to queries.jsonl; "
                "pass `corpus` (a folder, a .jsonl file or a hub id)"
            )
        return _hub_corpus(_file_records(path), str(path)), str(path)
    corpus_path = Path(corpus).expanduser()
    if corpus_path.is_dir():
        path = find_file(corpus_path, "corpus.jsonl")
        if path is None:
            raise DataError(f"corpus: no corpus.jsonl(.gz) in {str(corpus_path)!r}")
        return _hub_corpus(_file_records(path), str(path)), str(path)
    if corpus_path.is_file():
        return _hub_corpus(_file_records(corpus_path), str(corpus_path)), str(corpus_path)
    if _is_hub_id(str(corpus)):
        try:
            require_hub("corpus", str(corpus), "the corpus.jsonl next to the queries")
        except OSError as err:
            raise DataError(str(err)) from err
        rows = _row_records(_hub_records(str(corpus), "train"), str(corpus))
        return _hub_corpus(rows, str(corpus)), str(corpus)
    raise DataError(f"corpus: {str(corpus)!r} is neither an existing folder/file nor a hub id")


def _corpus_record(rec: dict[str, Any], number: int, where: str) -> tuple[str, str]:
    """(id, text) of a corpus record in either layout: BEIR (``_id``, ``title``, ``text``)
    or hub (``content``, id optional: the record's 0-based number).

    Raises:
        DataError: naming ``where``: a missing column, a null or float id, a text that is
            not a string.
    """
    if "content" in rec:
        doc_id = _record_id(rec, DOC_ID_FIELDS, str(number), where)
        return doc_id, _text_field(rec, "content", where).strip()
    doc_id, title, text = _beir_record(rec, where)
    return doc_id, beir_passage(title, text)


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
        rows: Iterator[Located] = _file_records(path)
        where = str(path)
    elif _is_hub_id(str(source)):
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
        rows = _row_records(hub_rows, where)
    else:
        raise DataError(f"source: {str(source)!r} is neither an existing folder/file nor a hub id")
    seen: set[str] = set()
    for number, at, rec in rows:
        if limit and number >= limit:
            return
        doc_id, text = _corpus_record(rec, number, at)
        if doc_id in seen:
            raise DataError(f"{at}: duplicate id {doc_id!r}")
        if not text:
            raise DataError(f"{at}: empty text for id {doc_id!r}")
        seen.add(doc_id)
        yield doc_id, text
    if not seen:
        raise DataError(f"{where}: no documents (the corpus is empty)")


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
        DataError: whatever ``dangling`` says, when none of the judgements points at a
            document of the corpus, or none of the judged queries is in the queries (the
            ids of the two sides differ, e.g. ``'1722.0'`` vs ``'1722'``: every score would
            be 0), with example ids of both sides; with ``dangling="error"`` when either
            count is positive; on an unknown ``dangling`` value.
    """
    if dangling not in DANGLING_CHOICES:
        raise DataError(f"dangling: expected one of {list(DANGLING_CHOICES)}, got {dangling!r}")
    unknown_queries = [q for q in data.qrels if q not in data.queries]
    unknown_docs = [
        (q, d) for q, judged in data.qrels.items() for d in judged if d not in data.corpus
    ]
    total = sum(len(judged) for judged in data.qrels.values())
    if total and len(unknown_docs) == total:
        raise DataError(
            f"dataset {data.name!r}: none of the {total} judgements point at a document of "
            f"the corpus: judged document ids e.g. {_examples(d for _, d in unknown_docs)}, "
            f"corpus ids e.g. {_examples(data.corpus)}; the qrels and the corpus must use "
            "the same ids"
        )
    if data.qrels and len(unknown_queries) == len(data.qrels):
        raise DataError(
            f"dataset {data.name!r}: none of the {len(data.qrels)} judged queries is in the "
            f"queries: judged query ids e.g. {_examples(unknown_queries)}, query ids e.g. "
            f"{_examples(data.queries)}; the qrels and the queries must use the same ids"
        )
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


def _examples(ids: Iterable[str], count: int = 3) -> list[str]:
    """The first few distinct ids, for an error message."""
    found: list[str] = []
    for item in ids:
        if item not in found:
            found.append(item)
            if len(found) == count:
                break
    return found


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
        if len(judged_docs) > max_corpus:
            notes["corpus_kept_judged"] = len(judged_docs)
            warnings.warn(
                f"max_corpus={max_corpus}: kept {len(judged_docs):,} passages, all judged "
                "passages of the kept queries (more than max_corpus); lower num_queries for "
                "a smaller corpus",
                stacklevel=3,
            )
    return RetrievalData(data.name, data.layout, data.split, queries, docs, qrels, notes)
