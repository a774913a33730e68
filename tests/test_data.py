"""Loaders: both layouts, ids kept, sub-setting, and clear errors."""

from __future__ import annotations

import gzip
import time

import pytest

from conftest import DATA, write_jsonl
from helpers.data import DataError, detect_layout, load_retrieval_data
from helpers.hub import hub_offline_reason


def test_beir_folder(beir_folder):
    data = load_retrieval_data(beir_folder)
    assert data.layout == "beir" and data.split == "test"
    assert data.corpus == {"d1": "Cats Cats purr.", "d2": "Dogs bark.", "d3": "Fish swim."}
    # only judged queries are kept; the count of the others is reported
    assert data.queries == {"q1": "what do cats do", "q2": "what do dogs do"}
    assert data.qrels == {"q1": {"d1": 2, "d3": 0}, "q2": {"d2": 1}}
    assert data.notes["queries_without_judgements"] == 1


def test_hub_folder_positives_become_id_judgements(hub_folder):
    data = load_retrieval_data(hub_folder, dangling="ignore")
    assert data.layout == "hub"
    assert data.queries == {"0": "what do cats do", "1": "what do dogs do"}
    assert data.qrels == {"0": {"0": 1, "2": 1}, "1": {"1": 1}}
    assert data.notes["positives_not_in_corpus"] == 1


def test_hub_layout_keeps_ids_and_separate_corpus(tmp_path, hub_folder):
    write_jsonl(tmp_path / "q.jsonl", [])
    corpus = write_jsonl(tmp_path / "mycorpus.jsonl", [{"id": "p7", "content": "Dogs bark."}])
    write_jsonl(
        hub_folder / "queries.jsonl",
        [
            {"id": 42, "query": "what do dogs do", "positive": ["Dogs bark."]},
        ],
    )
    data = load_retrieval_data(hub_folder, corpus=corpus, dangling="ignore")
    assert data.queries == {"42": "what do dogs do"}
    assert data.qrels == {"42": {"p7": 1}}


def test_shipped_dl19_layouts_agree():
    beir = load_retrieval_data(DATA / "msmarco-dl19" / "beir")
    hub = load_retrieval_data(DATA / "msmarco-dl19")
    assert (len(beir.queries), len(beir.corpus), len(hub.queries), len(hub.corpus)) == (
        43,
        10852,
        43,
        10852,
    )
    assert sum(len(j) for j in beir.qrels.values()) == 3834
    assert hub.notes["positives_not_in_corpus"] == 0
    # the hub layout's positives are exactly the BEIR judgements with grade >= 2
    by_text_beir = {
        beir.queries[q]: sorted(beir.corpus[d] for d, g in j.items() if g >= 2)
        for q, j in beir.qrels.items()
    }
    by_text_hub = {hub.queries[q]: sorted(hub.corpus[d] for d in j) for q, j in hub.qrels.items()}
    assert by_text_beir == by_text_hub


def test_subset_keeps_judged_documents_and_is_seeded():
    full = load_retrieval_data(DATA / "msmarco-dl19" / "beir")
    a = load_retrieval_data(DATA / "msmarco-dl19" / "beir", num_queries=3, max_corpus=400, seed=1)
    b = load_retrieval_data(DATA / "msmarco-dl19" / "beir", num_queries=3, max_corpus=400, seed=1)
    c = load_retrieval_data(DATA / "msmarco-dl19" / "beir", num_queries=3, max_corpus=400, seed=2)
    assert list(a.queries) == list(full.queries)[:3]
    assert len(a.corpus) == 400 and a.corpus == b.corpus and a.corpus != c.corpus
    judged = {d for j in a.qrels.values() for d in j}
    assert judged <= set(a.corpus)
    assert a.notes["corpus_reduced_from"] == 10852


def test_detect_layout_errors(tmp_path):
    with pytest.raises(DataError, match="expected a BEIR folder"):
        detect_layout(tmp_path)


@pytest.mark.parametrize(
    ("dataset", "message"),
    [("", "dataset: expected"), ("no/such/folder", "neither an existing folder")],
)
def test_bad_dataset_names(dataset, message):
    with pytest.raises(DataError, match=message):
        load_retrieval_data(dataset)


def test_missing_qrels_split(beir_folder):
    with pytest.raises(DataError, match=r"qrels.*dev\.tsv"):
        load_retrieval_data(beir_folder, split="dev")


def test_unknown_beir_split_lists_the_splits_found(beir_folder):
    (beir_folder / "qrels" / "train.tsv.gz").write_bytes(gzip.compress(b"q2\td2\t1\n"))
    (beir_folder / "qrels" / "notes.txt").write_text("not a split")
    with pytest.raises(
        DataError,
        match=r"^split: 'dev' not found: missing qrels file .*dev\.tsv \(or \.tsv\.gz\); "
        r"splits in .*qrels: 'test', 'train'$",
    ):
        load_retrieval_data(beir_folder, split="dev")
    assert load_retrieval_data(beir_folder, split="train").qrels == {"q2": {"d2": 1}}


@pytest.mark.parametrize("split", ["nonsense", "dev", "train"])
def test_hub_folder_refuses_a_split_it_does_not_hold(hub_folder, split):
    with pytest.raises(
        DataError,
        match=rf"^split: '{split}' is not a split of .*hub': a hub-layout folder holds one "
        r"split, 'test' .*use split='' or 'test'$",
    ):
        load_retrieval_data(hub_folder, split=split, dangling="ignore")


def test_hub_folder_split_is_recorded_as_test(hub_folder):
    default = load_retrieval_data(hub_folder, dangling="ignore")
    named = load_retrieval_data(hub_folder, split="test", dangling="ignore")
    assert default.split == named.split == "test"
    assert (default.queries, default.corpus, default.qrels) == (
        named.queries,
        named.corpus,
        named.qrels,
    )


def test_corpus_parameter_is_refused_for_a_beir_folder(beir_folder, tmp_path):
    other = write_jsonl(tmp_path / "other.jsonl", [{"content": "x"}])
    with pytest.raises(DataError, match=r"^corpus: '.*other\.jsonl' given, but .* BEIR folder"):
        load_retrieval_data(beir_folder, corpus=other)


def test_malformed_jsonl_names_file_and_line(beir_folder):
    (beir_folder / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n{broken\n')
    with pytest.raises(DataError, match=r"queries\.jsonl, line 2: not valid JSON"):
        load_retrieval_data(beir_folder)


def test_missing_column_is_named(beir_folder):
    (beir_folder / "queries.jsonl").write_text('{"_id": "q1", "query": "a"}\n')
    with pytest.raises(DataError, match=r"line 1: missing column\(s\) \['text'\]"):
        load_retrieval_data(beir_folder)


def test_malformed_qrels_row(beir_folder):
    (beir_folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(DataError, match=r"test\.tsv, line 2: expected 3"):
        load_retrieval_data(beir_folder)


@pytest.mark.skipif(hub_offline_reason() is None, reason="the hub is reachable here")
def test_hub_id_offline_fails_fast_and_names_the_default():
    start = time.monotonic()
    with pytest.raises(DataError, match=r"namespace-Pt/msmarco.*not reachable.*msmarco-dl19"):
        load_retrieval_data("namespace-Pt/msmarco")
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("field", ["num_queries", "max_corpus", "positives_corpus"])
@pytest.mark.parametrize("value", [-1, 1.5, "3", True])
def test_bad_counts_rejected(beir_folder, field, value):
    with pytest.raises(DataError, match=rf"^{field}: expected 0 .* got {value!r}$"):
        load_retrieval_data(beir_folder, **{field: value})


def test_duplicate_ids_are_refused(beir_folder):
    (beir_folder / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "b"}\n{"_id": "q1", "text": "c"}\n'
    )
    with pytest.raises(DataError, match=r"queries\.jsonl, line 3: duplicate id 'q1'"):
        load_retrieval_data(beir_folder)


def test_empty_texts_are_refused(hub_folder):
    write_jsonl(hub_folder / "corpus.jsonl", [{"content": "Cats purr."}, {"content": "  "}])
    with pytest.raises(DataError, match=r"corpus\.jsonl, line 2, record 1: empty text for id '1'"):
        load_retrieval_data(hub_folder)


def _with_dangling(folder):
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tgone\t2\nq9\td2\t1\n"
    )
    return folder


def test_dangling_judgements_warn_by_default_and_are_counted(beir_folder):
    with pytest.warns(
        UserWarning,
        match=r"1 judged queries are not in the queries file.*"
        r"1 judgements point at documents not in the corpus",
    ):
        data = load_retrieval_data(_with_dangling(beir_folder))
    assert data.notes["judged_queries_not_in_queries"] == 1
    assert data.notes["judgements_on_documents_not_in_corpus"] == 1
    # the judgement stays: trec_eval counts it in R and in nDCG's ideal
    assert data.qrels["q1"] == {"d1": 1, "gone": 2}


def test_dangling_judgements_error_or_ignore(beir_folder, recwarn):
    _with_dangling(beir_folder)
    with pytest.raises(DataError, match=r"dangling='ignore'"):
        load_retrieval_data(beir_folder, dangling="error")
    load_retrieval_data(beir_folder, dangling="ignore")
    assert not [w for w in recwarn if "judged" in str(w.message)]
    with pytest.raises(DataError, match="dangling: expected one of"):
        load_retrieval_data(beir_folder, dangling="maybe")


def test_hub_unmatched_positive_warns(hub_folder):
    with pytest.warns(UserWarning, match="1 judgements point at documents not in the corpus"):
        load_retrieval_data(hub_folder)


def test_missing_separate_corpus_is_named(hub_folder, tmp_path):
    with pytest.raises(DataError, match=r"corpus: .*nowhere.* is neither an existing"):
        load_retrieval_data(hub_folder, corpus=tmp_path / "nowhere" / "corpus.jsonl")
    (hub_folder / "corpus.jsonl").unlink()
    with pytest.raises(DataError, match=r"no corpus\.jsonl next to queries\.jsonl; pass `corpus`"):
        load_retrieval_data(hub_folder)
