"""Fixtures of the browser tests: JupyterLab on a free local port, driven by headless Chromium.

The server runs the project's own ``.venv/bin/jupyter lab`` on 127.0.0.1 with a random
token, serving the project root, with its configuration, data, runtime, settings,
workspaces and checkpoints in a temporary folder: nothing of the user's Jupyter set-up is
read or written. Its environment is the test run's without the switches that turn
progress bars and warnings off (``make test`` and ``conftest.py`` set them for nbval): a
person's JupyterLab shows them.

Without Chromium or Playwright every browser test is skipped with one line naming what to
install (:data:`INSTALL_HINT`); ``tests/browser/install_chromium.sh`` installs Chromium.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.notebook import PROJECT_ROOT

INSTALL_HINT = (
    "browser tests need Chromium and Playwright: "
    "apt-get install chromium; pip install playwright==1.65.0"
)
"""The one line a skipped browser test shows."""

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Executables tried, in order, when ``CHROMIUM`` (a path) is not set."""

QUIET_SWITCHES = (
    "EMBEVAL_PROGRESS",
    "TQDM_DISABLE",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "HF_DATASETS_DISABLE_PROGRESS_BARS",
    "PYTHONWARNINGS",
)
"""Environment variables of the test run that JupyterLab (and its kernels) must not inherit:
they hide progress bars and warnings, which people see."""

UNREACHABLE_HUB = "https://hub.invalid"
"""``HF_ENDPOINT`` of the kernels: a host that never resolves (RFC 6761), so that nothing
loads from the Hugging Face hub and a hub id fails the same way with or without network."""

SERVER_START_SECONDS = 120


def find_chromium() -> str | None:
    """The Chromium executable: ``$CHROMIUM`` when set, else the first of
    :data:`CHROMIUM_NAMES` on the ``PATH``; None when there is none."""
    given = os.environ.get("CHROMIUM", "").strip()
    if given:
        return given if Path(given).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class JupyterLab:
    """A running JupyterLab server.

    Attributes:
        url: its base URL (``http://127.0.0.1:<port>``).
        token: the token every request carries.
        root: the folder it serves (the project root).
        log: the server's log file (stdout and stderr).
    """

    url: str
    token: str
    root: Path
    log: Path

    def lab_url(self, path: Path) -> str:
        """The JupyterLab URL that opens ``path`` (a file under :attr:`root`)."""
        return f"{self.url}/lab/tree/{path.relative_to(self.root).as_posix()}?token={self.token}"

    def api(self, method: str, endpoint: str) -> Any:
        """Call the server's REST API (``/api/...``); the decoded JSON reply, or None."""
        request = urllib.request.Request(
            f"{self.url}/api/{endpoint}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def shut_down_kernels_of(self, path: Path) -> None:
        """Shut down the sessions (and kernels) of the notebook ``path``."""
        relative = path.relative_to(self.root).as_posix()
        for session in self.api("GET", "sessions"):
            if session.get("path") == relative:
                self.api("DELETE", f"sessions/{session['id']}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, for failure messages."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _write_settings(home: Path) -> dict[str, Path]:
    """JupyterLab's folders under ``home`` with the settings of a quiet test session.

    Cells are all rendered (``windowingMode: none``: JupyterLab otherwise renders only the
    cells in view, and a full-page screenshot would show empty outputs), the notebook's own
    kernel starts without asking, and no news or update check is fetched.
    """
    folders = {
        name: home / name
        for name in ("config", "data", "runtime", "settings", "workspaces", "checkpoints")
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    user_settings = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "windowingMode": "none",
            "autoStartDefaultKernel": True,
        },
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for name, values in user_settings.items():
        target = folders["settings"] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    server_config = {
        "ServerApp": {
            # the language-server and terminal extensions are not used here
            "jpserver_extensions": {"jupyter_lsp": False, "jupyter_server_terminals": False},
        },
        # checkpoints in the temporary folder, not in .ipynb_checkpoints/ of notebooks/
        "FileCheckpoints": {"checkpoint_dir": str(folders["checkpoints"])},
        # the tests' notebook copies are hidden files (notebooks/.browser-*.ipynb)
        "ContentsManager": {"allow_hidden": True},
        "LabApp": {
            "user_settings_dir": str(folders["settings"]),
            "workspaces_dir": str(folders["workspaces"]),
            "news_url": None,
        },
    }
    (folders["config"] / "jupyter_server_config.json").write_text(json.dumps(server_config))
    return folders


def _server_env(folders: dict[str, Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in QUIET_SWITCHES}
    env.update(
        JUPYTER_CONFIG_DIR=str(folders["config"]),
        JUPYTER_DATA_DIR=str(folders["data"]),
        JUPYTER_RUNTIME_DIR=str(folders["runtime"]),
        HF_ENDPOINT=UNREACHABLE_HUB,
    )
    return env


def browser_available() -> bool:
    """Chromium (:func:`find_chromium`) and Playwright's Python package are both there."""
    return find_chromium() is not None and importlib.util.find_spec("playwright") is not None


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without Chromium or Playwright, mark every browser test skipped, with
    :data:`INSTALL_HINT` (pytest's summary folds them into one line)."""
    browser_tests = [item for item in items if Path(str(item.path)).is_relative_to(HERE)]
    if browser_tests and not browser_available():
        for item in browser_tests:
            item.add_marker(pytest.mark.skip(reason=INSTALL_HINT))


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable (the tests are skipped without it)."""
    path = find_chromium()
    if path is None or not browser_available():
        pytest.skip(INSTALL_HINT)
    return path


@pytest.fixture(scope="session")
def jupyterlab(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab serving the project root (see the module's docstring); stopped, with
    its kernels, at the end of the session."""
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.is_file():
        pytest.fail(f"no {jupyter}: install the project (make install)")
    home = tmp_path_factory.mktemp("jupyterlab")
    folders = _write_settings(home)
    port, token = _free_port(), secrets.token_hex(24)
    command = [
        str(jupyter), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={PROJECT_ROOT}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--ServerApp.allow_root=True")
    lab = JupyterLab(f"http://127.0.0.1:{port}", token, PROJECT_ROOT, home / "server.log")
    with open(lab.log, "wb") as log:
        server = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=_server_env(folders), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                lab.api("GET", "status")
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{lab.log_tail()}")
                time.sleep(0.2)
        yield lab
    finally:
        server.send_signal(signal.SIGTERM)  # stops the server and shuts its kernels down
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    """Headless Chromium (Playwright's sync API on the system's Chromium)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page (1280 x 900), closed after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()
