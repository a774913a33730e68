"""Notebook 1's corpus encoded on Ray against the same encoding in this process.

One local Ray (``num_cpus=2``) for the module, and the embedded all-MiniLM-L6-v2 loaded
once here. The data is notebook 1's default collection loaded as the notebook loads it
(``load_retrieval_data`` on ``data/msmarco-dl19/beir``, seed 0), cut to its first 3 judged
queries and 300 passages so that each encoding takes seconds on 2 cores (the notebook's
5,000 passages take about 80 s per encoding there), in cache chunks of 50 (6 chunks).

The local run (``evaluate_configuration`` through a cache) is the reference: Ray's chunk
files must hold bitwise the same vectors, and ``evaluate_configuration`` on Ray's cache must
read every corpus chunk and give exactly the same run and metrics. A worker killed with
SIGKILL in the middle of a chunk is restarted and its shard retried: the run completes,
every chunk is written once (each chunk's manifest is watched while the run goes on: one
version of each is ever seen), none is lost, and the vectors are the local ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from conftest import MockEncoder
from helpers import distributed as D
from helpers import metrics as M
from helpers.cache import EmbeddingCache, cache_key
from helpers.data import RetrievalData, load_retrieval_data
from helpers.distributed import corpus as C
from helpers.evaluation import corpus_texts, evaluate_configuration
from helpers.models import CachingEncoder, EncoderBase, cached
from helpers.notebook import PROJECT_ROOT

CHUNK = 50
CUTOFFS = [1, 3, 5, 10, 100]


# ---------------------------------------------------------------------------
# Fixtures: the data, the model, one Ray, the local reference run
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data() -> RetrievalData:
    """Notebook 1's default collection, as the notebook loads it, cut small."""
    data = load_retrieval_data(
        PROJECT_ROOT / "data/msmarco-dl19/beir", num_queries=3, max_corpus=300, seed=0
    )
    assert (len(data.queries), len(data.corpus)) == (3, 300)
    return data


@pytest.fixture(scope="module")
def model() -> EncoderBase:
    """The embedded model, uncached (each test puts it through its own cache)."""
    from helpers.models import load_encoder

    encoder = load_encoder(device="cpu")
    assert isinstance(encoder, EncoderBase)
    return encoder


@pytest.fixture(scope="module")
def cluster() -> Iterator[D.RayCluster]:
    started = D.connect("", num_cpus=2)
    yield started
    D.shutdown(started)


@pytest.fixture(scope="module")
def local(
    model: EncoderBase, data: RetrievalData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CachingEncoder, Any]:
    """The local run: ``evaluate_configuration`` encoding the corpus in this process."""
    encoder = cached(model, EmbeddingCache(tmp_path_factory.mktemp("local"), CHUNK))
    level = M.default_relevance_level(data.qrels)
    result = evaluate_configuration(encoder, data, CUTOFFS, level)
    assert encoder.cache.computed_chunks == 6 + 1  # the corpus's chunks, the queries'
    return encoder, result


def _entry(encoder: CachingEncoder, data: RetrievalData) -> Path:
    texts = corpus_texts(data)
    return encoder.cache.folder(cache_key(encoder.fingerprint("document"), texts))


def _assert_same_chunks(ours: Path, local: Path, chunks: int = 6) -> None:
    """Both entries hold exactly the chunks, each verified, bitwise the same; nothing else."""
    names = sorted(
        ["meta.json"] + [f"chunk_{i:05d}.{x}" for i in range(chunks) for x in ("npy", "json")]
    )
    assert sorted(p.name for p in ours.iterdir()) == names  # no lock, temporary or probe
    for i in range(chunks):
        npy = (ours / f"chunk_{i:05d}.npy").read_bytes()
        manifest = json.loads((ours / f"chunk_{i:05d}.json").read_text())
        assert manifest["sha256"] == hashlib.sha256(npy).hexdigest()
        assert npy == (local / f"chunk_{i:05d}.npy").read_bytes(), f"chunk {i} differs"
        np.testing.assert_array_equal(
            np.load(ours / f"chunk_{i:05d}.npy"), np.load(local / f"chunk_{i:05d}.npy")
        )
    meta = json.loads((ours / "meta.json").read_text())
    assert meta == json.loads((local / "meta.json").read_text())


# ---------------------------------------------------------------------------
# Ray against local (the real model)
# ---------------------------------------------------------------------------


def test_ray_writes_the_local_chunks_and_metrics_real_model(cluster, model, data, local, tmp_path):
    local_encoder, local_result = local
    encoder = cached(model, EmbeddingCache(tmp_path / "ray", CHUNK))
    report = D.encode_corpus_on_ray(encoder, data, workers=2)
    assert (report.passages, report.chunks, report.workers) == (300, 6, 2)
    assert (report.chunks_computed, report.chunks_found) == (6, 0)
    assert report.key == _entry(encoder, data).name
    assert report.threads_per_worker == 1  # 2 CPUs shared by 2 workers; here: every core
    _assert_same_chunks(_entry(encoder, data), _entry(local_encoder, data))

    level = M.default_relevance_level(data.qrels)
    result = evaluate_configuration(encoder, data, CUTOFFS, level)
    # every corpus chunk read from the cache; only the queries encoded here
    assert (encoder.cache.hits, encoder.cache.computed_chunks) == (6, 1)
    np.testing.assert_array_equal(result.corpus_vectors, local_result.corpus_vectors)
    assert result.run == local_result.run
    assert result.evaluation.per_query == local_result.evaluation.per_query
    assert result.evaluation.mean == local_result.evaluation.mean

    again = D.encode_corpus_on_ray(encoder, data, workers=2)  # all there: no worker started
    assert (again.chunks_computed, again.chunks_found, again.workers) == (0, 6, 0)


def test_a_killed_worker_is_restarted_and_no_chunk_is_computed_twice_real_model(
    cluster, model, data, local, tmp_path
):
    local_encoder, _ = local
    encoder = cached(model, EmbeddingCache(tmp_path / "ray", CHUNK))
    folder = _entry(encoder, data)
    folder.mkdir(parents=True)
    for name in ("chunk_00005.npy", "chunk_00005.json"):  # finished by an earlier run
        shutil.copy2(_entry(local_encoder, data) / name, folder / name)

    versions: dict[str, set[tuple[int, int]]] = {}
    killed: list[int] = []
    stop = threading.Event()

    def watch_and_kill() -> None:
        """Record every version of every manifest; once a chunk has been written, SIGKILL
        the worker holding a chunk lock (in the middle of that chunk)."""
        while True:
            ending = stop.is_set()  # one more look after the run has ended
            manifests = list(folder.glob("chunk_*.json"))
            for manifest in manifests:
                try:
                    info = manifest.stat()
                except FileNotFoundError:
                    continue
                versions.setdefault(manifest.name, set()).add((info.st_ino, info.st_mtime_ns))
            if not killed and len(manifests) >= 2:
                for lock in folder.glob(".chunk_*.lock"):
                    try:
                        pid = int(json.loads(lock.read_text())["pid"])
                    except (OSError, ValueError, KeyError):
                        continue
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
            if ending:
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch_and_kill, daemon=True)
    watcher.start()
    try:
        report = D.encode_corpus_on_ray(encoder, data, workers=2)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert killed, "no worker was seen holding a chunk lock"
    assert killed[0] != os.getpid()
    # chunk 5 was there; the others computed once each (the killed worker's chunk in
    # progress was not finished: a chunk's lock is released once it is written)
    assert report.chunks_computed + report.chunks_found == 6
    assert report.chunks_found in (1, 2) and report.workers == 2
    assert {name: len(seen) for name, seen in versions.items()} == {
        f"chunk_{i:05d}.json": 1 for i in range(6)
    }  # each manifest written once: no chunk written twice
    _assert_same_chunks(folder, _entry(local_encoder, data))


def test_a_worker_whose_vectors_would_be_keyed_differently_is_refused_real_model(
    cluster, model, data, tmp_path, monkeypatch
):
    """The driver keys its vectors on cache version 99 (as if its code were another
    version than the workers'): the worker's fingerprint differs, nothing is written."""
    from helpers.models import base

    monkeypatch.setattr(base, "CACHE_VERSION", 99)
    encoder = cached(model, EmbeddingCache(tmp_path / "ray", CHUNK))
    with pytest.raises(
        ValueError, match=r"encoder: the Ray worker on .* \(pid \d+\) builds"
    ) as err:
        D.encode_corpus_on_ray(encoder, data, workers=1)
    assert "cache_version: 99 here vs 2 on the worker" in str(err.value)
    assert "model:" not in str(err.value)  # only the settings that differ
    assert not list(_entry(encoder, data).glob("chunk_*"))


# ---------------------------------------------------------------------------
# Unit: arguments, resources, the corpus texts (no Ray, no model)
# ---------------------------------------------------------------------------


class FakeModel(EncoderBase):
    """An encoder without a model: the mock encoder's vectors, a real fingerprint."""

    def encode_corpus(self, texts):
        return MockEncoder().vectors(texts)

    def encode_queries(self, texts):
        return MockEncoder().vectors(texts)


def _fake(**changes: Any) -> FakeModel:
    fields = dict(
        name="fake", revision="r1", backend="pipeline", device="cpu", use_fp16=False,
        query_instruction="", batch_size=16, show_progress=False, model=None, dim=8,
        devices=["cpu"],
    )  # fmt: skip
    return FakeModel(**{**fields, **changes})


def _small_data(beir_folder: Path) -> RetrievalData:
    return load_retrieval_data(beir_folder)


def test_the_corpus_texts_are_those_evaluate_configuration_encodes(beir_folder):
    data = _small_data(beir_folder)
    reordered = {"d3": data.corpus["d3"], **data.corpus}  # an order other than sorted
    data = dataclasses.replace(data, corpus=reordered)
    seen: list[list[str]] = []

    class Recording(MockEncoder):
        def encode_corpus(self, texts):
            seen.append(list(texts))
            return super().encode_corpus(texts)

        def model_fingerprint(self) -> str:
            return "mock"

        def settings(self) -> dict[str, Any]:
            return {}

    evaluate_configuration(Recording(), data, [1], 1)
    assert seen == [corpus_texts(data)]
    assert corpus_texts(data) == ["Fish swim.", "Cats Cats purr.", "Dogs bark."]


def test_an_encoder_without_a_cache_is_refused_naming_cache_dir(beir_folder):
    with pytest.raises(ValueError, match=r"^cache_dir: the encoder has no embedding cache"):
        D.encode_corpus_on_ray(_fake(), _small_data(beir_folder))
    with pytest.raises(ValueError, match=r"^encoder: expected the encoder of .*got MockEncoder"):
        D.encode_corpus_on_ray(MockEncoder(), _small_data(beir_folder))
    several = cached(_fake(device="cuda:0,cuda:1", devices=["cuda:0", "cuda:1"]), "unused")
    with pytest.raises(ValueError, match=r"^encoder: loaded on several devices"):
        D.encode_corpus_on_ray(several, _small_data(beir_folder))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers: expected None or a positive integer, got 0"),
        ({"workers": 1.5}, "workers: expected None or a positive integer, got 1.5"),
        ({"chunks_per_shard": 0}, "chunks_per_shard: expected a positive integer, got 0"),
        ({"num_gpus_per_worker": -1}, "num_gpus_per_worker: expected None or a number >= 0"),
        ({"num_cpus_per_worker": 0}, "num_cpus_per_worker: expected None or a number > 0"),
        ({"ray_address": "nohost"}, "ray_address: expected ''"),
    ],
)
def test_arguments_are_checked_before_anything_runs(beir_folder, tmp_path, kwargs, message):
    encoder = cached(_fake(), tmp_path / "cache")
    with pytest.raises(ValueError, match=f"^{message}"):
        D.encode_corpus_on_ray(encoder, _small_data(beir_folder), **kwargs)
    assert not (tmp_path / "cache").exists()  # nothing opened


def test_a_corpus_all_in_the_cache_needs_no_ray(beir_folder, tmp_path):
    data = _small_data(beir_folder)
    encoder = cached(_fake(), EmbeddingCache(tmp_path, chunk_size=2))
    encoder.encode_corpus(corpus_texts(data))
    report = D.encode_corpus_on_ray(encoder, data, ray_address="auto")
    assert (report.passages, report.chunks, report.chunks_computed, report.chunks_found) == (
        3, 2, 0, 2,
    )  # fmt: skip
    assert (report.workers, report.start_seconds, report.threads_per_worker) == (0, 0.0, 0)
    assert report.as_dict()["key"] == cache_key(
        encoder.fingerprint("document"), corpus_texts(data)
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # (cpus, gpus, nodes, gpu, workers, cpus each, gpus each) -> (workers, cpus, gpus)
        ((2, 0, 1, False, None, None, None), (1, 2.0, 0.0)),
        ((2, 0, 1, False, 2, None, None), (2, 1.0, 0.0)),
        ((64, 0, 4, False, None, None, None), (4, 16.0, 0.0)),
        ((64, 0, 4, False, 8, 2, None), (8, 2.0, 0.0)),
        ((32, 8, 2, True, None, None, None), (8, 4.0, 1.0)),
        ((32, 8, 2, True, None, None, 0.5), (16, 2.0, 0.5)),
        ((32, 8, 2, True, 2, 1, None), (2, 1.0, 1.0)),
    ],
)
def test_workers_and_their_resources(args, expected):
    assert C._resources(*args) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((2, 0, 1, False, 3, None, None),
         "workers: 3 worker(s) of 1 CPU(s) need 3 CPUs; the cluster has 2"),
        ((2, 0, 1, False, 1, 4, None), "workers: 1 worker(s) of 4 CPU(s) need 4 CPUs"),
        ((2, 1, 1, False, None, None, 1), "num_gpus_per_worker: the encoder runs on 'cpu'"),
        ((2, 1, 1, True, None, None, 0), "num_gpus_per_worker: the encoder runs on 'cuda', so"),
        ((2, 0, 1, True, None, None, None), "num_gpus_per_worker: the cluster has 0 GPU(s)"),
        ((8, 2, 1, True, 3, None, None),
         "workers: 3 worker(s) of 1 GPU need 3 GPU(s); the cluster has 2"),
    ],
)  # fmt: skip
def test_workers_the_cluster_cannot_hold_are_refused(args, message):
    with pytest.raises(ValueError) as caught:
        C._resources(*args)
    assert str(caught.value).startswith(message)


def test_a_worker_rebuilds_the_drivers_encoder_on_its_device():
    model = _fake(
        device="cuda:1", devices=["cuda:1"], dtype="float16", use_fp16=True,
        query_instruction="q: ", batch_size=128, path="/models/m", normalize=None,
    )  # fmt: skip
    spec = C.worker_spec(model, "cuda:0", 3)
    assert (spec.model, spec.name, spec.path, spec.revision, spec.backend) == (
        "fake", "fake", "/models/m", "r1", "pipeline",
    )  # fmt: skip
    assert (spec.devices, spec.dtype, spec.batch_size, spec.workers) == (
        ("cuda:0",), "float16", 128, 3,
    )  # fmt: skip
    assert (spec.query_instruction, spec.normalize, spec.show_progress) == ("q: ", None, False)


def test_workers_tokenise_in_line_when_the_driver_does():
    """In line the pipeline batches by token count, with threads by characters: a GPU
    worker follows the driver, so its chunks are the ones the driver would write."""
    model = _fake(device="cuda:0", devices=["cuda:0"], path="/models/m", normalize=None)
    model.pipeline = SimpleNamespace(workers=0)
    assert C.worker_spec(model, "cuda:0", 3).workers == 0
    model.pipeline = SimpleNamespace(workers=4)
    assert C.worker_spec(model, "cuda:0", 3).workers == 3


def test_a_fingerprint_difference_names_only_the_settings_that_differ():
    ours = {"model": "m", "versions": {"torch": "2.13.0"}, "kind": "document"}
    theirs = {"model": "m", "versions": {"torch": "2.12.0"}, "extra": 1, "kind": "document"}
    assert C.fingerprint_difference(ours, theirs) == (
        'extra: null here vs 1 on the worker; versions: {"torch": "2.13.0"} here vs '
        '{"torch": "2.12.0"} on the worker'
    )
    assert C.fingerprint_difference(ours, dict(ours)) == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # a 2-CPU head node and two 16-CPU nodes: every worker fits the smallest node
        ((34, 0, 3, False, None, None, None, 2.0), (3, 2.0, 0.0)),
        # a 64-CPU head node without GPU and an 8-CPU GPU node: the GPU worker fits its node
        ((72, 1, 2, True, None, None, None, 8.0), (1, 8.0, 1.0)),
        # an explicit share is kept as given
        ((72, 1, 2, True, None, 16, None, 8.0), (1, 16.0, 1.0)),
    ],
)
def test_a_worker_asks_for_no_more_cpus_than_its_smallest_node_has(args, expected):
    assert C._resources(*args) == expected
