"""Records of a collection: ids, texts and the BEIR passage join, checked field by field.

Ids are JSON strings or integers (``1722`` and ``"1722"`` are the same id); texts are JSON
strings. Anything else (``null``, a float such as ``1722.0``, a list) is refused with the
place of the record (file and line, or dataset and record number) and the value.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from helpers.data.files import DataError, read_jsonl_lines, show_value

#: Fields that may hold a query's id (the first present is used).
QUERY_ID_FIELDS = ("_id", "id", "query_id", "qid")
#: Fields that may hold a document's id (the first present is used).
DOC_ID_FIELDS = ("_id", "id", "docid", "doc_id", "pid")


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
        f"{where}: field {name!r} is {show_value(value)} ({_kind(value)}); ids must be JSON "
        "strings (or integers)"
    )


def record_id(record: dict[str, Any], fields: tuple[str, ...], default: str, where: str) -> str:
    """The id of a record: the first of ``fields`` present, else ``default``.

    Raises:
        DataError: when that field is present but null or not a string or an integer.
    """
    for name in fields:
        if name in record:
            return _id_value(record[name], name, where)
    return default


def text_field(record: dict[str, Any], name: str, where: str) -> str:
    """A text field that must be a JSON string.

    Raises:
        DataError: naming ``where``, the field and the value when it is not a string.
    """
    value = record[name]
    if not isinstance(value, str):
        raise DataError(
            f"{where}: field {name!r} is {show_value(value)} ({_kind(value)}); expected a string"
        )
    return value


def require_columns(record: dict[str, Any], columns: tuple[str, ...], where: str) -> None:
    """Refuse a record without every one of ``columns``.

    Raises:
        DataError: naming ``where``, the missing columns and the columns found.
    """
    missing = [c for c in columns if c not in record]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; found {sorted(record)}")


def beir_record(record: dict[str, Any], where: str) -> tuple[str, str, str]:
    """``(id, title, text)`` of a BEIR record: ``_id`` and ``text`` required, ``title``
    optional (absent or null: ``""``).

    Raises:
        DataError: naming ``where``: a missing column, an id that is not a string or an
            integer, a text or title that is not a string.
    """
    require_columns(record, ("_id", "text"), where)
    record_id = _id_value(record["_id"], "_id", where)
    title = "" if record.get("title") is None else text_field(record, "title", where)
    return record_id, title, text_field(record, "text", where)


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
        yield (*beir_record(rec, where), where)


def beir_passage(title: str, text: str) -> str:
    """A BEIR document as one passage: its title, a space, its text (stripped)."""
    return f"{title} {text}".strip()


def add_unique(target: dict[str, str], key: str, text: str, where: str) -> None:
    """Add an id and its text, refusing duplicate ids and empty texts."""
    if key in target:
        raise DataError(f"{where}: duplicate id {key!r}")
    if not text:
        raise DataError(f"{where}: empty text for id {key!r}")
    target[key] = text


#: A record with its 0-based number and its place (``"<file>, line <n>, record <i>"``).
Located = tuple[int, str, dict[str, Any]]


def file_records(path: Path) -> Iterator[Located]:
    """The records of a JSONL file, numbered from 0, each with file, line and number."""
    for number, (line_no, record) in enumerate(read_jsonl_lines(path)):
        yield number, f"{path}, line {line_no}, record {number}", record


def row_records(rows: Iterable[Any], source: str) -> Iterator[Located]:
    """The rows of a hub dataset, numbered from 0, each with the dataset and number."""
    for number, row in enumerate(rows):
        where = f"{source}, record {number}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a record (a mapping), got {type(row).__name__}")
        yield number, where, row


def hub_query(rec: dict[str, Any], number: int, where: str) -> tuple[str, str, list[str]]:
    """``(id, stripped query, positive texts)`` of a hub-layout query record.

    Raises:
        DataError: naming ``where``: a missing ``query`` or ``positive``, a null or float
            id, a query that is not a string, positives that are not a list of strings.
    """
    require_columns(rec, ("query", "positive"), where)
    qid = record_id(rec, QUERY_ID_FIELDS, str(number), where)
    text = text_field(rec, "query", where).strip()
    positives = rec["positive"]
    if not isinstance(positives, list) or not all(isinstance(p, str) for p in positives):
        bad = (
            positives
            if not isinstance(positives, list)
            else next(p for p in positives if not isinstance(p, str))
        )
        raise DataError(
            f"{where}: field 'positive' must be a list of passage texts (strings); found "
            f"{show_value(bad)} ({_kind(bad)})"
        )
    return qid, text, positives


def ids_by_text(corpus: dict[str, str]) -> dict[str, list[str]]:
    """Text -> the ids of every document with exactly that text, in corpus order."""
    by_text: dict[str, list[str]] = {}
    for doc_id, text in corpus.items():
        by_text.setdefault(text, []).append(doc_id)
    return by_text


def corpus_record(rec: dict[str, Any], number: int, where: str) -> tuple[str, str]:
    """(id, text) of a corpus record in either layout: BEIR (``_id``, ``title``, ``text``)
    or hub (``content``, id optional: the record's 0-based number).

    Raises:
        DataError: naming ``where``: a missing column, a null or float id, a text that is
            not a string.
    """
    if "content" in rec:
        doc_id = record_id(rec, DOC_ID_FIELDS, str(number), where)
        return doc_id, text_field(rec, "content", where).strip()
    doc_id, title, text = beir_record(rec, where)
    return doc_id, beir_passage(title, text)
