"""MTEB runs on Ray against the same runs in this process, and the Ray session's checks.

One local Ray (``num_cpus=2``) for the whole module. Two genuinely different models (the
embedded all-MiniLM-L6-v2, and the same model cut to its first 3 transformer layers, saved
as a local folder) on two shipped tasks, sliced small for speed (STSBenchmark: 100 pairs;
Banking77Classification: 2 training and 1 test text per label). The Ray executor must
write exactly the local executor's scores; a second run launches nothing; a broken data
folder fails its pairs once; a worker killed mid-run is retried and the run completes.

Ray tasks are observed through a wrapper of :func:`helpers.distributed.mteb_runs.run_pair`
(a closure, so Ray ships it by value): each attempt writes a file into a journal folder
(its pid), and each result it saves another.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import distributed as D
from helpers import mteb_glue as G
from helpers.distributed import mteb_runs, session
from helpers.notebook import PROJECT_ROOT

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TASKS = ("STSBenchmark", "Banking77Classification")
SHIPPED = PROJECT_ROOT / "data" / "mteb"


# ---------------------------------------------------------------------------
# Fixtures: data slices, the two models, one Ray, the local and the Ray run
# ---------------------------------------------------------------------------


def _write_slice(source: Path, target: Path, keep: Callable[[list[dict]], list[dict]]) -> int:
    rows = [json.loads(line) for line in gzip.open(source, "rt", encoding="utf-8")]
    kept = keep(rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(target, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in kept)
    return len(kept)


def _per_label(n: int) -> Callable[[list[dict]], list[dict]]:
    def keep(rows: list[dict]) -> list[dict]:
        seen: dict[str, int] = {}
        kept = []
        for row in rows:
            if seen.get(row["label"], 0) < n:
                seen[row["label"]] = seen.get(row["label"], 0) + 1
                kept.append(row)
        return kept

    return keep


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Slices of the shipped data, in folders named for their tasks."""
    root = tmp_path_factory.mktemp("mteb-data")
    sts = _write_slice(
        SHIPPED / "STSBenchmark/test.jsonl.gz", root / "STSBenchmark/test.jsonl.gz",
        lambda rows: rows[:100],
    )  # fmt: skip
    banking = SHIPPED / "Banking77Classification"
    train = _write_slice(
        banking / "train.jsonl.gz", root / "Banking77Classification/train.jsonl.gz", _per_label(2)
    )
    test = _write_slice(
        banking / "test.jsonl.gz", root / "Banking77Classification/test.jsonl.gz", _per_label(1)
    )
    assert (sts, train, test) == (100, 154, 77)
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The embedded model, and a model made from it: its first 3 transformer layers."""
    from sentence_transformers import SentenceTransformer

    from helpers.models import resolve_model

    path, _ = resolve_model(MODEL)
    st = SentenceTransformer(str(path), device="cpu")
    bert = st[0].auto_model
    bert.encoder.layer = bert.encoder.layer[:3]
    bert.config.num_hidden_layers = 3
    folder = tmp_path_factory.mktemp("models") / "minilm-l3"
    st.save(str(folder))
    return [MODEL, str(folder)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[D.RayCluster]:
    started = D.connect("", num_cpus=2)
    yield started
    D.shutdown(started)


def _tasks(data_root: Path) -> list[Any]:
    tasks = G.select_tasks(tasks=list(TASKS))
    G.attach_local_data(tasks, data_root)
    return tasks


def _scores(out: Path) -> dict[str, Any]:
    """relative path -> the ``scores`` tree of every result JSON under ``out``."""
    return {
        str(p.relative_to(out)): json.loads(p.read_text())["scores"]
        for p in sorted(out.rglob("*.json"))
        if p.name != "model_meta.json"
    }


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _journaled(journal: Path, block: tuple[str, str] | None = None) -> Callable[..., Any]:
    """A stand-in for ``run_pair`` that records each attempt (``<model>__<task>.<pid>.attempt``)
    and each result saved (``<model>__<task>.<pid>.saved``) in ``journal``, then runs the
    real one. With ``block=(model, task)``, that pair's first attempt writes its pid to
    ``journal/blocked`` and waits, just before saving its result, to be killed."""
    real = mteb_runs.run_pair

    def run_pair(model: str, spec: Any, task: Any, output_dir: str, batch_size: int) -> Any:
        import os
        import time

        from helpers.mteb_glue import runner

        tag = f"{Path(model).name}__{task.name}.{os.getpid()}"
        (journal / f"{tag}.attempt").write_text("")
        save = runner.save_task_result
        first = block == (model, task.name) and not (journal / "killed").exists()

        def saving(result: Any, path: Path) -> Path:
            if first:
                (journal / "blocked").write_text(str(os.getpid()))
                time.sleep(300)
            (journal / f"{tag}.saved").write_text(str(path))
            return save(result, path)

        runner.save_task_result = saving
        try:
            return real(model, spec, task, output_dir, batch_size)
        finally:
            runner.save_task_result = save

    return run_pair


def _journal(journal: Path, suffix: str) -> list[str]:
    return sorted(p.name.split(".")[0] for p in journal.glob(f"*.{suffix}"))


@pytest.fixture(scope="module")
def local_run(models: list[str], data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("local")
    start = time.monotonic()
    outcomes = D.run_mteb(models, _tasks(data_root), out, executor="local")
    print(f"local run: {time.monotonic() - start:.1f} s")
    return out, outcomes


@pytest.fixture(scope="module")
def ray_run(cluster, models, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray")
    journal = tmp_path_factory.mktemp("journal-ray")
    start = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mteb_runs, "run_pair", _journaled(journal))
        outcomes = D.run_mteb(models, _tasks(data_root), out, executor="ray")
    print(
        f"ray run: {time.monotonic() - start:.1f} s (Ray started in {cluster.start_seconds:.1f} s)"
    )
    return out, outcomes, journal


# ---------------------------------------------------------------------------
# The same scores, resuming, failures, a killed worker
# ---------------------------------------------------------------------------


def test_ray_writes_exactly_the_local_scores_real_model(local_run, ray_run, models, data_root):
    local_out, local_outcomes = local_run
    ray_out, ray_outcomes, journal = ray_run
    pairs = [(m, t) for m in models for t in TASKS]
    for outcomes in (local_outcomes, ray_outcomes):
        assert [(o.model, o.task, o.status, o.error) for o in outcomes] == [
            (m, t, "done", "") for m, t in pairs
        ]
    # one Ray task per pair, one attempt each, each result saved once
    tags = sorted(f"{Path(m).name}__{t}" for m, t in pairs)
    assert _journal(journal, "attempt") == tags
    assert _journal(journal, "saved") == tags
    local, remote = _scores(local_out), _scores(ray_out)
    assert (
        sorted(local)
        == sorted(remote)
        == sorted(str(o.path.relative_to(local_out)) for o in local_outcomes)
    )
    assert remote == local  # every score, exactly
    # the 3-layer model is another model: other result folder, other scores
    six, three = (G.result_folder(local_out, G.model_meta(m)) for m in models)
    assert three == local_out / "local__minilm-l3" / "local"
    for task in TASKS:
        a = json.loads((six / f"{task}.json").read_text())["scores"]["test"][0]
        b = json.loads((three / f"{task}.json").read_text())["scores"]["test"][0]
        assert abs(a["main_score"] - b["main_score"]) > 0.01, task
    # the fingerprint of the data slice, not the shipped data's
    result = json.loads((six / "STSBenchmark.json").read_text())
    assert result["dataset_revision"] == G.data_fingerprint(_tasks(data_root)[0])
    assert result["dataset_revision"] != G.data_fingerprint(_tasks(SHIPPED)[0])


def test_a_second_ray_run_launches_nothing_and_changes_no_byte_real_model(
    ray_run, models, data_root, tmp_path
):
    out = ray_run[0]
    before = _snapshot(out)
    journal = tmp_path / "journal"
    journal.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mteb_runs, "run_pair", _journaled(journal))
        outcomes = D.run_mteb(models, _tasks(data_root), out, executor="ray")
    assert [(o.model, o.task, o.status) for o in outcomes] == [
        (m, t, "skipped") for m in models for t in TASKS
    ]
    assert not list(journal.iterdir())  # no Ray task launched
    assert _snapshot(out) == before


def test_a_broken_data_folder_fails_its_pairs_once_the_others_finish_real_model(
    cluster, models, data_root, tmp_path
):
    broken = tmp_path / "data"
    shutil.copytree(data_root, broken)
    train = broken / "Banking77Classification" / "train.jsonl.gz"
    train.write_bytes(train.read_bytes()[: train.stat().st_size // 2])
    journal = tmp_path / "journal"
    journal.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mteb_runs, "run_pair", _journaled(journal))
        outcomes = D.run_mteb(models, _tasks(broken), tmp_path / "out", executor="ray")
    assert [(o.model, o.task, o.status) for o in outcomes] == [
        (m, t, "done" if t == "STSBenchmark" else "failed") for m in models for t in TASKS
    ]
    for failed in (o for o in outcomes if o.status == "failed"):
        assert failed.error.startswith(f"DataError: {train}, line "), failed.error
        assert "truncated gzip file" in failed.error
        assert failed.path is None and "DataError" in failed.traceback
    # each pair ran once: a failing task is recorded, never retried
    assert _journal(journal, "attempt") == sorted(
        f"{Path(m).name}__{t}" for m in models for t in TASKS
    )
    assert _journal(journal, "saved") == sorted(f"{Path(m).name}__STSBenchmark" for m in models)


def test_a_killed_worker_is_retried_and_the_run_completes_real_model(
    cluster, models, data_root, local_run, tmp_path
):
    model = models[1]
    journal = tmp_path / "journal"
    journal.mkdir()
    killed: list[int] = []

    def kill_when_blocked() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (journal / "blocked").exists():
            time.sleep(0.05)
        if (journal / "blocked").exists():
            time.sleep(0.1)  # the pid is written before the file is closed: read it whole
            pid = int((journal / "blocked").read_text())
            (journal / "killed").write_text(str(pid))  # the retry must not block again
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_when_blocked, daemon=True)
    killer.start()
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mteb_runs, "run_pair", _journaled(journal, block=(model, "STSBenchmark")))
        outcomes = D.run_mteb([model], _tasks(data_root), out, executor="ray")
    killer.join(timeout=5)
    assert killed, "the blocked worker was never seen"
    assert [(o.task, o.status) for o in outcomes] == [(t, "done") for t in TASKS]
    attempts = [p.name for p in journal.glob("minilm-l3__STSBenchmark.*.attempt")]
    assert len(attempts) == 2 and f"minilm-l3__STSBenchmark.{killed[0]}.attempt" in attempts
    assert len(list(journal.glob("minilm-l3__Banking77Classification.*.attempt"))) == 1
    # every result written once (the killed attempt never got to save), equal to local
    assert _journal(journal, "saved") == [f"minilm-l3__{t}" for t in sorted(TASKS)]
    local = {k: v for k, v in _scores(local_run[0]).items() if k.startswith("local__minilm-l3")}
    assert _scores(out) == local and len(local) == 2
    assert not [p for p in out.rglob("*") if ".tmp" in p.name or "probe" in p.name]


# ---------------------------------------------------------------------------
# Unit: arguments, the storage check, task descriptions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("executor", "address", "message"),
    [
        ("dask", "", "executor: expected one of 'local', 'ray', got 'dask'"),
        ("Ray", "", "executor: expected one of 'local', 'ray', got 'Ray'"),
        ("ray", "localhost", "ray_address: expected '' (start Ray on this machine), 'auto', "
         "'ray://host:port' or 'host:port', got 'localhost'"),
        ("ray", "http://h:10001", "ray_address: expected ''"),
        ("local", "auto", "ray_address: 'auto' was given with executor 'local', which does "
         "not use Ray"),
    ],
)  # fmt: skip
def test_check_executor_names_the_parameter(executor, address, message):
    with pytest.raises(ValueError) as caught:
        D.check_executor(executor, address)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    "address", ["", "auto", "ray://head:10001", "10.0.0.1:6379", "head-1:6379"]
)
def test_check_executor_accepts_the_documented_addresses(address):
    D.check_executor("ray", address)
    if not address:
        D.check_executor("local", address)


def test_connect_checks_its_arguments_before_starting_ray():
    with pytest.raises(ValueError, match=r"^num_cpus: expected a positive integer or None, got 0"):
        D.connect("", num_cpus=0)
    with pytest.raises(ValueError, match=r"^num_cpus: only for a Ray started on this machine"):
        D.connect("auto", num_cpus=2)
    with pytest.raises(ValueError, match=r"^ray_address: expected"):
        D.connect("nohost")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": "m/x"}, "models: expected a list of model names"),
        ({"models": []}, "models: expected at least one model name, got none"),
        ({"models": ["a/b", "a/b"]}, "models: each model once, got ['a/b'] more than once"),
        ({"tasks": ["STSBenchmark"]}, "tasks: expected mteb task objects"),
        ({"tasks": []}, "tasks: expected a list of mteb tasks"),
        ({"batch_size": 0}, "batch_size: expected a positive integer, got 0"),
        ({"num_gpus_per_task": -1}, "num_gpus_per_task: expected None or a number >= 0, got -1"),
        ({"max_retries": -1}, "max_retries: expected an integer >= 0, got -1"),
        ({"executor": "spark"}, "executor: expected one of 'local', 'ray', got 'spark'"),
        ({"ray_address": "auto"}, "ray_address: 'auto' was given with executor 'local'"),
    ],
)
def test_run_mteb_checks_its_arguments_before_running(kwargs, message, tmp_path):
    arguments: dict[str, Any] = {"models": [MODEL], "tasks": G.select_tasks(tasks=["STSBenchmark"])}
    arguments.update(kwargs)
    with pytest.raises(ValueError) as caught:
        D.run_mteb(arguments.pop("models"), arguments.pop("tasks"), tmp_path, **arguments)
    assert str(caught.value).startswith(message)
    assert not list(tmp_path.iterdir())


def test_run_mteb_checks_every_model_before_running(tmp_path):
    from helpers.models import ModelError

    tasks = G.select_tasks(tasks=["STSBenchmark"])
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelError, match=r"^model: local folder '.*no-such-model' does not exist"):
        D.run_mteb([MODEL, missing], tasks, tmp_path / "out", executor="ray")
    assert not (tmp_path / "out").exists()


def test_importing_the_package_does_not_import_ray():
    code = "import sys, helpers.distributed; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_storage_probe_reports_what_its_node_sees(tmp_path):
    (tmp_path / "driver").write_text("token-1")
    seen = session.storage_probe(str(tmp_path), str(tmp_path / "driver"), "probe", "token-1")
    assert seen == {"is_dir": True, "driver_file": "token-1", "error": ""}
    assert (tmp_path / "probe").read_text() == "token-1"
    elsewhere = tmp_path / "not-here"
    seen = session.storage_probe(str(elsewhere), str(elsewhere / "driver"), "probe", "t")
    assert seen["is_dir"] is False and seen["driver_file"] is None
    assert seen["error"].startswith("FileNotFoundError: ")


NODES = [{"id": "a" * 56, "ip": "10.0.0.1"}, {"id": "b" * 56, "ip": "10.0.0.2"}]
CLUSTER = D.RayCluster("10.0.0.1:6379", 4, 0, 2, False, 0.0)


def _fake_nodes(private: Path, on: str, broken: str) -> Callable[..., list[dict[str, Any]]]:
    """Probes of two nodes: every node runs the real probe on the driver's folder, except
    node ``on``, whose folder of the same path is its own (``private``), broken as said:
    ``"own-folder"`` (exists, empty), ``"no-folder"``, ``"read-only"`` (sees the driver's
    file but cannot write)."""

    def probe_nodes(nodes, folder, driver_file, names, token):
        reports = []
        for node, name in zip(nodes, names, strict=True):
            if node["id"] != on:
                reports.append(session.storage_probe(str(folder), str(driver_file), name, token))
            elif broken == "own-folder":
                private.mkdir(exist_ok=True)
                reports.append(session.storage_probe(str(private), str(private / "x"), name, token))
            elif broken == "no-folder":
                reports.append(
                    session.storage_probe(str(private / "none"), "/nonexistent", name, token)
                )
            else:
                reports.append(
                    {"is_dir": True, "driver_file": token, "error": "PermissionError: no"}
                )
        return reports

    return probe_nodes


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ("own-folder", "the node does not see the file the driver wrote there"),
        ("no-folder", "the folder does not exist there"),
        ("read-only", "the node cannot write there (PermissionError: no)"),
    ],
)
def test_shared_storage_check_names_parameter_folder_and_node(
    broken, problem, tmp_path, monkeypatch
):
    shared = tmp_path / "shared"
    monkeypatch.setattr(session, "_alive_nodes", lambda: NODES)
    monkeypatch.setattr(
        session, "_probe_nodes", _fake_nodes(tmp_path / "private", "b" * 56, broken)
    )
    with pytest.raises(D.StorageError) as caught:
        D.check_shared_storage(CLUSTER, {"output_dir": shared / "out", "cache_dir": shared / "c"})
    assert str(caught.value) == (
        f"output_dir: folder {str(shared / 'out')!r} is not shared with node bbbbbbbbbbbb "
        f"(10.0.0.2): {problem}. output_dir and cache_dir must be on a filesystem every node "
        "mounts at the same path (NFS, a cluster filesystem)"
    )
    assert isinstance(caught.value, ValueError)
    assert not list((shared / "out").iterdir())  # every probe file removed
    assert not (shared / "c").exists()  # stopped at the first folder


def test_shared_storage_check_needs_the_driver_to_see_what_a_node_wrote(tmp_path, monkeypatch):
    """A node that writes its probe file into its own disk at the same path."""
    private = tmp_path / "private"

    def probe_nodes(nodes, folder, driver_file, names, token):
        private.mkdir(exist_ok=True)
        (private / "driver").write_text(token)  # it sees a file like the driver's ...
        return [
            session.storage_probe(str(private), str(private / "driver"), n, token) for n in names
        ]

    monkeypatch.setattr(session, "_alive_nodes", lambda: NODES[:1])
    monkeypatch.setattr(session, "_probe_nodes", probe_nodes)
    with pytest.raises(
        D.StorageError,
        match=r"^cache_dir: folder .* not shared with node aaaaaaaaaaaa "
        r"\(10\.0\.0\.1\): the driver does not see the file the node wrote there\. ",
    ):
        D.check_shared_storage(CLUSTER, {"cache_dir": tmp_path / "cache"})


def test_shared_storage_check_passes_and_cleans_up_when_shared(tmp_path, monkeypatch):
    monkeypatch.setattr(session, "_alive_nodes", lambda: NODES)
    monkeypatch.setattr(session, "_probe_nodes", _fake_nodes(tmp_path, "nobody", ""))
    D.check_shared_storage(CLUSTER, {"output_dir": tmp_path / "o", "cache_dir": tmp_path / "c"})
    assert not list((tmp_path / "o").iterdir()) and not list((tmp_path / "c").iterdir())


def test_a_task_description_rebuilds_the_drivers_task(tmp_path):
    """A benchmark keeps fewer subsets and splits than the task by name: a worker's task
    must evaluate the driver's."""
    (driver,) = [
        t
        for t in G.select_tasks(benchmark="MTEB(eng, v1)", types=["Classification"])
        if t.metadata.name == "AmazonCounterfactualClassification"
    ]
    spec = mteb_runs.task_spec(driver)
    assert (spec.hf_subsets, spec.eval_splits, spec.folder) == (("en",), ("test",), None)
    worker = mteb_runs.build_task(spec)
    assert (list(worker.hf_subsets), list(worker.eval_splits)) == (["en"], ["test"])
    assert G.local_source(worker) is None

    (sts,) = G.select_tasks(tasks=["STSBenchmark"])
    G.attach_local_data([sts], SHIPPED)
    spec = mteb_runs.task_spec(sts)
    assert spec.folder == str(SHIPPED / "STSBenchmark") and spec.checked
    rebuilt = mteb_runs.build_task(spec)
    assert G.local_source(rebuilt) == G.local_source(sts)
    assert G.data_fingerprint(rebuilt) == G.data_fingerprint(sts)

    empty = tmp_path / "STSBenchmark"
    empty.mkdir()
    (sts,) = G.select_tasks(tasks=["STSBenchmark"])
    G.attach_local_data([sts], tmp_path)
    rebuilt = mteb_runs.build_task(mteb_runs.task_spec(sts))
    problem = G.local_source(sts).problem
    assert problem and G.local_source(rebuilt).problem == problem


def test_run_mteb_refuses_two_models_filed_in_one_result_folder(tmp_path):
    # two checkpoints in folders of the same name are both "local/checkpoint-1000"
    first, second = tmp_path / "a" / "checkpoint-1000", tmp_path / "b" / "checkpoint-1000"
    for folder in (first, second):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    (task,) = G.select_tasks(tasks=["STSBenchmark"])
    with pytest.raises(ValueError, match=r"models: .*same folder 'local__checkpoint-1000/local'"):
        D.run_mteb([str(first), str(second)], [task], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_check_executor_needs_a_cache_for_ray_workers_to_fill():
    with pytest.raises(ValueError, match=r"^cache_dir: executor 'ray' needs the embedding cache"):
        D.check_executor("ray", "", cache_dir="")
    D.check_executor("ray", "", cache_dir="results/cache")
    D.check_executor("local", "", cache_dir="")
