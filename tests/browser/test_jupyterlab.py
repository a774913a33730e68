"""The notebooks as people meet them: JupyterLab in headless Chromium, cell by cell.

Each test copies a notebook next to the original, as ``notebooks/.browser-<name>.ipynb``,
with its outputs cleared and its parameters cell changed to a small run that writes into
the test's temporary folder (the embedding cache too). Next to the original, its kernel
starts in ``notebooks/`` exactly as the original's does, so it finds the helpers and the
data as a person's does; the leading dot keeps the copy out of every
``notebooks/[0-9]*.ipynb`` glob (``make run``, nbval, the parameter tests) while it exists,
and it is removed, its kernel shut down, when the test ends.

The test opens the copy in JupyterLab, runs Run > Run All Cells from the menu bar, watches
the page until the kernel is idle (progress bars must show as widgets while cells run),
saves it with File > Save Notebook, and checks the saved cells (every one ran, no error)
and the page: metric tables rendered as HTML tables holding the numbers the run wrote,
plots rendered as images. One full-page screenshot per notebook goes to
``results/screenshots/`` (and, for notebook 1, its metrics table and plot alone, and the
missing-dataset error as shown).
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.notebook import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"
SCREENSHOTS = PROJECT_ROOT / "results" / "screenshots"
MODEL_DIR = "sentence-transformers__all-MiniLM-L6-v2/8b3219a92973c328a8e22fadcfa821b5dc75636a"
RUN_SECONDS = 600
"""The longest one notebook's Run All Cells may take (a small run; 2 busy CPU cores)."""
STS_PAIRS = 200
"""Sentence pairs of the STSBenchmark test split the MTEB notebooks run on."""
PROGRESS_LABELS = """() => Array.from(
    document.querySelectorAll('.jp-OutputArea-output .jupyter-widgets.widget-hbox'))
    .filter(box => box.querySelector('.widget-hprogress'))
    .map(box => (box.querySelector('.widget-html') || box).innerText.split(':')[0]
        .replace(/\\s+/g, ' ').trim())"""
"""The label of every progress-bar widget (tqdm's) in the output areas, e.g. ``Encoding``."""
RUNNING_PROMPT = ".jp-Notebook .jp-InputPrompt:has-text('[*]')"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# --------------------------------------------------------------------------------------
# Driving JupyterLab
# --------------------------------------------------------------------------------------


def with_parameters(notebook: dict[str, Any], values: dict[str, object]) -> dict[str, Any]:
    """``notebook`` with every output cleared and ``values`` assigned in its cell tagged
    ``parameters`` (each line ``name: type = value  # help`` keeps its type and help).

    Raises:
        AssertionError: naming a parameter the cell does not assign.
    """
    missing = set(values)
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        lines = []
        for line in source.splitlines():
            head, sep, comment = line.partition("  # ")
            match = re.match(r"(\w+)(\s*:\s*[^=]+?)?\s*=", head)
            if match and match.group(1) in values:
                name = match.group(1)
                line = f"{name}{match.group(2) or ''} = {values[name]!r}{sep}{comment}"
                missing.discard(name)
            lines.append(line)
        cell["source"] = "\n".join(lines)
    assert not missing, f"the parameters cell assigns no {sorted(missing)}"
    return notebook


@contextmanager
def notebook_copy(lab: Any, name: str, values: dict[str, object]) -> Iterator[Path]:
    """``notebooks/<name>`` as ``notebooks/.browser-<name>`` (:func:`with_parameters`);
    its kernel shut down and the copy removed at the end."""
    notebook = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    copy = NOTEBOOKS / f".browser-{name}"
    copy.write_text(json.dumps(with_parameters(notebook, values), indent=1), encoding="utf-8")
    try:
        yield copy
    finally:
        try:
            lab.shut_down_kernels_of(copy)
        finally:
            copy.unlink(missing_ok=True)


@dataclass
class Run:
    """What one Run All Cells showed.

    Attributes:
        seconds: from the menu click until the kernel was idle with no cell queued.
        progress_bars: the labels of the progress-bar widgets seen in output areas while
            cells ran (``Encoding``, ``Loading weights``, ...).
        saved: the notebook as JupyterLab saved it afterwards (File > Save Notebook).
    """

    seconds: float
    progress_bars: set[str]
    saved: dict[str, Any]


def _menu(page: Any, menu: str, item: str | re.Pattern[str]) -> None:
    page.get_by_role("menuitem", name=menu, exact=True).click()
    page.get_by_role("menuitem", name=item, exact=isinstance(item, str)).click()


def _kernel_idle(page: Any) -> bool:
    return page.locator(".jp-StatusBar-Widget", has_text="| Idle").count() > 0


def run_all_cells(page: Any, lab: Any, copy: Path) -> Run:
    """Open ``copy`` in JupyterLab, run every cell from the menu bar, wait for the end
    (the kernel idle, no cell running or queued), save, and report (:class:`Run`)."""
    page.goto(lab.lab_url(copy))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_selector(".jp-StatusBar-Widget:has-text('| Idle')", timeout=120_000)
    sidebar = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if sidebar.count():  # the file browser: closed, as for reading a notebook
        sidebar.first.click()
    _menu(page, "Run", "Run All Cells")
    started, finished_at = time.monotonic(), None
    progress_bars: set[str] = set()
    ran = False
    while True:
        running = page.locator(RUNNING_PROMPT).count()
        if running:
            ran = True
            progress_bars.update(page.evaluate(PROGRESS_LABELS))
        if ran and not running and _kernel_idle(page):
            finished_at = finished_at or time.monotonic()
            if time.monotonic() - finished_at > 1.0:  # still idle a second later: done
                break
        else:
            finished_at = None
        dead = page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| (Dead|Unknown)"))
        if dead.count():
            pytest.fail(f"{copy.name}: the kernel died while running\n{lab.log_tail()}")
        if time.monotonic() - started > RUN_SECONDS:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOTS / f"timeout-{copy.stem.lstrip('.')}.png"
            page.screenshot(path=str(shot))
            pytest.fail(f"{copy.name}: Run All Cells not finished after {RUN_SECONDS} s "
                        f"(screenshot: {shot})\n{lab.log_tail()}")
        page.wait_for_timeout(250)
    seconds = finished_at - started
    print(f"{copy.name}: Run All Cells took {seconds:.0f} s")  # shown with pytest -s or -rP
    before = copy.stat().st_mtime_ns
    _menu(page, "File", re.compile(r"^Save Notebook(?! As)"))
    page.wait_for_function("() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')")
    deadline = time.monotonic() + 30
    while copy.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.1)
    saved = json.loads(copy.read_text(encoding="utf-8"))
    return Run(seconds, progress_bars, saved)


def rendered_tables(page: Any) -> list[dict[str, Any]]:
    """Every HTML table in the output areas: ``{"columns": [...], "rows": {name: [...]}}``
    (column headers of the first header row without the index column; each body row's
    header and cells, as shown)."""
    return list(page.evaluate("""() =>
        Array.from(document.querySelectorAll('.jp-OutputArea-output table')).map(table => {
            const head = table.querySelector('thead tr');
            const columns = head ? Array.from(head.querySelectorAll('th, td')).slice(1)
                .map(cell => cell.innerText.trim()) : [];
            const rows = {};
            for (const row of table.querySelectorAll('tbody tr')) {
                const name = row.querySelector('th');
                rows[name ? name.innerText.trim() : String(Object.keys(rows).length)] =
                    Array.from(row.querySelectorAll('td')).map(cell => cell.innerText.trim());
            }
            return {columns, rows};
        })"""))


def find_table(tables: list[dict[str, Any]], columns: list[str]) -> dict[str, Any]:
    """The first table whose column headers are exactly ``columns``."""
    found = [table for table in tables if table["columns"] == columns]
    assert found, f"no table with columns {columns}; tables: {[t['columns'] for t in tables]}"
    return found[0]


def rendered_images(page: Any) -> list[tuple[int, int]]:
    """(natural width, natural height) of every image in the output areas, once loaded."""
    page.wait_for_function("""() => Array.from(
        document.querySelectorAll('.jp-OutputArea-output img')).every(img => img.complete)""")
    return [tuple(size) for size in page.evaluate("""() => Array.from(
        document.querySelectorAll('.jp-OutputArea-output img'))
        .map(img => [img.naturalWidth, img.naturalHeight])""")]


def full_page_screenshot(page: Any, name: str, detail: str = "") -> Path:
    """The whole notebook in one PNG, ``results/screenshots/<name>.png``: the window is
    made as tall as the notebook (JupyterLab scrolls inside a fixed-size window).

    With ``detail``, also ``results/screenshots/<detail>.png``: the metrics at a readable
    size, from the first cell with a table of metrics at cut-offs (a column ``@1``) to
    the next cell with a plot.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    viewport = page.viewport_size
    measure = """() => {
        const panel = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
        panel.scrollTop = 0;
        const cells = panel.querySelectorAll('.jp-Cell');
        const below = window.innerHeight - panel.getBoundingClientRect().bottom;
        return cells[cells.length - 1].getBoundingClientRect().bottom + 24 + below;
    }"""
    height = 0
    for _ in range(5):  # until the layout at the new size needs no more room
        wanted = min(int(page.evaluate(measure)), 16_000)
        if abs(wanted - height) <= 2:
            break
        height = wanted
        page.set_viewport_size({"width": viewport["width"], "height": height})
        page.wait_for_timeout(500)  # JupyterLab lays the panels out again
    page.screenshot(path=str(target))
    if detail:
        box = page.evaluate("""() => {
            const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell'));
            const first = cells.findIndex(cell => Array.from(cell.querySelectorAll(
                '.jp-OutputArea-output thead th')).some(th => th.innerText.trim() === '@1'));
            const last = cells.findIndex((cell, i) => i > first &&
                cell.querySelector('.jp-OutputArea-output img'));
            if (first < 0 || last < 0) return null;
            const top = cells[first].getBoundingClientRect();
            const bottom = cells[last].getBoundingClientRect();
            return {x: top.left, y: top.top, width: top.width, height: bottom.bottom - top.top};
        }""")
        assert box, "no metrics table followed by a plot"
        page.screenshot(path=str(SCREENSHOTS / f"{detail}.png"), clip=box)
    page.set_viewport_size(viewport)
    return target


def code_cells(saved: dict[str, Any]) -> list[dict[str, Any]]:
    return [cell for cell in saved["cells"] if cell["cell_type"] == "code"]


def assert_ran_without_errors(run: Run) -> None:
    """Every code cell ran (has an execution count) and none has an error output."""
    errors = [
        f"{out['ename']}: {out['evalue']}"
        for cell in code_cells(run.saved)
        for out in cell["outputs"]
        if out["output_type"] == "error"
    ]
    assert errors == []
    not_run = ["".join(c["source"])[:60] for c in code_cells(run.saved) if not c["execution_count"]]
    assert not_run == []


def assert_encoding_progress_shown(run: Run) -> None:
    """A progress bar of the encoding showed as a widget while the cells ran."""
    encoding = [label for label in run.progress_bars if label.startswith("Encoding")]
    assert encoding, f"no Encoding progress-bar widget while cells ran; seen: {run.progress_bars}"


def near(shown: str, value: float) -> bool:
    """A number shown with 4 decimals is ``value``."""
    return abs(float(shown) - value) <= 5e-5 + 1e-9


def small_sts_root(root: Path) -> Path:
    """A data root with the first :data:`STS_PAIRS` pairs of the shipped STSBenchmark
    test split, in ``root/STSBenchmark/test.jsonl`` (a folder named for its task)."""
    folder = root / "STSBenchmark"
    folder.mkdir(parents=True)
    with gzip.open(PROJECT_ROOT / "data/mteb/STSBenchmark/test.jsonl.gz", "rt") as handle:
        lines = [line for _, line in zip(range(STS_PAIRS), handle, strict=False)]
    (folder / "test.jsonl").write_text("".join(lines))
    return root


def main_score(result: Path) -> float:
    return float(json.loads(result.read_text())["scores"]["test"][0]["main_score"])


# --------------------------------------------------------------------------------------
# The notebooks
# --------------------------------------------------------------------------------------


def test_notebook_01_in_jupyterlab(jupyterlab, page, tmp_path):
    out = tmp_path / "out"
    values = {"num_queries": 2, "max_corpus": 200, "compare": False,
              "output_dir": str(out), "cache_dir": str(tmp_path / "cache")}
    with notebook_copy(jupyterlab, "01_msmarco_eval.ipynb", values) as copy:
        run = run_all_cells(page, jupyterlab, copy)
        assert_ran_without_errors(run)
        metrics = json.loads((out / "metrics.json").read_text())["metrics"]
        tables = rendered_tables(page)
        # the data: the shipped collection, found from notebooks/ by its project path
        summary = next(t for t in tables if "queries" in t["rows"])
        assert summary["rows"]["layout"] == ["beir"] and summary["rows"]["queries"] == ["2"]
        # the metrics table: one row per metric, one column per cut-off, the run's numbers
        cutoffs = [1, 3, 5, 10, 100]
        table = find_table(tables, [f"@{k}" for k in cutoffs] + ["definition"])
        names = ["ndcg", "recall", "capped_recall", "success", "mrr", "map", "precision"]
        assert list(table["rows"]) == names
        for name in names:
            row = table["rows"][name]
            assert len(row) == len(cutoffs) + 1 and row[-1]  # the values, then the definition
            for shown, k in zip(row[:-1], cutoffs, strict=True):
                assert near(shown, metrics[f"{name}_at_{k}"]), (name, k, shown, metrics)
        # the plot of the metrics by cut-off
        images = rendered_images(page)
        assert len(images) == 1 and min(images[0]) > 100, images
        full_page_screenshot(page, "01_msmarco_eval", detail="01_msmarco_eval_metrics")
        assert_encoding_progress_shown(run)


def test_notebook_02_in_jupyterlab(jupyterlab, page, tmp_path):
    out = tmp_path / "mteb"
    data = small_sts_root(tmp_path / "data") / "STSBenchmark"
    values = {"task": "STSBenchmark", "data_dir": str(data), "output_dir": str(out),
              "cache_dir": str(tmp_path / "cache")}
    with notebook_copy(jupyterlab, "02_mteb_single_task.ipynb", values) as copy:
        run = run_all_cells(page, jupyterlab, copy)
        assert_ran_without_errors(run)
        score = main_score(out / MODEL_DIR / "STSBenchmark.json")
        tables = rendered_tables(page)
        task = find_table(tables, ["value"])
        assert task["rows"]["name"] == ["STSBenchmark"]
        (read_from,) = task["rows"]["data read from"]  # a long path is shown cut, with "..."
        assert len(read_from) > 20 and str(data).startswith(read_from.removesuffix("..."))
        scores = find_table(tables, ["test"])
        assert near(scores["rows"]["cosine_spearman"][0], score)
        comparison = find_table(
            tables, ["split", "metric", "ours", "published", "difference", "reproduced"])
        assert comparison["rows"]["STSBenchmark"][:2] == ["test", "cosine_spearman"]
        assert near(comparison["rows"]["STSBenchmark"][2], score)
        full_page_screenshot(page, "02_mteb_single_task")
        assert_encoding_progress_shown(run)


def test_notebook_03_in_jupyterlab(jupyterlab, page, tmp_path):
    out = tmp_path / "mteb"
    values = {"tasks": "STSBenchmark", "data_root": str(small_sts_root(tmp_path / "data")),
              "output_dir": str(out), "cache_dir": str(tmp_path / "cache")}
    with notebook_copy(jupyterlab, "03_mteb_leaderboard.ipynb", values) as copy:
        run = run_all_cells(page, jupyterlab, copy)
        assert_ran_without_errors(run)
        score = main_score(out / MODEL_DIR / "STSBenchmark.json")
        tables = rendered_tables(page)
        per_task = find_table(tables, ["type", "metric", "split", "main_score"])
        assert list(per_task["rows"]) in (["task", "STSBenchmark"], ["STSBenchmark"])
        assert per_task["rows"]["STSBenchmark"][:3] == ["STS", "cosine_spearman", "test"]
        assert near(per_task["rows"]["STSBenchmark"][3], score)
        averages = find_table(tables, ["score"])
        assert near(averages["rows"]["Mean (Task)"][0], score)
        images = rendered_images(page)
        assert len(images) == 1 and min(images[0]) > 100, images
        full_page_screenshot(page, "03_mteb_leaderboard")
        assert_encoding_progress_shown(run)


def test_a_missing_dataset_shows_the_helpers_message(jupyterlab, page, tmp_path):
    """The first error a person sees is the helpers' one-line message and the notebook
    line that led to it, not a traceback through the libraries; later cells do not run."""
    values = {"dataset": "data/no-such-folder", "num_queries": 2, "max_corpus": 200,
              "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")}
    with notebook_copy(jupyterlab, "01_msmarco_eval.ipynb", values) as copy:
        run = run_all_cells(page, jupyterlab, copy)
        cells = code_cells(run.saved)
        failed = [i for i, c in enumerate(cells) if any(
            o["output_type"] == "error" for o in c["outputs"])]
        assert len(failed) == 1
        cell = cells[failed[0]]
        assert "".join(cell["source"]).startswith("data = load_retrieval_data(")
        (error,) = [o for o in cell["outputs"] if o["output_type"] == "error"]
        assert error["ename"] == "DataError"
        assert error["evalue"].startswith(
            "dataset: 'data/no-such-folder' is not a local path, so it must be downloaded "
            "from the Hugging Face hub, which is not reachable")
        lines = [ANSI.sub("", line) for line in error["traceback"]]
        assert lines[0] == f"DataError: {error['evalue']}"
        assert re.fullmatch(r"Cell In\[\d+\], line 1: data = load_retrieval_data\(.*", lines[1])
        assert lines[2].startswith("(raised in helpers/data/loader.py, line ")
        assert len(lines) == 3
        assert all(not c["execution_count"] for c in cells[failed[0] + 1:])
        # on the page: the error as shown, first line first, nothing of the libraries
        shown = page.locator(".jp-Notebook .jp-Cell.jp-CodeCell").nth(failed[0]).locator(
            ".jp-OutputArea-output").last
        text = shown.inner_text().strip()
        assert text.splitlines()[0] == f"DataError: {error['evalue']}"
        assert "Traceback" not in text and "site-packages" not in text
        page_text = page.locator(".jp-Notebook").inner_text()
        assert "Traceback (most recent call last)" not in page_text
        shown.scroll_into_view_if_needed()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "01_msmarco_eval_missing_dataset.png"))
