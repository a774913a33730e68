"""The helpers' errors in a notebook: their message and the notebook line, not a traceback
through the libraries; every other error keeps IPython's own traceback.

Run in a real IPython shell (``InteractiveShell``, the class the kernels of JupyterLab,
papermill and nbval subclass); what it prints is what a kernel sends as the cell's error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from helpers.data.files import DataError
from helpers.notebook import (
    BRIEF_ERRORS,
    brief_error_lines,
    raised_by_helpers,
    show_helpers_errors_briefly,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """An IPython shell with the helpers' errors shown briefly; no history file, no
    profile outside ``tmp_path``, no colours."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    config.InteractiveShell.colors = "nocolor"
    InteractiveShell.clear_instance()
    instance = InteractiveShell.instance(config=config)
    show_helpers_errors_briefly(instance)
    try:
        yield instance
    finally:
        InteractiveShell.clear_instance()


def _run(shell: InteractiveShell, capsys: pytest.CaptureFixture[str], cell: str):
    """Run ``cell``; its result and what it printed, colours removed."""
    capsys.readouterr()
    result = shell.run_cell(cell, store_history=True)
    return result, ANSI.sub("", capsys.readouterr().out)


def _without_handler(shell: InteractiveShell, capsys, cell: str) -> str:
    """What IPython itself prints for ``cell``'s error (no custom handler)."""
    shell.set_custom_exc((), None)
    try:
        return _run(shell, capsys, cell)[1]
    finally:
        show_helpers_errors_briefly(shell)


def _numbers_out(text: str) -> str:
    return re.sub(r"In\[\d+\]", "In[n]", text)


def test_a_helpers_error_shows_its_message_and_the_notebook_line(shell, capsys, tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "q1", "text": "a question"}\n{"_id": "q2", "text": \n')
    cell = (
        "from helpers.data.files import read_jsonl\n"
        f"path = {str(queries)!r}\n"
        "rows = list(read_jsonl(path))\n"
    )
    result, shown = _run(shell, capsys, cell)
    # the cell still fails, with the helpers' own exception (a kernel reports it)
    assert isinstance(result.error_in_exec, DataError) and not result.success
    count = shell.execution_count - 1
    assert shown.splitlines() == [
        f"DataError: {queries}, line 2: not valid JSON (Expecting value)",
        f"Cell In[{count}], line 3: rows = list(read_jsonl(path))",
        f"(raised in helpers/data/files.py, line {_raise_line('files.py', 'not valid JSON')}, "
        "in read_jsonl_lines; %tb shows the full traceback)",
    ]
    # %tb: the full traceback, through the json library, for whoever wants it
    _, full = _run(shell, capsys, "%tb")
    assert "JSONDecodeError" in full and "read_jsonl_lines" in full
    assert "The above exception was the direct cause" in full


def _raise_line(module: str, text: str) -> int:
    """The line of ``helpers/data/<module>`` that raises the error whose message has ``text``."""
    source = (Path(__file__).resolve().parent.parent / "helpers/data" / module).read_text()
    lines = source.splitlines()
    (number,) = [i + 1 for i, line in enumerate(lines) if text in line and "raise" in line]
    return number


def test_a_helpers_parameter_error_names_the_parameter(shell, capsys):
    result, shown = _run(shell, capsys, 'from helpers.notebook import as_list\n'
                                        'cutoffs = as_list("1,ten", "cutoffs", int)')
    assert isinstance(result.error_in_exec, ValueError)
    lines = shown.splitlines()
    assert lines[0] == "ValueError: cutoffs: expected whole numbers, got 'ten' in '1,ten'"
    assert re.fullmatch(r"Cell In\[\d+\], line 2: cutoffs = as_list\(\"1,ten\", \"cutoffs\", int\)",
                        lines[1])
    assert lines[2].startswith("(raised in helpers/notebook.py, line ")
    assert len(lines) == 3


@pytest.mark.parametrize(
    "cell",
    [
        "import numpy as np\nnp.zeros(3).reshape(2)",  # a ValueError of a library
        'relevance_level = -1\nraise ValueError(f"relevance_level: got {relevance_level}")',
        "import json\njson.loads('{')",  # a library's ValueError subclass
        "open('/no/such/file')",  # an OSError outside the helpers
        "{}['key']",  # not one of BRIEF_ERRORS at all
    ],
    ids=["numpy", "the-cell-itself", "json", "oserror", "keyerror"],
)
def test_other_errors_keep_ipythons_traceback(shell, capsys, cell):
    result, shown = _run(shell, capsys, cell)
    assert result.error_in_exec is not None and not result.success
    assert "Traceback (most recent call last)" in shown
    assert _numbers_out(shown) == _numbers_out(_without_handler(shell, capsys, cell))


def test_colours_mark_the_exception_name_only(shell):
    try:
        from helpers.notebook import as_list

        as_list("1,ten", "cutoffs", int)
    except ValueError as err:
        lines = brief_error_lines(shell, err, color=True)
    assert lines[0] == (
        "\x1b[31mValueError\x1b[39m: cutoffs: expected whole numbers, got 'ten' in '1,ten'")
    # outside any notebook cell there is no notebook line to show
    assert len(lines) == 2 and lines[1].startswith("(raised in helpers/notebook.py, line ")


def test_raised_by_helpers_looks_at_where_the_error_was_raised():
    import numpy as np

    from helpers.notebook import as_list

    def caught(action) -> BaseException:
        try:
            action()
        except BaseException as err:  # noqa: BLE001 - whatever it raised is the subject
            return err
        raise AssertionError("nothing raised")

    assert raised_by_helpers(caught(lambda: as_list("1,ten", "cutoffs", int)))
    assert not raised_by_helpers(caught(lambda: np.zeros(3).reshape(2)))  # through numpy
    assert not raised_by_helpers(ValueError("never raised"))  # no traceback
    # raised here, in the tests, not in the helpers
    assert not raised_by_helpers(caught(lambda: (_ for _ in ()).throw(ValueError("x"))))
    assert set(BRIEF_ERRORS) == {ValueError, TypeError, OSError}
    assert issubclass(DataError, BRIEF_ERRORS)


def test_registering_twice_keeps_one_handler(shell, capsys):
    show_helpers_errors_briefly(shell)
    assert shell.custom_exceptions == BRIEF_ERRORS
    _, shown = _run(shell, capsys, 'from helpers.notebook import as_list\n'
                                   'as_list("1,ten", "cutoffs", int)')
    assert len(shown.splitlines()) == 3



@pytest.fixture
def setup_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables :func:`helpers.notebook.setup` sets, restored after the test."""
    for name in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS",
                 "HF_DATASETS_DISABLE_PROGRESS_BARS", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(name, "1")


@pytest.mark.parametrize("brief", [True, False])
def test_setup_shows_the_helpers_errors_briefly_in_ipython(shell, setup_env, brief):
    from helpers.notebook import setup

    shell.set_custom_exc((), None)
    setup(progress=False, brief_errors=brief)
    assert shell.custom_exceptions == (BRIEF_ERRORS if brief else ())


def test_setup_outside_ipython_changes_nothing(setup_env):
    from helpers.notebook import setup

    InteractiveShell.clear_instance()
    assert setup(progress=False) is False  # no shell: nothing to register, no error
