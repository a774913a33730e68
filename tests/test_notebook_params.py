"""The notebooks' parameters as papermill users see them, and list parameters given as text."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from papermill.inspection import inspect_notebook

from helpers.notebook import PROJECT_ROOT, as_list

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_every_parameter_has_its_help_line(notebook: Path, caplog):
    """``papermill --help-notebook`` reads the comment on the parameter's own line (and
    cannot parse a line with a second ``=``)."""
    with caplog.at_level(logging.WARNING, logger="papermill"):
        params = inspect_notebook(str(notebook))
    assert not [r.message for r in caplog.records if "Unable to parse" in r.message]
    assert len(params) >= 6
    assert {name: p["help"] for name, p in params.items() if not p["help"].strip()} == {}


@pytest.mark.parametrize(
    ("value", "item_type", "expected"),
    [
        ('["STSBenchmark"]', str, ["STSBenchmark"]),  # papermill -p tasks '["STSBenchmark"]'
        ("[STSBenchmark, SciFact]", str, ["STSBenchmark", "SciFact"]),  # YAML flow list
        ("STSBenchmark, SciFact", str, ["STSBenchmark", "SciFact"]),
        ("STSBenchmark", str, ["STSBenchmark"]),
        ("", str, []),
        ("[]", str, []),
        (["Clustering"], str, ["Clustering"]),
        ("[1, 10, 100]", int, [1, 10, 100]),
        ("1,10", int, [1, 10]),
        ([5, 1], int, [5, 1]),
    ],
)
def test_as_list_accepts_what_papermill_users_pass(value, item_type, expected):
    assert as_list(value, "tasks", item_type) == expected


@pytest.mark.parametrize(
    ("value", "item_type", "message"),
    [
        ("{a: 1}", str, "tasks: expected a list"),
        (5, str, "tasks: expected a list"),
        ("[[1]]", str, "tasks: expected names"),
        ("1,ten", int, "tasks: expected whole numbers, got 'ten'"),
        ([True], int, "tasks: expected whole numbers"),
        ("[unclosed", str, "tasks: '\\[unclosed' is not a valid list"),
    ],
)
def test_as_list_names_the_parameter(value, item_type, message):
    with pytest.raises(ValueError, match=message):
        as_list(value, "tasks", item_type)
