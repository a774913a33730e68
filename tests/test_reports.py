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


def test_format_table_rounds_floats_only_and_never_shows_minus_zero():
    import pandas as pd

    frame = pd.DataFrame(
        {
            "score": [0.123456, -0.00001, 2 / 3],
            "count": [1, 2, 3],
            "mixed": [1 / 3, "unjudged", 2],
            "text": ["a", "b", "c"],
            "flag": [True, False, True],
        },
        index=pd.Index([0.55555, 1.0, 2.0], name="k"),
    )
    before = frame.copy()
    table = reports.format_table(frame)
    assert frame.equals(before)  # the input is not modified
    assert list(table["score"]) == [0.1235, 0.0, 0.6667]
    assert str(table["score"].iloc[1]) == "0.0"  # not -0.0
    assert list(table["mixed"]) == [0.3333, "unjudged", 2]
    # mixed columns stay mixed, whatever they hold (the display's alignment depends on it)
    assert table["mixed"].dtype == object
    flags = pd.DataFrame({"reproduced": pd.Series([True, None], dtype=object)})
    assert reports.format_table(flags)["reproduced"].dtype == object
    assert list(table["count"]) == [1, 2, 3] and table["count"].dtype == frame["count"].dtype
    assert list(table["text"]) == ["a", "b", "c"] and list(table["flag"]) == [True, False, True]
    assert list(table.index) == [0.55555, 1.0, 2.0]  # the index is left as it is
    assert list(reports.format_table(frame, decimals=1)["score"]) == [0.1, 0.0, 0.7]
    assert "-0.0" not in reports.format_table(pd.DataFrame({"d": [-1e-9]})).to_string()


def test_format_table_takes_a_series_or_a_mapping():
    import pandas as pd

    from_series = reports.format_table(pd.Series({"a": 1 / 7, "b": -0.0}, name="test"))
    assert list(from_series.columns) == ["test"] and list(from_series["test"]) == [0.1429, 0.0]
    from_mapping = reports.format_table({"queries": "43", "score": 0.987654})
    assert list(from_mapping.columns) == ["value"]
    assert from_mapping.loc["queries", "value"] == "43"
    assert from_mapping.loc["score", "value"] == 0.9877
    assert list(reports.format_table({"x": 1.0}, name="v").columns) == ["v"]
    assert reports.format_table({}).empty
    with pytest.raises(TypeError, match="table: expected a DataFrame, a Series or a mapping"):
        reports.format_table([1.0, 2.0])  # type: ignore[arg-type]


def test_comparison_table_columns_and_rounding():
    row = {
        "metric": "ndcg_at_10",
        "num_queries": 43,
        "mean_a": 0.674812,
        "mean_b": 0.623412,
        "mean_difference": -0.0000001,
        "ci_low": -0.09012,
        "ci_high": -0.01617,
        "confidence": 0.95,
        "t_statistic": -2.7,
        "t_test_p": 0.010149,
        "randomization_p": 0.01049,
        "wins": 17,
        "losses": 25,
        "ties": 1,
    }
    table = reports.comparison_table([row])
    assert list(table.columns) == list(reports.COMPARISON_COLUMNS)
    assert table.loc["ndcg_at_10", "mean_a"] == 0.6748
    assert str(table.loc["ndcg_at_10", "mean_difference"]) == "0.0"
    assert table.loc["ndcg_at_10", "wins"] == 17
