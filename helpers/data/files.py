"""Reading the files of a collection: text and gzip lines, JSONL records, qrels TSV, grades.

Every failure names the file and, where known, the line: a file that cannot be opened,
text that is not UTF-8, a truncated or mislabelled ``.gz`` file, a line that is not a JSON
object, a qrels row without three columns or with a grade that is not an integer.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from helpers.metrics import Qrels

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
            raise DataError(
                f"{path}, line {line_no}: expected a JSON object, got {show_value(record)}"
            )
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


def show_value(value: Any, limit: int = 60) -> str:
    """A JSON value as written in the file (``null``, ``1722.0``, ``"abc"``), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
