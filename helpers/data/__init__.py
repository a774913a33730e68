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

Modules, lowest first: :mod:`~helpers.data.files` (lines, JSONL, qrels TSV, grades),
:mod:`~helpers.data.records` (ids, texts, the BEIR passage join),
:mod:`~helpers.data.layouts` (BEIR folder, hub folder, hub ids),
:mod:`~helpers.data.collection` (:class:`RetrievalData`, judgement checks, sub-setting),
:mod:`~helpers.data.positives` (the quick mode), :mod:`~helpers.data.loader`
(:func:`load_retrieval_data`) and :mod:`~helpers.data.stream` (:func:`stream_corpus`).
"""

from helpers.data.collection import DANGLING_CHOICES, RetrievalData, check_judgements
from helpers.data.files import (
    QRELS_HEADER_NAMES,
    DataError,
    find_file,
    parse_grade,
    read_jsonl,
    read_jsonl_lines,
    read_lines,
    read_qrels_tsv,
)
from helpers.data.layouts import EMBEDDED_DATASET, beir_splits, detect_layout
from helpers.data.loader import HUB_FOLDER_SPLIT, load_retrieval_data
from helpers.data.records import DOC_ID_FIELDS, QUERY_ID_FIELDS, beir_passage, read_beir_jsonl
from helpers.data.stream import stream_corpus

__all__ = [
    "DANGLING_CHOICES",
    "DOC_ID_FIELDS",
    "EMBEDDED_DATASET",
    "HUB_FOLDER_SPLIT",
    "QRELS_HEADER_NAMES",
    "QUERY_ID_FIELDS",
    "DataError",
    "RetrievalData",
    "beir_passage",
    "beir_splits",
    "check_judgements",
    "detect_layout",
    "find_file",
    "load_retrieval_data",
    "parse_grade",
    "read_beir_jsonl",
    "read_jsonl",
    "read_jsonl_lines",
    "read_lines",
    "read_qrels_tsv",
    "stream_corpus",
]
