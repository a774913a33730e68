"""Reports: TREC run files round-trip exactly, tables are rounded, writes are atomic."""

from __future__ import annotations

import csv
import json

import pytest

from helpers import reports
from helpers.io import write_json


def test_trec_run_round_trip_is_exact(tmp_path):
    run = {"q1": {"d1": 0.1 + 0.2, "d2": 0.30000001192092896, "d3": 0.5}, "q2": {"x": -1.25}}
    path = reports.write_trec_run(tmp_path / "run.trec", run, tag="mini")
    assert reports.read_trec_run(path) == run
    lines = path.read_text().splitlines()
    assert lines[0].split() == ["q1", "Q0", "d3", "1", "0.5", "mini"]
    assert [line.split()[3] for line in lines] == ["1", "2", "3", "1"]


def test_trec_run_ties_in_trec_eval_order(tmp_path):
    path = reports.write_trec_run(tmp_path / "r.trec", {"q": {"a": 1.0, "b": 1.0}}, tag="t")
    assert [line.split()[2] for line in path.read_text().splitlines()] == ["b", "a"]


def test_trec_run_rejects_whitespace():
    with pytest.raises(ValueError, match="tag"):
        reports.trec_run_lines({"q": {"a": 1.0}}, tag="two words")
    with pytest.raises(ValueError, match="whitespace"):
        reports.trec_run_lines({"q": {"a b": 1.0}}, tag="t")


def test_metrics_table_order_and_rounding():
    mean = {"ndcg_at_1": 0.123456, "ndcg_at_10": 0.5, "mrr_at_1": 1 / 3, "mrr_at_10": 0.99999}
    table = reports.metrics_table(mean, ["mrr", "ndcg"], [1, 10])
    assert list(table.index) == ["mrr", "ndcg"]
    assert list(table.columns) == ["@1", "@10", "definition"]
    assert table.loc["mrr", "definition"].startswith("1 / rank of first relevant")
    assert table.loc["mrr", "@1"] == 0.3333 and table.loc["ndcg", "@1"] == 0.1235
    assert table.loc["mrr", "@10"] == 1.0


def test_per_query_csv(tmp_path):
    path = reports.write_per_query_csv(
        tmp_path / "pq.csv", {"q1": {"a": 1 / 3, "b": 0.0}}, ["a", "b"]
    )
    rows = list(csv.DictReader(path.open()))
    assert rows == [{"query_id": "q1", "a": repr(1 / 3), "b": "0.0"}]


def test_write_json_is_atomic(tmp_path):
    target = tmp_path / "sub" / "m.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]
