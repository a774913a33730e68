"""Loaders: values that used to load silently wrong now fail with file, line and value;
the positives-only quick corpus; empty, truncated and mislabelled files; max_corpus notes.

Every expected value is computed here independently of ``helpers.data`` (the shipped files
are read with ``gzip``/``json``/``csv`` directly)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import warnings
from pathlib import Path

import pytest

from conftest import DATA, write_jsonl
from helpers.data import DataError, load_retrieval_data, read_qrels_tsv, stream_corpus

DL19 = DATA / "msmarco-dl19"


def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _qrels(folder: Path, text: str) -> Path:
    path = folder / "qrels" / "test.tsv"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------
# Grades and the qrels header
# ---------------------------------------------------------------------------


def test_non_integer_grade_is_refused(beir_folder):
    _qrels(beir_folder, "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t1.5\n")
    with pytest.raises(
        DataError, match=r"test\.tsv, line 3: score '1\.5' is not an integer; grades are integers"
    ):
        load_retrieval_data(beir_folder)


def test_integral_float_grades_are_those_integers(beir_folder):
    _qrels(beir_folder, "query-id\tcorpus-id\tscore\nq1\td1\t2.0\nq1\td3\t0.0\nq2\td2\t1e0\n")
    assert load_retrieval_data(beir_folder).qrels == {"q1": {"d1": 2, "d3": 0}, "q2": {"d2": 1}}


@pytest.mark.parametrize("grade", ["inf", "nan", "-inf", "Infinity", "1e400"])
def test_non_finite_grade_is_refused(beir_folder, grade):
    _qrels(beir_folder, f"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t{grade}\n")
    with pytest.raises(DataError, match=rf"test\.tsv, line 3: score '{grade}' is not a finite"):
        load_retrieval_data(beir_folder)


def test_headerless_qrels_keep_their_first_row(beir_folder):
    # the first row's grade "1.0" is not a digit string: it used to be taken for a header
    _qrels(beir_folder, "q1\td1\t1.0\nq2\td2\t1\n")
    assert load_retrieval_data(beir_folder).qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}


@pytest.mark.parametrize(
    "header", ["query-id\tcorpus-id\tscore", "query_id\tdoc_id\trelevance", "qid\tpid\tlabel"]
)
def test_known_headers_are_skipped(beir_folder, header):
    _qrels(beir_folder, f"{header}\nq1\td1\t2\n")
    assert load_retrieval_data(beir_folder).qrels == {"q1": {"d1": 2}}


def test_first_row_neither_header_nor_judgement(beir_folder):
    _qrels(beir_folder, "q1\td1\trelevant\nq2\td2\t1\n")
    with pytest.raises(
        DataError,
        match=r"test\.tsv, line 1: neither a header nor a judgement: 'q1\\td1\\trelevant'",
    ):
        load_retrieval_data(beir_folder)


def test_conflicting_repeated_judgement(beir_folder):
    _qrels(beir_folder, "q1\td1\t2\nq1\td1\t2\nq1\td1\t0\n")
    with pytest.raises(
        DataError, match=r"line 3: query 'q1', document 'd1' judged again with score 0 .*gave 2"
    ):
        load_retrieval_data(beir_folder)


def test_empty_id_in_qrels(beir_folder):
    _qrels(beir_folder, "q1\td1\t2\n\td2\t1\n")
    with pytest.raises(DataError, match=r"test\.tsv, line 2: empty query-id"):
        load_retrieval_data(beir_folder)


# ---------------------------------------------------------------------------
# Null, non-string texts and float ids
# ---------------------------------------------------------------------------


def test_null_text_in_beir_corpus(beir_folder):
    write_jsonl(
        beir_folder / "corpus.jsonl",
        [{"_id": "d1", "text": "Cats purr."}, {"_id": "d2", "text": None}],
        compress=True,
    )
    with pytest.raises(
        DataError, match=r"corpus\.jsonl\.gz, line 2: field 'text' is null \(null\); expected a"
    ):
        load_retrieval_data(beir_folder)


def test_non_string_text_in_beir_queries(beir_folder):
    write_jsonl(beir_folder / "queries.jsonl", [{"_id": "q1", "text": ["a", "b"]}])
    with pytest.raises(
        DataError, match=r"queries\.jsonl, line 1: field 'text' is \[\"a\", \"b\"\]"
    ):
        load_retrieval_data(beir_folder)


def test_null_title_is_no_title(beir_folder):
    write_jsonl(
        beir_folder / "corpus.jsonl",
        [{"_id": "d1", "title": None, "text": "Cats purr."}, {"_id": "d2", "text": "Dogs bark."}],
        compress=True,
    )
    data = load_retrieval_data(beir_folder, dangling="ignore")
    assert data.corpus == {"d1": "Cats purr.", "d2": "Dogs bark."}


def test_null_id_in_beir_queries(beir_folder):
    write_jsonl(
        beir_folder / "queries.jsonl", [{"_id": "q1", "text": "a"}, {"_id": None, "text": "b"}]
    )
    with pytest.raises(
        DataError,
        match=r"queries\.jsonl, line 2: field '_id' is null \(null\); ids must be JSON strings "
        r"\(or integers\)",
    ):
        load_retrieval_data(beir_folder)


def test_float_ids_are_refused_integer_ids_are_strings(beir_folder):
    corpus = [{"_id": 1722, "text": "Cats purr."}, {"_id": 1726.0, "text": "Dogs bark."}]
    write_jsonl(beir_folder / "corpus.jsonl", corpus, compress=True)
    with pytest.raises(
        DataError,
        match=r"corpus\.jsonl\.gz, line 2: field '_id' is 1726\.0 \(a float number\); ids must "
        r"be JSON strings \(or integers\)",
    ):
        load_retrieval_data(beir_folder)
    write_jsonl(beir_folder / "corpus.jsonl", corpus[:1], compress=True)
    _qrels(beir_folder, "q1\t1722\t1\n")
    assert load_retrieval_data(beir_folder).corpus == {"1722": "Cats purr."}


def test_hub_null_content_and_query(hub_folder):
    write_jsonl(hub_folder / "corpus.jsonl", [{"content": "Cats purr."}, {"content": None}])
    with pytest.raises(
        DataError, match=r"corpus\.jsonl, line 2, record 1: field 'content' is null"
    ):
        load_retrieval_data(hub_folder)
    write_jsonl(hub_folder / "corpus.jsonl", [{"content": "Cats purr."}])
    write_jsonl(
        hub_folder / "queries.jsonl",
        [{"query": "cats", "positive": ["Cats purr."]}, {"query": None, "positive": []}],
    )
    with pytest.raises(DataError, match=r"queries\.jsonl, line 2, record 1: field 'query' is null"):
        load_retrieval_data(hub_folder)


@pytest.mark.parametrize(
    ("positive", "shown"), [(None, "null"), ("Cats purr.", '"Cats purr."'), ([1], "1")]
)
def test_hub_positive_must_be_a_list_of_texts(hub_folder, positive, shown):
    write_jsonl(hub_folder / "queries.jsonl", [{"query": "cats", "positive": positive}])
    with pytest.raises(
        DataError,
        match=rf"record 0: field 'positive' must be a list of passage texts .*found {shown}",
    ):
        load_retrieval_data(hub_folder)


def test_hub_id_field_present_with_null_or_float(hub_folder):
    write_jsonl(hub_folder / "corpus.jsonl", [{"id": None, "content": "Cats purr."}])
    with pytest.raises(DataError, match=r"line 1, record 0: field 'id' is null"):
        load_retrieval_data(hub_folder)
    write_jsonl(hub_folder / "corpus.jsonl", [{"content": "Cats purr."}])
    write_jsonl(hub_folder / "queries.jsonl", [{"qid": 3.0, "query": "c", "positive": []}])
    with pytest.raises(DataError, match=r"field 'qid' is 3\.0 \(a float number\); ids must be"):
        load_retrieval_data(hub_folder)


def test_stream_corpus_refuses_null_text_and_float_id(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl", [{"_id": "a", "text": "x"}, {"_id": "b", "text": None}]
    )
    with pytest.raises(DataError, match=r"c\.jsonl, line 2, record 1: field 'text' is null"):
        list(stream_corpus(path))
    path = write_jsonl(tmp_path / "c.jsonl", [{"pid": 7.0, "content": "x"}])
    with pytest.raises(DataError, match=r"field 'pid' is 7\.0 \(a float number\)"):
        list(stream_corpus(path))


# ---------------------------------------------------------------------------
# Judgements none of which match
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dangling", ["warn", "ignore", "error"])
def test_no_judgement_matches_the_corpus(beir_folder, dangling):
    _qrels(beir_folder, "q1\td1.0\t2\nq1\td3.0\t0\nq2\td2.0\t1\n")
    with pytest.raises(
        DataError,
        match=r"none of the 3 judgements point at a document of the corpus: judged document "
        r"ids e\.g\. \['d1\.0', 'd3\.0', 'd2\.0'\], corpus ids e\.g\. \['d1', 'd2', 'd3'\]",
    ):
        load_retrieval_data(beir_folder, dangling=dangling)


def test_no_judged_query_is_in_the_queries(beir_folder):
    _qrels(beir_folder, "q1.0\td1\t2\nq2.0\td2\t1\n")
    with pytest.raises(
        DataError,
        match=r"none of the 2 judged queries is in the queries: judged query ids e\.g\. "
        r"\['q1\.0', 'q2\.0'\], query ids e\.g\. \['q1', 'q2', 'q3'\]",
    ):
        load_retrieval_data(beir_folder, dangling="ignore")


def test_hub_no_positive_is_in_the_corpus(hub_folder):
    write_jsonl(hub_folder / "corpus.jsonl", [{"content": "Something else."}])
    with pytest.raises(
        DataError,
        match=r"none of the 3 positive passages is a text of the corpus .*corpus\.jsonl "
        r"\(matched by exact text\); e\.g\. positive \"Cats purr\.\" vs corpus text "
        r"\"Something else\.\"",
    ):
        load_retrieval_data(hub_folder, dangling="ignore")


def test_hub_queries_without_positives(hub_folder):
    write_jsonl(hub_folder / "queries.jsonl", [{"query": "cats", "positive": []}])
    with pytest.raises(DataError, match=r"no query has a judgement"):
        load_retrieval_data(hub_folder)


# ---------------------------------------------------------------------------
# Empty files, known at the start
# ---------------------------------------------------------------------------


def test_empty_corpus(beir_folder):
    (beir_folder / "corpus.jsonl.gz").write_bytes(gzip.compress(b"\n"))
    with pytest.raises(DataError, match=r"corpus\.jsonl\.gz: no documents \(the corpus is empty\)"):
        load_retrieval_data(beir_folder)


def test_header_only_qrels(beir_folder):
    _qrels(beir_folder, "query-id\tcorpus-id\tscore\n")
    with pytest.raises(DataError, match=r"test\.tsv: no judgements \(the file is empty or holds"):
        load_retrieval_data(beir_folder)


def test_empty_queries(beir_folder, hub_folder):
    (beir_folder / "queries.jsonl").write_text("")
    with pytest.raises(DataError, match=r"queries\.jsonl: no queries \(the file is empty\)"):
        load_retrieval_data(beir_folder)
    (hub_folder / "queries.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"hub/queries\.jsonl: no queries \(the file is empty\)"):
        load_retrieval_data(hub_folder)


def test_empty_hub_corpus_and_stream(hub_folder):
    (hub_folder / "corpus.jsonl").write_text("")
    with pytest.raises(DataError, match=r"corpus\.jsonl: no documents"):
        load_retrieval_data(hub_folder)
    with pytest.raises(DataError, match=r"corpus\.jsonl: no documents"):
        list(stream_corpus(hub_folder))


# ---------------------------------------------------------------------------
# Truncated, mislabelled and non-UTF-8 files
# ---------------------------------------------------------------------------


def test_truncated_gzip_names_file_and_line(beir_folder):
    records = [{"_id": f"d{i}", "text": f"passage number {i} " * 20} for i in range(2000)]
    whole = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
    (beir_folder / "corpus.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError) as caught:
        load_retrieval_data(beir_folder)
    message = str(caught.value)
    assert "corpus.jsonl.gz, line " in message and "truncated gzip file" in message
    line = int(message.split(", line ")[1].split(":")[0])
    assert 2 < line < 2000  # the lines before it were read; it is the first one cut


def test_non_gzip_file_named_gz(beir_folder):
    (beir_folder / "corpus.jsonl.gz").write_text('{"_id": "d1", "text": "Cats purr."}\n')
    with pytest.raises(
        DataError, match=r"corpus\.jsonl\.gz: not a gzip file, although its name ends in \.gz"
    ):
        load_retrieval_data(beir_folder)


def test_corrupt_gzip(beir_folder):
    data = bytearray(gzip.compress(b'{"_id": "d1", "text": "Cats purr."}\n' * 50))
    data[20:30] = b"\xff" * 10
    (beir_folder / "corpus.jsonl.gz").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"corpus\.jsonl\.gz, line \d+: corrupt gzip data"):
        load_retrieval_data(beir_folder)


def test_truncated_gzip_qrels(beir_folder):
    (beir_folder / "qrels" / "test.tsv").unlink()
    rows = "".join(f"q1\td{i}\t1\n" for i in range(3000)).encode()
    (beir_folder / "qrels" / "test.tsv.gz").write_bytes(gzip.compress(rows)[:-12])
    with pytest.raises(DataError, match=r"test\.tsv\.gz, line \d+: truncated gzip file"):
        read_qrels_tsv(beir_folder / "qrels" / "test.tsv.gz")


def test_non_utf8_file(beir_folder):
    (beir_folder / "queries.jsonl").write_bytes(
        b'{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "caf\xe9"}\n'
    )
    with pytest.raises(
        DataError, match=r"queries\.jsonl, line 2: not UTF-8 text \(byte 0xe9 at byte 27 of"
    ):
        load_retrieval_data(beir_folder)


def test_gzip_data_without_gz_name(beir_folder):
    (beir_folder / "queries.jsonl").write_bytes(gzip.compress(b'{"_id": "q1", "text": "a"}\n'))
    with pytest.raises(DataError, match=r"line 1: not UTF-8 .*name it queries\.jsonl\.gz"):
        load_retrieval_data(beir_folder)


# ---------------------------------------------------------------------------
# The positives-only quick corpus
# ---------------------------------------------------------------------------


def test_positives_corpus_tiny_hub_folder_without_corpus(tmp_path):
    folder = tmp_path / "quick"
    folder.mkdir()
    lines = [
        {"query": "q zero", "positive": ["A", "B"]},
        {"query": "q one", "positive": []},
        {"query": "q two", "positive": ["B", "C"]},
    ]
    text = "".join(json.dumps(r) + "\n" for r in lines) + "{not read: after the 2nd judged}\n"
    (folder / "queries.jsonl").write_text(text)
    data = load_retrieval_data(folder, positives_corpus=2)
    assert data.corpus == {"pos-0": "A", "pos-1": "B", "pos-2": "C"}
    assert data.queries == {"0": "q zero", "2": "q two"}
    assert data.qrels == {"0": {"pos-0": 1, "pos-1": 1}, "2": {"pos-1": 1, "pos-2": 1}}
    assert data.notes == {
        "corpus": "positives of the first 2 judged queries",
        "corpus_ids": "pos-<k>, k = order of first appearance of the positive text",
        "queries_without_judgements": 1,
    }
    one = load_retrieval_data(folder, positives_corpus=2, num_queries=1)
    assert one.queries == {"0": "q zero"} and one.corpus == data.corpus
    # without positives_corpus the folder needs its corpus
    with pytest.raises(DataError, match="no corpus.jsonl next to queries.jsonl"):
        load_retrieval_data(folder)


def test_positives_corpus_hub_folder_ids_from_its_corpus(hub_folder, tmp_path):
    data = load_retrieval_data(hub_folder, positives_corpus=5)
    # "Cats purr." is documents 0 and 2; the third distinct text is not in the corpus
    assert data.corpus == {"0": "Cats purr.", "2": "Cats purr.", "1": "Dogs bark.",
                           "pos-2": "Not in the corpus."}  # fmt: skip
    assert data.qrels == {"0": {"0": 1, "2": 1}, "1": {"1": 1, "pos-2": 1}}
    assert (
        data.notes["corpus"]
        == "positives of the first 2 judged queries (positives_corpus=5; only 2 judged queries)"
    )
    assert data.notes["positives_without_corpus_id"] == 1
    # a separate corpus is only used for the ids
    other = write_jsonl(tmp_path / "ids.jsonl", [{"pid": "p9", "content": "Dogs bark."}])
    data = load_retrieval_data(hub_folder, corpus=other, positives_corpus=1)
    assert data.corpus == {"pos-0": "Cats purr."}
    data = load_retrieval_data(hub_folder, corpus=other, positives_corpus=2)
    assert data.corpus == {"pos-0": "Cats purr.", "p9": "Dogs bark.", "pos-2": "Not in the corpus."}
    assert (
        data.notes["corpus_ids"]
        == f"from {other} (matched by exact text); positives not in it: pos-<k>"
    )


def _distinct_positives(records: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for record in records:
        for text in record["positive"]:
            seen.setdefault(text, None)
    return list(seen)


def test_positives_corpus_shipped_hub_folder():
    records = _jsonl(DL19 / "queries.jsonl.gz")
    corpus = _jsonl(DL19 / "corpus.jsonl.gz")
    ids_of: dict[str, list[str]] = {}
    for number, record in enumerate(corpus):
        ids_of.setdefault(record["content"].strip(), []).append(str(number))

    # the tutorial's setting: 100 queries, the positives of the first 5,000 (DL19 has 43)
    data = load_retrieval_data(DL19, num_queries=100, positives_corpus=5000)
    texts = _distinct_positives(records)
    expected = {doc: text for text in texts for doc in ids_of[text]}
    assert len(records) == 43 and len(texts) == 1582
    assert data.corpus == expected and list(data.corpus) == list(expected)
    assert list(data.queries) == [str(i) for i in range(43)]
    full = load_retrieval_data(DL19)
    assert data.qrels == full.qrels  # every positive of DL19 is in its corpus

    five = load_retrieval_data(DL19, num_queries=3, positives_corpus=5)
    texts = _distinct_positives(records[:5])
    assert list(five.corpus.values()) == texts
    assert list(five.corpus) == [ids_of[t][0] for t in texts]
    assert list(five.queries) == ["0", "1", "2"]
    assert five.qrels == {q: full.qrels[q] for q in ("0", "1", "2")}
    assert five.notes["corpus"] == "positives of the first 5 judged queries"


def test_positives_corpus_queries_file_alone_gets_pos_ids(tmp_path):
    (tmp_path / "queries.jsonl.gz").write_bytes((DL19 / "queries.jsonl.gz").read_bytes())
    data = load_retrieval_data(tmp_path, positives_corpus=10)
    texts = _distinct_positives(_jsonl(DL19 / "queries.jsonl.gz")[:10])
    assert data.corpus == {f"pos-{k}": text for k, text in enumerate(texts)}
    assert sum(len(j) for j in data.qrels.values()) == sum(
        len(set(r["positive"])) for r in _jsonl(DL19 / "queries.jsonl.gz")[:10]
    )


def test_positives_corpus_beir(beir_folder):
    one = load_retrieval_data(beir_folder, positives_corpus=1)
    assert one.corpus == {"d1": "Cats Cats purr."}  # d3 is judged 0: not a positive
    assert one.queries == {"q1": "what do cats do"}
    assert one.qrels == {"q1": {"d1": 2, "d3": 0}}
    assert one.notes == {"corpus": "positives of the first judged query"}
    two = load_retrieval_data(beir_folder, positives_corpus=2)
    assert two.corpus == {"d1": "Cats Cats purr.", "d2": "Dogs bark."}
    assert list(two.queries) == ["q1", "q2"]


def test_positives_corpus_shipped_beir():
    queries = [r["_id"] for r in _jsonl(DL19 / "beir" / "queries.jsonl.gz")]
    with open(DL19 / "beir" / "qrels" / "test.tsv", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    judged = [q for q in queries if any(r[0] == q for r in rows)][:5]
    expected: list[str] = []
    for q in judged:
        expected += [d for qq, d, g in rows if qq == q and int(g) >= 1 and d not in expected]
    data = load_retrieval_data(DL19 / "beir", positives_corpus=5, num_queries=2)
    assert list(data.corpus) == expected and len(expected) == 296
    texts = {r["_id"]: f"{r.get('title') or ''} {r['text']}".strip()
             for r in _jsonl(DL19 / "beir" / "corpus.jsonl.gz")}  # fmt: skip
    assert all(data.corpus[d] == texts[d] for d in expected)
    assert list(data.queries) == judged[:2]


def test_positives_corpus_with_max_corpus_is_refused(beir_folder):
    with pytest.raises(
        DataError, match=r"^positives_corpus=5 and max_corpus=10: two different corpus modes"
    ):
        load_retrieval_data(beir_folder, positives_corpus=5, max_corpus=10)


def test_positives_corpus_hub_id_never_asks_for_the_big_corpus(monkeypatch):
    import helpers.data.loader as D  # where load_retrieval_data looks the hub up

    records = _jsonl(DL19 / "queries.jsonl.gz")
    asked = []

    def hub_records(name, split):
        asked.append((name, split))
        if name != "namespace-Pt/msmarco":
            raise AssertionError(f"the corpus {name} was asked for")
        return iter(records)

    monkeypatch.setattr(D, "require_hub", lambda *args: None)
    monkeypatch.setattr(D, "hub_records", hub_records)
    monkeypatch.setattr(D, "hub_snapshot", lambda name: pytest.fail("snapshot downloaded"))
    data = load_retrieval_data("namespace-Pt/msmarco", num_queries=3, positives_corpus=5)
    assert asked == [("namespace-Pt/msmarco", "dev")]
    assert (data.layout, data.split) == ("hub", "dev")
    assert list(data.corpus.values()) == _distinct_positives(records[:5])
    assert list(data.corpus)[:2] == ["pos-0", "pos-1"]
    assert len(data.queries) == 3


# ---------------------------------------------------------------------------
# max_corpus smaller than the judged passages
# ---------------------------------------------------------------------------


def test_max_corpus_below_the_judged_passages_warns(beir_folder):
    with pytest.warns(
        UserWarning,
        match=r"^max_corpus=1: kept 3 passages, all judged passages of the kept queries "
        r"\(more than max_corpus\); lower num_queries",
    ):
        data = load_retrieval_data(beir_folder, max_corpus=1)
    assert set(data.corpus) == {"d1", "d2", "d3"}
    assert data.notes["corpus_kept_judged"] == 3


def test_max_corpus_100_on_the_shipped_data():
    with open(DL19 / "beir" / "qrels" / "test.tsv", newline="") as handle:
        judged = {row[1] for row in list(csv.reader(handle, delimiter="\t"))[1:]}
    with pytest.warns(UserWarning, match=r"^max_corpus=100: kept 3,834 passages, all judged"):
        data = load_retrieval_data(DL19 / "beir", max_corpus=100)
    assert set(data.corpus) == judged and len(judged) == 3834
    assert data.notes["corpus_kept_judged"] == 3834


def test_default_notebook_run_is_unchanged():
    """Notebook 1's default load: same corpus, queries, judgements and summary as before."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_retrieval_data(DL19 / "beir", max_corpus=5000)
    assert data.summary() == {
        "layout": "beir",
        "split": "test",
        "queries": 43,
        "documents": 5000,
        "judgements": 3834,
        "judgements_by_grade": {0: 1409, 1: 843, 2: 1113, 3: 469},
        "corpus_reduced_from": 10852,
    }
    blob = json.dumps(
        [list(data.queries.items()), list(data.corpus.items()), list(data.qrels.items())]
    )
    assert hashlib.sha256(blob.encode()).hexdigest()[:16] == "23f9f8c8945db02b"
